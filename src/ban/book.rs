//! The ban book: which IPs are banned, until when, and why; and the policy that turns a
//! detector verdict into a ban (repeat-offender escalation, the burst safety valve).
//!
//! Sans-IO like the detector: every call takes `now`. A change is planned first
//! (`plan_verdict`, `plan_manual`, `due`), without touching the book; the enforcer applies
//! the plan to the kernel and only then commits it (`commit`, `lift`). A change the
//! firewall refused therefore never reaches the book: an extended ban keeps its old record
//! and its count of bans.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use super::never::NeverBan;
use super::state_file::{BanRecord, HistoryRecord, StateFile, STATE_VERSION};
use super::Policy as BanPolicy;
use crate::detect::{Severity, Verdict};
use crate::firewall::KernelBan;
use crate::netaddr::{source_prefix, IpNet};

/// What to do about a verdict or a manual ban.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Put `record.ip` in the firewall for `seconds`.
    Ban {
        record: BanRecord,
        seconds: u64,
        extended: bool,
    },
    /// Never banned: `reason` says why.
    NeverBan { ip: IpAddr, reason: String },
    /// Held back by the safety valve: too many new bans too fast.
    Held { ip: IpAddr, reason: String },
    /// Already banned for this offence (a line read again after a crash, say).
    AlreadyBanned { ip: IpAddr },
}

/// What a start-up restore found and must apply.
#[derive(Debug, Default)]
pub struct Restore {
    /// Every active ban with its remaining seconds: apply in one batch.
    pub apply: Vec<(IpNet, u64)>,
    pub from_file: usize,
    /// In the kernel but not in the file (the file was lost or corrupt): adopted.
    pub adopted: usize,
    /// Expired while the daemon was down.
    pub expired: usize,
    /// Dropped because they are now on the never-ban list (allowlist changed, say).
    pub lifted: Vec<IpAddr>,
}

pub struct BanBook {
    policy: BanPolicy,
    retention: i64,
    never: NeverBan,
    bans: HashMap<IpAddr, BanRecord>,
    /// Every active ban by expiry, soonest first: finding what is due costs what is due,
    /// not a scan of every ban.
    expiries: BTreeSet<(i64, IpAddr)>,
    history: HashMap<IpAddr, HistoryRecord>,
    valve: Valve,
    held: u64,
}

/// Source prefixes the burst valve remembers at most. Each live entry stands for at least
/// one ban within the window, so this is only reached by a flood from this many distinct
/// networks; then the prefixes whose last ban is oldest are forgotten first, down to three
/// quarters of the cap so the sweep runs once per many bans, not on each.
const VALVE_PREFIXES: usize = 65_536;

/// The burst valve's memory: the times of recent new detector bans per source prefix
/// (IPv4 /24, IPv6 /64), and overall when `ban.burst_max_bans_total` is set.
///
/// Counting per prefix is what keeps the valve from being an off-switch: a flood from one
/// network (one IPv6 /64 holds 2^64 addresses) is held, while an unrelated attacker from
/// elsewhere is still banned.
#[derive(Debug)]
struct Valve {
    per_prefix: HashMap<IpNet, VecDeque<i64>>,
    total: VecDeque<i64>,
    cap: usize,
}

impl Default for Valve {
    fn default() -> Self {
        Valve {
            per_prefix: HashMap::new(),
            total: VecDeque::new(),
            cap: VALVE_PREFIXES,
        }
    }
}

/// Why the valve holds a new ban back: the reason a held verdict carries (in the log,
/// the alert and the notice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Hold {
    #[error("more than {max} new bans from {prefix} within {window}s (ban.burst_max_bans, counted per source prefix): a flood from one network, possibly injected or spoofed log lines; not banned{}", if prefix.addr().is_ipv6() { ". If it is one host hopping addresses, ban.ipv6_prefix: 64 bans its whole /64 at once" } else { "" })]
    Network {
        max: u32,
        prefix: IpNet,
        window: u64,
    },
    #[error("more than {max} new bans from all networks within {window}s (ban.burst_max_bans_total): not banned")]
    Total { max: u32, window: u64 },
}

impl Valve {
    /// Whether a new ban of `ip` at `now` may go ahead, counting the `pending` new bans a
    /// batch has planned but not committed; or why it must be held. Changes nothing.
    fn check(
        &self,
        policy: &BanPolicy,
        ip: IpAddr,
        now: i64,
        pending: &Pending,
    ) -> Result<(), Hold> {
        let since = window_start(policy, now);
        let prefix = source_prefix(ip);
        let recent = |times: Option<&VecDeque<i64>>| {
            times.map_or(0, |t| t.iter().rev().take_while(|t| **t > since).count())
        };
        let times = recent(self.per_prefix.get(&prefix)) + pending.per_prefix(prefix);
        if times >= policy.burst_max_bans as usize {
            return Err(Hold::Network {
                max: policy.burst_max_bans,
                prefix,
                window: policy.burst_window,
            });
        }
        let total = policy.burst_max_bans_total as usize;
        if total > 0 && recent(Some(&self.total)) + pending.total >= total {
            return Err(Hold::Total {
                max: policy.burst_max_bans_total,
                window: policy.burst_window,
            });
        }
        Ok(())
    }

    /// Counts a new ban of `ip` at `now` (committed: the firewall holds it).
    fn record(&mut self, policy: &BanPolicy, ip: IpAddr, now: i64) {
        let since = window_start(policy, now);
        if policy.burst_max_bans_total > 0 {
            forget_before(&mut self.total, since);
            self.total.push_back(now);
        }
        let times = self.per_prefix.entry(source_prefix(ip)).or_default();
        forget_before(times, since);
        times.push_back(now);
        if self.per_prefix.len() > self.cap {
            self.evict(since);
        }
    }

