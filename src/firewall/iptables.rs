//! iptables and ip6tables, for hosts that use them.
//!
//! One chain of our own (named like the nftables table) jumped from INPUT and from
//! DOCKER-USER (FORWARD where Docker is absent): DOCKER-USER is where Docker lets others
//! filter forwarded traffic to published ports, and the jump there survives a Docker
//! restart. With `ipset`, the chain matches two sets per family whose entries carry their
//! own timeout: `hash:ip` for addresses and `hash:net` for networks (`ban.ipv6_prefix: 64`;
//! a set of its own, so sets made by older builds stay as they are). Without ipset, the
//! chain holds one DROP rule per address or network and the daemon lifts them.

use super::{run, works, Backend, FirewallError, KernelBan, Result};
use crate::netaddr::IpNet;

pub struct Iptables {
    chain: String,
    ipset: bool,
}

/// Whether `iptables` runs here.
pub fn usable() -> bool {
    works("iptables", &["-w", "-L", "INPUT", "-n"])
}

struct Family {
    tool: &'static str,
    restore: &'static str,
    ipset_family: &'static str,
    suffix: &'static str,
    v4: bool,
}

const FAMILIES: [Family; 2] = [
    Family {
        tool: "iptables",
        restore: "iptables-restore",
        ipset_family: "inet",
        suffix: "_v4",
        v4: true,
    },
    Family {
        tool: "ip6tables",
        restore: "ip6tables-restore",
        ipset_family: "inet6",
        suffix: "_v6",
        v4: false,
    },
];

/// One definition for our sets and the temporary ones swapped in, since `create -exist`
/// refuses a set of the same name with other parameters. Per-entry timeouts; room for
/// a million bans.
fn set_definition(f: &Family, nets: bool) -> String {
    format!(
        "{} family {} timeout 0 maxelem 1048576",
        if nets { "hash:net" } else { "hash:ip" },
        f.ipset_family
    )
}

/// The longest per-entry timeout ipset takes (2^31 ms, about 24.8 days). Longer bans get
/// no timeout (0) and the daemon lifts them when they end, rather than the kernel
/// silently dropping a 30-day ban after 24.8 days while `list` still shows it.
const IPSET_MAX_TIMEOUT: u64 = 2_147_483;

/// The `timeout` value of an ipset entry for a ban of `secs` seconds.
fn ipset_timeout(secs: u64) -> u64 {
    if secs > IPSET_MAX_TIMEOUT {
        0
    } else {
        secs.max(1)
    }
}

impl Iptables {
    pub fn new(chain: &str) -> Self {
        Iptables {
            chain: chain.to_string(),
            ipset: works("ipset", &["version"]),
        }
    }

    pub fn has_ipset(&self) -> bool {
        self.ipset
    }

    /// `security_monitor_v4` for addresses, `security_monitor_v4net` for networks.
    fn set_name(&self, f: &Family, nets: bool) -> String {
        format!(
            "{}{}{}",
            self.chain,
            f.suffix,
            if nets { "net" } else { "" }
        )
    }

