//! What the daemon did, as events for whoever listens: notices (mail, webhooks), the
//! alerts ring, metrics. A broadcast channel: a slow or dead listener falls behind and
//! loses events (it is told how many), it never holds up enforcement.

use std::net::IpAddr;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::ban::state_file::BanRecord;
use crate::detect::Severity;

/// Events kept for listeners that fall behind, before the oldest are dropped for them.
pub const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An IP was banned (or its ban extended). Bans restored at start are not events.
    Ban {
        at: i64,
        record: BanRecord,
        seconds: u64,
        extended: bool,
        /// Log timestamp to firewall applied, when the ban came from a log line.
        time_to_ban_ms: Option<f64>,
    },
    /// A ban ended: `reason` is `expired` or `unbanned`.
    Unban {
        at: i64,
        record: BanRecord,
        reason: String,
    },
    /// A verdict the safety valve held back.
    Held(Refusal),
    /// A verdict against an address that is never banned.
    NeverBan(Refusal),
    /// A line matched rules but did not (yet) lead to a ban.
    RuleHit {
        at: i64,
        ip: IpAddr,
        rules: Vec<String>,
        category: String,
        severity: Severity,
        container: String,
        /// The line, escaped and truncated.
        line: String,
    },
    /// A request strayed from its endpoint's baseline (`anomaly.mode` alert or ban); see
    /// `detect::anomaly`.
    Anomaly {
        at: i64,
        ip: IpAddr,
        container: String,
        /// How unusual, 0 to 1 (an endpoint never seen is 0.2).
        score: f64,
        /// Why, in words.
        reason: String,
        /// `METHOD /route/{n}`.
        endpoint: String,
        /// The line, escaped and truncated.
        line: String,
    },
    /// The config was reloaded, or a reload was rejected (`error`).
    Reload { at: i64, error: Option<String> },
    /// A firewall change failed.
    FirewallError { at: i64, error: String },
    /// The connection to dockerd was lost (`connected: false`, with the error) or is back.
    DockerConnection {
        at: i64,
        connected: bool,
        error: Option<String>,
    },
    /// A container's error lines (5xx, tracebacks) jumped above its own baseline; see
    /// `alerts::errors`.
    ErrorRate {
        at: i64,
        container: String,
        /// Error lines in the current minute.
        errors: u64,
        /// Its usual errors per minute.
        baseline: f64,
        /// The last error line, escaped and truncated.
        sample: String,
    },
    /// Most of a container's lines do not parse in its log format (said once per
    /// container); see `detect::parse::ParseHealth`.
    Unparsed {
        at: i64,
        container: String,
        format: String,
        lines: u64,
        unparsed: u64,
        /// A line that did not parse, escaped and truncated.
        sample: String,
    },
}

/// A verdict that did not become a ban, and why (`reason`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Refusal {
    pub at: i64,
    pub ip: IpAddr,
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    pub container: String,
    pub reason: String,
}

impl Event {
    pub fn at(&self) -> i64 {
        match self {
            Event::Ban { at, .. }
            | Event::Unban { at, .. }
            | Event::Held(Refusal { at, .. })
            | Event::NeverBan(Refusal { at, .. })
            | Event::RuleHit { at, .. }
            | Event::Anomaly { at, .. }
            | Event::Reload { at, .. }
            | Event::FirewallError { at, .. }
            | Event::DockerConnection { at, .. }
            | Event::ErrorRate { at, .. }
            | Event::Unparsed { at, .. } => *at,
        }
    }
}

/// The sending side, cheap to clone; sending never blocks and never fails loudly (no
/// listener is fine).
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        Bus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    pub fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    /// A new listener sees events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_see_events_from_when_they_subscribe_and_lagging_ones_are_told() {
        let bus = Bus::new();
        bus.send(Event::Reload { at: 1, error: None });
        let mut rx = bus.subscribe();
        bus.send(Event::Reload {
            at: 2,
            error: Some("bad".into()),
        });
        assert_eq!(rx.try_recv().unwrap().at(), 2);
        for i in 0..(CAPACITY as i64 + 10) {
            bus.send(Event::Reload { at: i, error: None });
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        let json = serde_json::to_string(&Event::Reload { at: 3, error: None }).unwrap();
        assert_eq!(json, r#"{"event":"reload","at":3,"error":null}"#);
    }
}
