//! Alerts: every noteworthy thing the daemon saw or did, as a record an operator can
//! list (`security-monitor alerts`), and the risk summary computed from them
//! (`security-monitor insights`).
//!
//! Sans-IO: [`AlertBook`] takes `now` and returns what to write; the alerts log on disk
//! is [`log::AlertLog`], the error-rate detector [`errors::ErrorRates`], the risk
//! summary [`insights`].
//!
//! Repeats are folded so an attacker hammering one rule makes one alert with a count, not
//! thousands: an alert with the same kind, IP, rule and container as one opened less than
//! `alerts.cooldown` ago adds to that one's `count` and `last_seen`.
//!
//! Floods fold per network too: an attacker who rotates addresses (an IPv6 /64 holds
//! 2^64 of them) would otherwise make one alert per address and push every other alert
//! out of the ring. Past [`FLOOD_ALERTS`] new alerts from one IPv4 /24 or IPv6 /64 within
//! [`FLOOD_WINDOW`] seconds, further alerts of the same kind, rule and container from
//! that network fold into one alert whose `prefix` names the network.

pub mod errors;
pub mod insights;
pub mod log;
mod settings;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::detect::{Severity, UnknownSeverity};
use crate::events::{Event, Refusal};
use crate::netaddr::IpNet;
use crate::time::rfc3339;
pub use settings::Settings;

/// New alerts from one network within [`FLOOD_WINDOW`] before the rest fold by network.
pub const FLOOD_ALERTS: u32 = 20;
/// Seconds over which new alerts from one network are counted.
pub const FLOOD_WINDOW: i64 = 60;

/// One alert as listed and as written to `alerts.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Increasing; a folded alert is written again under the same id (the last line wins).
    pub id: u64,
    /// When it first happened.
    #[serde(with = "rfc3339")]
    pub time: i64,
    /// When it last happened (folded repeats move this on).
    #[serde(with = "rfc3339")]
    pub last_seen: i64,
    /// critical, high, medium or low. A line of the log with another word is not an
    /// alert: [`log::AlertLog::load`] counts it among the bad lines.
    pub severity: Severity,
    /// What happened: rule_hit, anomaly, ban, unban, held, never_ban, error_rate,
    /// docker_disconnected, docker_reconnected, firewall_error, reload_failed.
    pub kind: String,
    /// The rule's category (sqli, xss, …), or what the kind is about (docker, firewall, …).
    pub category: String,
    /// The rule id, when a rule was involved.
    #[serde(default)]
    pub rule: String,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub container: String,
    /// The offending line (escaped, truncated) or what happened, in words.
    #[serde(default)]
    pub line: String,
    /// How many times it happened within the cooldown (1: once).
    pub count: u64,
    /// Set when this alert folds a flood from a whole network (`203.0.113.0/24`,
    /// `2001:db8::/64`): `ip` is the address that opened it, `count` counts them all.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "net_text")]
    pub prefix: Option<IpNet>,
}

impl Alert {
    /// A new alert (id and count are set when it is recorded).
    pub fn new(time: i64, severity: Severity, kind: &str, category: &str) -> Alert {
        Alert {
            id: 0,
            time,
            last_seen: time,
            severity,
            kind: kind.to_string(),
            category: category.to_string(),
            rule: String::new(),
            ip: None,
            container: String::new(),
            line: String::new(),
            count: 1,
            prefix: None,
        }
    }

    fn fold_key(&self) -> FoldKey {
        let subject = match (self.prefix, self.ip) {
            (Some(net), _) => Subject::Net(net),
            (None, Some(ip)) => Subject::Ip(ip),
            (None, None) => Subject::None,
        };
        (
            self.kind.clone(),
            subject,
            self.rule.clone(),
            self.container.clone(),
        )
    }

    /// The same alert's key when folded by network.
    fn net_fold_key(&self, net: IpNet) -> FoldKey {
        (
            self.kind.clone(),
            Subject::Net(net),
            self.rule.clone(),
            self.container.clone(),
        )
    }

