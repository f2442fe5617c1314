//! The control protocol: every request the command line sends and every answer the
//! daemon gives, as types both sides share. The daemon builds these and the command
//! line reads them, so a renamed field is a compile error, not a `?` on the screen.
//!
//! On the wire each answer is the `data` of a [`Response`](super::Response), a JSON
//! object whose keys are sorted (serde_json's map), which `--json` prints as it came.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::alerts::insights::{Insights, Signal};
pub use crate::alerts::Alert;
pub use crate::ban::state_file::BanRecord;
pub use crate::docker::{ContainerStatus, StreamState, WatcherStatus};
pub use crate::fleet::remote::Row as FleetRow;
pub use crate::fleet::FleetStatus;
pub use crate::notify::{ChannelStatus, NotifyStatus};

/// What the command line asks. Answers: `status` a [`Status`], `list` a list of
/// [`BanRecord`], `alerts` a list of [`Alert`], `insights` an [`Insights`], `health` a
/// [`Health`], `metrics` the Prometheus text; `ban`, `unban` and `reload` a sentence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    List,
    Ban {
        #[serde(deserialize_with = "client_ip")]
        ip: IpAddr,
        /// Seconds; None: the policy's duration with escalation.
        seconds: Option<u64>,
        #[serde(default)]
        reason: String,
        /// Answer once the fleet has the ban (`ban --fleet`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fleet: bool,
    },
    Unban {
        #[serde(deserialize_with = "client_ip")]
        ip: IpAddr,
        /// Ask every host of the fleet to lift it (`unban --fleet`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fleet: bool,
    },
    /// Every record in the fleet's bucket this host knows of, and what it made of each:
    /// a list of [`FleetRow`].
    FleetList,
    Reload,
    /// Whether the daemon is well: Docker connected, firewall working, config loaded.
    Health,
    /// Recent alerts, filtered (see [`crate::alerts::Filter::parse`]).
    Alerts {
        /// A duration back from now (`1h`) or a time (`2026-11-21T10:00:00Z`).
        #[serde(default)]
        since: Option<String>,
        /// The least severity shown: low, medium, high or critical.
        #[serde(default)]
        severity: Option<String>,
        #[serde(default)]
        ip: Option<String>,
        #[serde(default)]
        container: Option<String>,
        /// At most this many, the newest.
        #[serde(default)]
        limit: Option<usize>,
        /// Only alerts of this kind (`ban`, `rule_hit`, `anomaly`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
    /// The risk summary.
    Insights,
    /// The Prometheus exposition text.
    Metrics,
}

/// An address as clients write it (the way log lines carry them, e.g. `[::1]`), with
/// the command line's wording when it is none.
fn client_ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    crate::netaddr::parse_client_ip(text.as_bytes())
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an IPv4 or IPv6 address")))
}

/// How enforcement is doing, for `status` (the `firewall` part) and `health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub backend: String,
    pub active_bans: usize,
    pub bans_since_start: u64,
    pub unbans_since_start: u64,
    pub held_back: u64,
    pub never_banned: u64,
    pub dropped_verdicts: u64,
    pub firewall_errors: u64,
    /// The last error of any kind, kept for `status` after it has cleared.
    pub last_error: Option<String>,
    /// The firewall is failing now: the last change it was asked for failed. Cleared by
    /// the next ban or unban that succeeds, so `health` recovers with it.
    pub firewall_error: Option<String>,
    /// The state file cannot be written now. Cleared by the next successful write (a
    /// failed write is retried, so one full disk is not reported for ever).
    pub state_file_error: Option<String>,
    /// Log timestamp to firewall applied, in milliseconds, over the last bans.
    pub time_to_ban_ms_p50: Option<f64>,
    pub time_to_ban_ms_p99: Option<f64>,
}

/// The answer to `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub uptime_s: u64,
    /// The config file the daemon runs with.
    pub config: PathBuf,
    pub firewall: Summary,
    pub lines_read: u64,
    pub lines_parsed: u64,
    pub lines_per_second: f64,
    pub tracked_ips: usize,
    /// Why the last reload was refused, while the old config still runs.
    pub reload_error: Option<String>,
    /// None: Docker is not watched.
    pub docker: Option<WatcherStatus>,
    pub notify: NotifyStatus,
    /// Containers most of whose lines do not parse, by name.
    pub unparsed: Vec<Unparsed>,
    /// How each container that wrote lines is read, and why.
    #[serde(default)]
    pub profiles: Vec<SourceProfile>,
    /// None: the fleet is not enabled.
    #[serde(default)]
    pub fleet: Option<FleetStatus>,
    /// The endpoint baselines; None: `anomaly.mode` is off.
    #[serde(default)]
    pub anomaly: Option<AnomalyStatus>,
}

/// What the endpoint baselines hold and found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnomalyStatus {
    /// `alert` or `ban`.
    pub mode: String,
    /// Per container that has a baseline or an anomaly, by name.
    pub containers: Vec<AnomalyContainer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnomalyContainer {
    pub container: String,
    pub endpoints: usize,
    /// Clean requests learned from (across restarts).
    pub learned: u64,
    /// An estimate of the memory held, bytes.
    pub bytes: usize,
    /// Anomalies since the daemon started.
    pub anomalies: u64,
}

/// How one container's lines are read: its application profile or log format, and why
/// it was chosen (its image, a label, the config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceProfile {
    pub container: String,
    /// The profile's name, or the log format's (`auto`, `combined`, a `formats` name).
    pub profile: String,
    pub reason: String,
}

/// A container whose lines mostly do not parse in its format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unparsed {
    pub container: String,
    pub format: String,
    pub lines: u64,
    pub unparsed: u64,
    /// The first line that did not parse, escaped and truncated.
    pub sample: String,
}

/// `ok`, or `degraded` with problems.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Ok,
    Degraded,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Degraded => "degraded",
        }
    }
}

/// The answer to `health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub status: HealthState,
    /// In words, most serious first; empty when `ok`.
    pub problems: Vec<String>,
    pub docker_connected: bool,
    /// The firewall backend in use.
    pub firewall: String,
    pub active_bans: usize,
    pub uptime_s: u64,
}

impl Health {
    /// `ok` exactly when there is no problem.
    pub fn state_of(problems: &[String]) -> HealthState {
        if problems.is_empty() {
            HealthState::Ok
        } else {
            HealthState::Degraded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_wire_form() {
        let ban = Request::Ban {
            ip: "2001:db8::1".parse().unwrap(),
            seconds: Some(60),
            reason: "test".into(),
            fleet: false,
        };
        let text = serde_json::to_string(&ban).unwrap();
        assert_eq!(
            text,
            r#"{"command":"ban","ip":"2001:db8::1","seconds":60,"reason":"test"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), ban);
        let e = serde_json::from_str::<Request>(r#"{"command":"unban","ip":"1.2.3"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#""1.2.3" is not an IPv4 or IPv6 address"#),
            "{e}"
        );
    }

    #[test]
    fn a_health_answer_reads_back() {
        let h = Health {
            status: HealthState::Degraded,
            problems: vec!["the firewall is failing: x".into()],
            docker_connected: false,
            firewall: "nftables".into(),
            active_bans: 2,
            uptime_s: 9,
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["status"], "degraded");
        assert_eq!(serde_json::from_value::<Health>(v).unwrap(), h);
    }
}