    fn family_of(net: &IpNet) -> &'static Family {
        if net.addr().is_ipv4() {
            &FAMILIES[0]
        } else {
            &FAMILIES[1]
        }
    }

    /// The set an address or network goes in.
    fn set_of(&self, net: &IpNet) -> String {
        self.set_name(Self::family_of(net), !net.is_host())
    }

    /// How ipset and iptables write it: `203.0.113.7` or `2001:db8:1:2::/64`.
    fn entry(net: &IpNet) -> String {
        if net.is_host() {
            net.addr().to_string()
        } else {
            net.to_string()
        }
    }

    /// The families whose tool works here (ip6tables may be absent or IPv6 disabled).
    fn families(&self) -> impl Iterator<Item = &'static Family> {
        FAMILIES
            .iter()
            .filter(|f| works(f.tool, &["-w", "-L", "INPUT", "-n"]))
    }

    fn has_chain(tool: &str, chain: &str) -> bool {
        works(tool, &["-w", "-S", chain])
    }

    fn ensure_jump(&self, f: &Family, parent: &str) -> Result<()> {
        if !works(f.tool, &["-w", "-C", parent, "-j", &self.chain]) {
            run(
                &format!("jumping from {parent} to {}", self.chain),
                f.tool,
                &["-w", "-I", parent, "1", "-j", &self.chain],
                None,
            )?;
        }
        Ok(())
    }

    fn ipset_restore(&self, action: &str, script: &str) -> Result<()> {
        run(action, "ipset", &["restore"], Some(script.as_bytes())).map(|_| ())
    }

    fn rule_nets(&self, f: &Family) -> Result<Vec<IpNet>> {
        let out = run(
            &format!("listing chain {}", self.chain),
            f.tool,
            &["-w", "-S", &self.chain],
            None,
        )?;
        let mut nets = Vec::new();
        for line in out.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("-A") {
                continue;
            }
            let words: Vec<&str> = words.collect();
            if let Some(pos) = words.iter().position(|w| *w == "-s") {
                if let Some(net) = words.get(pos + 1).and_then(|a| a.parse().ok()) {
                    nets.push(net);
                }
            }
        }
        Ok(nets)
    }

    /// Appends the entries of one ipset (`ipset save` lines) to `out`.
    fn list_ipset(&self, set: &str, out: &mut Vec<KernelBan>) -> Result<()> {
        let text = run(
            &format!("listing ipset {set}"),
            "ipset",
            &["save", set],
            None,
        )?;
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() >= 3 && w[0] == "add" {
                if let Ok(net) = w[2].parse() {
                    let remaining = w
                        .iter()
                        .position(|x| *x == "timeout")
                        .and_then(|i| w.get(i + 1))
                        .and_then(|t| t.parse().ok())
                        // 0: no kernel timeout (a ban longer than ipset keeps).
                        .filter(|t| *t > 0);
                    out.push(KernelBan { net, remaining });
                }
            }
        }
        Ok(())
    }

    fn restore_rules(&self, f: &Family, action: &str, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut script = String::from("*filter\n");
        for l in lines {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str("COMMIT\n");
        run(
            action,
            f.restore,
            &["-w", "--noflush"],
            Some(script.as_bytes()),
        )
        .map(|_| ())
    }
}

