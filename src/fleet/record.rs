//! What one host writes to the bucket about a ban, and under which key.
//!
//! A key is `<host_id>.<ip>`: the host id is one subject token (no dots), so the server's
//! per-host permissions (`$KV.<bucket>.<host_id>.>`) let a host write only its own keys.
//! The address is made key-safe: an IPv6 address's `:` become `_`, a network's `/`
//! becomes `-` (`2001_db8_1_2__-64`); IPv4 dots stay (they only add subject tokens).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ban::state_file::BanRecord;
use crate::detect::decode::escape_excerpt;
use crate::detect::Severity;
use crate::netaddr::IpNet;

/// The `source` of a ban this host took from another: `fleet:<origin>`.
pub const SOURCE_PREFIX: &str = "fleet:";

/// Evidence lines a record carries at most, and their length.
const EVIDENCE_LINES: usize = 5;
const EVIDENCE_CHARS: usize = 300;
/// A rule or category name longer than this is cut.
const NAME_CHARS: usize = 64;

/// One value in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Ban(BanEntry),
    /// `unban IP --fleet` on `origin`: every host lifts its ban of `ip` given at or before
    /// `at` and deletes its own key for it. A host may write only its own keys, so a
    /// fleet-wide unban is a request each host carries out for itself.
    Unban(UnbanEntry),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanEntry {
    pub ip: IpAddr,
    /// Set when the ban covers a network (an IPv6 /64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    /// A few offending lines, escaped and cut.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Unix seconds, on the origin's clock.
    pub banned_at: i64,
    pub expires_at: i64,
    /// Seconds the ban was given for.
    pub duration: u64,
    pub times_banned: u32,
    /// The host id that banned it.
    pub origin: String,
    /// When the origin's firewall took the ban, Unix ns on its clock: the start of the
    /// propagation latency.
    #[serde(default)]
    pub applied_at_ns: i64,
    /// When the origin wrote this record, Unix seconds on its clock (0: unknown). With
    /// the server's own time of the write, it puts the record's times on the server's
    /// clock (see [`BanEntry::on_server_clock`]).
    #[serde(default)]
    pub written_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnbanEntry {
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    /// Unix seconds, on the origin's clock.
    pub at: i64,
    pub origin: String,
}

impl BanEntry {
    /// The record of this host's ban `b`, given for `duration` seconds and applied at
    /// `applied_at_ns`.
    pub fn of(b: &BanRecord, duration: u64, origin: &str, applied_at_ns: i64) -> BanEntry {
        BanEntry {
            ip: b.ip,
            prefix: b.prefix,
            rule: b.rule.clone(),
            category: b.category.clone(),
            severity: b.severity,
            evidence: b
                .evidence
                .iter()
                .rev()
                .take(EVIDENCE_LINES)
                .rev()
                .map(|e| escape_excerpt(e.as_bytes(), EVIDENCE_CHARS))
                .collect(),
            banned_at: b.banned_at,
            expires_at: b.expires_at,
            duration,
            times_banned: b.times_banned,
            origin: origin.to_string(),
            written_at: 0,
            applied_at_ns,
        }
    }

    pub fn net(&self) -> IpNet {
        net_of(self.ip, self.prefix)
    }

    /// The record with every text another host wrote escaped and cut: what a hostile
    /// or broken host sends never reaches a log line, a notice or the state file as it is.
    pub fn sanitized(mut self) -> BanEntry {
        self.rule = escape_excerpt(self.rule.as_bytes(), NAME_CHARS);
        self.category = escape_excerpt(self.category.as_bytes(), NAME_CHARS);
        self.origin = escape_excerpt(self.origin.as_bytes(), NAME_CHARS);
        self.evidence.truncate(EVIDENCE_LINES);
        for e in &mut self.evidence {
            *e = escape_excerpt(e.as_bytes(), EVIDENCE_CHARS);
        }
        self
    }

    /// The record with its times moved from the origin's clock to the server's, given
    /// when the server stored it (`stored_at`, Unix seconds on the server's clock): so
    /// the kernel timeout depends on this host's clock against the server's (which
    /// `health` watches), not on the origin's. Unchanged when the write time is unknown.
    pub fn on_server_clock(mut self, stored_at: i64) -> BanEntry {
        if self.written_at > 0 {
            let offset = stored_at.saturating_sub(self.written_at);
            self.banned_at = self.banned_at.saturating_add(offset);
            self.expires_at = self.expires_at.saturating_add(offset);
            self.written_at = stored_at;
        }
        self
    }

    /// Seconds left of the ban at `now` (this host's clock): `expires_at - now`, never more
    /// than the ban's duration, whatever the two clocks say. 0: over.
    pub fn remaining(&self, now: i64) -> u64 {
        let left = self.expires_at.saturating_sub(now).max(0) as u64;
        left.min(self.duration)
    }
}

impl UnbanEntry {
    pub fn net(&self) -> IpNet {
        net_of(self.ip, self.prefix)
    }
}

impl Record {
    pub fn ip(&self) -> IpAddr {
        match self {
            Record::Ban(b) => b.ip,
            Record::Unban(u) => u.ip,
        }
    }

    pub fn origin(&self) -> &str {
        match self {
            Record::Ban(b) => &b.origin,
            Record::Unban(u) => &u.origin,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A record of strings and numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

fn net_of(ip: IpAddr, prefix: Option<u8>) -> IpNet {
    prefix
        .and_then(|p| IpNet::new(ip, p).ok())
        .unwrap_or_else(|| IpNet::host(ip))
}

/// The key of `host`'s record about `net`.
pub fn key(host: &str, net: IpNet) -> String {
    let mut ip = net.addr().to_string().replace(':', "_");
    if !net.is_host() {
        ip.push('-');
        ip.push_str(&net.prefix().to_string());
    }
    format!("{host}.{ip}")
}

/// The host and network a key names; None for a key this program did not write.
pub fn parse_key(key: &str) -> Option<(&str, IpNet)> {
    let (host, ip) = key.split_once('.')?;
    let (addr, prefix) = match ip.split_once('-') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (ip, None),
    };
    let addr: IpAddr = addr.replace('_', ":").parse().ok()?;
    let net = match prefix {
        Some(p) => IpNet::new(addr, p).ok()?,
        None => IpNet::host(addr),
    };
    Some((host, net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_key_safe_and_read_back() {
        let v4 = IpNet::host("203.0.113.5".parse().unwrap());
        assert_eq!(key("web-1", v4), "web-1.203.0.113.5");
        let v6 = IpNet::host("2001:db8::1".parse().unwrap());
        assert_eq!(key("web-1", v6), "web-1.2001_db8__1");
        let net = IpNet::new("2001:db8:1:2::".parse().unwrap(), 64).unwrap();
        assert_eq!(key("h", net), "h.2001_db8_1_2__-64");
        for n in [v4, v6, net] {
            let k = key("web-1", n);
            assert!(k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            assert_eq!(parse_key(&k), Some(("web-1", n)));
        }
        assert_eq!(parse_key("nohost"), None);
        assert_eq!(parse_key("h.not_an_ip"), None);
        assert_eq!(parse_key("h.2001_db8__-999"), None);
    }

    #[test]
    fn a_record_round_trips_and_its_text_is_escaped() {
        let b = BanEntry {
            ip: "198.51.100.7".parse().unwrap(),
            prefix: None,
            rule: "sqli\u{1b}[31m".into(),
            category: "injection".into(),
            severity: Severity::Critical,
            evidence: vec!["GET /?q=1'\nOR 1=1".into(); 9],
            banned_at: 1000,
            expires_at: 4600,
            duration: 3600,
            times_banned: 2,
            origin: "h1".into(),
            applied_at_ns: 5,
            written_at: 0,
        };
        let r = Record::Ban(b.clone());
        let json = r.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"kind\":\"ban\""));
        assert_eq!(Record::from_json(&json).unwrap(), r);
        let s = b.sanitized();
        assert_eq!(s.evidence.len(), 5);
        assert!(!s.rule.contains('\u{1b}') && !s.evidence[0].contains('\n'));
        assert!(Record::from_json(b"{\"kind\":\"ban\"}").is_err());
    }

    /// A plain ban of 198.51.100.7 by h1: banned at 1000 for an hour.
    fn entry() -> BanEntry {
        BanEntry {
            ip: "198.51.100.7".parse().unwrap(),
            prefix: None,
            rule: "sqli".into(),
            category: "injection".into(),
            severity: Severity::Critical,
            evidence: vec![],
            banned_at: 1000,
            expires_at: 4600,
            duration: 3600,
            times_banned: 1,
            origin: "h1".into(),
            applied_at_ns: 0,
            written_at: 0,
        }
    }

    #[test]
    fn times_move_to_the_servers_clock() {
        // The origin's clock is 300 s behind: it wrote at 1000, the server says 1300.
        let b = BanEntry {
            written_at: 1000,
            ..entry()
        };
        let s = b.clone().on_server_clock(1300);
        assert_eq!((s.banned_at, s.expires_at), (1300, 4900));
        // This host, in step with the server, gives it its whole hour.
        assert_eq!(s.remaining(1300), 3600);
        let unknown = BanEntry {
            written_at: 0,
            ..b.clone()
        };
        assert_eq!(unknown.clone().on_server_clock(1300), unknown);
    }

    #[test]
    fn remaining_time_is_clamped_to_the_duration_whatever_the_clocks() {
        let b = entry();
        assert_eq!(b.remaining(1000), 3600);
        assert_eq!(b.remaining(4000), 600);
        // This host's clock is an hour behind the origin's: never more than the duration.
        assert_eq!(b.remaining(-2600), 3600);
        assert_eq!(b.remaining(4600), 0);
        assert_eq!(b.remaining(i64::MAX), 0);
        assert_eq!(b.remaining(i64::MIN), 3600);
    }
}
