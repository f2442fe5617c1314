//! The fleet's I/O edge: one task that keeps a NATS connection, the shared KV bucket and a
//! watch on it; publishes this host's bans and hands other hosts' bans to the enforcement
//! thread.
//!
//! Nothing here is on a ban's path: the enforcement thread hands records over on an
//! unbounded channel and goes on. While the server is unreachable nothing is published
//! (detection, bans and expiry go on locally); when it is back the task reads the bucket
//! again from the start (`watch_with_history`: the latest value of every key, deletes
//! included), then rewrites this host's active bans and deletes its own stale keys.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::record::{key, BanEntry, Record, UnbanEntry};
use super::remote::{Action, RemoteBan, RemoteBook, Row};
use super::settings::Settings;
use crate::ban::state_file::BanRecord;
use crate::ban::worker::{Msg, Queue};
use crate::clock::{unix_now, unix_now_ns};
use crate::events::{Bus, Event, Refusal};
use crate::netaddr::IpNet;

/// The text of an operator's answer (`ban`/`unban --fleet`), as the worker's.
pub type Answer = Result<String, String>;

/// The sending side of the fleet task's inbox.
pub type FleetTx = mpsc::UnboundedSender<Outgoing>;

/// Latency samples kept for the percentiles.
const SAMPLES: usize = 4096;
/// Bucket values are small records; a larger one is refused by the server.
const MAX_VALUE: i32 = 16 * 1024;
/// Upper bounds (ms) of the propagation latency histogram.
pub const LATENCY_BUCKETS_MS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];
/// Clock skew beyond this degrades `health`.
pub const MAX_SKEW_S: f64 = 5.0;

/// What the fleet task is asked to do.
pub enum Outgoing {
    /// This host banned (detector or manual): publish it. `ack`: an operator waits for
    /// the answer (`ban --fleet`), with the text said so far.
    Ban {
        record: BanRecord,
        seconds: u64,
        applied_ns: i64,
        ack: Option<(oneshot::Sender<Answer>, String)>,
    },
    /// This host's ban of `net` ended (unbanned here or expired): delete its key.
    Ended { net: IpNet },
    /// `unban IP --fleet`: ask every host to lift its bans of `net`.
    Unban {
        net: IpNet,
        at: i64,
        ack: Option<(oneshot::Sender<Answer>, String)>,
    },
    /// What the enforcement thread made of remote bans.
    Settled(Vec<Settled>),
    /// The records known, for `list --fleet`.
    List(oneshot::Sender<Vec<Row>>),
    /// This host's bans to publish when (re)connected, sent back by the enforcement
    /// thread on the task's asking.
    Own(Vec<(BanRecord, u64)>),
}

/// One remote ban the enforcement thread applied (Ok) or refused (Err, the reason).
pub struct Settled {
    pub key: String,
    pub entry: BanEntry,
    pub outcome: Result<(), String>,
    /// Origin's firewall to this host's firewall, in ms, when applied.
    pub latency_ms: Option<f64>,
}

/// How the fleet is doing, for `status`, `health` and the metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetStatus {
    pub host_id: String,
    pub bucket: String,
    pub servers: Vec<String>,
    pub connected: bool,
    /// The last connection or publish error, while it lasts.
    pub error: Option<String>,
    /// Whether the bucket's history has been read since the last (re)connect.
    pub caught_up: bool,
    pub connects: u64,
    pub published: u64,
    pub publish_failures: u64,
    pub remote_applied: u64,
    pub remote_refused: u64,
    pub remote_held: u64,
    /// Remote bans in force here now.
    pub remote_in_force: usize,
    /// Records in the bucket that are not ours to read (bad JSON, foreign keys).
    pub unreadable: u64,
    /// Origin's firewall to this host's firewall, over the last remote bans.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_samples: usize,
    /// Counts per `LATENCY_BUCKETS_MS` bound (not cumulative), then the sum, in ms.
    pub latency_histogram: Vec<u64>,
    pub latency_sum_ms: f64,
    pub latency_count: u64,
    /// From (re)connect to every remote ban of the bucket applied here, the last time.
    pub last_converge_ms: Option<f64>,
    /// This host's clock minus the server's (from fresh records), in seconds.
    pub clock_skew_s: Option<f64>,
}

