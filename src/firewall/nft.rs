//! nftables, through the `nftables` crate (JSON batches piped to `nft -j -f -`).
//!
//! ```text
//! table inet security_monitor {
//!     set banned_v4 { type ipv4_addr; flags timeout; }
//!     set banned_v6 { type ipv6_addr; flags timeout; }
//!     set banned_v4_nets { type ipv4_addr; flags interval, timeout; }
//!     set banned_v6_nets { type ipv6_addr; flags interval, timeout; }
//!     chain input   { type filter hook input   priority -10; ip saddr @banned_v4 counter drop; ip6 saddr @banned_v6 counter drop;
//!                     ip saddr @banned_v4_nets counter drop; ip6 saddr @banned_v6_nets counter drop; }
//!     chain forward { type filter hook forward priority -10; (the same) }
//! }
//! ```
//!
//! The forward hook is what covers Docker-published ports: that traffic is DNATed and
//! forwarded, it never reaches input. The input hook covers the host's own services and
//! connections that docker-proxy accepts. Set elements carry their own timeout, so the
//! kernel lifts every ban on time even while the daemon is down.
//!
//! Network bans (`ban.ipv6_prefix: 64`) live in sets of their own: a prefix needs
//! `flags interval`, and the flags of an existing set cannot be changed in place. Keeping
//! the address sets as they were means a table made by an older build needs no migration:
//! `setup` only adds the two network sets and their rules.

use nftables::batch::Batch;
use nftables::expr::{Elem, Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::helper::{self, NftablesError};
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, NfObject, Nftables as Ruleset, Rule, Set,
    SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Counter, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::collections::HashSet;

use super::{Backend, FirewallError, KernelBan, Result};
use crate::netaddr::IpNet;

const SET_V4: &str = "banned_v4";
const SET_V6: &str = "banned_v6";
const NETS_V4: &str = "banned_v4_nets";
const NETS_V6: &str = "banned_v6_nets";
/// Every set of ours: name, element type, whether it holds prefixes, match protocol.
const SETS: [(&str, SetType, bool, &str); 4] = [
    (SET_V4, SetType::Ipv4Addr, false, "ip"),
    (SET_V6, SetType::Ipv6Addr, false, "ip6"),
    (NETS_V4, SetType::Ipv4Addr, true, "ip"),
    (NETS_V6, SetType::Ipv6Addr, true, "ip6"),
];
/// Before the usual filter priority (0) and Docker's own chains, so our drop comes first.
const PRIORITY: i32 = -10;

pub struct Nftables {
    table: String,
}

/// Whether `nft` runs and can read the ruleset here (it needs CAP_NET_ADMIN).
pub fn usable() -> bool {
    super::works("nft", &["list", "tables"])
}

fn nft_error(action: &str, e: NftablesError) -> FirewallError {
    FirewallError {
        action: action.to_string(),
        detail: match e {
            NftablesError::NftExecution { program, inner } => {
                format!("cannot run {program:?}: {inner} (is the nftables package installed?)")
            }
            NftablesError::NftFailed {
                program, stderr, ..
            } => format!("{program:?} refused the batch: {}", stderr.trim()),
            other => other.to_string(),
        },
    }
}

impl Nftables {
    pub fn new(table: &str) -> Self {
        Nftables {
            table: table.to_string(),
        }
    }

    fn apply(&self, action: &str, batch: Batch<'_>) -> Result<()> {
        helper::apply_ruleset(&batch.to_nftables()).map_err(|e| nft_error(action, e))
    }

    fn element<'a>(&'a self, set: &'static str, elems: Vec<Expression<'a>>) -> NfListObject<'a> {
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: Cow::Borrowed(&self.table),
            name: Cow::Borrowed(set),
            elem: Cow::Owned(elems),
        })
    }

    fn timed(net: &IpNet, secs: u64) -> Expression<'static> {
        Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(Self::plain(net)),
            timeout: Some(secs.clamp(1, u32::MAX as u64) as u32),
            expires: None,
            comment: None,
            counter: None,
        }))
    }

    /// An address, or a network as a prefix expression.
    fn plain(net: &IpNet) -> Expression<'static> {
        let addr = Expression::String(Cow::Owned(net.addr().to_string()));
        if net.is_host() {
            addr
        } else {
            Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(addr),
                len: net.prefix() as u32,
            }))
        }
    }

    /// Splits `items` by address family and by address or network into per-set lists.
    fn by_set<T, F: Fn(&T) -> (IpNet, Expression<'static>)>(
        items: &[T],
        f: F,
    ) -> [(&'static str, Vec<Expression<'static>>); 4] {
        let mut out = SETS.map(|(name, ..)| (name, Vec::new()));
        for it in items {
            let (net, e) = f(it);
            let i = match (net.addr().is_ipv4(), net.is_host()) {
                (true, true) => 0,
                (false, true) => 1,
                (true, false) => 2,
                (false, false) => 3,
            };
            out[i].1.push(e);
        }
        out
    }

    fn drop_rule<'a>(
        &'a self,
        chain: &'static str,
        proto: &'static str,
        set: &'static str,
    ) -> NfListObject<'a> {
        NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: Cow::Borrowed(&self.table),
            chain: Cow::Borrowed(chain),
            expr: Cow::Owned(vec![
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                        PayloadField {
                            protocol: Cow::Borrowed(proto),
                            field: Cow::Borrowed("saddr"),
                        },
                    ))),
                    right: Expression::String(Cow::Owned(format!("@{set}"))),
                    op: Operator::EQ,
                }),
                Statement::Counter(Counter::Anonymous(None)),
                Statement::Drop(None),
            ]),
            comment: Some(Cow::Borrowed("security-monitor bans")),
            ..Rule::default()
        })
    }

    fn table_obj(&self) -> Table<'_> {
        Table {
            family: NfFamily::INet,
            name: Cow::Borrowed(&self.table),
            handle: None,
        }
    }
}

