//! The enforcement thread: owns the ban book, the firewall and the state file.
//!
//! Firewall changes run `nft`/`ipset` and block for milliseconds, so they live on their own
//! thread and never hold up log reading. Its queue has no bound a sender could wait on: the
//! async main loop hands messages over and goes on (verdicts beyond `QUEUE` are dropped
//! and counted; control messages are few, one per call). Verdicts that arrive together are
//! applied in one firewall batch; state-file writes are coalesced. The thread sleeps until
//! the next ban expires, the next write is due or a message arrives.

use crate::clock::{unix_now, unix_now_ns};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::ban::book::Pending;
use crate::ban::state_file::BanRecord;
use crate::ban::Enforcer;
use crate::ban::{Decision, DockerNetwork, NeverBan};
use crate::config::Config;
use crate::detect::Verdict;
use crate::events::{Bus, Event, Refusal};
use crate::fleet::record::UnbanEntry;
use crate::fleet::remote::RemoteBan;
use crate::fleet::{FleetTx, Outgoing, Settled};
use crate::netaddr::IpNet;
use crate::time::format_time;

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

/// What the operator is told about a `ban` or `unban`: the text of the control
/// protocol's ok or error answer, said as it is (`Response::ok` / `Response::err`).
/// Every error here is already a sentence for the operator, nothing a caller branches on.
pub type Answer = Result<String, String>;

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
        /// `ban --fleet`: answer once the fleet has the ban.
        fleet: bool,
        reply: oneshot::Sender<Answer>,
    },
    Unban {
        ip: IpAddr,
        /// `unban --fleet`: ask every host of the fleet to lift it too.
        fleet: bool,
        reply: oneshot::Sender<Answer>,
    },
    /// Where this host's bans are published (None: no fleet).
    Fleet(Option<FleetTx>),
    /// Other hosts' bans, through this host's never-ban policy into the firewall.
    RemoteBans(Vec<RemoteBan>),
    /// Another host's ban of `net` is gone: lift it if it is the one this host holds.
    RemoteLift {
        net: IpNet,
        origin: String,
    },
    /// A fleet-wide unban from another host.
    FleetUnban(UnbanEntry),
    /// The fleet task (re)connected: send it this host's bans to publish.
    FleetOwn,
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
    queue: Option<Queue>,
    thread: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    published: Published,
}

/// The sending side of the thread's queue, for a part that runs beside the main loop
/// (the pipeline thread). The thread ends once every `Queue` and the `Handle` are gone.
#[derive(Clone)]
pub struct Queue {
    tx: Sender<Msg>,
    /// Verdicts sent and not yet taken by the worker.
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    /// Hands a verdict over without waiting; beyond `QUEUE` waiting verdicts it is
    /// dropped (counted).
    pub fn verdict(&self, verdict: Verdict, container: String, log_ts_ns: i64) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("the firewall queue is full: a verdict was dropped");
        } else if self.send(Msg::Verdict {
            verdict,
            container,
            log_ts_ns,
        }) {
            return;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands a message over; never waits. False when the thread is gone.
    pub fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok()
    }
}

/// The worker's latest summary, published after every batch and timeout so that
/// `status` and `health` read it without waiting for the worker: a firewall call or an
/// fsync of the state file that takes seconds on a busy disk must not stall them.
type Published = Arc<std::sync::Mutex<Summary>>;

