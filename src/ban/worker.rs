//! The enforcement thread: owns the ban book, the firewall and the state file.
//!
//! Firewall changes run `nft`/`ipset` and block for milliseconds, so they live on their own
//! thread and never hold up log reading. Verdicts that arrive together are applied in one
//! firewall batch; state-file writes are coalesced.

use crate::clock::{unix_now, unix_now_ns};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::ban::state_file::BanRecord;
use crate::ban::Enforcer;
use crate::ban::{Decision, DockerNetwork, NeverBan};
use crate::config::{self, Config};
use crate::detect::parse::format_time;
use crate::detect::Verdict;
use crate::events::{Bus, Event, Refusal};

/// Verdicts waiting for the firewall; beyond this they are dropped and counted (a flood
/// this large is also what the burst valve holds back).
const QUEUE: usize = 65_536;
/// The state file is written at most this often while bans keep coming.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// Time-to-ban samples kept for the figures in `status`.
const SAMPLES: usize = 1024;
/// How often the host's own addresses are read again: a Docker network created since
/// brings a bridge whose gateway address must never be banned.
const HOST_ADDRESSES_EVERY: Duration = Duration::from_secs(5);

pub enum Msg {
    Verdict {
        verdict: Verdict,
        container: String,
        /// Docker's timestamp of the offending line, Unix ns: the start of time-to-ban.
        log_ts_ns: i64,
    },
    Ban {
        ip: IpAddr,
        seconds: Option<u64>,
        reason: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Unban {
        ip: IpAddr,
        reply: oneshot::Sender<Result<String, String>>,
    },
    List {
        reply: oneshot::Sender<Vec<BanRecord>>,
    },
    Summary {
        reply: oneshot::Sender<Summary>,
    },
    /// Docker's networks changed.
    DockerNetworks(Vec<DockerNetwork>),
    Reconfigure {
        cfg: Box<Config>,
        docker_networks: Vec<DockerNetwork>,
    },
}

/// How enforcement is doing: part of the control protocol, so it lives in `api`.
pub use crate::api::Summary;

pub struct Handle {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    published: Published,
}

/// The worker's latest summary, published after every batch and timeout so that
/// `status` and `health` read it without waiting for the worker: a firewall call or an
/// fsync of the state file that takes seconds on a busy disk must not stall them.
type Published = std::sync::Arc<std::sync::Mutex<Summary>>;

impl Handle {
    /// Hands a verdict over without waiting; a full queue drops it (counted).
    pub fn verdict(&self, verdict: Verdict, container: String, log_ts_ns: i64) {
        let full = match &self.tx {
            Some(tx) => match tx.try_send(Msg::Verdict {
                verdict,
                container,
                log_ts_ns,
            }) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if full {
            tracing::warn!("the firewall queue is full: a verdict was dropped");
        }
        self.dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the enforcement thread is still running. It only ends at shutdown; ended
    /// before that (a panic, or a thread that could not be started) means nothing bans
    /// or unbans any more, which `health` must say.
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The summary as the worker last published it (at most one batch old).
    pub fn summary(&self) -> Summary {
        let mut s = self
            .published
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        s.dropped_verdicts = self.dropped.load(std::sync::atomic::Ordering::Relaxed);
        s
    }

    /// Sends a control message (blocking only if the queue is full).
    pub fn send(&self, msg: Msg) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok())
    }