    /// Whether this alert is about `ip`: its own address, or a network folding it.
    pub fn concerns(&self, ip: IpAddr) -> bool {
        self.ip == Some(ip) || self.prefix.is_some_and(|n| n.contains(ip))
    }
}

/// What repeats fold by: one address, or a whole network under a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    None,
    Ip(IpAddr),
    Net(IpNet),
}

type FoldKey = (String, Subject, String, String);

/// A network as text in the log (`203.0.113.0/24`).
mod net_text {
    use crate::netaddr::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &Option<IpNet>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) => t.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// The network a flood is counted in: the IPv4 /24 or IPv6 /64 of `ip`.
pub fn flood_net(ip: IpAddr) -> IpNet {
    let ip = crate::netaddr::normalize(ip);
    let bits = if ip.is_ipv4() { 24 } else { 64 };
    // 24 and 64 are valid lengths for their family: `new` only refuses longer ones.
    match IpNet::new(ip, bits) {
        Ok(net) => net,
        Err(e) => unreachable!("/{bits} is refused for {ip}: {e}"),
    }
}

/// The line of an alert that folds a network's flood.
fn flood_line(net: IpNet, ip: IpAddr, line: &str) -> String {
    cut(&format!(
        "flood from {net} folded into one alert; last from {ip}: {line}"
    ))
}

/// Longest line kept in an alert, in characters.
pub const LINE_MAX: usize = 300;

/// The alert an event makes, if it is noteworthy. Reloads that worked are not.
pub fn from_event(e: &Event) -> Option<Alert> {
    Some(match e {
        Event::RuleHit {
            at,
            ip,
            rules,
            category,
            severity,
            container,
            line,
        } => Alert {
            rule: rules.join(","),
            ip: Some(*ip),
            container: container.clone(),
            line: cut(line),
            ..Alert::new(*at, *severity, "rule_hit", category)
        },
        // Folded per IP and endpoint (the alert's rule), so a client hammering one odd
        // request is one alert with a count. Never high: it is a reason to look.
        Event::Anomaly {
            at,
            ip,
            container,
            score,
            reason,
            endpoint,
            line,
        } => Alert {
            rule: endpoint.clone(),
            ip: Some(*ip),
            container: container.clone(),
            line: cut(&format!("{reason} (score {score:.2}): {line}")),
            ..Alert::new(*at, anomaly_severity(*score), "anomaly", "anomaly")
        },
        Event::Ban {
            at,
            record,
            seconds,
            extended,
            ..
        } => Alert {
            rule: record.rule.clone(),
            ip: Some(record.ip),
            container: record.container.clone(),
            line: cut(&format!(
                "{} for {} (ban #{}){}",
                if *extended { "ban extended" } else { "banned" },
                crate::time::format_duration(*seconds),
                record.times_banned,
                record
                    .evidence
                    .last()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            )),
            ..Alert::new(*at, record.severity, "ban", &record.category)
        },
        Event::Unban { at, record, reason } => Alert {
            rule: record.rule.clone(),
            ip: Some(record.ip),
            container: record.container.clone(),
            line: format!("ban lifted: {reason}"),
            ..Alert::new(*at, Severity::Low, "unban", &record.category)
        },
        // The safety valve fired: a flood of bans, or someone injecting log lines.
        Event::Held(r) => refused(r, Severity::Critical, "held", "ban held back:"),
        Event::NeverBan(r) => refused(r, Severity::Medium, "never_ban", "not banned: it is"),
        Event::Reload {
            at,
            error: Some(error),
        } => Alert {
            line: cut(&format!("the new config was rejected: {error}")),
            ..Alert::new(*at, Severity::Medium, "reload_failed", "config")
        },
        Event::Reload { error: None, .. } => return None,
        Event::FirewallError { at, error } => Alert {
            line: cut(error),
            ..Alert::new(*at, Severity::Critical, "firewall_error", "firewall")
        },
        Event::DockerConnection {
            at,
            connected,
            error,
        } => {
            if *connected {
                Alert {
                    line: "connected to dockerd again; streams resume from their cursors".into(),
                    ..Alert::new(*at, Severity::Low, "docker_reconnected", "docker")
                }
            } else {
                Alert {
                    line: cut(&format!(
                        "lost the connection to dockerd: {}; no logs are read until it is back",
                        error.as_deref().unwrap_or("unknown error")
                    )),
                    ..Alert::new(*at, Severity::High, "docker_disconnected", "docker")
                }
            }
        }
        Event::ErrorRate {
            at,
            container,
            errors,
            baseline,
            sample,
        } => Alert {
            container: container.clone(),
            line: cut(&format!(
                "{errors} errors (5xx responses, tracebacks, panics) in the last minute against a usual {baseline:.1}/min; last: {sample}"
            )),
            ..Alert::new(*at, Severity::High, "error_rate", "errors")
        },
        // A container whose requests are not examined: an attack there bans nobody.
        Event::Unparsed {
            at,
            container,
            format,
            lines,
            unparsed,
            sample,
        } => Alert {
            container: container.clone(),
            line: cut(&format!(
                "{unparsed} of its first {lines} lines are not in log format {format:?}: its requests are not examined; set its log_format. A line that did not parse: {sample}"
            )),
            ..Alert::new(*at, Severity::High, "unparsed_lines", "log_format")
        },
    })
}

