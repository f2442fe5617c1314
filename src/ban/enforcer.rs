//! The ban book wired to a firewall backend and to `blocked_ips.json`: the I/O edge of
//! enforcement, shared by the daemon and by the command line when no daemon runs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::book::{BanBook, Decision};
use super::never::NeverBan;
use super::state_file::{self as state, BanRecord, Loaded};
use crate::config::Config;
use crate::firewall::{self, Backend, FirewallError};
use crate::netaddr::IpNet;

/// What happened at start-up, for the log.
#[derive(Debug, Default)]
pub struct StartReport {
    pub backend: String,
    pub restored: usize,
    pub adopted: usize,
    pub expired: usize,
    pub lifted: Vec<IpAddr>,
    /// Set when blocked_ips.json could not be used (it was moved aside).
    pub state_error: Option<String>,
    pub restore_ms: u128,
}

/// Why enforcement cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error("cannot write {}: {error}", path.display())]
    Save {
        path: PathBuf,
        error: std::io::Error,
    },
}

pub struct Enforcer {
    pub book: BanBook,
    backend: Box<dyn Backend>,
    state_path: PathBuf,
    dirty: bool,
}

impl Enforcer {
    /// Opens the backend, creates our firewall objects, loads the state file, reconciles it
    /// with what the kernel holds, and applies every active ban in one batch.
    pub fn start(cfg: &Config, now: i64) -> Result<(Enforcer, StartReport), StartError> {
        let (backend, how) = firewall::open(&cfg.firewall)?;
        Self::start_with(cfg, backend, how, now)
    }

    pub fn start_with(
        cfg: &Config,
        mut backend: Box<dyn Backend>,
        how: String,
        now: i64,
    ) -> Result<(Enforcer, StartReport), StartError> {
        let mut report = StartReport {
            backend: how,
            ..StartReport::default()
        };
        backend.setup()?;
        let state_path = cfg.state.blocked_ips_file();
        let file = match state::load(&state_path) {
            Loaded::Missing => None,
            Loaded::Ok(f) => Some(f),
            Loaded::Corrupt { error, moved_to } => {
                report.state_error = Some(match moved_to {
                    Some(to) => format!(
                        "{error}; moved it to {} and continued with the bans the firewall holds",
                        to.display()
                    ),
                    None => format!("{error}; continued with the bans the firewall holds"),
                });
                None
            }
        };
        let kernel = backend.list()?;
        let mut book = BanBook::new(
            cfg.ban.clone(),
            cfg.log_retention_days,
            NeverBan::from_config(cfg, crate::host::addresses()),
        );
        let started = Instant::now();
        let restore = book.restore(file, &kernel, now);
        backend.replace_all(&restore.apply)?;
        report.restore_ms = started.elapsed().as_millis();
        report.restored = restore.from_file;
        report.adopted = restore.adopted;
        report.expired = restore.expired;
        report.lifted = restore.lifted;
        let mut e = Enforcer {
            book,
            backend,
            state_path,
            dirty: true,
        };
        e.save(now).map_err(|error| StartError::Save {
            path: e.state_path.clone(),
            error,
        })?;
        Ok((e, report))
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Applies a planned decision to the firewall and, once the kernel holds it, commits
    /// it to the book. A refused ban leaves the book as it was: an active ban that was to
    /// be extended keeps its record, its expiry and its count.
    pub fn apply(&mut self, d: &Decision, now: i64) -> Result<(), FirewallError> {
        self.apply_all(std::slice::from_ref(d), now)
    }

    /// Applies many planned decisions in one firewall batch, then commits them all; if
    /// the firewall refuses the batch, none of its bans is committed.
    pub fn apply_all(&mut self, ds: &[Decision], now: i64) -> Result<(), FirewallError> {
        let bans: Vec<(IpNet, u64)> = ds
            .iter()
            .filter_map(|d| match d {
                Decision::Ban {
                    record, seconds, ..
                } => Some((record.net(), *seconds)),
                _ => None,
            })
            .collect();
        if !bans.is_empty() {
            self.backend.ban(&bans)?;
            self.dirty = true;
        }
        for d in ds {
            self.book.commit(d, now);
        }
        Ok(())
    }

    /// Lifts a ban in the firewall and the book. Lifting an IP that is not banned is fine.
    /// An address inside a banned network (an IPv6 /64) lifts that network's ban: the
    /// returned record's `prefix` says so.
    pub fn unban(&mut self, ip: IpAddr) -> Result<Option<BanRecord>, FirewallError> {
        let net = self
            .book
            .get(ip)
            .map_or_else(|| IpNet::host(ip), BanRecord::net);
        self.backend.unban(&[net])?;
        let r = self.book.unban(ip);
        self.dirty = true;
        Ok(r)
    }

    /// Lifts the bans covering each of `ips` in one firewall call; returns the records
    /// lifted. If the firewall refuses, the book keeps them all.
    pub fn unban_all(&mut self, ips: &[IpAddr]) -> Result<Vec<BanRecord>, FirewallError> {
        let nets: Vec<IpNet> = ips
            .iter()
            .map(|ip| {
                self.book
                    .get(*ip)
                    .map_or_else(|| IpNet::host(*ip), BanRecord::net)
            })
            .collect();
        self.backend.unban(&nets)?;
        self.dirty = true;
        Ok(ips.iter().filter_map(|ip| self.book.unban(*ip)).collect())
    }

    /// Drops expired bans from the book; lifts them in the firewall where the kernel does
    /// not expire them itself (no kernel expiry, or a ban longer than its longest timeout).
    /// A lift the firewall refused keeps its bans in the book, to be tried again.
    pub fn expire(&mut self, now: i64) -> Result<Vec<BanRecord>, FirewallError> {
        let gone = self.book.due(now);
        if !gone.is_empty() {
            let by_kernel = self.backend.kernel_expiry();
            let max = self.backend.kernel_max_timeout();
            let nets: Vec<IpNet> = gone
                .iter()
                .filter(|b| {
                    !by_kernel || b.expires_at.saturating_sub(b.banned_at).max(0) as u64 > max
                })
                .map(BanRecord::net)
                .collect();
            self.backend.unban(&nets)?;
            self.book.lift(&gone, now);
            self.dirty = true;
        }
        Ok(gone)
    }

    /// Writes the state file if anything changed since the last write.
    pub fn save(&mut self, now: i64) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        state::save(&self.state_path, &self.book.snapshot(now))?;
        self.dirty = false;
        Ok(())
    }

    /// Whether the book changed since the state file was last written.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn state_path(&self) -> &Path {
        &self.state_path
    }
}
