//! Fleet bans: a ban on one host enforced on every host, through a NATS JetStream KV
//! bucket that every host watches.
//!
//! `record` (what a host writes, under which key) and `remote` (what this host makes of
//! other hosts' records: apply, hold, lift) are sans-IO; `node` is the task at the edge
//! that talks to the server. The host's own never-ban policy vetoes remote bans in the
//! enforcement thread (`ban::BanBook::plan_remote`), like any other ban.

pub mod node;
pub mod record;
pub mod remote;
pub mod settings;

pub use node::{spawn, Fleet, FleetStatus, FleetTx, Outgoing, Settled};
pub use settings::Settings;