    /// Stops the thread after it has applied what is queued and written the state file.
    pub fn shutdown(mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn spawn(enforcer: Enforcer, events: Bus) -> Handle {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let d = dropped.clone();
    let worker = Worker::new(enforcer, d, events);
    let published: Published = std::sync::Arc::new(std::sync::Mutex::new(worker.current()));
    let p = published.clone();
    let thread = std::thread::Builder::new()
        .name("enforcement".into())
        .spawn(move || worker.run(rx, &p))
        .ok();
    Handle {
        tx: Some(tx),
        thread,
        dropped,
        published,
    }
}

struct Worker {
    enforcer: Enforcer,
    summary: Summary,
    samples: VecDeque<f64>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    last_save: Instant,
    last_host_refresh: Instant,
    events: Bus,
}

impl Worker {
    fn new(
        enforcer: Enforcer,
        dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
        events: Bus,
    ) -> Worker {
        let summary = Summary {
            backend: enforcer.backend_name().to_string(),
            ..Summary::default()
        };
        Worker {
            enforcer,
            summary,
            samples: VecDeque::new(),
            dropped,
            last_save: Instant::now(),
            last_host_refresh: Instant::now(),
            events,
        }
    }

    fn run(mut self, rx: Receiver<Msg>, published: &Published) {
        loop {
            let now = unix_now();
            let wait = self
                .enforcer
                .book
                .next_expiry()
                .map(|t| Duration::from_secs((t - now).clamp(0, 1) as u64))
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(50))
                .min(SAVE_EVERY);
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    // Everything already queued goes into one batch.
                    let mut batch = vec![first];
                    while let Ok(m) = rx.try_recv() {
                        batch.push(m);
                        if batch.len() >= 4096 {
                            break;
                        }
                    }
                    self.handle(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.expire();
            if self.last_save.elapsed() >= SAVE_EVERY {
                self.save();
            }
            if self.last_host_refresh.elapsed() >= HOST_ADDRESSES_EVERY {
                self.enforcer.book.never_ban().host = crate::host::addresses();
                self.last_host_refresh = Instant::now();
            }
            let now = self.current();
            match published.lock() {
                Ok(mut p) => *p = now,
                Err(poisoned) => *poisoned.into_inner() = now,
            }
        }
        self.expire();
        self.save();
    }

    /// How enforcement is doing now.
    fn current(&self) -> Summary {
        let mut s = self.summary.clone();
        s.active_bans = self.enforcer.book.len();
        s.held_back = self.enforcer.book.held();
        s.dropped_verdicts = self.dropped.load(std::sync::atomic::Ordering::Relaxed);
        let mut v: Vec<f64> = self.samples.iter().copied().collect();
        v.sort_by(|a, b| a.total_cmp(b));
        s.time_to_ban_ms_p50 = percentile(&v, 0.50);
        s.time_to_ban_ms_p99 = percentile(&v, 0.99);
        s
    }

    fn save(&mut self) {
        match self.enforcer.save(unix_now()) {
            Ok(()) => {
                if let Some(was) = self.summary.state_file_error.take() {
                    tracing::info!(
                        "{} is written again (it failed with: {was})",
                        self.enforcer.state_path().display()
                    );
                }
            }
            Err(e) => {
                let e = format!("cannot write {}: {e}", self.enforcer.state_path().display());
                self.summary.state_file_error = Some(e.clone());
                self.error(e);
            }
        }
        self.last_save = Instant::now();
    }

    /// A firewall change failed: counted, logged, and the firewall is failing until the
    /// next change succeeds.
    fn firewall_failed(&mut self, e: String) {
        self.summary.firewall_error = Some(e.clone());
        self.error(e);
    }

    /// A firewall change succeeded: an earlier failure has cleared.
    fn firewall_worked(&mut self) {
        if let Some(was) = self.summary.firewall_error.take() {
            tracing::info!("the firewall takes changes again (it failed with: {was})");
        }
    }

    fn error(&mut self, e: String) {
        tracing::error!(ACTION = "error", "{e}");
        self.events.send(Event::FirewallError {
            at: unix_now(),
            error: e.clone(),
        });
        self.summary.firewall_errors += 1;
        self.summary.last_error = Some(e);
    }

    fn handle(&mut self, batch: Vec<Msg>) {
        let now = unix_now();
        let mut decisions: Vec<(Decision, i64)> = Vec::new();
        for msg in batch {
            match msg {
                Msg::Verdict {
                    verdict,
                    container,
                    log_ts_ns,
                } => {
                    let d = self.enforcer.book.on_verdict(&verdict, &container, now);
                    let refusal = |ip: IpAddr, reason: &String| Refusal {
                        at: now,
                        ip,
                        rule: verdict.rule.clone(),
                        category: verdict.category.clone(),
                        severity: verdict.severity.to_string(),
                        container: container.clone(),
                        reason: reason.clone(),
                    };
                    match &d {
                        Decision::Ban { .. } => decisions.push((d, log_ts_ns)),
                        Decision::NeverBan { ip, reason } => {
                            self.summary.never_banned += 1;
                            tracing::warn!(IP = %ip, CONTAINER = %container, RULE = %verdict.rule, CATEGORY = %verdict.category, ACTION = "never-ban", "not banning {ip} ({} in {container}): it is {reason}", verdict.rule);
                            self.events.send(Event::NeverBan(refusal(*ip, reason)));
                        }
                        Decision::AlreadyBanned { ip } => {
                            tracing::debug!(IP = %ip, "{ip} is already banned for this offence");
                        }
                        Decision::Held { ip, reason } => {
                            tracing::error!(IP = %ip, CONTAINER = %container, RULE = %verdict.rule, CATEGORY = %verdict.category, ACTION = "held", "held back the ban of {ip}: {reason}");
                            self.events.send(Event::Held(refusal(*ip, reason)));
                        }
                    }
                }
                Msg::Ban {
                    ip,
                    seconds,
                    reason,
                    reply,
                } => {
                    let asked = seconds;
                    let d = self.enforcer.book.manual_ban(ip, seconds, &reason, now);
                    let answer = match &d {
                        Decision::Ban {
                            record, seconds, ..
                        } => match self.enforcer.apply(&d) {
                            Ok(()) => {
                                self.firewall_worked();
                                self.log_ban(record, *seconds, None, false);
                                Ok(format!(
                                    "banned {} for {} (until {}){}",
                                    record.shown(),
                                    config::format_duration(*seconds),
                                    format_time(record.expires_at),
                                    clamp_note(asked, *seconds)
                                ))
                            }
                            Err(e) => {
                                self.firewall_failed(e.clone());
                                Err(e)
                            }
                        },
                        Decision::NeverBan { reason, .. } => {
                            Err(format!("not banning {ip}: it is {reason}"))
                        }
                        Decision::Held { reason, .. } => Err(format!("not banning {ip}: {reason}")),
                        Decision::AlreadyBanned { .. } => Ok(format!("{ip} is already banned")),
                    };
                    let _ = reply.send(answer);
                }
                Msg::Unban { ip, reply } => {
                    let answer = match self.enforcer.unban(ip) {
                        Ok(Some(b)) => {
                            self.firewall_worked();
                            self.summary.unbans_since_start += 1;
                            tracing::info!(IP = %ip, RULE = %b.rule, CATEGORY = %b.category, ACTION = "unban", "unbanned {ip} by request");
                            self.events.send(Event::Unban {
                                at: now,
                                record: b.clone(),
                                reason: "unbanned".into(),
                            });
                            Ok(format!(
                                "unbanned {} (was banned for {} until {})",
                                unbanned_what(&b, ip),
                                b.rule,
                                format_time(b.expires_at)
                            ))
                        }
                        Ok(None) => {
                            self.firewall_worked();
                            Ok(format!(
                                "{ip} was not banned; made sure the firewall does not hold it"
                            ))
                        }
                        Err(e) => {
                            self.firewall_failed(e.clone());
                            Err(e)
                        }
                    };
                    let _ = reply.send(answer);
                }
                Msg::List { reply } => {
                    let _ = reply.send(self.enforcer.book.active().into_iter().cloned().collect());
                }
                Msg::Summary { reply } => {
                    let _ = reply.send(self.current());
                }
                Msg::DockerNetworks(nets) => {
                    self.enforcer.book.never_ban().docker_networks = nets;
                }
                Msg::Reconfigure {
                    cfg,
                    docker_networks,
                } => {
                    let mut never = NeverBan::from_config(&cfg, crate::host::addresses());
                    never.docker_networks = docker_networks;
                    self.enforcer
                        .book
                        .reconfigure(cfg.ban.clone(), cfg.log_retention_days, never);
                }
            }
        }
        if decisions.is_empty() {
            return;
        }
        let only: Vec<Decision> = decisions.iter().map(|(d, _)| d.clone()).collect();
        match self.enforcer.apply_all(&only) {
            Ok(()) => {
                self.firewall_worked();
                let applied_ns = unix_now_ns();
                for (d, log_ts_ns) in decisions {
                    if let Decision::Ban {
                        record,
                        seconds,
                        extended,
                    } = d
                    {
                        let ms = (applied_ns - log_ts_ns) as f64 / 1e6;
                        self.samples.push_back(ms);
                        if self.samples.len() > SAMPLES {
                            self.samples.pop_front();
                        }
                        self.log_ban(&record, seconds, Some(ms), extended);
                    }
                }
            }
            Err(e) => self.firewall_failed(format!("could not apply {} ban(s): {e}", only.len())),
        }
    }

    fn log_ban(
        &mut self,
        b: &BanRecord,
        seconds: u64,
        time_to_ban_ms: Option<f64>,
        extended: bool,
    ) {
        self.summary.bans_since_start += 1;
        self.events.send(Event::Ban {
            at: b.banned_at,
            record: b.clone(),
            seconds,
            extended,
            time_to_ban_ms,
        });
        let evidence = b.evidence.last().map(String::as_str).unwrap_or("");
        tracing::warn!(
            IP = %b.ip,
            CONTAINER = %b.container,
            RULE = %b.rule,
            CATEGORY = %b.category,
            SEVERITY = %b.severity,
            ACTION = "ban",
            DURATION_S = seconds,
            TIMES_BANNED = b.times_banned,
            TIME_TO_BAN_MS = time_to_ban_ms.unwrap_or(0.0),
            "banned {} for {} ({} {} in {}, ban #{}): {}",
            b.ip,
            config::format_duration(seconds),
            b.category,
            b.rule,
            if b.container.is_empty() { "-" } else { &b.container },
            b.times_banned,
            evidence
        );
    }

    fn expire(&mut self) {
        match self.enforcer.expire(unix_now()) {
            Ok(gone) => {
                for b in gone {
                    self.summary.unbans_since_start += 1;
                    tracing::info!(IP = %b.ip, RULE = %b.rule, CATEGORY = %b.category, ACTION = "expire", "the ban of {} ended", b.ip);
                    self.events.send(Event::Unban {
                        at: unix_now(),
                        record: b,
                        reason: "expired".into(),
                    });
                }
            }
            Err(e) => self.firewall_failed(format!("could not lift expired bans: {e}")),
        }
    }
}

/// What an unban lifted: the address, or the whole banned network that held it.
pub fn unbanned_what(b: &BanRecord, asked: IpAddr) -> String {
    match b.prefix {
        Some(_) => format!(
            "{}, the banned network that holds {asked} (the whole network is lifted)",
            b.shown()
        ),
        None => asked.to_string(),
    }
}

/// Says so when a requested ban length was cut to `ban.max_duration`.
pub fn clamp_note(asked: Option<u64>, given: u64) -> String {
    match asked {
        Some(a) if a > given => format!(
            "; {} was asked, cut to the longest ban.max_duration allows",
            if a > config::MAX_DURATION_SECS {
                format!("{a}s")
            } else {
                config::format_duration(a)
            }
        ),
        _ => String::new(),
    }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[idx.min(sorted.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{Backend, FirewallError, KernelBan};
    use crate::netaddr::IpNet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A firewall that refuses every change while `failing` is set.
    struct Flaky {
        failing: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> crate::firewall::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(FirewallError {
                    action: "adding bans".into(),
                    detail: "no buffer space available".into(),
                });
            }
            Ok(())
        }
    }

    impl Backend for Flaky {
        fn name(&self) -> &'static str {
            "none"
        }
        fn setup(&mut self) -> crate::firewall::Result<()> {
            Ok(())
        }
        fn ban(&mut self, _: &[(IpNet, u64)]) -> crate::firewall::Result<()> {
            self.check()
        }
        fn unban(&mut self, _: &[IpNet]) -> crate::firewall::Result<()> {
            self.check()
        }
        fn replace_all(&mut self, _: &[(IpNet, u64)]) -> crate::firewall::Result<()> {
            Ok(())
        }
        fn list(&mut self) -> crate::firewall::Result<Vec<KernelBan>> {
            Ok(Vec::new())
        }
        fn kernel_expiry(&self) -> bool {
            true
        }
        fn teardown(&mut self) -> crate::firewall::Result<()> {
            Ok(())
        }
    }

    fn enforcer(dir: &std::path::Path, backend: Box<dyn Backend>) -> Enforcer {
        let mut cfg = Config::default();
        cfg.state.dir = dir.to_path_buf();
        let (enforcer, _) =
            Enforcer::start_with(&cfg, backend, "test".into(), unix_now()).expect("start");
        enforcer
    }

    fn worker(dir: &std::path::Path) -> (Worker, Arc<AtomicBool>) {
        let failing = Arc::new(AtomicBool::new(false));
        let backend = Box::new(Flaky {
            failing: failing.clone(),
        });
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let w = Worker::new(enforcer(dir, backend), dropped, Bus::new());
        (w, failing)
    }

    fn ban(w: &mut Worker, ip: &str) -> Result<String, String> {
        let (tx, mut rx) = oneshot::channel();
        w.handle(vec![Msg::Ban {
            ip: ip.parse().expect("test address"),
            seconds: Some(60),
            reason: "test".into(),
            reply: tx,
        }]);
        rx.try_recv().expect("the worker answers at once")
    }

    #[test]
    fn a_firewall_error_clears_with_the_next_change_that_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, failing) = worker(dir.path());
        failing.store(true, Ordering::SeqCst);
        assert!(ban(&mut w, "203.0.113.7").is_err());
        let e = w
            .summary
            .firewall_error
            .clone()
            .expect("the failure is current");
        assert!(e.contains("no buffer space"), "{e}");
        failing.store(false, Ordering::SeqCst);
        assert!(ban(&mut w, "203.0.113.8").is_ok());
        assert_eq!(w.summary.firewall_error, None);
        // The history is kept for `status`.
        assert_eq!(w.summary.firewall_errors, 1);
        assert!(w.summary.last_error.is_some());
    }

