//! Bans: who is banned until when and why (the book), who never is (the never-ban list),
//! the book applied to a firewall and to `blocked_ips.json` (the enforcer), the state
//! directory's lock, and the daemon's thread that owns them (the worker).
//!
//! The book and the never-ban list are sans-IO: every call takes `now`. The enforcer and
//! the worker are the I/O edge.

pub mod book;
pub mod enforcer;
pub mod lock;
pub mod never;
pub mod policy;
pub mod state_file;
pub mod worker;

pub use book::{BanBook, Decision, Restore};
pub use enforcer::{Enforcer, StartError, StartReport};
pub use lock::{LockError, StateLock};
pub use never::{DockerNetwork, NeverBan};
pub use policy::{Policy, StateSettings};
pub use state_file::{BanRecord, HistoryRecord, StateFile};
