//! The control socket: how `security-monitor status|list|ban|unban|reload` talk to the
//! running daemon. One JSON request per line, one JSON response per line, over a Unix
//! socket that only root (and an optional group) may open.

pub mod client;
pub mod protocol;
pub mod server;
mod settings;

pub use settings::Settings;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use protocol::*;

/// Where the daemon listens (systemd's RuntimeDirectory=security-monitor).
pub const DEFAULT_SOCKET: &str = "/run/security-monitor/control.sock";

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

    /// An answer of the protocol's types (see [`protocol`]).
    pub fn answer<T: Serialize>(data: &T) -> Response {
        match serde_json::to_value(data) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(format!("cannot write the answer: {e}")),
        }
    }

    /// The answer read as the type the request calls for.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            data: serde_json::Value::Null,
        }
    }
}