/// An element's value as `nft -j` lists it: an address string or a prefix.
fn parse_element(val: &Expression<'_>) -> Option<IpNet> {
    match val {
        Expression::String(s) => s.parse().ok().map(IpNet::host),
        Expression::Named(NamedExpression::Prefix(p)) => match p.addr.as_ref() {
            Expression::String(s) => IpNet::new(s.parse().ok()?, u8::try_from(p.len).ok()?).ok(),
            _ => None,
        },
        _ => None,
    }
}

impl Backend for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn setup(&mut self) -> Result<()> {
        let mut b = Batch::new();
        b.add(NfListObject::Table(self.table_obj()));
        for (set, ty, nets, _) in SETS {
            let flags = if nets {
                HashSet::from([SetFlag::Interval, SetFlag::Timeout])
            } else {
                HashSet::from([SetFlag::Timeout])
            };
            b.add(NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: Cow::Borrowed(&self.table),
                name: Cow::Borrowed(set),
                set_type: SetTypeValue::Single(ty),
                flags: Some(flags),
                ..Set::default()
            })));
        }
        for (name, hook) in [("input", NfHook::Input), ("forward", NfHook::Forward)] {
            b.add(NfListObject::Chain(Chain {
                family: NfFamily::INet,
                table: Cow::Borrowed(&self.table),
                name: Cow::Borrowed(name),
                _type: Some(NfChainType::Filter),
                hook: Some(hook),
                prio: Some(PRIORITY),
                policy: Some(NfChainPolicy::Accept),
                ..Chain::default()
            }));
            // Rewriting our rules (not the sets) makes setup safe to repeat.
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(Chain {
                family: NfFamily::INet,
                table: Cow::Borrowed(&self.table),
                name: Cow::Borrowed(name),
                ..Chain::default()
            })));
            for (set, _, _, proto) in SETS {
                b.add(self.drop_rule(name, proto, set));
            }
        }
        self.apply(
            &format!("creating the nftables table inet {}", self.table),
            b,
        )
    }

    fn ban(&mut self, bans: &[(IpNet, u64)]) -> Result<()> {
        if bans.is_empty() {
            return Ok(());
        }
        // add (so the element exists), delete, add with the timeout: kernels before 6.12
        // keep an existing element's old timeout on a plain re-add.
        let mut b = Batch::new();
        for (set, elems) in Self::by_set(bans, |(net, _)| (*net, Self::plain(net))) {
            if !elems.is_empty() {
                b.add(self.element(set, elems.clone()));
                b.delete(self.element(set, elems));
            }
        }
        for (set, elems) in Self::by_set(bans, |(net, secs)| (*net, Self::timed(net, *secs))) {
            if !elems.is_empty() {
                b.add(self.element(set, elems));
            }
        }
        self.apply(
            &format!(
                "adding {} ban(s) to the nftables sets of table inet {}",
                bans.len(),
                self.table
            ),
            b,
        )
    }

    fn unban(&mut self, nets: &[IpNet]) -> Result<()> {
        if nets.is_empty() {
            return Ok(());
        }
        // Adding first makes deleting an IP that is not banned a no-op, not an error.
        let mut b = Batch::new();
        for (set, elems) in Self::by_set(nets, |net| (*net, Self::plain(net))) {
            if !elems.is_empty() {
                b.add(self.element(set, elems.clone()));
                b.delete(self.element(set, elems));
            }
        }
        self.apply(
            &format!(
                "removing {} ban(s) from table inet {}",
                nets.len(),
                self.table
            ),
            b,
        )
    }

    fn replace_all(&mut self, bans: &[(IpNet, u64)]) -> Result<()> {
        let mut b = Batch::new();
        for (set, ..) in SETS {
            b.add_cmd(NfCmd::Flush(FlushObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: Cow::Borrowed(&self.table),
                name: Cow::Borrowed(set),
                ..Set::default()
            }))));
        }
        for (set, elems) in Self::by_set(bans, |(net, secs)| (*net, Self::timed(net, *secs))) {
            if !elems.is_empty() {
                b.add(self.element(set, elems));
            }
        }
        self.apply(
            &format!(
                "restoring {} ban(s) into table inet {}",
                bans.len(),
                self.table
            ),
            b,
        )
    }

    fn list(&mut self) -> Result<Vec<KernelBan>> {
        let mut out = Vec::new();
        for (set, ..) in SETS {
            let action = format!("listing set {set} of table inet {}", self.table);
            let ruleset: Ruleset = helper::get_current_ruleset_with_args(
                helper::DEFAULT_NFT,
                ["list", "set", "inet", &self.table, set],
            )
            .map_err(|e| nft_error(&action, e))?;
            for obj in ruleset.objects.iter() {
                let NfObject::ListObject(NfListObject::Set(s)) = obj else {
                    continue;
                };
                for e in s.elem.iter().flat_map(|v| v.iter()) {
                    let (val, expires) = match e {
                        Expression::Named(NamedExpression::Elem(el)) => {
                            (el.val.as_ref(), el.expires.or(el.timeout))
                        }
                        other => (other, None),
                    };
                    if let Some(net) = parse_element(val) {
                        out.push(KernelBan {
                            net,
                            remaining: expires.map(u64::from),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn kernel_expiry(&self) -> bool {
        true
    }

    fn kernel_max_timeout(&self) -> u64 {
        u32::MAX as u64
    }

    fn teardown(&mut self) -> Result<()> {
        // `add` then `delete`: removing a table that is not there is not an error.
        let mut b = Batch::new();
        b.add(NfListObject::Table(self.table_obj()));
        b.delete(NfListObject::Table(self.table_obj()));
        self.apply(&format!("removing table inet {}", self.table), b)
    }
}
