//! The ban book: which IPs are banned, until when, and why; and the policy that turns a
//! detector verdict into a ban (never-ban list, repeat-offender escalation, the burst
//! safety valve).
//!
//! Sans-IO like the detector: every call takes `now` and returns what to do; the caller
//! applies it to the firewall and the state file.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::config::{BanPolicy, Config};
use crate::detect::Verdict;
use crate::firewall::KernelBan;
use crate::netaddr::{never_ban_reason, IpNet};
use crate::state::{BanRecord, HistoryRecord, StateFile, STATE_VERSION};

/// Addresses that are never banned, whatever the logs say.
#[derive(Debug, Clone, Default)]
pub struct NeverBan {
    pub allowlist: Vec<IpNet>,
    /// The host's own addresses (which include the Docker bridge gateways).
    pub host: Vec<IpAddr>,
    /// Docker's networks, kept current by the daemon.
    pub docker_networks: Vec<DockerNetwork>,
    /// Whether addresses inside Docker's networks may be banned (`docker.ban_internal_addresses`);
    /// gateways never are.
    pub ban_internal: bool,
}

/// One Docker network, as the never-ban list needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    pub subnet: IpNet,
    pub gateway: Option<IpAddr>,
}

impl NeverBan {
    pub fn from_config(cfg: &Config) -> Self {
        NeverBan {
            allowlist: cfg.allowlist.clone(),
            host: host_addresses(),
            docker_networks: Vec::new(),
            ban_internal: cfg.docker.ban_internal_addresses,
        }
    }

    /// Why `ip` must never be banned, if it must not.
    pub fn reason(&self, ip: IpAddr) -> Option<String> {
        if let Some(r) = never_ban_reason(ip) {
            return Some(r.to_string());
        }
        if self.host.contains(&ip) {
            return Some("an address of this host".into());
        }
        if let Some(n) = self.docker_networks.iter().find(|n| n.gateway == Some(ip)) {
            return Some(format!("the gateway of Docker network {} (connections through docker-proxy appear to come from it)", n.name));
        }
        if !self.ban_internal {
            if let Some(n) = self.docker_networks.iter().find(|n| n.subnet.contains(ip)) {
                return Some(format!(
                    "inside Docker network {} ({}): most likely a reverse-proxy container in front of the app, and banning it would cut every visitor off. \
                     Watch the proxy container's log instead, or add \"docker\" (or its address) to trusted_proxies so the client is taken from X-Forwarded-For; \
                     docker.ban_internal_addresses allows such bans",
                    n.name, n.subnet
                ));
            }
        }
        self.allowlist
            .iter()
            .find(|n| n.contains(ip))
            .map(|n| format!("on the allowlist ({n})"))
    }
}