    #[test]
    fn a_state_file_error_clears_with_the_next_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        let (mut w, _) = worker(&state);
        assert!(ban(&mut w, "203.0.113.9").is_ok());
        // The directory is gone and a file stands in its place: the write fails.
        std::fs::rename(&state, dir.path().join("moved")).expect("move");
        std::fs::write(&state, b"not a directory").expect("file");
        w.save();
        let e = w
            .summary
            .state_file_error
            .clone()
            .expect("the failure is current");
        assert!(e.contains("blocked_ips.json"), "{e}");
        std::fs::remove_file(&state).expect("remove");
        std::fs::create_dir(&state).expect("state dir again");
        w.save();
        assert_eq!(w.summary.state_file_error, None);
        assert!(state.join("blocked_ips.json").exists());
    }

    #[test]
    fn a_thread_that_panicked_is_not_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The first firewall change panics, as a bug in a backend would.
        let h = spawn(enforcer(dir.path(), Box::new(Panics)), Bus::new());
        assert!(h.alive());
        let (tx, rx) = oneshot::channel();
        assert!(h.send(Msg::Ban {
            ip: "203.0.113.10".parse().expect("test address"),
            seconds: Some(60),
            reason: "test".into(),
            reply: tx,
        }));
        // The reply is dropped with the thread.
        assert!(rx.blocking_recv().is_err());
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!h.alive(), "a thread that panicked still counts as alive");
    }

    struct Panics;

    impl Backend for Panics {
        fn name(&self) -> &'static str {
            "none"
        }
        fn setup(&mut self) -> crate::firewall::Result<()> {
            Ok(())
        }
        fn ban(&mut self, _: &[(IpNet, u64)]) -> crate::firewall::Result<()> {
            panic!("a bug in the firewall backend")
        }
        fn unban(&mut self, _: &[IpNet]) -> crate::firewall::Result<()> {
            Ok(())
        }
        fn replace_all(&mut self, _: &[(IpNet, u64)]) -> crate::firewall::Result<()> {
            Ok(())
        }
        fn list(&mut self) -> crate::firewall::Result<Vec<KernelBan>> {
            Ok(Vec::new())
        }
        fn kernel_expiry(&self) -> bool {
            true
        }
        fn teardown(&mut self) -> crate::firewall::Result<()> {
            Ok(())
        }
    }
}
