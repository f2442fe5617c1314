//! security-monitor: watches Docker container logs, recognises attacks per client IP and
//! bans offenders in the kernel firewall. See DESIGN.md for the flow of data.

pub mod alerts;
pub mod api;
pub mod ban;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod docker;
pub mod events;
pub mod firewall;
pub mod fleet;
pub mod fsutil;
#[doc(hidden)]
pub mod harness;
pub mod host;
pub mod lines;
pub mod metrics;
pub mod netaddr;
pub mod notify;
pub mod time;