    /// Drops prefixes with no ban inside the window; if that is not enough, those whose
    /// last ban is oldest.
    fn evict(&mut self, since: i64) {
        self.per_prefix.retain(|_, t| {
            forget_before(t, since);
            !t.is_empty()
        });
        let over = self.per_prefix.len().saturating_sub(self.cap / 4 * 3);
        if over > 0 {
            let mut by_age: Vec<(i64, IpNet)> = self
                .per_prefix
                .iter()
                .map(|(p, t)| (t.back().copied().unwrap_or(i64::MIN), *p))
                .collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            for (_, p) in by_age.into_iter().take(over) {
                self.per_prefix.remove(&p);
            }
        }
    }
}

/// Where the burst valve's window starts for a ban at `now`.
fn window_start(policy: &BanPolicy, now: i64) -> i64 {
    now.saturating_sub(i64::try_from(policy.burst_window).unwrap_or(i64::MAX))
}

/// New detector bans one batch has planned but not yet committed. The valve counts them
/// with the committed ones, and a second verdict for an address the batch already bans
/// waits for the next batch (`holds`), so that one firewall call can carry the batch and a
/// refused call leaves the book as it was.
#[derive(Debug, Default)]
pub struct Pending {
    prefixes: HashMap<IpNet, usize>,
    total: usize,
    keys: HashSet<IpAddr>,
}

impl Pending {
    /// Whether this batch already plans a ban that covers `ip`.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.keys.contains(&ip) || self.keys.contains(&source_prefix(ip).addr())
    }

    fn per_prefix(&self, prefix: IpNet) -> usize {
        self.prefixes.get(&prefix).copied().unwrap_or(0)
    }

    fn add(&mut self, d: &Decision) {
        if let Decision::Ban {
            record, extended, ..
        } = d
        {
            self.keys.insert(record.ip);
            if !extended {
                *self.prefixes.entry(source_prefix(record.ip)).or_default() += 1;
                self.total += 1;
            }
        }
    }
}

/// Drops the times at or before `since` from the front of an ordered queue.
fn forget_before(times: &mut VecDeque<i64>, since: i64) {
    while times.front().is_some_and(|t| *t <= since) {
        times.pop_front();
    }
}

impl BanBook {
    pub fn new(policy: BanPolicy, retention_days: u32, never: NeverBan) -> Self {
        BanBook {
            policy,
            retention: retention_days as i64 * 86400,
            never,
            bans: HashMap::new(),
            expiries: BTreeSet::new(),
            history: HashMap::new(),
            valve: Valve::default(),
            held: 0,
        }
    }

    /// Takes a new policy and never-ban list (on reload) without touching active bans.
    pub fn reconfigure(&mut self, policy: BanPolicy, retention_days: u32, never: NeverBan) {
        self.policy = policy;
        self.retention = retention_days as i64 * 86400;
        self.never = never;
    }

    pub fn never(&self) -> &NeverBan {
        &self.never
    }

    pub fn never_ban(&mut self) -> &mut NeverBan {
        &mut self.never
    }

    /// The active ban that covers `ip`: its own, or its /64's.
    pub fn get(&self, ip: IpAddr) -> Option<&BanRecord> {
        self.covering(ip).and_then(|k| self.bans.get(&k))
    }

    /// The book's key of the ban covering `ip`, if any.
    fn covering(&self, ip: IpAddr) -> Option<IpAddr> {
        if self.bans.contains_key(&ip) {
            return Some(ip);
        }
        let net = source_prefix(ip);
        (ip.is_ipv6() && self.bans.get(&net.addr()).is_some_and(|b| b.covers(ip)))
            .then(|| net.addr())
    }

    /// What a new ban of `ip` covers: with `ban.ipv6_prefix: 64`, an IPv6 address's /64,
    /// unless that /64 holds a never-ban address (then the address alone); else `ip`.
    /// An active ban that already covers `ip` is extended as it is.
    fn target(&self, ip: IpAddr) -> IpNet {
        if let Some(b) = self.covering(ip).and_then(|k| self.bans.get(&k)) {
            return b.net();
        }
        let host = IpNet::host(ip);
        if !ip.is_ipv6() || self.policy.ipv6_prefix >= 128 {
            return host;
        }
        match IpNet::new(ip, self.policy.ipv6_prefix) {
            Ok(net) if self.never.reason_net(net).is_none() => net,
            _ => host,
        }
    }

    /// A fresh record for a ban of `net`; `put` fills in the times.
    fn record(net: IpNet, rule: &str, category: &str, severity: Severity, now: i64) -> BanRecord {
        BanRecord {
            ip: net.addr(),
            rule: rule.into(),
            category: category.into(),
            severity,
            container: String::new(),
            first_offence: now,
            last_offence: now,
            banned_at: now,
            expires_at: now,
            times_banned: 0,
            evidence: vec![],
            source: String::new(),
            prefix: (!net.is_host()).then(|| net.prefix()),
        }
    }

