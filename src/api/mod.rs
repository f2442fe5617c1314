//! The control socket: how `security-monitor status|list|ban|unban|reload` talk to the
//! running daemon. One JSON request per line, one JSON response per line, over a Unix
//! socket that only root (and an optional group) may open.

pub mod client;
pub mod server;
mod settings;

pub use settings::Settings;

use serde::{Deserialize, Serialize};

/// Where the daemon listens (systemd's RuntimeDirectory=security-monitor).
pub const DEFAULT_SOCKET: &str = "/run/security-monitor/control.sock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    List,
    Ban {
        ip: String,
        /// Seconds; None: the policy's duration with escalation.
        seconds: Option<u64>,
        #[serde(default)]
        reason: String,
    },
    Unban {
        ip: String,
    },
    Reload,
    /// Whether the daemon is well: Docker connected, firewall working, config loaded.
    Health,
    /// Recent alerts, filtered.
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
    },
    /// The risk summary.
    Insights,
    /// The Prometheus exposition text.
    Metrics,
}

/// `ok` with a `data` payload, or an `error` for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            data: serde_json::Value::Null,
        }
    }
}
