//! Ban notices by mail and webhooks, without flooding anyone and without ever holding up
//! a ban.
//!
//! The notifier is one task that listens on the event bus. Each channel (the mail
//! settings, each webhook) has a `Batcher` that collects bans into a digest, keeps to
//! `max_per_hour`, and retries failed sends with a capped backoff. Sends run in tasks of
//! their own, so a dead SMTP server or webhook delays nothing but its own channel; the
//! bus is the bounded queue in front (a notifier that falls behind loses the oldest
//! events and says how many), and each channel holds at most one digest waiting and one
//! in flight, each of bounded size. Bans restored at start are not events, so they send
//! nothing.

pub mod batch;
pub mod email;
pub mod message;
pub mod webhook;

pub use email::{EmailSettings, SmtpSecurity};
pub use webhook::{WebhookFormat, WebhookSettings};

use crate::clock::unix_now;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::detect::Severity;
use crate::events::Event;
use crate::time::format_time;
use batch::Batcher;
use message::{BanNotice, Digest};

/// Why a channel cannot be set up or did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Mail cannot be set up (`email: ` in front, as `status` shows it).
    #[error("email: {0}")]
    EmailSetup(email::EmailError),
    #[error(transparent)]
    Email(#[from] email::EmailError),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
}

/// Where a channel sends.
pub enum Sender {
    Email(email::Mailer),
    Webhook(webhook::Poster),
}

impl Sender {
    pub fn name(&self) -> String {
        match self {
            Sender::Email(m) => m.name(),
            Sender::Webhook(w) => w.name().to_string(),
        }
    }

    pub async fn send(&self, d: &Digest) -> Result<(), NotifyError> {
        match self {
            Sender::Email(m) => Ok(m.send(d).await?),
            Sender::Webhook(w) => Ok(w.send(d).await?),
        }
    }
}

/// One channel's settings, as the config gives them.
pub struct ChannelSpec {
    /// Identifies the channel across reloads: `email`, or the webhook's URL.
    pub key: String,
    pub sender: Sender,
    pub interval: Duration,
    pub max_per_hour: u32,
    pub min_severity: Severity,
}

/// The channels a config asks for. A channel that cannot be set up (an unreadable
/// password file, a bad CA file) is reported and left out; the others go on.
pub fn channels(cfg: &Config) -> (Vec<ChannelSpec>, Vec<NotifyError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    if cfg.email.enabled {
        match email::Mailer::new(&cfg.email) {
            Ok(m) => out.push(ChannelSpec {
                key: "email".into(),
                sender: Sender::Email(m),
                interval: Duration::from_secs(cfg.email.digest_interval),
                max_per_hour: cfg.email.max_per_hour,
                min_severity: cfg.email.min_severity,
            }),
            Err(e) => errors.push(NotifyError::EmailSetup(e)),
        }
    }
    for (i, w) in cfg.webhooks.iter().enumerate() {
        match webhook::Poster::new(w, i) {
            Ok(p) => out.push(ChannelSpec {
                key: format!("webhook {}", w.url),
                sender: Sender::Webhook(p),
                interval: Duration::from_secs(w.digest_interval),
                max_per_hour: w.max_per_hour,
                min_severity: w.min_severity,
            }),
            Err(e) => errors.push(e.into()),
        }
    }
    (out, errors)
}

/// One channel's counters, as `status` shows them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ChannelStatus {
    pub name: String,
    /// Notices delivered.
    pub sent: u64,
    /// Attempts that failed (each retry counts).
    pub failed: u64,
    /// Bans and held verdicts not yet delivered (waiting, retrying or being sent).
    pub pending: u64,
    /// Bans told about in delivered notices (listed or counted).
    pub bans_notified: u64,
    pub last_sent: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// When the next try is, while a failed notice waits for it.
    pub retry_in_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct NotifyStatus {
    pub channels: Vec<ChannelStatus>,
    /// Events lost because the notifier fell behind (the bus dropped them).
    pub events_missed: u64,
    /// Channels the config asks for that could not be set up.
    pub setup_errors: Vec<String>,
}

struct Channel {
    id: u64,
    key: String,
    sender: Arc<Sender>,
    batch: Batcher,
    /// How many bans the digest in flight holds.
    in_flight: u64,
    status: ChannelStatus,
}

enum Control {
    Reconfigure(Vec<ChannelSpec>, Vec<String>),
    /// Send what is waiting now, wait for what is in flight, then end; the reply says
    /// how many notice items were sent and how many were lost.
    Flush(oneshot::Sender<(u64, u64)>),
}

/// The running notifier: its status, and a way to give it a new config.
pub struct Notifier {
    status: Arc<Mutex<NotifyStatus>>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

impl Notifier {
    /// Starts the notifier on `events`, with the channels `cfg` asks for.
    pub fn spawn(cfg: &Config, events: broadcast::Receiver<Event>) -> Notifier {
        let (specs, errors) = channels(cfg);
        let errors = errors.iter().map(ToString::to_string).collect();
        Notifier::spawn_with(specs, errors, events)
    }