impl Handle {
    /// Hands a verdict over without waiting; a full queue drops it (counted).
    pub fn verdict(&self, verdict: Verdict, container: String, log_ts_ns: i64) {
        match &self.queue {
            Some(q) => q.verdict(verdict, container, log_ts_ns),
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A sender for another part; None once the thread is being stopped.
    pub fn queue(&self) -> Option<Queue> {
        self.queue.clone()
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
        s.dropped_verdicts = self.dropped.load(Ordering::Relaxed);
        s
    }

    /// Hands a message over; never waits. False when the thread is gone.
    pub fn send(&self, msg: Msg) -> bool {
        self.queue.as_ref().is_some_and(|q| q.send(msg))
    }

    /// Takes the thread over into a new handle (to stop it elsewhere, say on a blocking
    /// thread); this one is left as a handle of a stopped thread.
    pub fn detach(&mut self) -> Handle {
        Handle {
            queue: self.queue.take(),
            thread: self.thread.take(),
            dropped: self.dropped.clone(),
            published: self.published.clone(),
        }
    }

    /// Stops the thread after it has applied what is queued and written the state file.
    pub fn shutdown(mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the thread. A thread that cannot be started is an error, not a daemon that
/// runs without enforcement.
pub fn spawn(enforcer: Enforcer, events: Bus) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel();
    let dropped = Arc::new(AtomicU64::new(0));
    let queued = Arc::new(AtomicUsize::new(0));
    let mut worker = Worker::new(enforcer, dropped.clone(), events);
    worker.queued = queued.clone();
    let published: Published = Arc::new(std::sync::Mutex::new(worker.current()));
    let p = published.clone();
    let thread = std::thread::Builder::new()
        .name("enforcement".into())
        .spawn(move || worker.run(rx, &p))?;
    Ok(Handle {
        queue: Some(Queue {
            tx,
            queued,
            dropped: dropped.clone(),
        }),
        thread: Some(thread),
        dropped,
        published,
    })
}

struct Worker {
    enforcer: Enforcer,
    summary: Summary,
    samples: VecDeque<f64>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    last_save: Instant,
    last_host_refresh: Instant,
    /// Set while lifting expired bans fails: the next try waits this long, not a loop.
    expire_retry: Option<Instant>,
    events: Bus,
    fleet: Option<FleetTx>,
}

impl Worker {
    fn new(enforcer: Enforcer, dropped: Arc<AtomicU64>, events: Bus) -> Worker {
        let summary = Summary {
            backend: enforcer.backend_name().to_string(),
            ..Summary::default()
        };
        Worker {
            enforcer,
            summary,
            samples: VecDeque::new(),
            dropped,
            queued: Arc::new(AtomicUsize::new(0)),
            last_save: Instant::now(),
            last_host_refresh: Instant::now(),
            expire_retry: None,
            events,
            fleet: None,
        }
    }

    fn run(mut self, rx: Receiver<Msg>, published: &Published) {
        loop {
            match rx.recv_timeout(self.wait(unix_now_ns())) {
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
            if self.expire_retry.is_none_or(|t| Instant::now() >= t) {
                self.expire();
            }
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

    /// How long the thread may sleep at `now_ns` (Unix ns) when no message comes: until
    /// the next ban expires, the state file's next write is due or the host's addresses
    /// are read again, whichever is first.
    fn wait(&self, now_ns: i64) -> Duration {
        let mut wait = HOST_ADDRESSES_EVERY.saturating_sub(self.last_host_refresh.elapsed());
        if self.enforcer.dirty() {
            wait = wait.min(SAVE_EVERY.saturating_sub(self.last_save.elapsed()));
        }
        let expiry = match self.expire_retry {
            Some(t) => Some(t.saturating_duration_since(Instant::now())),
            None => self.enforcer.book.next_expiry().map(|t| {
                let ns = t.saturating_mul(1_000_000_000).saturating_sub(now_ns);
                Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
            }),
        };
        expiry.map_or(wait, |e| wait.min(e))
    }

    /// How enforcement is doing now.
    fn current(&self) -> Summary {
        let mut s = self.summary.clone();
        s.active_bans = self.enforcer.book.len();
        s.held_back = self.enforcer.book.held();
        s.dropped_verdicts = self.dropped.load(Ordering::Relaxed);
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

    /// Handles a batch of messages in order. Verdicts between two control messages are
    /// planned together and applied in one firewall call; a verdict for an address the
    /// batch already bans goes into the next round.
    fn handle(&mut self, batch: Vec<Msg>) {
        let mut verdicts: Vec<(Verdict, String, i64)> = Vec::new();
        // Remote bans that arrive together go into one firewall call too (a host that
        // comes back takes thousands at once).
        let mut remote: Vec<RemoteBan> = Vec::new();
        // Likewise lifts (a host deleting thousands of keys); bans and lifts keep their
        // order, as one address may be banned, lifted and banned again in one batch.
        let mut lifts: Vec<(IpNet, String)> = Vec::new();
        for msg in batch {
            match msg {
                Msg::Verdict {
                    verdict,
                    container,
                    log_ts_ns,
                } => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    verdicts.push((verdict, container, log_ts_ns));
                }
                Msg::RemoteBans(mut bans) => {
                    self.verdicts(std::mem::take(&mut verdicts));
                    self.remote_lifts(std::mem::take(&mut lifts));
                    remote.append(&mut bans);
                }
                Msg::RemoteLift { net, origin } => {
                    self.verdicts(std::mem::take(&mut verdicts));
                    if !remote.is_empty() {
                        self.remote_bans(std::mem::take(&mut remote), unix_now());
                    }
                    lifts.push((net, origin));
                }
                other => {
                    self.verdicts(std::mem::take(&mut verdicts));
                    if !remote.is_empty() {
                        self.remote_bans(std::mem::take(&mut remote), unix_now());
                    }
                    self.remote_lifts(std::mem::take(&mut lifts));
                    self.control(other);
                }
            }
        }
        self.verdicts(verdicts);
        if !remote.is_empty() {
            self.remote_bans(remote, unix_now());
        }
        self.remote_lifts(lifts);
    }

    /// Lifts, in one firewall call, the remote bans whose origin ended them; a ban of the
    /// address from another origin (or this host's own) stays.
    fn remote_lifts(&mut self, lifts: Vec<(IpNet, String)>) {
        if lifts.is_empty() {
            return;
        }
        let now = unix_now();
        let ips: Vec<IpAddr> = lifts
            .iter()
            .filter(|(net, origin)| {
                self.enforcer
                    .book
                    .get(net.addr())
                    .is_some_and(|b| b.net() == *net && b.origin() == Some(origin.as_str()))
            })
            .map(|(net, _)| net.addr())
            .collect();
        if ips.is_empty() {
            return;
        }
        match self.enforcer.unban_all(&ips) {
            Ok(gone) => {
                self.firewall_worked();
                tracing::info!(
                    ACTION = "unban",
                    "lifted {} ban(s) their fleet hosts ended",
                    gone.len()
                );
                for b in gone {
                    self.summary.unbans_since_start += 1;
                    let reason = format!(
                        "lifted: fleet host {} ended its ban",
                        b.origin().unwrap_or("?")
                    );
                    self.events.send(Event::Unban {
                        at: now,
                        record: b,
                        reason,
                    });
                }
            }
            Err(e) => self.firewall_failed(format!(
                "could not lift {} ban(s) from the fleet: {e}",
                ips.len()
            )),
        }
    }

    fn verdicts(&mut self, mut todo: Vec<(Verdict, String, i64)>) {
        while !todo.is_empty() {
            let now = unix_now();
            let mut pending = Pending::default();
            let mut round: Vec<(Decision, i64)> = Vec::new();
            let mut later = Vec::new();
            for (verdict, container, log_ts_ns) in todo {
                if pending.holds(verdict.ip) {
                    later.push((verdict, container, log_ts_ns));
                    continue;
                }
                let d = self
                    .enforcer
                    .book
                    .plan_verdict_in(&verdict, &container, now, &mut pending);
                self.refused(&d, &verdict, &container, now);
                round.push((d, log_ts_ns));
            }
            self.apply_round(round, now);
            todo = later;
        }
    }

    /// Says so when a verdict's decision is not a ban.
    fn refused(&mut self, d: &Decision, verdict: &Verdict, container: &str, now: i64) {
        let refusal = |ip: IpAddr, reason: &String| Refusal {
            at: now,
            ip,
            rule: verdict.rule.clone(),
            category: verdict.category.clone(),
            severity: verdict.severity,
            container: container.to_string(),
            reason: reason.clone(),
        };
        match d {
            Decision::Ban { .. } => {}
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

    /// Applies one round's decisions in one firewall call, then says what was banned.
    fn apply_round(&mut self, round: Vec<(Decision, i64)>, now: i64) {
        let only: Vec<Decision> = round.iter().map(|(d, _)| d.clone()).collect();
        let bans = only
            .iter()
            .filter(|d| matches!(d, Decision::Ban { .. }))
            .count();
        match self.enforcer.apply_all(&only, now) {
            Ok(()) if bans == 0 => {}
            Ok(()) => {
                self.firewall_worked();
                let applied_ns = unix_now_ns();
                for (d, log_ts_ns) in round {
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
                        self.log_ban(&record, seconds, Some(ms), extended, true);
                    }
                }
            }
            Err(e) => self.firewall_failed(format!("could not apply {bans} ban(s): {e}")),
        }
    }

    /// A message other than a verdict (`handle` takes those in batches).
    fn control(&mut self, msg: Msg) {
        let now = unix_now();
        match msg {
            Msg::Verdict {
                verdict,
                container,
                log_ts_ns,
            } => self.verdicts(vec![(verdict, container, log_ts_ns)]),
            Msg::Ban {
                ip,
                seconds,
                reason,
                fleet,
                reply,
            } => {
                if fleet && self.fleet.is_none() {
                    let _ = reply.send(Err("the fleet is not enabled on this host (set \"fleet\": {\"enabled\": true, ...} in the config)".into()));
                    return;
                }
                let asked = seconds;
                let d = self.enforcer.book.plan_manual(ip, seconds, &reason, now);
                let answer = match &d {
                    Decision::Ban {
                        record, seconds, ..
                    } => match self.enforcer.apply(&d, now) {
                        Ok(()) => {
                            self.firewall_worked();
                            let text = format!(
                                "banned {} for {} (until {}){}",
                                record.shown(),
                                crate::time::format_duration(*seconds),
                                format_time(record.expires_at),
                                clamp_note(asked, *seconds)
                            );
                            if fleet {
                                match self.publish(record, *seconds, Some((reply, text))) {
                                    None => {}
                                    Some((reply, text)) => {
                                        let _ = reply.send(Ok(format!("{text}; not published to the fleet: it is inside a Docker network")));
                                    }
                                }
                                self.log_ban(record, *seconds, None, false, false);
                                return;
                            }
                            self.log_ban(record, *seconds, None, false, true);
                            Ok(text)
                        }
                        Err(e) => {
                            self.firewall_failed(e.to_string());
                            Err(e.to_string())
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
            Msg::Unban { ip, fleet, reply } => {
                if fleet && self.fleet.is_none() {
                    let _ = reply.send(Err("the fleet is not enabled on this host (set \"fleet\": {\"enabled\": true, ...} in the config)".into()));
                    return;
                }
                let net = self
                    .enforcer
                    .book
                    .get(ip)
                    .map_or_else(|| IpNet::host(ip), BanRecord::net);
                let answer = match self.enforcer.unban(ip) {
                    Ok(Some(b)) => {
                        self.firewall_worked();
                        if !fleet {
                            self.ended(&b);
                        }
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
                        self.firewall_failed(e.to_string());
                        Err(e.to_string())
                    }
                };
                match (fleet, answer, &self.fleet) {
                    (true, Ok(text), Some(tx)) => {
                        if let Err(e) = tx.send(Outgoing::Unban {
                            net,
                            at: now,
                            ack: Some((reply, text)),
                        }) {
                            if let Outgoing::Unban {
                                ack: Some((reply, text)),
                                ..
                            } = e.0
                            {
                                let _ = reply
                                    .send(Err(format!("{text}; but the fleet task has stopped")));
                            }
                        }
                    }
                    (_, answer, _) => {
                        let _ = reply.send(answer);
                    }
                }
            }
            Msg::Fleet(tx) => self.fleet = tx,
            Msg::RemoteBans(bans) => self.remote_bans(bans, now),
            Msg::RemoteLift { net, origin } => self.remote_lifts(vec![(net, origin)]),

            Msg::FleetUnban(u) => {
                let found = self.enforcer.book.get(u.ip).cloned();
                // A ban given after the unban request is a new one and stays.
                if let Some(b) = found.filter(|b| b.is_remote() || b.banned_at <= u.at) {
                    let reason = format!("unbanned fleet-wide by {}", u.origin);
                    if self.lift(u.ip, &reason, now) && !b.is_remote() {
                        self.ended(&b);
                    }
                }
            }
            Msg::FleetOwn => {
                if let Some(tx) = &self.fleet {
                    let own: Vec<(BanRecord, u64)> = self
                        .enforcer
                        .book
                        .active()
                        .into_iter()
                        .filter(|b| self.publishable(b))
                        .map(|b| {
                            (
                                b.clone(),
                                b.expires_at.saturating_sub(b.banned_at).max(1) as u64,
                            )
                        })
                        .collect();
                    let _ = tx.send(Outgoing::Own(own));
                }
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

    /// Whether this host publishes its ban `b` to the fleet: its own (detector or
    /// manual, never one it received or only found in the kernel), and never an address
    /// inside a Docker network (meaningless on any other host).
    fn publishable(&self, b: &BanRecord) -> bool {
        (b.source == "detector" || b.source == "manual")
            && !self
                .enforcer
                .book
                .never()
                .docker_networks
                .iter()
                .any(|n| n.subnet.contains(b.ip))
    }

    /// Hands this host's ban to the fleet task, if there is one and the ban is to be
    /// published; gives the operator's reply back when it is not handed over.
    fn publish(
        &mut self,
        b: &BanRecord,
        seconds: u64,
        ack: Option<(oneshot::Sender<Answer>, String)>,
    ) -> Option<(oneshot::Sender<Answer>, String)> {
        if self.fleet.is_none() || !self.publishable(b) {
            return ack;
        }
        let msg = Outgoing::Ban {
            record: b.clone(),
            seconds,
            applied_ns: unix_now_ns(),
            ack,
        };
        let tx = self.fleet.as_ref()?;
        if let Err(e) = tx.send(msg) {
            // The fleet task is gone: the operator's answer is given here.
            if let Outgoing::Ban { ack, .. } = e.0 {
                return ack;
            }
        }
        None
    }

    /// This host's ban `b` ended here: its key goes from the bucket.
    fn ended(&mut self, b: &BanRecord) {
        if self.fleet.is_some() && self.publishable(b) {
            if let Some(tx) = &self.fleet {
                let _ = tx.send(Outgoing::Ended { net: b.net() });
            }
        }
    }

    /// Lifts the ban covering `ip` for the fleet; true when one was lifted.
    fn lift(&mut self, ip: IpAddr, reason: &str, now: i64) -> bool {
        match self.enforcer.unban(ip) {
            Ok(Some(b)) => {
                self.firewall_worked();
                self.summary.unbans_since_start += 1;
                tracing::info!(IP = %ip, RULE = %b.rule, ACTION = "unban", "{ip}: {reason}");
                self.events.send(Event::Unban {
                    at: now,
                    record: b,
                    reason: reason.to_string(),
                });
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.firewall_failed(format!("could not lift {ip}: {e}"));
                false
            }
        }
    }

    /// Other hosts' bans: vetoed by this host's never-ban list (alerted, naming the
    /// origin), the rest applied in one firewall batch; the fleet task is told which.
    fn remote_bans(&mut self, bans: Vec<RemoteBan>, now: i64) {
        let mut settled = Vec::new();
        let mut apply = Vec::new();
        let mut planned = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rb in bans {
            // Two records of one address in a batch: the later wins the firewall call.
            if !seen.insert(rb.entry.net()) {
                let net = rb.entry.net();
                apply.retain(|d: &Decision| !matches!(d, Decision::Ban { record, .. } if record.net() == net));
                let (earlier, rest): (Vec<RemoteBan>, Vec<RemoteBan>) = planned
                    .into_iter()
                    .partition(|p: &RemoteBan| p.entry.net() == net);
                planned = rest;
                settled.extend(earlier.into_iter().map(|p| Settled {
                    key: p.key,
                    entry: p.entry,
                    outcome: Ok(()),
                    latency_ms: None,
                }));
            }
            match self.enforcer.book.plan_remote(&rb.entry, rb.seconds, now) {
                d @ Decision::Ban { .. } => {
                    apply.push(d);
                    planned.push(rb);
                }
                Decision::NeverBan { ip, reason } => {
                    self.summary.never_banned += 1;
                    tracing::warn!(IP = %ip, RULE = %rb.entry.rule, ACTION = "never-ban", "not banning {ip} ({} from fleet host {}): it is {reason}", rb.entry.rule, rb.entry.origin);
                    self.events.send(Event::NeverBan(Refusal {
                        at: now,
                        ip,
                        rule: rb.entry.rule.clone(),
                        category: rb.entry.category.clone(),
                        severity: rb.entry.severity,
                        container: format!("fleet:{}", rb.entry.origin),
                        reason: reason.clone(),
                    }));
                    settled.push(Settled {
                        key: rb.key,
                        entry: rb.entry,
                        outcome: Err(reason),
                        latency_ms: None,
                    });
                }
                _ => settled.push(Settled {
                    key: rb.key,
                    entry: rb.entry,
                    outcome: Ok(()),
                    latency_ms: None,
                }),
            }
        }
        if !apply.is_empty() {
            let result = self.enforcer.apply_all(&apply, now);
            let applied_ns = unix_now_ns();
            match &result {
                Ok(()) => {
                    self.firewall_worked();
                    tracing::info!(
                        ACTION = "fleet-ban",
                        "applied {} ban(s) from the fleet",
                        apply.len()
                    );
                }
                Err(e) => self.firewall_failed(format!(
                    "could not apply {} ban(s) from the fleet: {e}",
                    apply.len()
                )),
            }
            for rb in planned {
                let latency_ms = (rb.live && rb.entry.applied_at_ns > 0 && result.is_ok())
                    .then(|| (applied_ns - rb.entry.applied_at_ns) as f64 / 1e6);
                settled.push(Settled {
                    outcome: result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| format!("the firewall failed: {e}")),
                    key: rb.key,
                    entry: rb.entry,
                    latency_ms,
                });
            }
        }
        if let Some(tx) = &self.fleet {
            let _ = tx.send(Outgoing::Settled(settled));
        }
    }

    fn log_ban(
        &mut self,
        b: &BanRecord,
        seconds: u64,
        time_to_ban_ms: Option<f64>,
        extended: bool,
        publish: bool,
    ) {
        if publish {
            self.publish(b, seconds, None);
        }
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
            crate::time::format_duration(seconds),
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
                    self.ended(&b);
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
            if a > crate::time::MAX_DURATION_SECS {
                format!("{a}s")
            } else {
                crate::time::format_duration(a)
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
    use std::sync::atomic::AtomicU8;

    /// What the fake firewall does with the next change.
    const WORKS: u8 = 0;
    const REFUSES: u8 = 1;
    const PANICS: u8 = 2;
    /// The change hangs until the mode is set to something else (a stuck `nft`).
    const HANGS: u8 = 3;

    /// A firewall whose changes work, are refused or panic (as a bug in a backend would),
    /// as `mode` says; it remembers what it holds.
    struct Fake {
        mode: Arc<AtomicU8>,
        held: Arc<std::sync::Mutex<Vec<IpNet>>>,
    }

    impl Fake {
        fn change(&self) -> crate::firewall::Result<()> {
            match self.mode.load(Ordering::SeqCst) {
                REFUSES => Err(FirewallError {
                    action: "adding bans".into(),
                    detail: "no buffer space available".into(),
                }),
                PANICS => panic!("a bug in the firewall backend"),
                HANGS => {
                    while self.mode.load(Ordering::SeqCst) == HANGS {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            "none"
        }
        fn setup(&mut self) -> crate::firewall::Result<()> {
            Ok(())
        }
        fn ban(&mut self, bans: &[(IpNet, u64)]) -> crate::firewall::Result<()> {
            self.change()?;
            let mut held = self.held.lock().unwrap();
            for (n, _) in bans {
                if !held.contains(n) {
                    held.push(*n);
                }
            }
            Ok(())
        }
        fn unban(&mut self, nets: &[IpNet]) -> crate::firewall::Result<()> {
            self.change()?;
            self.held.lock().unwrap().retain(|n| !nets.contains(n));
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

    fn fake() -> (Box<Fake>, Arc<AtomicU8>) {
        let mode = Arc::new(AtomicU8::new(WORKS));
        let f = Box::new(Fake {
            mode: mode.clone(),
            held: Arc::default(),
        });
        (f, mode)
    }

    fn enforcer(dir: &std::path::Path, backend: Box<dyn Backend>) -> Enforcer {
        let mut cfg = Config::default();
        cfg.state.dir = dir.to_path_buf();
        let (enforcer, _) =
            Enforcer::start_with(&cfg, backend, "test".into(), unix_now()).expect("start");
        enforcer
    }

    fn worker(dir: &std::path::Path) -> (Worker, Arc<AtomicU8>) {
        let (backend, mode) = fake();
        let dropped = Arc::new(AtomicU64::new(0));
        let w = Worker::new(enforcer(dir, backend), dropped, Bus::new());
        (w, mode)
    }

    fn ban(w: &mut Worker, ip: &str) -> Answer {
        let (tx, mut rx) = oneshot::channel();
        w.handle(vec![Msg::Ban {
            ip: ip.parse().expect("test address"),
            seconds: Some(60),
            reason: "test".into(),
            fleet: false,
            reply: tx,
        }]);
        rx.try_recv().expect("the worker answers at once")
    }

    fn remote(ip: &str, origin: &str, secs: u64) -> RemoteBan {
        let now = unix_now();
        let entry = crate::fleet::record::BanEntry {
            ip: ip.parse().expect("test address"),
            prefix: None,
            rule: "sqli".into(),
            category: "injection".into(),
            severity: crate::detect::Severity::High,
            evidence: vec![],
            banned_at: now,
            expires_at: now + secs as i64,
            duration: secs,
            times_banned: 1,
            origin: origin.into(),
            applied_at_ns: unix_now_ns(),
            written_at: 0,
        };
        RemoteBan {
            key: crate::fleet::record::key(origin, entry.net()),
            entry,
            seconds: secs,
            live: true,
        }
    }

    #[test]
    fn fleet_bans_go_through_this_hosts_policy_and_own_bans_are_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _mode) = worker(dir.path());
        let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
        w.handle(vec![Msg::Fleet(Some(tx))]);
        // Two remote bans in one batch: loopback is refused, naming the origin.
        w.handle(vec![Msg::RemoteBans(vec![
            remote("127.0.0.1", "web-2", 600),
            remote("203.0.113.80", "web-2", 600),
        ])]);
        let Ok(Outgoing::Settled(s)) = out.try_recv() else {
            panic!("no settlement")
        };
        assert_eq!(s.len(), 2);
        let refused = s
            .iter()
            .find(|x| x.entry.ip.is_loopback())
            .expect("loopback");
        assert!(
            matches!(&refused.outcome, Err(r) if r.contains("loopback") && r.contains("fleet host web-2")),
            "{:?}",
            refused.outcome
        );
        let applied = s
            .iter()
            .find(|x| !x.entry.ip.is_loopback())
            .expect("applied");
        assert_eq!(applied.outcome, Ok(()));
        assert!(applied.latency_ms.is_some_and(|ms| ms >= 0.0));
        let b = w
            .enforcer
            .book
            .get("203.0.113.80".parse().unwrap())
            .expect("banned");
        assert_eq!(b.origin(), Some("web-2"));
        // A received ban is never published again.
        assert!(out.try_recv().is_err());
        // Its origin's deletion lifts it; another origin's does not.
        let net = IpNet::host("203.0.113.80".parse().unwrap());
        w.handle(vec![Msg::RemoteLift {
            net,
            origin: "web-3".into(),
        }]);
        assert!(w.enforcer.book.get(net.addr()).is_some());
        w.handle(vec![Msg::RemoteLift {
            net,
            origin: "web-2".into(),
        }]);
        assert!(w.enforcer.book.get(net.addr()).is_none());
        // This host's own ban is published, and its unban deletes the key.
        assert!(ban(&mut w, "203.0.113.81").is_ok());
        assert!(
            matches!(out.try_recv(), Ok(Outgoing::Ban { record, .. }) if record.ip.to_string() == "203.0.113.81")
        );
        let (tx, _rx) = oneshot::channel();
        w.handle(vec![Msg::Unban {
            ip: "203.0.113.81".parse().unwrap(),
            fleet: false,
            reply: tx,
        }]);
        assert!(
            matches!(out.try_recv(), Ok(Outgoing::Ended { net }) if net.addr().to_string() == "203.0.113.81")
        );
        // A fleet-wide unban from another host lifts this host's own ban given before it.
        assert!(ban(&mut w, "203.0.113.82").is_ok());
        let _ = out.try_recv();
        w.handle(vec![Msg::FleetUnban(crate::fleet::record::UnbanEntry {
            ip: "203.0.113.82".parse().unwrap(),
            prefix: None,
            at: unix_now() + 1,
            origin: "web-2".into(),
        })]);
        assert!(w
            .enforcer
            .book
            .get("203.0.113.82".parse().unwrap())
            .is_none());
        assert!(matches!(out.try_recv(), Ok(Outgoing::Ended { .. })));
    }

    #[test]
    fn without_a_fleet_the_fleet_options_say_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _mode) = worker(dir.path());
        let (tx, mut rx) = oneshot::channel();
        w.handle(vec![Msg::Unban {
            ip: "203.0.113.90".parse().unwrap(),
            fleet: true,
            reply: tx,
        }]);
        let answer = rx.try_recv().expect("answered");
        assert!(matches!(answer, Err(e) if e.contains("fleet is not enabled")));
    }

    #[test]
    fn a_firewall_error_clears_with_the_next_change_that_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, mode) = worker(dir.path());
        mode.store(REFUSES, Ordering::SeqCst);
        assert!(ban(&mut w, "203.0.113.7").is_err());
        let e = w
            .summary
            .firewall_error
            .clone()
            .expect("the failure is current");
        assert!(e.contains("no buffer space"), "{e}");
        mode.store(WORKS, Ordering::SeqCst);
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
        let (backend, mode) = fake();
        mode.store(PANICS, Ordering::SeqCst);
        let h = spawn(enforcer(dir.path(), backend), Bus::new()).expect("thread");
        assert!(h.alive());
        let (tx, rx) = oneshot::channel();
        assert!(h.send(Msg::Ban {
            ip: "203.0.113.10".parse().expect("test address"),
            seconds: Some(60),
            reason: "test".into(),
            fleet: false,
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

    fn verdict(addr: &str, at: i64) -> Msg {
        Msg::Verdict {
            verdict: Verdict {
                ip: addr.parse().expect("test address"),
                rule: "sqli-union-select".into(),
                category: "sqli".into(),
                severity: crate::detect::Severity::Critical,
                hits: 1,
                first_seen: at,
                last_seen: at,
                evidence: vec!["GET /?id=1 union select".into()],
                allowlisted: None,
                via: None,
            },
            container: "web".into(),
            log_ts_ns: at * 1_000_000_000,
        }
    }

    #[test]
    fn a_refused_extension_leaves_the_ban_as_the_kernel_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, mode) = worker(dir.path());
        let now = unix_now();
        w.handle(vec![verdict("203.0.113.30", now - 10)]);
        let ip = "203.0.113.30".parse().expect("test address");
        let before = w.enforcer.book.get(ip).cloned().expect("banned");
        assert_eq!(before.times_banned, 1);
        // A newer offence asks for an extension; the firewall refuses it.
        mode.store(REFUSES, Ordering::SeqCst);
        w.handle(vec![verdict("203.0.113.30", now - 5)]);
        assert!(w.summary.firewall_error.is_some());
        assert_eq!(
            w.enforcer.book.get(ip),
            Some(&before),
            "the ban the kernel still holds is kept as it was, its count too"
        );
        // A refused manual extension neither.
        assert!(ban(&mut w, "203.0.113.30").is_err());
        assert_eq!(w.enforcer.book.get(ip), Some(&before));
        w.save();
        let text = std::fs::read_to_string(dir.path().join("blocked_ips.json")).expect("state");
        assert!(text.contains("203.0.113.30"), "{text}");
        // Once the firewall works again the extension goes through, counted once.
        mode.store(WORKS, Ordering::SeqCst);
        w.handle(vec![verdict("203.0.113.30", now - 1)]);
        assert_eq!(w.enforcer.book.get(ip).map(|b| b.times_banned), Some(2));
    }

    #[test]
    fn a_batch_with_two_verdicts_for_one_address_applies_both_in_turn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = worker(dir.path());
        let now = unix_now();
        w.handle(vec![
            verdict("203.0.113.40", now - 10),
            verdict("203.0.113.41", now - 10),
            verdict("203.0.113.40", now - 5),
        ]);
        let ip = "203.0.113.40".parse().expect("test address");
        // The second verdict is a newer offence: an extension after the first ban.
        assert_eq!(w.enforcer.book.get(ip).map(|b| b.times_banned), Some(2));
        assert_eq!(w.enforcer.book.len(), 2);
        assert_eq!(w.summary.bans_since_start, 3);
    }

    #[test]
    fn the_thread_sleeps_until_the_next_expiry_not_a_fixed_tick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = worker(dir.path());
        w.save();
        w.last_host_refresh = Instant::now();
        let now_ns = unix_now_ns();
        // Nothing banned, nothing to write: it sleeps until the host addresses are due.
        let idle = w.wait(now_ns);
        assert!(idle > Duration::from_secs(4), "{idle:?}");
        let (tx, _rx) = oneshot::channel();
        w.handle(vec![Msg::Ban {
            ip: "203.0.113.50".parse().expect("test address"),
            seconds: Some(2),
            reason: String::new(),
            fleet: false,
            reply: tx,
        }]);
        w.save();
        let expiry = w.enforcer.book.next_expiry().expect("a ban");
        let wait = w.wait(now_ns);
        let until = Duration::from_nanos((expiry * 1_000_000_000 - now_ns) as u64);
        assert_eq!(wait, until, "wakes when the ban ends");
        // A ban already due: at once.
        assert_eq!(w.wait(expiry * 1_000_000_000 + 1), Duration::ZERO);
    }

    #[test]
    fn handing_over_never_waits_on_a_stuck_firewall() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (backend, mode) = fake();
        let h = spawn(enforcer(dir.path(), backend), Bus::new()).expect("thread");
        mode.store(HANGS, Ordering::SeqCst);
        let (tx, _rx) = oneshot::channel();
        assert!(h.send(Msg::Ban {
            ip: "203.0.113.60".parse().expect("test address"),
            seconds: Some(60),
            reason: String::new(),
            fleet: false,
            reply: tx,
        }));
        // The worker is stuck in the firewall. The async main loop hands over more than
        // a bounded queue would hold; with a blocking send this never returned.
        let sender = std::thread::spawn(move || {
            for _ in 0..QUEUE + 1000 {
                h.send(Msg::DockerNetworks(Vec::new()));
            }
            for i in 0..1000u32 {
                let ip = std::net::IpAddr::from([198, 51, (i / 250) as u8, (i % 250) as u8]);
                let Msg::Verdict {
                    verdict, container, ..
                } = verdict(&ip.to_string(), unix_now())
                else {
                    unreachable!()
                };
                h.verdict(verdict, container, 0);
            }
            h
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sender.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let finished = sender.is_finished();
        mode.store(WORKS, Ordering::SeqCst);
        assert!(finished, "a send waited for the stuck firewall");
        let h = sender.join().expect("sender");
        h.shutdown();
    }
}