/// The addresses of this host's interfaces (in the current network namespace).
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    // /proc/net/fib_trie lists local IPv4 addresses as "/32 host LOCAL" entries.
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in text.lines() {
            let t = line.trim_start_matches([' ', '|', '-', '+', '`']);
            if let Ok(ip) = t.trim().parse::<IpAddr>() {
                last = Some(ip);
            } else if line.contains("/32 host LOCAL") {
                if let Some(ip) = last {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in text.lines() {
            if let Some(hex) = line.split_whitespace().next() {
                if let Ok(bits) = u128::from_str_radix(hex, 16) {
                    let ip = IpAddr::V6(bits.into());
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
    }
    out
}

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
    pub apply: Vec<(IpAddr, u64)>,
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
    history: HashMap<IpAddr, HistoryRecord>,
    /// Times of recent detector bans, for the safety valve.
    recent: VecDeque<i64>,
    held: u64,
}

impl BanBook {
    pub fn new(policy: BanPolicy, retention_days: u32, never: NeverBan) -> Self {
        BanBook {
            policy,
            retention: retention_days as i64 * 86400,
            never,
            bans: HashMap::new(),
            history: HashMap::new(),
            recent: VecDeque::new(),
            held: 0,
        }
    }

    /// Takes a new policy and never-ban list (on reload) without touching active bans.
    pub fn reconfigure(&mut self, policy: BanPolicy, retention_days: u32, never: NeverBan) {
        self.policy = policy;
        self.retention = retention_days as i64 * 86400;
        self.never = never;
    }

    pub fn never_ban(&mut self) -> &mut NeverBan {
        &mut self.never
    }

    pub fn get(&self, ip: IpAddr) -> Option<&BanRecord> {
        self.bans.get(&ip)
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
            for b in f.bans {
                if b.expires_at <= now {
                    r.expired += 1;
                    self.remember(&b);
                    continue;
                }
                r.from_file += 1;
                self.bans.insert(b.ip, b);
            }
        }
        for k in kernel {
            if self.bans.contains_key(&k.ip) {
                continue;
            }
            let remaining = k.remaining.unwrap_or(self.policy.duration).max(1);
            r.adopted += 1;
            let times = self.history.get(&k.ip).map_or(1, |h| h.times_banned.max(1));
            self.bans.insert(
                k.ip,
                BanRecord {
                    ip: k.ip,
                    rule: "unknown".into(),
                    category: "unknown".into(),
                    severity: "high".into(),
                    container: String::new(),
                    first_offence: now,
                    last_offence: now,
                    banned_at: now,
                    expires_at: now + remaining as i64,
                    times_banned: times,
                    evidence: vec![
                        "found in the firewall but not in blocked_ips.json; adopted".into()
                    ],
                    source: "kernel".into(),
                },
            );
        }
        let never: Vec<IpAddr> = self
            .bans
            .keys()
            .copied()
            .filter(|ip| self.never.reason(*ip).is_some())
            .collect();
        for ip in never {
            self.bans.remove(&ip);
            r.lifted.push(ip);
        }
        self.prune_history(now);
        r.apply = self
            .bans
            .values()
            .map(|b| (b.ip, (b.expires_at - now).max(1) as u64))
            .collect();
        r.apply.sort();
        r
    }

    /// Turns a detector verdict into a decision.
    pub fn on_verdict(&mut self, v: &Verdict, container: &str, now: i64) -> Decision {
        if let Some(reason) = v.allowlisted.clone().or_else(|| self.never.reason(v.ip)) {
            return Decision::NeverBan { ip: v.ip, reason };
        }
        // An offence no newer than the one the active ban was given for is not a new one:
        // escalating on it would punish the same line twice.
        if self
            .bans
            .get(&v.ip)
            .is_some_and(|b| v.last_seen <= b.last_offence)
        {
            return Decision::AlreadyBanned { ip: v.ip };
        }
        let window = self.policy.burst_window as i64;
        while self.recent.front().is_some_and(|t| *t <= now - window) {
            self.recent.pop_front();
        }
        if !self.bans.contains_key(&v.ip)
            && self.recent.len() >= self.policy.burst_max_bans as usize
        {
            self.held += 1;
            return Decision::Held {
                ip: v.ip,
                reason: format!(
                    "more than {} new bans within {}s (ban.burst_max_bans): a flood of offences from many addresses, possibly injected or spoofed log lines; not banned",
                    self.policy.burst_max_bans, self.policy.burst_window
                ),
            };
        }
        self.recent.push_back(now);
        let record = BanRecord {
            ip: v.ip,
            rule: v.rule.clone(),
            category: v.category.clone(),
            severity: v.severity.to_string(),
            container: container.to_string(),
            first_offence: v.first_seen,
            last_offence: v.last_seen,
            banned_at: now,
            expires_at: now,
            times_banned: 0,
            evidence: v.evidence.clone(),
            source: "detector".into(),
        };
        self.put(record, None, now)
    }

    /// An operator's ban. `seconds` None: the policy's duration with escalation.
    pub fn manual_ban(
        &mut self,
        ip: IpAddr,
        seconds: Option<u64>,
        reason: &str,
        now: i64,
    ) -> Decision {
        if let Some(reason) = self.never.reason(ip) {
            return Decision::NeverBan { ip, reason };
        }
        let record = BanRecord {
            ip,
            rule: "manual".into(),
            category: "manual".into(),
            severity: "high".into(),
            container: String::new(),
            first_offence: now,
            last_offence: now,
            banned_at: now,
            expires_at: now,
            times_banned: 0,
            evidence: if reason.is_empty() {
                vec![]
            } else {
                vec![crate::detect::decode::escape_excerpt(
                    reason.as_bytes(),
                    300,
                )]
            },
            source: "manual".into(),
        };
        self.put(record, seconds, now)
    }

    fn put(&mut self, mut record: BanRecord, seconds: Option<u64>, now: i64) -> Decision {
        let previous = self.history.get(&record.ip).map_or(0, |h| h.times_banned);
        let existing = self.bans.get(&record.ip);
        let extended = existing.is_some();
        let previous = match existing {
            // Still banned: this offence counts as a further ban of the same IP.
            Some(b) => previous.max(b.times_banned),
            None => previous,
        };
        let secs = seconds
            .unwrap_or_else(|| self.policy.duration_for(previous))
            .max(1);
        if let Some(b) = existing {
            record.first_offence = record.first_offence.min(b.first_offence);
        }
        record.times_banned = previous + 1;
        record.banned_at = now;
        record.expires_at = now + secs as i64;
        self.history.insert(
            record.ip,
            HistoryRecord {
                ip: record.ip,
                times_banned: record.times_banned,
                last_banned_at: now,
            },
        );
        self.bans.insert(record.ip, record.clone());
        Decision::Ban {
            record,
            seconds: secs,
            extended,
        }
    }

    /// Lifts a ban now; returns it if there was one.
    pub fn unban(&mut self, ip: IpAddr) -> Option<BanRecord> {
        self.bans.remove(&ip)
    }

    /// Removes the bans that have expired by `now` and returns them (the kernel lifts them
    /// by itself where it can; other backends need an unban).
    pub fn expire(&mut self, now: i64) -> Vec<BanRecord> {
        let gone: Vec<IpAddr> = self
            .bans
            .values()
            .filter(|b| b.expires_at <= now)
            .map(|b| b.ip)
            .collect();
        let mut out = Vec::with_capacity(gone.len());
        for ip in gone {
            if let Some(b) = self.bans.remove(&ip) {
                self.remember(&b);
                out.push(b);
            }
        }
        self.prune_history(now);
        out
    }

    /// When the next ban expires.
    pub fn next_expiry(&self) -> Option<i64> {
        self.bans.values().map(|b| b.expires_at).min()
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
        let keep_after = now - self.retention;
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
    use crate::config::Severity;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
    fn host_addresses_are_read() {
        let own = host_addresses();
        assert!(own.contains(&ip("127.0.0.1")), "{own:?}");
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
                ip: ip("203.0.113.1"),
                remaining: Some(50),
            },
            KernelBan {
                ip: ip("203.0.113.3"),
                remaining: Some(500),
            },
        ];
        let r = b.restore(Some(file), &kernel, 100);
        assert_eq!(r.expired, 1, "the 10 s manual ban is over");
        assert_eq!(r.adopted, 1);
        assert_eq!(r.lifted, vec![ip("198.51.100.9")]);
        assert_eq!(
            r.apply,
            vec![(ip("203.0.113.1"), 86300), (ip("203.0.113.3"), 500)]
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
}