/// An anomaly's alert severity: low below a score of 0.5 (an endpoint never seen),
/// medium from it; never high.
pub fn anomaly_severity(score: f64) -> Severity {
    if score >= 0.5 {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// The alert for a verdict that did not become a ban.
fn refused(r: &Refusal, severity: Severity, kind: &str, what: &str) -> Alert {
    Alert {
        rule: r.rule.clone(),
        ip: Some(r.ip),
        container: r.container.clone(),
        line: cut(&format!("{what} {}", r.reason)),
        ..Alert::new(r.at, severity, kind, &r.category)
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() <= LINE_MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(LINE_MAX).collect();
        out.push('…');
        out
    }
}

/// The alert with `id`: the ring is ordered by id (new alerts take the next id; a
/// restore puts them back in order), so a binary search.
fn find(ring: &VecDeque<Alert>, id: u64) -> Option<&Alert> {
    ring.binary_search_by_key(&id, |a| a.id)
        .ok()
        .and_then(|i| ring.get(i))
}

/// What [`AlertBook::record`] did with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new alert with this id: append it to the log now.
    New(u64),
    /// Folded into this earlier alert: its new count is written later
    /// ([`AlertBook::take_dirty`]), so a flood of repeats is not a flood of writes.
    Folded(u64),
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Only alerts last seen at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only alerts at least this severe.
    pub severity: Option<Severity>,
    pub ip: Option<IpAddr>,
    /// Only alerts about this container (its name).
    pub container: Option<String>,
    /// At most this many, the newest.
    pub limit: Option<usize>,
    /// Only alerts of this kind (one of [`KINDS`]).
    #[serde(default)]
    pub kind: Option<String>,
}

/// Every kind of alert, as `--kind` and `?kind=` take them.
pub const KINDS: [&str; 12] = [
    "rule_hit",
    "ban",
    "unban",
    "held",
    "never_ban",
    "error_rate",
    "docker_disconnected",
    "docker_reconnected",
    "firewall_error",
    "reload_failed",
    "unparsed_lines",
    "anomaly",
];

/// A filter the control socket or the command line was given that means nothing; the
/// command line puts `--` before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("since: {0:?} is neither a duration (\"1h\", \"30m\") nor a time (\"2026-11-21T10:00:00Z\")")]
    Since(String),
    #[error("severity: {0}")]
    Severity(#[from] UnknownSeverity),
    #[error("ip: {0:?} is not an IPv4 or IPv6 address")]
    Ip(String),
    #[error("kind: {0:?} is not one of {kinds}", kinds = KINDS.join(", "))]
    Kind(String),
}

impl Filter {
    /// The filters as `alerts` takes them, checked: the one reading of `--since` (a
    /// duration back from `now`, or a time), `--severity` and `--ip`, for the daemon and
    /// for the command line reading the alerts log without it.
    pub fn parse(
        since: Option<String>,
        severity: Option<String>,
        ip: Option<String>,
        container: Option<String>,
        limit: Option<usize>,
        now: i64,
    ) -> Result<Filter, FilterError> {
        let since = match since.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(match crate::time::parse_duration(s) {
                Ok(d) => now.saturating_sub(i64::try_from(d).unwrap_or(i64::MAX)),
                Err(_) => crate::time::parse_time(s.as_bytes())
                    .ok_or_else(|| FilterError::Since(s.to_string()))?,
            }),
        };
        let severity = severity.as_deref().map(str::parse).transpose()?;
        let ip = match ip {
            Some(s) => {
                Some(crate::netaddr::parse_client_ip(s.as_bytes()).ok_or(FilterError::Ip(s))?)
            }
            None => None,
        };
        Ok(Filter {
            since,
            severity,
            ip,
            container: container.map(|c| c.trim_start_matches('/').to_string()),
            limit,
            kind: None,
        })
    }

    /// The filter, only for alerts of `kind` too (checked against [`KINDS`]; empty or
    /// None: every kind).
    pub fn with_kind(self, kind: Option<String>) -> Result<Filter, FilterError> {
        let kind = match kind.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(k) if KINDS.contains(&k) => Some(k.to_string()),
            Some(k) => return Err(FilterError::Kind(k.to_string())),
        };
        Ok(Filter { kind, ..self })
    }
}