    /// Active bans, soonest expiry first.
    pub fn active(&self) -> Vec<&BanRecord> {
        let mut v: Vec<&BanRecord> = self.bans.values().collect();
        v.sort_by_key(|b| (b.expires_at, b.ip));
        v
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Bans held back by the safety valve since start.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Loads the file's bans, adopts what only the kernel knows, drops what expired, and
    /// returns everything that must be in the firewall.
    pub fn restore(&mut self, file: Option<StateFile>, kernel: &[KernelBan], now: i64) -> Restore {
        let mut r = Restore::default();
        if let Some(f) = file {
            for h in f.history {
                self.history.insert(h.ip, h);
            }
            for mut b in f.bans {
                if b.expires_at <= now {
                    r.expired += 1;
                    self.remember(&b);
                    continue;
                }
                // A file written by hand (or by an older build) may hold a ban longer
                // than the policy allows: it ends at the cap from now.
                b.expires_at = b.expires_at.min(self.expiry(now, u64::MAX));
                r.from_file += 1;
                self.insert(b);
            }
        }
        for k in kernel {
            let key = k.net.addr();
            if self.bans.contains_key(&key) {
                continue;
            }
            let remaining = self
                .policy
                .clamp_ban(k.remaining.unwrap_or(self.policy.duration));
            r.adopted += 1;
            let times = self.history.get(&key).map_or(1, |h| h.times_banned.max(1));
            let mut b = Self::record(k.net, "unknown", "unknown", Severity::High, now);
            b.expires_at = self.expiry(now, remaining);
            b.times_banned = times;
            b.evidence = vec!["found in the firewall but not in blocked_ips.json; adopted".into()];
            b.source = "kernel".into();
            self.insert(b);
        }
        let never: Vec<IpAddr> = self
            .bans
            .values()
            .filter(|b| self.never.reason_net(b.net()).is_some())
            .map(|b| b.ip)
            .collect();
        for ip in never {
            self.remove(ip);
            r.lifted.push(ip);
        }
        self.prune_history(now);
        r.apply = self
            .bans
            .values()
            .map(|b| {
                let left = b.expires_at.saturating_sub(now).max(1) as u64;
                (b.net(), self.policy.clamp_ban(left))
            })
            .collect();
        r.apply.sort();
        r
    }

    /// What a detector verdict calls for; the book does not change until `commit`.
    pub fn plan_verdict(&self, v: &Verdict, container: &str, now: i64) -> Decision {
        self.plan_verdict_in(v, container, now, &mut Pending::default())
    }

    /// `plan_verdict` as one of a batch: `pending` holds the batch's planned new bans, for
    /// the valve, and takes this one. Check `pending.holds(v.ip)` first: a second verdict
    /// for an address the batch bans belongs in the next batch.
    pub fn plan_verdict_in(
        &self,
        v: &Verdict,
        container: &str,
        now: i64,
        pending: &mut Pending,
    ) -> Decision {
        if let Some(reason) = v.allowlisted.clone().or_else(|| self.never.reason(v.ip)) {
            return Decision::NeverBan { ip: v.ip, reason };
        }
        // An offence no newer than the one the active ban was given for is not a new one:
        // escalating on it would punish the same line twice.
        let active = self.get(v.ip).map(|b| b.last_offence);
        if active.is_some_and(|last| v.last_seen <= last) {
            return Decision::AlreadyBanned { ip: v.ip };
        }
        // Only new bans count: extending an active one adds nobody to the firewall.
        if active.is_none() {
            if let Err(reason) = self.valve.check(&self.policy, v.ip, now, pending) {
                return Decision::Held {
                    ip: v.ip,
                    reason: reason.to_string(),
                };
            }
        }
        let net = self.target(v.ip);
        let mut record = Self::record(net, &v.rule, &v.category, v.severity, now);
        record.container = container.to_string();
        record.first_offence = v.first_seen;
        record.last_offence = v.last_seen;
        record.evidence = v.evidence.clone();
        record.source = "detector".into();
        let d = self.plan_put(record, None, now);
        pending.add(&d);
        d
    }

    /// An operator's ban. `seconds` None: the policy's duration with escalation; any
    /// length is brought within `ban.max_duration` (the answer's `seconds` says how long).
    /// Like a detector's ban, it covers the address's /64 with `ban.ipv6_prefix: 64`.
    pub fn plan_manual(
        &self,
        ip: IpAddr,
        seconds: Option<u64>,
        reason: &str,
        now: i64,
    ) -> Decision {
        if let Some(reason) = self.never.reason(ip) {
            return Decision::NeverBan { ip, reason };
        }
        let mut record = Self::record(self.target(ip), "manual", "manual", Severity::High, now);
        if !reason.is_empty() {
            record.evidence = vec![crate::detect::decode::escape_excerpt(
                reason.as_bytes(),
                300,
            )];
        }
        record.source = "manual".into();
        self.plan_put(record, seconds, now)
    }

    /// Another host's ban (`fleet`), for the `seconds` it has left: through this host's
    /// own never-ban list, whose refusal names the origin. An address this host has
    /// banned itself keeps its own ban (its own record, published by itself).
    pub fn plan_remote(
        &self,
        e: &crate::fleet::record::BanEntry,
        seconds: u64,
        now: i64,
    ) -> Decision {
        let net = e.net();
        // A host bans single addresses, and IPv6 ones as /64 at most (`ban.ipv6_prefix`):
        // anything wider from the fleet is a mistake or an attack (a compromised host
        // banning half the internet with one record), never obeyed.
        let narrow = net.is_host() || (net.addr().is_ipv6() && net.prefix() >= 64);
        if !narrow {
            return Decision::NeverBan {
                ip: e.ip,
                reason: format!(
                    "{net} is wider than one address (or an IPv6 /64): the ban came from fleet host {}",
                    e.origin
                ),
            };
        }
        if let Some(reason) = self.never.reason_net(net) {
            return Decision::NeverBan {
                ip: e.ip,
                reason: format!("{reason}; the ban came from fleet host {}", e.origin),
            };
        }
        let existing = self.bans.get(&net.addr());
        if existing.is_some_and(|b| !b.is_remote()) {
            return Decision::AlreadyBanned { ip: e.ip };
        }
        let mut record = Self::record(net, &e.rule, &e.category, e.severity, now);
        record.evidence = e.evidence.clone();
        record.first_offence = e.banned_at.min(now);
        record.last_offence = e.banned_at.min(now);
        record.times_banned = e.times_banned.max(1);
        record.source = format!("{}{}", crate::fleet::record::SOURCE_PREFIX, e.origin);
        let secs = self.policy.clamp_ban(seconds);
        record.expires_at = self.expiry(now, secs);
        Decision::Ban {
            record,
            seconds: secs,
            extended: existing.is_some(),
        }
    }

    /// A ban of `record`'s address: its length from the history (escalation) or `seconds`,
    /// an active ban's first offence kept.
    fn plan_put(&self, mut record: BanRecord, seconds: Option<u64>, now: i64) -> Decision {
        let previous = self.history.get(&record.ip).map_or(0, |h| h.times_banned);
        let existing = self.bans.get(&record.ip);
        let extended = existing.is_some();
        let previous = match existing {
            // Still banned: this offence counts as a further ban of the same IP.
            Some(b) => previous.max(b.times_banned),
            None => previous,
        };
        let secs = self
            .policy
            .clamp_ban(seconds.unwrap_or_else(|| self.policy.duration_for(previous)));
        if let Some(b) = existing {
            record.first_offence = record.first_offence.min(b.first_offence);
        }
        record.times_banned = previous.saturating_add(1);
        record.banned_at = now;
        record.expires_at = self.expiry(now, secs);
        Decision::Ban {
            record,
            seconds: secs,
            extended,
        }
    }

    /// Records a planned decision once it is in force: a ban the firewall took, a ban
    /// held back (counted). Other decisions change nothing.
    pub fn commit(&mut self, d: &Decision, now: i64) {
        match d {
            Decision::Ban {
                record, extended, ..
            } => {
                if !extended && record.source == "detector" {
                    let policy = self.policy.clone();
                    self.valve.record(&policy, record.ip, now);
                }
                self.history.insert(
                    record.ip,
                    HistoryRecord {
                        ip: record.ip,
                        times_banned: record.times_banned,
                        last_banned_at: record.banned_at,
                    },
                );
                self.insert(record.clone());
            }
            Decision::Held { .. } => self.held += 1,
            Decision::NeverBan { .. } | Decision::AlreadyBanned { .. } => {}
        }
    }

    /// Puts a ban in the book and the expiry index, replacing the one under its key.
    fn insert(&mut self, b: BanRecord) {
        let key = b.ip;
        self.expiries.insert((b.expires_at, key));
        if let Some(old) = self.bans.insert(key, b) {
            if old.expires_at != self.bans[&key].expires_at {
                self.expiries.remove(&(old.expires_at, key));
            }
        }
    }

    /// Takes the ban under `key` out of the book and the expiry index.
    fn remove(&mut self, key: IpAddr) -> Option<BanRecord> {
        let b = self.bans.remove(&key)?;
        self.expiries.remove(&(b.expires_at, key));
        Some(b)
    }

    /// When a ban of `seconds` given at `now` ends: never later than the policy's cap and
    /// never wrapped round into the past, whatever the inputs.
    fn expiry(&self, now: i64, seconds: u64) -> i64 {
        let secs = self.policy.clamp_ban(seconds);
        now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// Lifts the ban that covers `ip` now (the address's own, or its /64's: the whole
    /// network is lifted, and the returned record says which); returns it if there was one.
    pub fn unban(&mut self, ip: IpAddr) -> Option<BanRecord> {
        self.covering(ip).and_then(|k| self.remove(k))
    }

    /// The bans that have expired by `now`, soonest first; the book keeps them until
    /// `lift` (the kernel lifts them by itself where it can; other backends need an unban
    /// first).
    pub fn due(&self, now: i64) -> Vec<BanRecord> {
        self.expiries
            .range(..=(now, IpAddr::from([0xff; 16])))
            .filter_map(|(_, k)| self.bans.get(k).cloned())
            .collect()
    }

    /// Removes expired bans that are out of the firewall, remembering them for escalation.
    pub fn lift(&mut self, gone: &[BanRecord], now: i64) {
        for b in gone {
            if let Some(b) = self.remove(b.ip) {
                self.remember(&b);
            }
        }
        self.prune_history(now);
    }

    /// Plans and commits the expiry of what is due at `now` in one step, for a book with
    /// no firewall behind it (replays, tests); returns what expired.
    pub fn expire(&mut self, now: i64) -> Vec<BanRecord> {
        let gone = self.due(now);
        self.lift(&gone, now);
        gone
    }

    /// When the next ban expires.
    pub fn next_expiry(&self) -> Option<i64> {
        self.expiries.first().map(|(t, _)| *t)
    }

    fn remember(&mut self, b: &BanRecord) {
        let h = self.history.entry(b.ip).or_insert(HistoryRecord {
            ip: b.ip,
            times_banned: 0,
            last_banned_at: b.banned_at,
        });
        h.times_banned = h.times_banned.max(b.times_banned);
        h.last_banned_at = h.last_banned_at.max(b.banned_at);
    }

    fn prune_history(&mut self, now: i64) {
        let keep_after = now.saturating_sub(self.retention);
        self.history.retain(|_, h| h.last_banned_at > keep_after);
    }

    /// The book as it is written to `blocked_ips.json`.
    pub fn snapshot(&self, now: i64) -> StateFile {
        let mut bans: Vec<BanRecord> = self.bans.values().cloned().collect();
        bans.sort_by_key(|b| (b.banned_at, b.ip));
        let mut history: Vec<HistoryRecord> = self.history.values().cloned().collect();
        history.sort_by_key(|h| (h.last_banned_at, h.ip));
        StateFile {
            version: STATE_VERSION,
            written_at: now,
            bans,
            history,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::DockerNetwork;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Plans and commits, as an enforcer whose firewall takes every change does.
    trait Decide {
        fn on_verdict(&mut self, v: &Verdict, container: &str, now: i64) -> Decision;
        fn manual_ban(&mut self, ip: IpAddr, s: Option<u64>, r: &str, now: i64) -> Decision;
    }

    impl Decide for BanBook {
        fn on_verdict(&mut self, v: &Verdict, container: &str, now: i64) -> Decision {
            let d = self.plan_verdict(v, container, now);
            self.commit(&d, now);
            d
        }
        fn manual_ban(&mut self, ip: IpAddr, s: Option<u64>, r: &str, now: i64) -> Decision {
            let d = self.plan_manual(ip, s, r, now);
            self.commit(&d, now);
            d
        }
    }

    fn host(s: &str) -> IpNet {
        IpNet::host(ip(s))
    }

    fn verdict(addr: &str, now: i64) -> Verdict {
        Verdict {
            ip: ip(addr),
            rule: "sqli-union-select".into(),
            category: "sqli".into(),
            severity: Severity::Critical,
            hits: 1,
            first_seen: now,
            last_seen: now,
            evidence: vec!["GET /?q=union select".into()],
            allowlisted: None,
            via: None,
        }
    }

    fn book() -> BanBook {
        BanBook::new(
            BanPolicy::default(),
            30,
            NeverBan {
                allowlist: vec!["198.51.100.0/24".parse().unwrap()],
                host: vec![ip("192.0.2.1")],
                docker_networks: vec![DockerNetwork {
                    name: "bridge".into(),
                    subnet: "172.17.0.0/16".parse().unwrap(),
                    gateway: Some(ip("172.17.0.1")),
                    containers: Vec::new(),
                }],
                ban_internal: false,
            },
        )
    }

    #[test]
    fn repeat_offenders_are_escalated_up_to_the_cap_across_restarts() {
        let mut b = book();
        let Decision::Ban {
            seconds, record, ..
        } = b.on_verdict(&verdict("203.0.113.1", 0), "web", 0)
        else {
            panic!()
        };
        assert_eq!((seconds, record.times_banned), (86400, 1));
        assert_eq!(b.expire(86400).len(), 1);
        // A restart in between: the history travels in the file.
        let file = b.snapshot(90000);
        let mut b = book();
        b.restore(Some(file), &[], 90000);
        let Decision::Ban {
            seconds, record, ..
        } = b.on_verdict(&verdict("203.0.113.1", 100_000), "web", 100_000)
        else {
            panic!()
        };
        assert_eq!((seconds, record.times_banned), (2 * 86400, 2));
        for n in 0..10 {
            let t = 1_000_000 * (n + 1);
            b.expire(t);
            b.on_verdict(&verdict("203.0.113.1", t), "web", t);
        }
        let rec = b.get(ip("203.0.113.1")).unwrap();
        assert_eq!(
            rec.expires_at - rec.banned_at,
            30 * 86400,
            "capped at ban.max_duration"
        );
    }

    #[test]
    fn an_offence_read_again_does_not_escalate() {
        let mut b = book();
        assert!(matches!(
            b.on_verdict(&verdict("203.0.113.1", 100), "web", 100),
            Decision::Ban { .. }
        ));
        // The same line, read again after a crash.
        assert!(matches!(
            b.on_verdict(&verdict("203.0.113.1", 100), "web", 105),
            Decision::AlreadyBanned { .. }
        ));
        assert_eq!(b.get(ip("203.0.113.1")).unwrap().times_banned, 1);
        // A newer offence while banned (through a path the firewall does not cover) does.
        let Decision::Ban {
            record, extended, ..
        } = b.on_verdict(&verdict("203.0.113.1", 200), "web", 200)
        else {
            panic!()
        };
        assert!(extended);
        assert_eq!(record.times_banned, 2);
    }

    #[test]
    fn never_ban_list() {
        let mut b = book();
        for (addr, why) in [
            ("127.0.0.1", "loopback"),
            ("192.0.2.1", "this host"),
            ("172.17.0.1", "gateway of Docker network bridge"),
            ("172.17.0.9", "trusted_proxies"),
            ("198.51.100.7", "allowlist"),
            ("fe80::1", "link-local"),
        ] {
            match b.on_verdict(&verdict(addr, 0), "web", 0) {
                Decision::NeverBan { reason, .. } => {
                    assert!(reason.contains(why), "{addr}: {reason}")
                }
                other => panic!("{addr}: {other:?}"),
            }
        }
        assert!(matches!(
            b.manual_ban(ip("127.0.0.1"), None, "", 0),
            Decision::NeverBan { .. }
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn docker_internal_addresses_may_be_banned_when_asked_but_gateways_never() {
        let mut b = book();
        b.never_ban().ban_internal = true;
        assert!(matches!(
            b.on_verdict(&verdict("172.17.0.9", 0), "web", 0),
            Decision::Ban { .. }
        ));
        assert!(matches!(
            b.on_verdict(&verdict("172.17.0.1", 0), "web", 0),
            Decision::NeverBan { .. }
        ));
    }

    #[test]
    fn a_burst_of_new_bans_is_held() {
        let mut b = BanBook::new(
            BanPolicy {
                burst_max_bans: 5,
                burst_window: 60,
                ..BanPolicy::default()
            },
            30,
            NeverBan::default(),
        );
        let mut banned = 0;
        let mut held = 0;
        for i in 0..20 {
            match b.on_verdict(&verdict(&format!("203.0.113.{i}"), 100), "web", 100) {
                Decision::Ban { .. } => banned += 1,
                Decision::Held { reason, .. } => {
                    assert!(reason.contains("burst_max_bans"));
                    held += 1
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((banned, held), (5, 15));
        // A minute later the valve lets new bans through again.
        assert!(matches!(
            b.on_verdict(&verdict("203.0.113.99", 161), "web", 161),
            Decision::Ban { .. }
        ));
        // Manual bans are the operator's decision and are not held.
        assert!(matches!(
            b.manual_ban(ip("203.0.113.200"), Some(60), "", 161),
            Decision::Ban { .. }
        ));
    }

    fn valve(max: u32, total: u32) -> BanBook {
        BanBook::new(
            BanPolicy {
                burst_max_bans: max,
                burst_max_bans_total: total,
                burst_window: 60,
                ..BanPolicy::default()
            },
            30,
            NeverBan::default(),
        )
    }

    /// The held reasons are sentences operators read (journal, alerts, notices): their
    /// words stay as they were when they became a type.
    #[test]
    fn a_held_reason_says_which_limit_and_what_to_do() {
        let net = Hold::Network {
            max: 5,
            prefix: "2001:db8:1:2::/64".parse().unwrap(),
            window: 60,
        };
        assert_eq!(
            net.to_string(),
            "more than 5 new bans from 2001:db8:1:2::/64 within 60s (ban.burst_max_bans, counted per source prefix): a flood from one network, possibly injected or spoofed log lines; not banned. If it is one host hopping addresses, ban.ipv6_prefix: 64 bans its whole /64 at once"
        );
        let v4 = Hold::Network {
            max: 5,
            prefix: "203.0.113.0/24".parse().unwrap(),
            window: 60,
        };
        assert!(
            v4.to_string().ends_with("spoofed log lines; not banned"),
            "{v4}"
        );
        assert_eq!(
            Hold::Total { max: 9, window: 60 }.to_string(),
            "more than 9 new bans from all networks within 60s (ban.burst_max_bans_total): not banned"
        );
    }

    #[test]
    fn a_flood_from_one_ipv6_64_is_held_but_an_unrelated_attacker_is_still_banned() {
        let mut b = valve(50, 0);
        let (mut banned, mut held) = (0, 0);
        for i in 1..=98 {
            match b.on_verdict(&verdict(&format!("2001:db8:1:2::{i:x}"), 100), "web", 100) {
                Decision::Ban { .. } => banned += 1,
                Decision::Held { reason, .. } => {
                    assert!(
                        reason.contains("2001:db8:1:2::/64") && reason.contains("ipv6_prefix"),
                        "{reason}"
                    );
                    held += 1
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((banned, held), (50, 48), "the /64 flood is held");
        for other in ["203.0.113.5", "2001:db8:1:3::1"] {
            assert!(
                matches!(
                    b.on_verdict(&verdict(other, 101), "web", 101),
                    Decision::Ban { .. }
                ),
                "{other} is another network's attacker"
            );
        }
        assert_eq!(b.held(), 48);
    }

    #[test]
    fn a_total_ceiling_applies_only_when_configured() {
        let mut b = valve(5, 10);
        let mut banned = 0;
        for net in 0..4 {
            for host in 1..=5 {
                let d = b.on_verdict(&verdict(&format!("203.0.{net}.{host}"), 100), "web", 100);
                if let Decision::Ban { .. } = d {
                    banned += 1;
                } else if let Decision::Held { reason, .. } = d {
                    assert!(reason.contains("burst_max_bans_total"), "{reason}");
                }
            }
        }
        assert_eq!(banned, 10);
        let mut off = valve(5, 0);
        for net in 0..40 {
            assert!(matches!(
                off.on_verdict(&verdict(&format!("203.0.{net}.1"), 100), "web", 100),
                Decision::Ban { .. }
            ));
        }
    }

    #[test]
    fn the_valve_remembers_a_bounded_number_of_prefixes() {
        let mut b = valve(1, 0);
        b.valve.cap = 1000;
        for n in 0..5000u32 {
            let a = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | ((n as u128) << 64) | 1);
            assert!(matches!(
                b.on_verdict(&verdict(&a.to_string(), 100), "web", 100),
                Decision::Ban { .. }
            ));
            assert!(
                b.valve.per_prefix.len() <= 1000,
                "{}",
                b.valve.per_prefix.len()
            );
        }
        // The newest prefixes are the ones kept: a second ban from the last /64 is held.
        let last = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (4999u128 << 64) | 2);
        assert!(matches!(
            b.on_verdict(&verdict(&last.to_string(), 100), "web", 100),
            Decision::Held { .. }
        ));
        // Once the window has passed, the old prefixes go at the next eviction.
        b.valve.evict(200);
        assert!(b.valve.per_prefix.is_empty());
    }

    fn by_64(never: NeverBan) -> BanBook {
        BanBook::new(
            BanPolicy {
                ipv6_prefix: 64,
                ..BanPolicy::default()
            },
            30,
            never,
        )
    }

    #[test]
    fn with_ipv6_prefix_64_an_offender_bans_its_whole_64() {
        let mut b = by_64(NeverBan::default());
        let Decision::Ban { record, .. } =
            b.on_verdict(&verdict("2001:db8:1:2::77", 100), "web", 100)
        else {
            panic!()
        };
        assert_eq!(
            (record.shown(), record.prefix),
            ("2001:db8:1:2::/64".into(), Some(64))
        );
        // Another address of that /64 is covered: its old offence is no new ban.
        assert!(matches!(
            b.on_verdict(&verdict("2001:db8:1:2::99", 100), "web", 101),
            Decision::AlreadyBanned { .. }
        ));
        assert_eq!(b.len(), 1);
        // IPv4 is unchanged, and so is a manual ban's /64 rule.
        let Decision::Ban { record, .. } = b.on_verdict(&verdict("203.0.113.4", 100), "web", 100)
        else {
            panic!()
        };
        assert_eq!(record.prefix, None);
        // Unbanning any address inside the /64 lifts the /64.
        let lifted = b.unban(ip("2001:db8:1:2::1234")).unwrap();
        assert_eq!(lifted.shown(), "2001:db8:1:2::/64");
        assert!(b.get(ip("2001:db8:1:2::77")).is_none());
    }

    #[test]
    fn a_64_holding_a_never_ban_address_is_never_banned_whole() {
        let never = NeverBan {
            allowlist: vec!["2001:db8:a:1::10/128".parse().unwrap()],
            host: vec![ip("2001:db8:b:1::1")],
            docker_networks: vec![DockerNetwork {
                name: "v6net".into(),
                subnet: "2001:db8:c:1::/80".parse().unwrap(),
                gateway: Some(ip("2001:db8:c:1::1")),
                containers: Vec::new(),
            }],
            ban_internal: false,
        };
        for (net, offender) in [
            ("allowlist", "2001:db8:a:1::66"),
            ("this host", "2001:db8:b:1::66"),
            ("Docker network v6net", "2001:db8:c:1:1::66"),
        ] {
            let mut b = by_64(never.clone());
            let d = b.on_verdict(&verdict(offender, 100), "web", 100);
            let Decision::Ban { record, .. } = d else {
                panic!("{net}: {d:?}")
            };
            assert_eq!(record.prefix, None, "{net}: the address alone, not its /64");
            assert_eq!(record.ip, ip(offender));
            assert!(never
                .reason_net("2001:db8:a:1::/64".parse().unwrap())
                .unwrap()
                .contains("allowlist"));
        }
        // A kernel /64 that now holds a never-ban address is lifted at restore.
        let mut b = by_64(never);
        let r = b.restore(
            None,
            &[KernelBan {
                net: "2001:db8:b:1::/64".parse().unwrap(),
                remaining: Some(60),
            }],
            0,
        );
        assert_eq!(r.lifted, vec![ip("2001:db8:b:1::")]);
    }

    #[test]
    fn a_ban_of_u64_max_seconds_is_clamped_to_max_duration_and_ends_then() {
        let mut b = book();
        let now = 1_000_000;
        let Decision::Ban {
            seconds, record, ..
        } = b.manual_ban(ip("203.0.113.9"), Some(u64::MAX), "", now)
        else {
            panic!()
        };
        assert_eq!(seconds, 30 * 86400);
        assert_eq!(record.expires_at, now + 30 * 86400);
        assert!(b.expire(now + 1).is_empty(), "not expired at once");
        assert!(b.expire(now + 30 * 86400 - 1).is_empty());
        assert_eq!(b.expire(now + 30 * 86400).len(), 1);
    }

    #[test]
    fn huge_times_from_the_file_or_the_kernel_are_clamped() {
        let mut first = book();
        first.manual_ban(ip("203.0.113.1"), Some(60), "", 0);
        let mut file = first.snapshot(0);
        file.bans[0].expires_at = i64::MAX;
        file.history.push(HistoryRecord {
            ip: ip("203.0.113.2"),
            times_banned: u32::MAX,
            last_banned_at: 0,
        });
        let mut b = book();
        let kernel = [KernelBan {
            net: host("203.0.113.3"),
            remaining: Some(u64::MAX),
        }];
        let r = b.restore(Some(file), &kernel, 100);
        let cap = 30 * 86400;
        assert_eq!(
            r.apply,
            vec![(host("203.0.113.1"), cap), (host("203.0.113.3"), cap)]
        );
        assert_eq!(
            b.get(ip("203.0.113.1")).unwrap().expires_at,
            100 + cap as i64
        );
        let Decision::Ban {
            seconds, record, ..
        } = b.on_verdict(&verdict("203.0.113.2", 100), "web", 100)
        else {
            panic!()
        };
        assert_eq!((seconds, record.times_banned), (cap, u32::MAX));
    }

    #[test]
    fn restore_drops_expired_adopts_kernel_only_and_lifts_newly_allowlisted() {
        let mut first = BanBook::new(BanPolicy::default(), 30, NeverBan::default());
        first.on_verdict(&verdict("203.0.113.1", 0), "web", 0);
        first.manual_ban(ip("203.0.113.2"), Some(10), "", 0);
        first.on_verdict(&verdict("198.51.100.9", 0), "web", 0);
        let file = first.snapshot(0);
        let mut b = book();
        let kernel = [
            KernelBan {
                net: host("203.0.113.1"),
                remaining: Some(50),
            },
            KernelBan {
                net: host("203.0.113.3"),
                remaining: Some(500),
            },
        ];
        let r = b.restore(Some(file), &kernel, 100);
        assert_eq!(r.expired, 1, "the 10 s manual ban is over");
        assert_eq!(r.adopted, 1);
        assert_eq!(r.lifted, vec![ip("198.51.100.9")]);
        assert_eq!(
            r.apply,
            vec![(host("203.0.113.1"), 86300), (host("203.0.113.3"), 500)]
        );
        assert_eq!(b.get(ip("203.0.113.3")).unwrap().source, "kernel");
    }

    #[test]
    fn expiry_order_and_next_expiry() {
        let mut b = BanBook::new(BanPolicy::default(), 30, NeverBan::default());
        b.manual_ban(ip("203.0.113.1"), Some(100), "", 0);
        b.manual_ban(ip("203.0.113.2"), Some(50), "", 0);
        assert_eq!(b.next_expiry(), Some(50));
        assert_eq!(
            b.expire(60).iter().map(|r| r.ip).collect::<Vec<_>>(),
            vec![ip("203.0.113.2")]
        );
        assert_eq!(b.len(), 1);
        assert!(b.unban(ip("203.0.113.1")).is_some());
        assert!(b.unban(ip("203.0.113.1")).is_none());
    }

    #[test]
    fn a_plan_changes_nothing_until_it_is_committed() {
        let mut b = book();
        let first = b.on_verdict(&verdict("203.0.113.1", 100), "web", 100);
        let Decision::Ban { record: was, .. } = first else {
            panic!("{first:?}")
        };
        let before = b.snapshot(300);
        // A newer offence plans an extension with a second ban's length...
        let d = b.plan_verdict(&verdict("203.0.113.1", 200), "web", 200);
        let Decision::Ban {
            record, extended, ..
        } = &d
        else {
            panic!("{d:?}")
        };
        assert!(extended);
        assert_eq!(record.times_banned, 2);
        // ...but until it is committed the book is as it was: the kernel may refuse it.
        assert_eq!(b.snapshot(300), before);
        assert_eq!(b.get(ip("203.0.113.1")), Some(&was));
        assert_eq!(b.next_expiry(), Some(was.expires_at));
        b.commit(&d, 200);
        assert_eq!(b.get(ip("203.0.113.1")).unwrap().times_banned, 2);
        assert_eq!(b.next_expiry(), Some(record.expires_at));
        assert_eq!(b.len(), 1, "the index holds one entry per ban");
        assert_eq!(b.due(record.expires_at).len(), 1);
    }

    #[test]
    fn the_valve_counts_a_batch_before_it_is_committed() {
        let mut b = book();
        let max = BanPolicy::default().burst_max_bans as usize;
        let mut pending = Pending::default();
        let mut planned = Vec::new();
        for i in 0..max + 5 {
            let v = verdict(&format!("203.0.113.{}", i + 1), 100);
            assert!(!pending.holds(v.ip));
            planned.push(b.plan_verdict_in(&v, "web", 100, &mut pending));
        }
        let bans = planned
            .iter()
            .filter(|d| matches!(d, Decision::Ban { .. }))
            .count();
        assert_eq!(bans, max, "the valve held the rest of one /24's batch");
        assert!(pending.holds(ip("203.0.113.1")));
        for d in &planned {
            b.commit(d, 100);
        }
        assert_eq!((b.len(), b.held()), (max, 5));
        // Committed, the same valve now holds the next one without a batch.
        assert!(matches!(
            b.plan_verdict(&verdict("203.0.113.200", 101), "web", 101),
            Decision::Held { .. }
        ));
    }

    #[test]
    fn due_finds_what_expired_through_the_index_and_lift_removes_it() {
        let mut b = BanBook::new(BanPolicy::default(), 30, NeverBan::default());
        for i in 0..50u8 {
            b.manual_ban(
                ip(&format!("203.0.113.{i}")),
                Some(100 + u64::from(i)),
                "",
                0,
            );
        }
        // Re-banning one moves its entry in the index.
        b.manual_ban(ip("203.0.113.0"), Some(1000), "", 10);
        let due = b.due(120);
        assert_eq!(
            due.len(),
            20,
            "{:?}",
            due.iter().map(|d| d.ip).collect::<Vec<_>>()
        );
        assert!(due.windows(2).all(|w| w[0].expires_at <= w[1].expires_at));
        assert_eq!(b.len(), 50, "due changes nothing");
        b.lift(&due, 120);
        assert_eq!(b.len(), 30);
        assert_eq!(b.next_expiry(), Some(121));
        assert!(b.due(120).is_empty());
    }

    fn remote(ip_: &str, origin: &str) -> crate::fleet::record::BanEntry {
        crate::fleet::record::BanEntry {
            ip: ip(ip_),
            prefix: None,
            rule: "sqli".into(),
            category: "injection".into(),
            severity: Severity::Critical,
            evidence: vec!["GET /?id=1 OR 1=1".into()],
            banned_at: 1000,
            expires_at: 4600,
            duration: 3600,
            times_banned: 3,
            origin: origin.into(),
            applied_at_ns: 0,
            written_at: 0,
        }
    }

    #[test]
    fn a_remote_ban_goes_through_this_hosts_never_ban_list_naming_its_origin() {
        let mut b = book();
        for (addr, says) in [
            ("198.51.100.7", "allowlist"),
            ("192.0.2.1", "an address of this host"),
            ("172.17.0.1", "gateway"),
            ("172.17.0.9", "inside Docker network"),
            ("127.0.0.1", "loopback"),
        ] {
            match b.plan_remote(&remote(addr, "web-2"), 600, 2000) {
                Decision::NeverBan { reason, .. } => assert!(
                    reason.contains(says) && reason.contains("fleet host web-2"),
                    "{addr}: {reason}"
                ),
                other => panic!("{addr}: {other:?}"),
            }
        }
        let d = b.plan_remote(&remote("203.0.113.5", "web-2"), 2600, 2000);
        let Decision::Ban {
            record, seconds, ..
        } = &d
        else {
            panic!("{d:?}")
        };
        assert_eq!((*seconds, record.expires_at), (2600, 4600));
        assert_eq!(record.source, "fleet:web-2");
        assert_eq!((record.is_remote(), record.origin()), (true, Some("web-2")));
        assert_eq!(record.times_banned, 3);
        b.commit(&d, 2000);
        // A remote ban does not count in this host's burst valve.
        assert_eq!(b.valve.per_prefix.len(), 0);
        // This host's own ban of an address stays its own.
        let own = b.plan_manual(ip("203.0.113.6"), Some(60), "", 2000);
        b.commit(&own, 2000);
        assert_eq!(
            b.plan_remote(&remote("203.0.113.6", "web-2"), 600, 2000),
            Decision::AlreadyBanned {
                ip: ip("203.0.113.6")
            }
        );
        // Longer than this host's ban.max_duration: cut to it.
        let long = b.plan_remote(&remote("203.0.113.7", "web-2"), u64::MAX, 2000);
        assert!(matches!(long, Decision::Ban { seconds, .. } if seconds == 30 * 86400));
    }

    #[test]
    fn a_remote_ban_wider_than_one_address_or_an_ipv6_64_is_refused() {
        let b = book();
        for (addr, prefix) in [("64.0.0.0", 2), ("203.0.113.0", 24), ("2001:db8::", 48)] {
            let mut r = remote(addr, "web-2");
            r.prefix = Some(prefix);
            match b.plan_remote(&r, 600, 2000) {
                Decision::NeverBan { reason, .. } => {
                    assert!(reason.contains("wider than one address"), "{reason}")
                }
                other => panic!("{addr}/{prefix}: {other:?}"),
            }
        }
        let mut r = remote("2001:db8:1:2::", "web-2");
        r.prefix = Some(64);
        assert!(matches!(b.plan_remote(&r, 600, 2000), Decision::Ban { .. }));
    }
}