    pub fn spawn_with(
        specs: Vec<ChannelSpec>,
        errors: Vec<String>,
        events: broadcast::Receiver<Event>,
    ) -> Notifier {
        for e in &errors {
            tracing::error!(
                ACTION = "notify-error",
                "notices: {e}; this channel is off until the config is fixed"
            );
        }
        let status = Arc::new(Mutex::new(NotifyStatus::default()));
        let (control, control_rx) = mpsc::channel(4);
        let mut task = Task {
            host: host_name(),
            channels: Vec::new(),
            next_id: 0,
            missed: 0,
            setup_errors: Vec::new(),
            status: status.clone(),
        };
        task.reconfigure(specs, errors);
        let handle = tokio::spawn(task.run(events, control_rx));
        Notifier {
            status,
            control,
            task: handle,
        }
    }

    /// Whether the notifier's task still runs. It ends only at shutdown; ended before
    /// that (a panic) means no mail or webhook goes out any more.
    pub fn alive(&self) -> bool {
        !self.task.is_finished()
    }

    pub fn status(&self) -> NotifyStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Applies a reloaded config: channels that stay keep what they have waiting.
    pub fn reconfigure(&self, cfg: &Config) {
        let (specs, errors) = channels(cfg);
        for e in &errors {
            tracing::error!(
                ACTION = "notify-error",
                "notices: {e}; this channel is off until the config is fixed"
            );
        }
        let errors = errors.iter().map(ToString::to_string).collect();
        let _ = self.control.try_send(Control::Reconfigure(specs, errors));
    }