/// The bounded ring of recent alerts, with the folding state.
#[derive(Debug)]
pub struct AlertBook {
    ring: VecDeque<Alert>,
    keep: usize,
    cooldown: i64,
    next_id: u64,
    /// Fold key → id of the alert repeats currently fold into.
    open: HashMap<FoldKey, u64>,
    dirty: Vec<u64>,
    /// Per network: when its counting window started, and the new alerts in it.
    floods: HashMap<IpNet, (i64, u32)>,
}

impl AlertBook {
    pub fn new(cooldown_secs: u64, keep: usize) -> AlertBook {
        AlertBook {
            ring: VecDeque::new(),
            keep: keep.max(1),
            cooldown: cooldown_secs as i64,
            next_id: 1,
            open: HashMap::new(),
            dirty: Vec::new(),
            floods: HashMap::new(),
        }
    }

    /// Takes the settings of a reloaded config; kept alerts stay.
    pub fn reconfigure(&mut self, cooldown_secs: u64, keep: usize) {
        self.cooldown = cooldown_secs as i64;
        self.keep = keep.max(1);
        self.trim();
    }

    /// Puts back alerts read from the log (oldest first), so `alerts` and `insights`
    /// survive a restart. Repeats after the restart fold into them as before.
    pub fn restore(&mut self, mut alerts: Vec<Alert>) {
        alerts.sort_by_key(|a| a.id);
        for a in alerts {
            // The ring stays ordered by id (lookups are binary searches).
            if self.ring.back().is_some_and(|b| b.id >= a.id) {
                continue;
            }
            self.next_id = self.next_id.max(a.id + 1);
            self.open.insert(a.fold_key(), a.id);
            self.ring.push_back(a);
        }
        self.trim();
    }

