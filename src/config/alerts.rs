//! The `alerts` and `metrics` sections, read into `crate::alerts::Settings` and
//! `crate::metrics::Settings`.

use super::jsonc::Node;
use super::validate::Validator;
use crate::alerts::Settings;
use crate::metrics::Settings as MetricsSettings;

/// Smallest `alerts.max_log_size`: room for a few rotated files of useful size.
pub const MIN_LOG_SIZE: u64 = 1024 * 1024;
/// Largest `alerts.max_log_size` (1 TiB): beyond it a typo is more likely than a wish.
pub const MAX_LOG_SIZE: u64 = 1 << 40;

impl Validator {
    pub(super) fn alerts(&mut self, n: &Node, alerts: &mut Settings) {
        if let Some(mut a) = self.object(n, "alerts") {
            if let Some(v) = a.get("cooldown") {
                if let Some(x) = self.duration(v, "alerts.cooldown", 0) {
                    alerts.cooldown = x;
                }
            }
            if let Some(v) = a.get("keep") {
                if let Some(x) = self.uint(v, "alerts.keep", 10, 1_000_000) {
                    alerts.keep = x as usize;
                }
            }
            if let Some(v) = a.get("max_log_size") {
                if let Some(x) = self.size(v, "alerts.max_log_size", MIN_LOG_SIZE, MAX_LOG_SIZE) {
                    alerts.max_log_size = x;
                }
            }
            self.finish(a);
        }
    }

    pub(super) fn metrics(&mut self, n: &Node, metrics: &mut MetricsSettings) {
        if let Some(mut m) = self.object(n, "metrics") {
            if let Some(v) = m.get("listen") {
                if let Some(s) = self.string(v, "metrics.listen") {
                    match parse_listen(s) {
                        Ok(a) => metrics.listen = a,
                        Err(e) => self.err("metrics.listen", v.pos, e),
                    }
                }
            }
            self.finish(m);
        }
    }
}

/// A size or listen address that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("\"{0}\" is not a size: use bytes or a number with a unit, such as \"500K\", \"50M\" or \"1G\"")]
    NotASize(String),
    /// Port 0 given alone (`true`) or with an address.
    #[error("port 0 is not a port to listen on; use e.g. {}", if *.0 { "\"9184\"" } else { "\"127.0.0.1:9184\"" })]
    PortZero(bool),
    #[error("{0:?} is not an address to listen on: use \"PORT\" (127.0.0.1), \"IP:PORT\" or \"[IPv6]:PORT\", e.g. \"127.0.0.1:9184\", or \"\" for no listener")]
    NotAnAddress(String),
}

/// Reads a size: a number of bytes, or a number with `K`, `M`, `G` or `T`, optionally
/// followed by `B` or `iB` (`"50M"`, `"50MB"`, `"50MiB"`). Like journald's sizes, every
/// unit is a power of 1024, so `"50MB"` is 52,428,800 bytes.
pub fn parse_size(s: &str) -> Result<u64, ValueError> {
    let bad = || ValueError::NotASize(s.to_string());
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Reads `metrics.listen`: `""` (off), `PORT` or `:PORT` (127.0.0.1), `IP:PORT`,
/// `[IPv6]:PORT`. Only addresses, not host names: what a daemon binds must not depend
/// on DNS at start.
pub fn parse_listen(s: &str) -> Result<Option<std::net::SocketAddr>, ValueError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        if port == 0 {
            return Err(ValueError::PortZero(true));
        }
        return Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
    }
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(Some(a)),
        Ok(_) => Err(ValueError::PortZero(false)),
        Err(_) => Err(ValueError::NotAnAddress(s.to_string())),
    }
}