    /// Stops the notifier after sending what is waiting, whatever the digest interval
    /// and hourly cap say (one last digest per channel), giving up after `within`.
    /// Returns (items sent, items given up on).
    pub async fn shutdown(&self, within: Duration) -> (u64, u64) {
        let waiting: u64 = self.status().channels.iter().map(|c| c.pending).sum();
        let (tx, rx) = oneshot::channel();
        let result = tokio::time::timeout(within, async {
            self.control.send(Control::Flush(tx)).await.ok()?;
            rx.await.ok()
        })
        .await;
        self.task.abort();
        match result {
            Ok(Some(r)) => r,
            _ => (
                0,
                waiting.max(self.status().channels.iter().map(|c| c.pending).sum()),
            ),
        }
    }
}

struct Task {
    host: String,
    channels: Vec<Channel>,
    next_id: u64,
    missed: u64,
    setup_errors: Vec<String>,
    status: Arc<Mutex<NotifyStatus>>,
}

struct Done {
    id: u64,
    digest: Digest,
    result: Result<(), NotifyError>,
}

impl Task {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<Event>,
        mut control: mpsc::Receiver<Control>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
        let mut flushing: Option<(oneshot::Sender<(u64, u64)>, u64)> = None;
        loop {
            let next = self.channels.iter().filter_map(|c| c.batch.due()).min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                r = events.recv(), if flushing.is_none() => match r {
                    Ok(e) => self.event(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.missed += n;
                        tracing::warn!(ACTION = "notify-error", "notices fell behind: {n} events were missed");
                        let now = Instant::now();
                        for c in &mut self.channels {
                            c.batch.missed(n, now);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(ctl) = control.recv() => match ctl {
                    Control::Reconfigure(specs, errors) => self.reconfigure(specs, errors),
                    Control::Flush(reply) => {
                        // Events sent before the stop are still queued: take them first.
                        while let Ok(e) = events.try_recv() {
                            self.event(e);
                        }
                        let in_flight: u64 = self.channels.iter().map(|c| c.in_flight).sum();
                        let sent = in_flight + self.start_sends(&done_tx, true);
                        flushing = Some((reply, sent));
                    }
                },
                Some(done) = done_rx.recv() => {
                    let ok = done.result.is_ok();
                    let items = done.digest.len();
                    self.done(done);
                    if let Some((_, sent)) = &mut flushing {
                        if ok {
                            // A channel that was busy when the stop came sends its rest
                            // now. A failed one is not retried: the stop is waiting.
                            *sent += self.start_sends(&done_tx, true);
                        } else {
                            *sent = sent.saturating_sub(items);
                        }
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or(far)), if next.is_some() && flushing.is_none() => {
                    self.start_sends(&done_tx, false);
                }
            }
            self.publish();
            if flushing.is_some() && self.channels.iter().all(|c| c.in_flight == 0) {
                if let Some((reply, sent)) = flushing.take() {
                    let lost = self.channels.iter().map(|c| c.batch.waiting()).sum();
                    let _ = reply.send((sent, lost));
                }
                return;
            }
        }
    }

    fn event(&mut self, e: Event) {
        let now = Instant::now();
        match e {
            Event::Ban {
                record,
                seconds,
                extended,
                ..
            } => {
                let n = BanNotice::new(&record, seconds, extended);
                for c in &mut self.channels {
                    c.batch.offer_ban(n.clone(), now);
                }
            }
            Event::Held(r) => {
                let n = message::held_notice(&r);
                for c in &mut self.channels {
                    c.batch.offer_held(n.clone(), now);
                }
            }
            _ => {}
        }
    }

    /// Starts the sends that are due, or at shutdown (`last`) everything waiting in
    /// every channel that is not busy. Returns how many items they hold.
    fn start_sends(&mut self, done: &mpsc::Sender<Done>, last: bool) -> u64 {
        let now = Instant::now();
        let mut items = 0;
        for c in &mut self.channels {
            let taken = if last {
                c.batch.take_final()
            } else {
                c.batch.take(now)
            };
            let Some(digest) = taken else {
                continue;
            };
            items += digest.len();
            c.in_flight = digest.len();
            let sender = c.sender.clone();
            let done = done.clone();
            let id = c.id;
            tokio::spawn(async move {
                let result = sender.send(&digest).await;
                let _ = done.send(Done { id, digest, result }).await;
            });
        }
        items
    }

    fn done(&mut self, d: Done) {
        let now = Instant::now();
        let Some(c) = self.channels.iter_mut().find(|c| c.id == d.id) else {
            return;
        };
        c.in_flight = 0;
        match d.result {
            Ok(()) => {
                c.batch.delivered(now);
                c.status.sent += 1;
                c.status.bans_notified += d.digest.total_bans();
                c.status.last_sent = Some(format_time(unix_now()));
                c.status.retry_in_s = None;
                tracing::info!(
                    ACTION = "notify",
                    "notice sent by {}: {} ban(s), {} held back",
                    c.status.name,
                    d.digest.total_bans(),
                    d.digest.total_held()
                );
            }
            Err(e) => {
                let n = d.digest.len();
                let wait = c.batch.failed(d.digest, now);
                c.status.failed += 1;
                c.status.last_error = Some(e.to_string());
                c.status.last_error_at = Some(format_time(unix_now()));
                c.status.retry_in_s = Some(wait.as_secs().max(1));
                tracing::warn!(
                    ACTION = "notify-error",
                    "notice by {} failed ({n} ban(s) waiting); retrying in {}s: {e}",
                    c.status.name,
                    wait.as_secs().max(1)
                );
            }
        }
    }

    fn reconfigure(&mut self, specs: Vec<ChannelSpec>, errors: Vec<String>) {
        let mut old: HashMap<String, Channel> = self
            .channels
            .drain(..)
            .map(|c| (c.key.clone(), c))
            .collect();
        for s in specs {
            let name = s.sender.name();
            let c = match old.remove(&s.key) {
                Some(mut c) => {
                    c.sender = Arc::new(s.sender);
                    c.batch
                        .reconfigure(s.interval, s.max_per_hour, s.min_severity);
                    c.status.name = name;
                    c
                }
                None => {
                    self.next_id += 1;
                    Channel {
                        id: self.next_id,
                        key: s.key,
                        sender: Arc::new(s.sender),
                        batch: Batcher::new(&self.host, s.interval, s.max_per_hour, s.min_severity),
                        in_flight: 0,
                        status: ChannelStatus {
                            name,
                            ..ChannelStatus::default()
                        },
                    }
                }
            };
            self.channels.push(c);
        }
        for (_, c) in old {
            let n = c.batch.waiting() + c.in_flight;
            if n > 0 {
                tracing::warn!(
                    ACTION = "notify-error",
                    "{} is no longer configured; {n} waiting notice item(s) dropped",
                    c.status.name
                );
            }
        }
        self.setup_errors = errors;
        self.publish();
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let channels = self
            .channels
            .iter_mut()
            .map(|c| {
                c.status.pending = c.batch.waiting() + c.in_flight;
                if c.status.retry_in_s.is_some() {
                    c.status.retry_in_s = c
                        .batch
                        .due()
                        .map(|t| t.saturating_duration_since(now).as_secs());
                }
                c.status.clone()
            })
            .collect();
        if let Ok(mut s) = self.status.lock() {
            *s = NotifyStatus {
                channels,
                events_missed: self.missed,
                setup_errors: self.setup_errors.clone(),
            };
        }
    }
}

/// Sends a test notice through every channel `cfg` configures, now, and reports each
/// result as (channel, outcome). Channels that cannot be set up are reported as failed.
pub async fn test_all(cfg: &Config) -> Vec<(String, Result<(), NotifyError>)> {
    let (specs, errors) = channels(cfg);
    let mut out: Vec<(String, Result<(), NotifyError>)> = errors
        .into_iter()
        .map(|e| ("setup".to_string(), Err(e)))
        .collect();
    let digest = Digest::test(&host_name());
    for s in specs {
        let r = s.sender.send(&digest).await;
        out.push((s.sender.name(), r));
    }
    out
}

/// The error and its causes, one after another ("connection error: … : refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    // Some errors repeat their kind in their source ("Connection error: Connection
    // error: …"): say it once.
    let mut parts: Vec<&str> = Vec::new();
    for p in s.split(": ") {
        if parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn alive_until_its_task_ends() {
        let bus = crate::events::Bus::new();
        let n = Notifier::spawn_with(Vec::new(), Vec::new(), bus.subscribe());
        assert!(n.alive());
        n.shutdown(Duration::from_secs(5)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !n.alive(),
            "a notifier whose task ended still counts as alive"
        );
    }
}