    /// Records an alert that happened at `a.time` (the clock: sans-IO): folded into an
    /// open one when it repeats within the cooldown, or into its network's flood alert,
    /// else added.
    pub fn record(&mut self, mut a: Alert) -> Recorded {
        let mut key = a.fold_key();
        if let Some(id) = self.fold(&key, self.cooldown, &a, &a.line) {
            return Recorded::Folded(id);
        }
        if let (Some(ip), None) = (a.ip, a.prefix) {
            let net = flood_net(ip);
            let net_key = a.net_fold_key(net);
            let line = flood_line(net, ip, &a.line);
            if let Some(id) = self.fold(&net_key, self.cooldown.max(FLOOD_WINDOW), &a, &line) {
                return Recorded::Folded(id);
            }
            if self.count_flood(net, a.time) {
                a.prefix = Some(net);
                a.line = line;
                key = net_key;
            }
        }
        a.id = self.next_id;
        a.count = a.count.max(1);
        a.last_seen = a.last_seen.max(a.time);
        self.next_id += 1;
        self.open.insert(key, a.id);
        self.ring.push_back(a);
        self.trim();
        Recorded::New(self.next_id - 1)
    }

    /// Folds `a` into the alert open under `key` when `a` is within `window` of it; the
    /// open alert's line becomes `line`.
    fn fold(&mut self, key: &FoldKey, window: i64, a: &Alert, line: &str) -> Option<u64> {
        let id = *self.open.get(key)?;
        let open = self.get_mut(id)?;
        if a.time < open.time || a.time >= open.time.saturating_add(window) {
            return None;
        }
        open.count = open.count.saturating_add(a.count.max(1));
        open.last_seen = open.last_seen.max(a.time);
        open.severity = open.severity.max(a.severity);
        if !a.line.is_empty() {
            open.line = line.to_string();
        }
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
        Some(id)
    }

    /// Counts a new alert from `net`; true when the network is flooding.
    fn count_flood(&mut self, net: IpNet, now: i64) -> bool {
        let (start, n) = self.floods.entry(net).or_insert((now, 0));
        if now < *start || now >= start.saturating_add(FLOOD_WINDOW) {
            *start = now;
            *n = 0;
        }
        *n = n.saturating_add(1);
        *n > FLOOD_ALERTS
    }