/// The running fleet task.
pub struct Fleet {
    pub tx: FleetTx,
    status: Arc<Mutex<FleetStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fleet {
    pub fn status(&self) -> FleetStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Why the bucket cannot be used; said in `status` and the log, then retried.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("bad server address {url}: {error}")]
    Address { url: String, error: String },
    #[error("cannot read the credentials file {path}: {error}")]
    Creds { path: String, error: std::io::Error },
    #[error("cannot connect to {servers}: {error}")]
    Connect { servers: String, error: String },
    #[error("cannot open the KV bucket {bucket}: {error}")]
    Bucket { bucket: String, error: String },
    #[error("cannot watch the KV bucket {bucket}: {error}")]
    Watch { bucket: String, error: String },
}

/// Starts the task. `max_age`: how long a record stays in the bucket at most (at least
/// `ban.max_duration`: 2.9 servers have no per-key TTL, each record carries its expiry).
pub fn spawn(
    settings: Settings,
    host_id: String,
    max_age: Duration,
    queue: Queue,
    events: Bus,
) -> Fleet {
    let (tx, rx) = mpsc::unbounded_channel();
    let status = Arc::new(Mutex::new(FleetStatus {
        host_id: host_id.clone(),
        bucket: settings.bucket.clone(),
        servers: settings.urls.clone(),
        latency_histogram: vec![0; LATENCY_BUCKETS_MS.len() + 1],
        ..FleetStatus::default()
    }));
    let node = Node {
        remote: RemoteBook::new(&host_id, &settings),
        settings,
        me: host_id,
        max_age,
        queue,
        events,
        status: status.clone(),
        samples: VecDeque::new(),
        dirty: true,
        offline_unbans: Vec::new(),
        converging: None,
        held_said: None,
    };
    let task = tokio::spawn(node.run(rx));
    Fleet { tx, status, task }
}

struct Node {
    settings: Settings,
    me: String,
    max_age: Duration,
    queue: Queue,
    events: Bus,
    status: Arc<Mutex<FleetStatus>>,
    remote: RemoteBook,
    samples: VecDeque<f64>,
    /// Own bans changed while offline: rewrite them all at the next connect.
    dirty: bool,
    /// Fleet-wide unbans asked for while offline: published at the next connect.
    offline_unbans: Vec<UnbanEntry>,
    /// Since when remote bans are being applied after a (re)connect, until every one
    /// has settled.
    converging: Option<Instant>,
    /// When a held ban was last said in the log, to say a flood once, not per ban.
    held_said: Option<Instant>,
}

/// How a connected session ended.
enum End {
    Stop,
    Reconnect(String),
}