impl Backend for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn setup(&mut self) -> Result<()> {
        let mut any = false;
        for f in self.families() {
            any = true;
            let action = format!("creating chain {} with {}", self.chain, f.tool);
            if !Self::has_chain(f.tool, &self.chain) {
                run(&action, f.tool, &["-w", "-N", &self.chain], None)?;
            }
            if self.ipset {
                run(&action, f.tool, &["-w", "-F", &self.chain], None)?;
                for nets in [false, true] {
                    let set = self.set_name(f, nets);
                    let create = format!("create {set} {} -exist\n", set_definition(f, nets));
                    self.ipset_restore(&format!("creating ipset {set}"), &create)?;
                    run(
                        &action,
                        f.tool,
                        &[
                            "-w",
                            "-A",
                            &self.chain,
                            "-m",
                            "set",
                            "--match-set",
                            &set,
                            "src",
                            "-j",
                            "DROP",
                        ],
                        None,
                    )?;
                }
            }
            self.ensure_jump(f, "INPUT")?;
            let parent = if Self::has_chain(f.tool, "DOCKER-USER") {
                "DOCKER-USER"
            } else {
                "FORWARD"
            };
            self.ensure_jump(f, parent)?;
        }
        if !any {
            return Err(FirewallError {
                action: "setting up iptables".into(),
                detail: "neither iptables nor ip6tables works here (installed? running as root?)"
                    .into(),
            });
        }
        Ok(())
    }

    fn ban(&mut self, bans: &[(IpNet, u64)]) -> Result<()> {
        if bans.is_empty() {
            return Ok(());
        }
        if self.ipset {
            // `-exist` on add replaces the timeout of an entry that is already there.
            let mut script = String::new();
            for (net, secs) in bans {
                script.push_str(&format!(
                    "add {} {} timeout {} -exist\n",
                    self.set_of(net),
                    Self::entry(net),
                    ipset_timeout(*secs)
                ));
            }
            return self.ipset_restore(&format!("adding {} ban(s) to ipsets", bans.len()), &script);
        }
        for f in FAMILIES.iter() {
            let existing = self.rule_nets(f).unwrap_or_default();
            let lines: Vec<String> = bans
                .iter()
                .filter(|(net, _)| net.addr().is_ipv4() == f.v4 && !existing.contains(net))
                .map(|(net, _)| format!("-A {} -s {net} -j DROP", self.chain))
                .collect();
            self.restore_rules(
                f,
                &format!("adding {} ban rule(s) to chain {}", lines.len(), self.chain),
                &lines,
            )?;
        }
        Ok(())
    }

    fn unban(&mut self, nets: &[IpNet]) -> Result<()> {
        if nets.is_empty() {
            return Ok(());
        }
        if self.ipset {
            let script: String = nets
                .iter()
                .map(|n| format!("del {} {} -exist\n", self.set_of(n), Self::entry(n)))
                .collect();
            return self.ipset_restore(
                &format!("removing {} ban(s) from ipsets", nets.len()),
                &script,
            );
        }
        for f in FAMILIES.iter() {
            let existing = self.rule_nets(f).unwrap_or_default();
            let lines: Vec<String> = nets
                .iter()
                .filter(|n| n.addr().is_ipv4() == f.v4 && existing.contains(n))
                .map(|n| format!("-D {} -s {n} -j DROP", self.chain))
                .collect();
            self.restore_rules(
                f,
                &format!(
                    "removing {} ban rule(s) from chain {}",
                    lines.len(),
                    self.chain
                ),
                &lines,
            )?;
        }
        Ok(())
    }

    fn replace_all(&mut self, bans: &[(IpNet, u64)]) -> Result<()> {
        if self.ipset {
            // Fill a fresh set and swap it in: the old bans stay in force until the swap.
            let mut script = String::new();
            for f in self.families() {
                for nets in [false, true] {
                    let set = self.set_name(f, nets);
                    let tmp = format!("{set}_n");
                    script.push_str(&format!(
                        "create {tmp} {} -exist\nflush {tmp}\n",
                        set_definition(f, nets)
                    ));
                    for (net, secs) in bans
                        .iter()
                        .filter(|(n, _)| n.addr().is_ipv4() == f.v4 && n.is_host() != nets)
                    {
                        script.push_str(&format!(
                            "add {tmp} {} timeout {} -exist\n",
                            Self::entry(net),
                            ipset_timeout(*secs)
                        ));
                    }
                    script.push_str(&format!("swap {tmp} {set}\ndestroy {tmp}\n"));
                }
            }
            return self.ipset_restore(
                &format!("restoring {} ban(s) into ipsets", bans.len()),
                &script,
            );
        }
        for f in self.families() {
            let mut lines = vec![format!("-F {}", self.chain)];
            lines.extend(
                bans.iter()
                    .filter(|(net, _)| net.addr().is_ipv4() == f.v4)
                    .map(|(net, _)| format!("-A {} -s {net} -j DROP", self.chain)),
            );
            self.restore_rules(
                f,
                &format!(
                    "restoring {} ban rule(s) into chain {}",
                    bans.len(),
                    self.chain
                ),
                &lines,
            )?;
        }
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<KernelBan>> {
        let mut out = Vec::new();
        for f in self.families() {
            if self.ipset {
                for nets in [false, true] {
                    self.list_ipset(&self.set_name(f, nets), &mut out)?;
                }
            } else {
                out.extend(self.rule_nets(f)?.into_iter().map(|net| KernelBan {
                    net,
                    remaining: None,
                }));
            }
        }
        Ok(out)
    }

    fn kernel_expiry(&self) -> bool {
        self.ipset
    }

    fn kernel_max_timeout(&self) -> u64 {
        IPSET_MAX_TIMEOUT
    }

    fn teardown(&mut self) -> Result<()> {
        for f in self.families() {
            for parent in ["INPUT", "DOCKER-USER", "FORWARD"] {
                while works(f.tool, &["-w", "-D", parent, "-j", &self.chain]) {}
            }
            if Self::has_chain(f.tool, &self.chain) {
                run(
                    "flushing our chain",
                    f.tool,
                    &["-w", "-F", &self.chain],
                    None,
                )?;
                run(
                    "removing our chain",
                    f.tool,
                    &["-w", "-X", &self.chain],
                    None,
                )?;
            }
            if self.ipset {
                for nets in [false, true] {
                    let set = self.set_name(f, nets);
                    if works("ipset", &["list", "-n", &set]) {
                        run(
                            &format!("removing ipset {set}"),
                            "ipset",
                            &["destroy", &set],
                            None,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}