    pub fn get(&self, id: u64) -> Option<&Alert> {
        find(&self.ring, id)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Alert> {
        let i = self.ring.binary_search_by_key(&id, |a| a.id).ok()?;
        self.ring.get_mut(i)
    }

    /// The folded alerts changed since the last call, to write to the log again.
    pub fn take_dirty(&mut self) -> Vec<Alert> {
        let ids = std::mem::take(&mut self.dirty);
        ids.into_iter()
            .filter_map(|id| self.get(id).cloned())
            .collect()
    }

    /// Forgets alerts last seen before `cutoff` (the retention) and closed fold windows.
    pub fn prune(&mut self, cutoff: i64, now: i64) {
        while self.ring.front().is_some_and(|a| a.last_seen < cutoff) {
            self.ring.pop_front();
        }
        let cooldown = self.cooldown;
        let ring = &self.ring;
        self.open.retain(|key, id| {
            let window = match key.1 {
                Subject::Net(_) => cooldown.max(FLOOD_WINDOW),
                _ => cooldown,
            };
            find(ring, *id).is_some_and(|a| a.time.saturating_add(window) > now)
        });
        self.floods
            .retain(|_, (start, _)| start.saturating_add(FLOOD_WINDOW) > now);
    }

    fn trim(&mut self) {
        while self.ring.len() > self.keep {
            self.ring.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// All kept alerts, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Alert> {
        self.ring.iter()
    }

    /// The alerts that pass `f`, oldest first (the newest `limit` of them).
    pub fn query(&self, f: &Filter) -> Vec<Alert> {
        let min = f.severity.unwrap_or(Severity::Low);
        let mut out: Vec<Alert> = self
            .ring
            .iter()
            .rev()
            .filter(|a| f.since.is_none_or(|t| a.last_seen >= t))
            .filter(|a| a.severity >= min)
            .filter(|a| f.ip.is_none_or(|ip| a.concerns(ip)))
            .filter(|a| f.container.as_deref().is_none_or(|c| a.container == c))
            .filter(|a| f.kind.as_deref().is_none_or(|k| a.kind == k))
            .take(f.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_reads_since_severity_and_ip_once_for_daemon_and_command_line() {
        let f = Filter::parse(
            Some("1h".into()),
            Some("high".into()),
            Some("203.0.113.9".into()),
            Some("/web".into()),
            Some(5),
            10_000,
        )
        .unwrap();
        assert_eq!(f.since, Some(10_000 - 3600));
        assert_eq!(f.ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(f.container.as_deref(), Some("web"));
        let at = Filter::parse(
            Some("2026-11-21T10:00:00Z".into()),
            None,
            None,
            None,
            None,
            0,
        );
        assert!(at.unwrap().since.is_some());
        let bad = |since: &str, sev: Option<&str>, ip: Option<&str>| {
            Filter::parse(
                Some(since.into()),
                sev.map(String::from),
                ip.map(String::from),
                None,
                None,
                0,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad("soon", None, None).starts_with("since: \"soon\" is neither a duration"));
        assert_eq!(
            bad("", Some("dire"), None),
            "severity: \"dire\" is not one of low, medium, high, critical"
        );
        assert_eq!(
            bad("", None, Some("1.2")),
            "ip: \"1.2\" is not an IPv4 or IPv6 address"
        );
    }

    fn hit(t: i64, ip: &str, rule: &str) -> Alert {
        Alert {
            rule: rule.into(),
            ip: Some(ip.parse().unwrap()),
            container: "web".into(),
            line: format!("line at {t}"),
            ..Alert::new(t, Severity::High, "rule_hit", "sqli")
        }
    }

    #[test]
    fn repeats_within_the_cooldown_fold_into_one_alert_with_a_count() {
        let mut book = AlertBook::new(300, 100);
        assert_eq!(
            book.record(hit(1000, "203.0.113.1", "sqli-union")),
            Recorded::New(1)
        );
        assert_eq!(
            book.record(hit(1010, "203.0.113.1", "sqli-union")),
            Recorded::Folded(1)
        );
        assert_eq!(
            book.record(hit(1299, "203.0.113.1", "sqli-union")),
            Recorded::Folded(1)
        );
        // Another IP, another rule: their own alerts.
        assert_eq!(
            book.record(hit(1020, "203.0.113.2", "sqli-union")),
            Recorded::New(2)
        );
        assert_eq!(
            book.record(hit(1030, "203.0.113.1", "xss-script")),
            Recorded::New(3)
        );
        // The cooldown is over: a new alert.
        assert_eq!(
            book.record(hit(1300, "203.0.113.1", "sqli-union")),
            Recorded::New(4)
        );
        let a = book.get(1).unwrap();
        assert_eq!((a.count, a.time, a.last_seen), (3, 1000, 1299));
        assert_eq!(a.line, "line at 1299");
        let dirty = book.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].count, 3);
        assert!(book.take_dirty().is_empty());
    }

    #[test]
    fn an_anomaly_is_a_low_or_medium_alert_folded_per_ip_and_endpoint() {
        let anomaly = |at: i64, ip: &str, score: f64, endpoint: &str| Event::Anomaly {
            at,
            ip: ip.parse().unwrap(),
            container: "web".into(),
            score,
            reason: format!("parameter `q` on {endpoint}: `'` never seen in 80 requests"),
            endpoint: endpoint.into(),
            line: "x".repeat(400),
        };
        let a = from_event(&anomaly(1000, "203.0.113.5", 0.8, "GET /search")).unwrap();
        assert_eq!(
            (a.kind.as_str(), a.category.as_str(), a.rule.as_str()),
            ("anomaly", "anomaly", "GET /search")
        );
        assert_eq!(a.severity, Severity::Medium);
        assert_eq!(a.container, "web");
        assert!(
            a.line.starts_with(
                "parameter `q` on GET /search: `'` never seen in 80 requests (score 0.80): xxx"
            ),
            "{}",
            a.line
        );
        assert_eq!(
            a.line.chars().count(),
            LINE_MAX + 1,
            "cut, with an ellipsis"
        );
        let low = from_event(&anomaly(1000, "203.0.113.5", 0.2, "GET /new")).unwrap();
        assert_eq!(low.severity, Severity::Low);
        assert_eq!(anomaly_severity(0.5), Severity::Medium);
        assert_eq!(anomaly_severity(1.0), Severity::Medium);
        let mut book = AlertBook::new(300, 100);
        let mut record = |e: Event| book.record(from_event(&e).unwrap());
        assert_eq!(
            record(anomaly(1000, "203.0.113.5", 0.8, "GET /search")),
            Recorded::New(1)
        );
        for i in 1..100 {
            assert_eq!(
                record(anomaly(1000 + i, "203.0.113.5", 0.6, "GET /search")),
                Recorded::Folded(1)
            );
        }
        assert_eq!(
            record(anomaly(1001, "203.0.113.5", 0.8, "GET /cart")),
            Recorded::New(2)
        );
        assert_eq!(
            record(anomaly(1001, "203.0.113.6", 0.8, "GET /search")),
            Recorded::New(3)
        );
        assert_eq!(book.get(1).unwrap().count, 100);
    }

    #[test]
    fn the_ring_is_bounded_and_retention_prunes_by_last_seen() {
        let mut book = AlertBook::new(60, 3);
        for i in 0..5 {
            book.record(hit(1000 + i * 100, &format!("203.0.113.{i}"), "r"));
        }
        assert_eq!(book.len(), 3);
        assert_eq!(book.iter().next().unwrap().id, 3);
        // Alert 5 is folded into later, so it is kept when 3 and 4 go.
        book.record(hit(1430, "203.0.113.4", "r"));
        book.prune(1400, 1500);
        let ids: Vec<u64> = book.iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![5]);
        // Its window (1400 + 60) has closed: a repeat now is a new alert.
        assert_eq!(book.record(hit(1500, "203.0.113.4", "r")), Recorded::New(6));
    }

    #[test]
    fn filters_select_by_time_severity_ip_and_container() {
        let mut book = AlertBook::new(0, 100);
        book.record(hit(100, "203.0.113.1", "a"));
        book.record(Alert {
            severity: Severity::Low,
            container: "db".into(),
            ..hit(200, "203.0.113.2", "b")
        });
        book.record(Alert {
            severity: Severity::Critical,
            ..hit(300, "203.0.113.1", "c")
        });
        let ids = |f: Filter| -> Vec<u64> { book.query(&f).iter().map(|a| a.id).collect() };
        assert_eq!(ids(Filter::default()), vec![1, 2, 3]);
        assert_eq!(
            ids(Filter {
                since: Some(150),
                ..Filter::default()
            }),
            vec![2, 3]
        );
        assert_eq!(
            ids(Filter {
                severity: Some(Severity::High),
                ..Filter::default()
            }),
            vec![1, 3]
        );
        assert_eq!(
            ids(Filter {
                ip: Some("203.0.113.1".parse().unwrap()),
                limit: Some(1),
                ..Filter::default()
            }),
            vec![3]
        );
        assert_eq!(
            ids(Filter {
                container: Some("db".into()),
                ..Filter::default()
            }),
            vec![2]
        );
        book.record(Alert {
            kind: "ban".into(),
            ..hit(400, "203.0.113.1", "c")
        });
        let ids = |f: Filter| -> Vec<u64> { book.query(&f).iter().map(|a| a.id).collect() };
        let bans = Filter::default().with_kind(Some("ban".into())).unwrap();
        assert_eq!(ids(bans), vec![4]);
        let every = Filter::default().with_kind(Some(" ".into())).unwrap();
        assert_eq!(ids(every), vec![1, 2, 3, 4]);
        let e = Filter::default()
            .with_kind(Some("bans".into()))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("kind: \"bans\" is not one of rule_hit, ban, unban,"),
            "{e}"
        );
    }

    #[test]
    fn a_container_whose_lines_do_not_parse_is_an_alert() {
        let a = from_event(&Event::Unparsed {
            at: 7,
            container: "proxy".into(),
            format: "combined".into(),
            lines: 100,
            unparsed: 100,
            sample: "example.com 198.51.100.7 - - [...]".into(),
        })
        .unwrap();
        assert_eq!(
            (a.kind.as_str(), a.severity),
            ("unparsed_lines", Severity::High)
        );
        assert_eq!(a.container, "proxy");
        assert!(
            a.line.contains("\"combined\"") && a.line.contains("example.com"),
            "{}",
            a.line
        );
    }

    #[test]
    fn events_become_alerts_with_the_right_severity() {
        let ev = Event::DockerConnection {
            at: 5,
            connected: false,
            error: Some("connection refused".into()),
        };
        let a = from_event(&ev).unwrap();
        assert_eq!(
            (a.kind.as_str(), a.severity),
            ("docker_disconnected", Severity::High)
        );
        assert!(a.line.contains("connection refused"));
        assert!(from_event(&Event::Reload { at: 1, error: None }).is_none());
        let long = "x".repeat(1000);
        let a = from_event(&Event::FirewallError { at: 1, error: long }).unwrap();
        assert_eq!(a.line.chars().count(), LINE_MAX + 1);
        assert_eq!(a.severity, Severity::Critical);
    }

    #[test]
    fn a_flood_from_one_network_folds_into_one_alert_per_rule() {
        let mut book = AlertBook::new(300, 10_000);
        // 1000 addresses of one /64, each once, within a minute.
        for i in 0..1000u32 {
            book.record(hit(
                1000 + i64::from(i) / 20,
                &format!("2001:db8::{i:x}"),
                "r",
            ));
        }
        assert_eq!(
            book.len(),
            FLOOD_ALERTS as usize + 1,
            "one alert per address"
        );
        let folded = book.iter().last().unwrap().clone();
        assert_eq!(
            folded.prefix.map(|n| n.to_string()).as_deref(),
            Some("2001:db8::/64")
        );
        assert_eq!(folded.count, 1000 - u64::from(FLOOD_ALERTS));
        assert!(folded.line.contains("2001:db8::3e7"), "{}", folded.line);
        // Another network is not folded with it; a filter by one address finds the fold.
        assert!(matches!(
            book.record(hit(1050, "2001:db8:1::1", "r")),
            Recorded::New(_)
        ));
        let q = book.query(&Filter {
            ip: Some("2001:db8::ffff".parse().unwrap()),
            ..Filter::default()
        });
        assert_eq!(q.len(), 1);
        // The folded alert reads back from its JSON line with its network.
        let text = serde_json::to_string(&folded).unwrap();
        assert!(text.contains("\"prefix\":\"2001:db8::/64\""), "{text}");
        let back: Alert = serde_json::from_str(&text).unwrap();
        assert_eq!(back, folded);
    }

    #[test]
    fn a_few_neighbours_keep_their_own_alerts_and_the_flood_count_resets() {
        let mut book = AlertBook::new(0, 10_000);
        for i in 0..FLOOD_ALERTS {
            book.record(hit(1000, &format!("203.0.113.{i}"), "r"));
        }
        assert!(book.iter().all(|a| a.prefix.is_none()));
        // A minute later the window is new: the 21st neighbour is still its own alert.
        book.prune(0, 1000 + FLOOD_WINDOW);
        let r = book.record(hit(1000 + FLOOD_WINDOW, "203.0.113.200", "r"));
        assert!(matches!(r, Recorded::New(_)));
        assert!(book.iter().all(|a| a.prefix.is_none()));
    }
}