impl Node {
    fn with_status(&self, f: impl FnOnce(&mut FleetStatus)) {
        match self.status.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let (events_tx, mut conn_events) = mpsc::unbounded_channel();
            let (settings, me) = (self.settings.clone(), self.me.clone());
            let connecting = open(&settings, &me, self.max_age, events_tx);
            tokio::pin!(connecting);
            let opened = loop {
                tokio::select! {
                    r = &mut connecting => break r,
                    m = rx.recv() => match m {
                        Some(m) => self.offline(m),
                        None => return,
                    },
                }
            };
            let (client, store) = match opened {
                Ok(x) => x,
                Err(e) => {
                    self.failed(e.to_string());
                    let until = tokio::time::sleep(backoff);
                    tokio::pin!(until);
                    loop {
                        tokio::select! {
                            _ = &mut until => break,
                            m = rx.recv() => match m {
                                Some(m) => self.offline(m),
                                None => return,
                            },
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(250);
            tracing::info!(
                ACTION = "fleet",
                "fleet: connected to {} as {}, bucket {}",
                self.settings.urls.join(", "),
                self.me,
                self.settings.bucket
            );
            self.with_status(|s| {
                s.connected = true;
                s.error = None;
                s.connects += 1;
                s.caught_up = false;
            });
            match self
                .online(&client, &store, &mut rx, &mut conn_events)
                .await
            {
                End::Stop => return,
                End::Reconnect(why) => {
                    self.failed(why);
                    self.dirty = true;
                }
            }
        }
    }

    fn failed(&self, e: String) {
        tracing::warn!(
            ACTION = "fleet-error",
            "fleet: {e}; bans go on locally and are published when the server is back"
        );
        self.with_status(|s| {
            s.connected = false;
            s.caught_up = false;
            s.error = Some(e);
        });
    }

    /// A message while no server is reachable: nothing is published, nothing waits.
    fn offline(&mut self, m: Outgoing) {
        match m {
            Outgoing::Ban { ack, .. } => {
                self.dirty = true;
                if let Some((reply, text)) = ack {
                    let _ = reply.send(Ok(format!(
                        "{text}; the fleet server is unreachable: published when it is back"
                    )));
                }
            }
            Outgoing::Ended { .. } | Outgoing::Own(_) => self.dirty = true,
            Outgoing::Unban { net, at, ack } => {
                self.offline_unbans.push(UnbanEntry {
                    ip: net.addr(),
                    prefix: (!net.is_host()).then(|| net.prefix()),
                    at,
                    origin: self.me.clone(),
                });
                if let Some((reply, text)) = ack {
                    let _ = reply.send(Ok(format!("{text}; the fleet server is unreachable: the fleet-wide unban is sent when it is back")));
                }
            }
            Outgoing::Settled(s) => self.settled(s),
            Outgoing::List(reply) => {
                let _ = reply.send(self.remote.rows());
            }
        }
    }

    /// Connected: reads the bucket from the start, then follows it and publishes.
    async fn online(
        &mut self,
        client: &async_nats::Client,
        store: &kv::Store,
        rx: &mut mpsc::UnboundedReceiver<Outgoing>,
        conn_events: &mut mpsc::UnboundedReceiver<async_nats::Event>,
    ) -> End {
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                return End::Reconnect(
                    FleetError::Watch {
                        bucket: self.settings.bucket.clone(),
                        error: e.to_string(),
                    }
                    .to_string(),
                )
            }
        };
        self.converging = Some(Instant::now());
        // An empty bucket sends nothing to say it is caught up.
        let empty = match store.status().await {
            Ok(s) => s.values() == 0,
            Err(_) => false,
        };
        let mut caught_up = false;
        if empty {
            caught_up = true;
            self.caught_up(store).await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // The first `Connected` is this connection's own; one after a `Disconnected` is a
        // reconnect.
        let mut lost = false;
        let mut last_rewrite = Instant::now();
        loop {
            tokio::select! {
                e = watch.next() => {
                    let Some(first) = e else {
                        return End::Reconnect("the bucket's watch ended".into());
                    };
                    let mut batch = vec![first];
                    while batch.len() < 4096 {
                        match watch.next().now_or_never() {
                            Some(Some(e)) => batch.push(e),
                            _ => break,
                        }
                    }
                    let mut now_current = false;
                    let mut apply = Vec::new();
                    for e in batch {
                        match e {
                            Ok(entry) => {
                                if entry.delta == 0 || entry.seen_current {
                                    now_current = true;
                                }
                                if let Some(a) = self.entry(entry, caught_up) {
                                    apply.push(a);
                                }
                            }
                            Err(e) => return End::Reconnect(format!("the bucket's watch failed: {e}")),
                        }
                    }
                    if !apply.is_empty() {
                        self.queue.send(Msg::RemoteBans(apply));
                    }
                    if now_current && !caught_up {
                        caught_up = true;
                        self.caught_up(store).await;
                    }
                    self.publish_status();
                }
                m = rx.recv() => {
                    let Some(m) = m else { return End::Stop };
                    if client.connection_state() != async_nats::connection::State::Connected {
                        self.offline(m);
                        continue;
                    }
                    self.message(store, m).await;
                    // What else is waiting goes out now, before the watch is read again.
                    while let Ok(m) = rx.try_recv() {
                        self.message(store, m).await;
                    }
                    self.publish_status();
                }
                ev = conn_events.recv() => match ev {
                    Some(async_nats::Event::Disconnected) => {
                        self.with_status(|s| { s.connected = false; s.error = Some("disconnected; reconnecting".into()); });
                        self.dirty = true;
                        lost = true;
                    }
                    // Back: the bucket is read again from the start, and this host's bans
                    // are rewritten, whatever was missed meanwhile.
                    Some(async_nats::Event::Connected) if lost => return End::Reconnect("reconnected: reading the bucket again".into()),
                    Some(other) => tracing::debug!("fleet: {other}"),
                    None => return End::Reconnect("the connection closed".into()),
                },
                _ = tick.tick() => {
                    self.remote.expire(unix_now());
                    // A write or delete that failed while connected: this host's keys are
                    // rewritten (and stale ones deleted) again, every 5 s at most.
                    if self.dirty && caught_up && last_rewrite.elapsed() >= Duration::from_secs(5) {
                        self.queue.send(Msg::FleetOwn);
                        last_rewrite = Instant::now();
                    }
                    self.publish_status();
                }
            }
        }
    }

    /// The bucket's history is read: rewrite this host's bans (asked of the enforcement
    /// thread, which answers with `Outgoing::Own`) and publish the unbans asked offline.
    async fn caught_up(&mut self, store: &kv::Store) {
        self.with_status(|s| s.caught_up = true);
        self.queue.send(Msg::FleetOwn);
        for u in std::mem::take(&mut self.offline_unbans) {
            let k = key(&self.me, u.net());
            // A failure is said by `put`; the request is lost only with the bucket.
            let _ = self.put(store, &k, &Record::Unban(u)).await;
        }
        self.converged();
    }

    /// Every remote ban planned since the (re)connect has settled: convergence time.
    fn converged(&mut self) {
        let pending = self.remote.any_pending();
        let caught = self.status.lock().map(|s| s.caught_up).unwrap_or(false);
        if caught && !pending {
            if let Some(t) = self.converging.take() {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                tracing::info!(
                    ACTION = "fleet",
                    "fleet: caught up with the bucket in {ms:.0} ms ({} remote ban(s) in force)",
                    self.remote.remote_in_force()
                );
                self.with_status(|s| s.last_converge_ms = Some(ms));
            }
        }
    }

    /// One change in the bucket; a ban to apply is returned for the batch.
    fn entry(&mut self, e: kv::Entry, live: bool) -> Option<RemoteBan> {
        let now = unix_now();
        let action = match e.operation {
            kv::Operation::Put => match Record::from_json(&e.value) {
                Ok(r) => {
                    let server_ns = e.created.unix_timestamp_nanos();
                    if live && r.origin() != self.me {
                        let skew = (unix_now_ns() as i128 - server_ns) as f64 / 1e9;
                        self.with_status(|s| s.clock_skew_s = Some(skew));
                    }
                    let r = match r {
                        Record::Ban(b) => {
                            Record::Ban(b.on_server_clock((server_ns / 1_000_000_000) as i64))
                        }
                        other => other,
                    };
                    self.remote.put(&e.key, r, now)
                }
                Err(_) => {
                    self.with_status(|s| s.unreadable += 1);
                    Action::Nothing
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                if e.key.starts_with(&format!("{}.", self.me)) {
                    self.remote.forget(&e.key);
                    Action::Nothing
                } else {
                    self.remote.delete(&e.key, now)
                }
            }
        };
        match action {
            Action::Nothing => None,
            Action::Apply(mut a) => {
                a.live = live;
                Some(a)
            }
            Action::Hold { ip, origin, reason } => {
                self.held(ip, &origin, reason);
                None
            }
            Action::Lift { net, origin } => {
                self.queue.send(Msg::RemoteLift { net, origin });
                None
            }
            Action::Unban(u) => {
                self.queue.send(Msg::FleetUnban(u));
                None
            }
        }
    }

    /// A remote ban held by the valve or the cap: logged and alerted once a minute at
    /// most (a flood of 10,000 is one alert, not 10,000 that push every other alert out
    /// of the ring); every one is counted in `status`.
    fn held(&mut self, ip: std::net::IpAddr, origin: &str, reason: String) {
        if self
            .held_said
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        tracing::error!(IP = %ip, ACTION = "held", "fleet: held back the ban of {ip} from {origin}: {reason} (further held bans are counted in status, not logged or alerted, for a minute)");
        self.held_said = Some(Instant::now());
        self.events.send(Event::Held(Refusal {
            at: unix_now(),
            ip,
            rule: "fleet".into(),
            category: "fleet".into(),
            severity: crate::detect::Severity::High,
            container: format!("fleet:{origin}"),
            reason,
        }));
    }

    async fn message(&mut self, store: &kv::Store, m: Outgoing) {
        match m {
            Outgoing::Ban {
                record,
                seconds,
                applied_ns,
                ack,
            } => {
                let e = BanEntry::of(&record, seconds, &self.me, applied_ns);
                let k = key(&self.me, e.net());
                let r = self.put(store, &k, &Record::Ban(e)).await;
                if let Some((reply, text)) = ack {
                    let _ = reply.send(match r {
                        Ok(()) => Ok(format!("{text}; published to the fleet as {k}")),
                        Err(e) => Ok(format!("{text}; not yet published to the fleet ({e}): it will be when the server takes it")),
                    });
                }
            }
            Outgoing::Ended { net } => {
                let k = key(&self.me, net);
                match store.delete(&k).await {
                    Ok(()) => self.remote.forget(&k),
                    Err(e) => {
                        self.publish_failed(format!("cannot delete {k}: {e}"));
                        self.dirty = true;
                    }
                }
            }
            Outgoing::Unban { net, at, ack } => {
                let u = UnbanEntry {
                    ip: net.addr(),
                    prefix: (!net.is_host()).then(|| net.prefix()),
                    at,
                    origin: self.me.clone(),
                };
                let k = key(&self.me, net);
                let r = self.put(store, &k, &Record::Unban(u)).await;
                if let Some((reply, text)) = ack {
                    let _ = reply.send(match r {
                        Ok(()) => Ok(format!(
                            "{text}; every host of the fleet is asked to lift it ({k})"
                        )),
                        Err(e) => Err(format!(
                            "{text}; but the fleet-wide unban could not be sent: {e}"
                        )),
                    });
                }
            }
            Outgoing::Own(bans) => {
                let failures = self.failures();
                let mut keep = HashSet::new();
                for (b, seconds) in bans {
                    let e = BanEntry::of(&b, seconds, &self.me, 0);
                    let k = key(&self.me, e.net());
                    keep.insert(k.clone());
                    let _ = self.put(store, &k, &Record::Ban(e)).await;
                }
                let own = self.remote.own_keys();
                let stale: Vec<String> = own.into_iter().filter(|k| !keep.contains(k)).collect();
                for k in &stale {
                    if let Err(e) = store.delete(k).await {
                        self.publish_failed(format!("cannot delete {k}: {e}"));
                    }
                }
                let failed = self.failures().saturating_sub(failures);
                tracing::info!(
                    ACTION = "fleet",
                    "fleet: rewrote this host's {} active ban(s) and deleted {} stale key(s); {failed} write(s) failed",
                    keep.len(),
                    stale.len()
                );
                // A write that failed is made good by the next rewrite (see `online`).
                self.dirty = failed > 0;
            }
            Outgoing::Settled(s) => self.settled(s),
            Outgoing::List(reply) => {
                let _ = reply.send(self.remote.rows());
            }
        }
    }

    async fn put(&mut self, store: &kv::Store, k: &str, r: &Record) -> Result<(), String> {
        let stamped;
        let r = match r {
            Record::Ban(b) => {
                let mut b = b.clone();
                b.written_at = unix_now();
                stamped = Record::Ban(b);
                &stamped
            }
            other => other,
        };
        match store.put(k, r.to_json().into()).await {
            Ok(_) => {
                self.with_status(|s| s.published += 1);
                Ok(())
            }
            Err(e) => {
                let e = format!("cannot publish {k}: {e}");
                self.publish_failed(e.clone());
                self.dirty = true;
                Err(e)
            }
        }
    }

    /// Writes and deletes that failed since start.
    fn failures(&self) -> u64 {
        self.status
            .lock()
            .map(|s| s.publish_failures)
            .unwrap_or_else(|p| p.into_inner().publish_failures)
    }

    fn publish_failed(&self, e: String) {
        tracing::warn!(ACTION = "fleet-error", "fleet: {e}");
        self.with_status(|s| {
            s.publish_failures += 1;
            s.error = Some(e);
        });
    }

    fn settled(&mut self, all: Vec<Settled>) {
        let mut lat = Vec::new();
        for s in all {
            self.remote.settle(&s.key, &s.entry, s.outcome);
            if let Some(ms) = s.latency_ms {
                lat.push(ms);
                self.samples.push_back(ms);
                if self.samples.len() > SAMPLES {
                    self.samples.pop_front();
                }
            }
        }
        self.with_status(|st| {
            for ms in &lat {
                let i = LATENCY_BUCKETS_MS
                    .iter()
                    .position(|b| ms <= b)
                    .unwrap_or(LATENCY_BUCKETS_MS.len());
                if let Some(c) = st.latency_histogram.get_mut(i) {
                    *c += 1;
                }
                st.latency_sum_ms += ms;
                st.latency_count += 1;
            }
        });
        self.converged();
        self.publish_status();
    }

    fn publish_status(&self) {
        let mut v: Vec<f64> = self.samples.iter().copied().collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let pick = |q: f64| (!v.is_empty()).then(|| v[((v.len() - 1) as f64 * q).round() as usize]);
        let (p50, p99) = (pick(0.5), pick(0.99));
        let (a, r, h, n) = (
            self.remote.applied,
            self.remote.refused,
            self.remote.held,
            self.remote.remote_in_force(),
        );
        self.with_status(|s| {
            s.latency_ms_p50 = p50;
            s.latency_ms_p99 = p99;
            s.latency_samples = v.len();
            s.remote_applied = a;
            s.remote_refused = r;
            s.remote_held = h;
            s.remote_in_force = n;
        });
    }
}

/// Connects with the configured credentials and opens the bucket, creating its stream
/// when it does not exist.
async fn open(
    s: &Settings,
    me: &str,
    max_age: Duration,
    events: mpsc::UnboundedSender<async_nats::Event>,
) -> Result<(async_nats::Client, kv::Store), FleetError> {
    let mut addrs = Vec::new();
    for u in &s.urls {
        let a: async_nats::ServerAddr =
            u.parse().map_err(|e: std::io::Error| FleetError::Address {
                url: u.clone(),
                error: e.to_string(),
            })?;
        addrs.push(a);
    }
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("security-monitor {me}"))
        .ping_interval(Duration::from_secs(10))
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .event_callback(move |ev| {
            let events = events.clone();
            async move {
                let _ = events.send(ev);
            }
        });
    if let (Some(u), p) = (&s.user, &s.password) {
        opts = opts.user_and_password(u.clone(), p.clone().unwrap_or_default());
    }
    if let Some(seed) = &s.nkey {
        opts = opts.nkey(seed.clone());
    }
    if let Some(path) = &s.creds_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|error| FleetError::Creds {
                path: path.display().to_string(),
                error,
            })?;
    }
    if let Some(ca) = &s.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers = s.urls.join(", ");
    let client = opts.connect(addrs).await.map_err(|e| FleetError::Connect {
        servers,
        error: e.to_string(),
    })?;
    let store = bucket(&client, &s.bucket, max_age).await?;
    Ok((client, store))
}

/// The bucket, its stream made by hand if it is missing: on nats-server 2.9
/// `create_key_value` fails (the account info it reads lacks a field), while a stream in
/// the standard KV layout is taken by `get_key_value`.
async fn bucket(
    client: &async_nats::Client,
    name: &str,
    max_age: Duration,
) -> Result<kv::Store, FleetError> {
    let js = jetstream::new(client.clone());
    let err = |e: &dyn std::fmt::Display| FleetError::Bucket {
        bucket: name.to_string(),
        error: e.to_string(),
    };
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        description: Some("security-monitor: bans shared by a fleet of hosts".into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: MAX_VALUE,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    // Another host may have made it meanwhile: then it is opened as it is.
    if let Err(e) = js.create_stream(config).await {
        tracing::debug!("fleet: creating KV_{name}: {e}");
    }
    js.get_key_value(name).await.map_err(|e| err(&e))
}
