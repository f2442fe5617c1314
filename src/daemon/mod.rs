//! `security-monitor run`: Docker log streams → detector → ban book → firewall and state
//! file, under systemd.
//!
//! One [`Daemon`] owns what the main loop needs. The Docker watcher (one stream per
//! container) feeds lines into a bounded channel; the pipeline thread (`pipeline.rs`)
//! parses and judges them and hands verdicts to the enforcement thread (`ban::worker`),
//! whose queue never makes anyone wait. The main loop judges no line: it answers the
//! control socket (`control.rs`), signals, reloads (`reload.rs`), the watchdog and the
//! alerts (`alerts.rs`), so however costly the lines, `status` answers at once. A call
//! that needs the enforcement thread is answered when its reply comes back, never by
//! waiting in the loop. Shutdown is a signal plus drop-to-finish: the watcher stops
//! reading, the pipeline judges what is queued, the cursors are written, the enforcement
//! thread applies what is queued and writes the state file, and the bans stay in the
//! kernel.

mod alerts;
mod anomaly;
mod control;
pub mod logging;
mod pipeline;
mod reload;
pub mod systemd;

use crate::clock::unix_now;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{broadcast, mpsc};

use crate::alerts::log::AlertLog;
use crate::alerts::AlertBook;
use crate::api::server::{self, Call};
use crate::ban::worker::{self as enforcement, Summary};
use crate::ban::DockerNetwork;
use crate::ban::{Enforcer, StateLock};
use crate::config::{self, Config};
use crate::detect::Detector;
use crate::docker::{LogLine, WatchSettings, Watcher};
use crate::events::{Bus, Event};
use crate::metrics::Metrics;

use control::Finish;
use pipeline::PipelineHandle;

/// How the daemon was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub socket: PathBuf,
    /// Group allowed to use the control socket (gid), besides root.
    pub socket_group: Option<u32>,
}

/// Lines waiting between the Docker streams and the detector.
const LINE_QUEUE: usize = 16_384;

/// How long a stop waits for the last notices to go out.
const NOTICES_AT_STOP: Duration = Duration::from_secs(5);

/// Runs the daemon until SIGTERM/SIGINT. Returns the exit code.
pub fn run(opts: Options) -> i32 {
    logging::init();
    abort_on_panic();
    let cfg = match config::load(&opts.config) {
        Ok(c) => c,
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!(
                "not starting: fix the config (check it with `security-monitor check-config {}`)",
                opts.config.display()
            );
            systemd::status(&format!("config error in {}", opts.config.display()));
            return 1;
        }
    };
    for w in cfg.warnings() {
        tracing::warn!("{}: {w}", opts.config.display());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async {
        match Daemon::start(opts, cfg).await {
            Ok((daemon, inbox)) => daemon.run(inbox).await,
            Err(e) => {
                tracing::error!("{e}");
                1
            }
        }
    })
}

/// Why the daemon cannot start; said once in the journal, and the daemon exits 1.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Lock(#[from] crate::ban::lock::LockError),
    #[error("the rules cannot be compiled: {0}")]
    Rules(crate::detect::rules::RuleError),
    #[error("cannot start enforcement: {0}")]
    Enforcement(crate::ban::enforcer::StartError),
    #[error("cannot start the {what} thread: {error}")]
    Thread {
        what: &'static str,
        error: std::io::Error,
    },
    #[error(transparent)]
    Socket(#[from] server::BindError),
    #[error("cannot install signal handlers")]
    Signals,
    #[error("the enforcement thread stopped at start")]
    EnforcementStopped,
    #[error(transparent)]
    Metrics(#[from] crate::metrics::http::BindError),
}

/// When the daemon started and its rate of lines, for `status` and the metrics.
struct Counts {
    started: Instant,
    /// When the rate was last computed, the line count then, and the rate.
    last_rate: (Instant, u64, f64),
}

/// The running daemon: everything the main loop owns.
pub(crate) struct Daemon {
    opts: Options,
    cfg: Config,
    pipeline: PipelineHandle,
    counts: Counts,
    reload_error: Option<String>,
    enforce: enforcement::Handle,
    watcher: Option<Watcher>,
    line_tx: mpsc::Sender<LogLine>,
    /// Where the watcher reports Docker's networks (kept for the watcher a reload makes).
    networks_tx: mpsc::Sender<Vec<DockerNetwork>>,
    alerts: AlertBook,
    alert_log: AlertLog,
    /// Set after a failed write, so a full disk is logged once, not per alert.
    alert_log_error: Option<String>,
    metrics: Metrics,
    /// Whether the watcher was connected at the last look (None: not looked yet).
    docker_connected: Option<bool>,
    /// The Prometheus listener and the address it is on.
    metrics_server: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
    calls: mpsc::Sender<Call>,
    /// Calls whose answer needed the enforcement thread come back here to be finished.
    finish_tx: mpsc::UnboundedSender<Finish>,
    /// Mail and webhook notices; listens on `events`.
    notifier: crate::notify::Notifier,
    /// The fleet task, when `fleet.enabled`.
    fleet: Option<crate::fleet::Fleet>,
    _lock: StateLock,
}

/// What the main loop listens to, kept apart from the daemon so that each arm of the
/// loop can borrow the daemon mutably.
pub(crate) struct Inbox {
    /// The pipeline's events (rule hits, unparsed lines, error rates).
    pipeline: mpsc::UnboundedReceiver<Event>,
    calls: mpsc::Receiver<Call>,
    finish: mpsc::UnboundedReceiver<Finish>,
    events: broadcast::Receiver<Event>,
    hup: Signal,
    term: Signal,
    int: Signal,
    server: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Takes the state lock, compiles the rules, restores the bans into the firewall and
    /// starts every part. Any failure here stops the start with what went wrong.
    async fn start(opts: Options, cfg: Config) -> Result<(Daemon, Inbox), DaemonError> {
        let lock = StateLock::acquire(&cfg.state.dir)?;
        let detector = Detector::new(&cfg.detect_settings()).map_err(DaemonError::Rules)?;
        let (enforcer, report) = Enforcer::start(&cfg, unix_now()).map_err(|e| {
            systemd::status(&format!("firewall error: {e}"));
            DaemonError::Enforcement(e)
        })?;
        if let Some(err) = &report.state_error {
            tracing::error!("{err}");
        }
        tracing::info!(
            "firewall: {}; restored {} ban(s) in {} ms ({} from the state file, {} adopted from the firewall, {} expired while down, {} lifted as never-ban)",
            report.backend,
            enforcer.book.len(),
            report.restore_ms,
            report.restored,
            report.adopted,
            report.expired,
            report.lifted.len()
        );
        let events = Bus::new();
        // Subscribed before enforcement starts, so no ban is missed; bans restored above
        // are not events and send nothing.
        let notifier = crate::notify::Notifier::spawn(&cfg, events.subscribe());
        let events_rx = events.subscribe();
        let enforce =
            enforcement::spawn(enforcer, events.clone()).map_err(|error| DaemonError::Thread {
                what: "enforcement",
                error,
            })?;

        let fleet = start_fleet(&cfg, &enforce, &events);

        let (line_tx, line_rx) = mpsc::channel::<LogLine>(LINE_QUEUE);
        let (nets_tx, nets_rx) = mpsc::channel::<Vec<DockerNetwork>>(4);
        let watcher = match WatchSettings::from_config(&cfg) {
            Ok(s) => Some(Watcher::spawn_reporting_networks(
                s,
                line_tx.clone(),
                nets_tx.clone(),
            )),
            Err(e) => {
                tracing::error!("cannot watch Docker: {e}");
                None
            }
        };

        let (call_tx, call_rx) = mpsc::channel::<Call>(64);
        let listener = server::bind(&opts.socket, opts.socket_group)?;
        let server = tokio::spawn(server::serve(
            listener,
            call_tx.clone(),
            opts.socket.clone(),
            server::Conns::new(server::ConnLimits::default()),
        ));
        let (hup, term, int) = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(h), Ok(t), Ok(i)) => (h, t, i),
            _ => return Err(DaemonError::Signals),
        };
        let (finish_tx, finish_rx) = mpsc::unbounded_channel();
        let (pipeline_tx, pipeline_rx) = mpsc::unbounded_channel();
        let queue = enforce.queue().ok_or(DaemonError::EnforcementStopped)?;
        let pipeline = pipeline::spawn(
            cfg.clone(),
            detector,
            watcher.as_ref().map(Watcher::labels),
            queue,
            pipeline::Inputs {
                lines: line_rx,
                networks: nets_rx,
                events: pipeline_tx,
            },
        )
        .map_err(|error| DaemonError::Thread {
            what: "pipeline",
            error,
        })?;
        let (alerts, alert_log) = alerts::open(&cfg);
        let mut daemon = Daemon {
            opts,
            cfg,
            pipeline,
            counts: Counts {
                started: Instant::now(),
                last_rate: (Instant::now(), 0, 0.0),
            },
            reload_error: None,
            enforce,
            watcher,
            line_tx,
            networks_tx: nets_tx,
            alerts,
            alert_log,
            alert_log_error: None,
            metrics: Metrics::default(),
            docker_connected: None,
            metrics_server: None,
            calls: call_tx,
            finish_tx,
            notifier,
            fleet,
            _lock: lock,
        };
        let listen = daemon.cfg.metrics.listen;
        let prepared = reload::prepare_metrics(daemon.metrics_server.as_ref(), listen).await?;
        daemon.commit_metrics(prepared);
        let inbox = Inbox {
            pipeline: pipeline_rx,
            calls: call_rx,
            finish: finish_rx,
            events: events_rx,
            hup,
            term,
            int,
            server,
        };
        Ok((daemon, inbox))
    }

    /// The main loop, until SIGTERM or SIGINT; then the orderly stop. Returns the exit code.
    async fn run(mut self, mut inbox: Inbox) -> i32 {
        let watchdog = systemd::watchdog_interval();
        let mut tick = tokio::time::interval(
            watchdog
                .map(|w| w / 2)
                .unwrap_or(Duration::from_secs(5))
                .min(Duration::from_secs(5)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        systemd::ready(&self.status_line(&self.enforce.summary()));
        tracing::info!(
            "security-monitor {} running; control socket {}",
            env!("CARGO_PKG_VERSION"),
            self.opts.socket.display()
        );
        loop {
            // Not `biased`: under a flood of lines the signals, calls and the watchdog tick
            // must still get their turn.
            tokio::select! {
                Some(e) = inbox.pipeline.recv() => self.on_event(e),
                ev = inbox.events.recv() => match ev {
                    Ok(e) => self.on_event(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.metrics.events_lost += n;
                        tracing::warn!("alerts and metrics fell behind and missed {n} event(s)");
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                Some((req, reply)) = inbox.calls.recv() => self.call(req, reply).await,
                Some(job) = inbox.finish.recv() => self.finish(job),
                _ = async {
                    match self.watcher.as_ref() {
                        Some(w) => w.connection_changed().await,
                        None => std::future::pending().await,
                    }
                } => self.watch_docker_connection(),
                _ = inbox.hup.recv() => {
                    let _ = self.reload().await;
                }
                _ = inbox.term.recv() => break,
                _ = inbox.int.recv() => break,
                _ = tick.tick() => self.tick(),
            }
        }
        self.stop(inbox).await
    }

    /// The periodic turn: watchdog, rates, Docker's connection, alerts to disk, sources of
    /// containers that are gone, the status line.
    fn tick(&mut self) {
        systemd::watchdog();
        self.rate();
        self.watch_docker_connection();
        self.flush_alerts();
        self.prune_containers();
        systemd::status(&self.status_line(&self.enforce.summary()));
    }

    async fn stop(mut self, mut inbox: Inbox) -> i32 {
        systemd::stopping();
        tracing::info!("stopping: writing cursors and the state file; bans stay in the firewall");
        inbox.server.abort();
        let _ = std::fs::remove_file(&self.opts.socket);
        // No line comes after the streams have stopped; the ones still queued are judged,
        // then the cursors are written with them.
        if let Some(mut w) = self.watcher.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), w.stop_reading()).await;
            self.pipeline.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
        }
        // The pipeline ends first: it holds a sender to the enforcement thread.
        let pipeline = std::mem::replace(&mut self.pipeline, PipelineHandle::stopped());
        pipeline.stop().await;
        while let Ok(e) = inbox.pipeline.try_recv() {
            self.on_event(e);
        }
        if let Some(f) = self.fleet.take() {
            f.stop();
        }
        let enforce = self.enforce.detach();
        tokio::task::spawn_blocking(move || enforce.shutdown())
            .await
            .ok();
        while let Ok(e) = inbox.events.try_recv() {
            self.on_event(e);
        }
        self.flush_alerts();
        if let Some((_, task)) = self.metrics_server.take() {
            task.abort();
        }
        // Bans still waiting for their digest are mailed now rather than forgotten.
        let (sent, lost) = self.notifier.shutdown(NOTICES_AT_STOP).await;
        if sent > 0 {
            tracing::info!(
                ACTION = "notify",
                "sent {sent} waiting notice item(s) before stopping"
            );
        }
        if lost > 0 {
            tracing::warn!(ACTION = "notify-error", "stopping without sending {lost} notice item(s): the channel failed or took longer than {}s", NOTICES_AT_STOP.as_secs());
        }
        tracing::info!("stopped");
        0
    }

    /// Lines per second, recomputed at most once a second.
    fn rate(&mut self) -> f64 {
        let (at, lines, last) = self.counts.last_rate;
        let dt = at.elapsed().as_secs_f64();
        if dt >= 1.0 {
            let now = self.pipeline.lines();
            let r = now.saturating_sub(lines) as f64 / dt;
            self.counts.last_rate = (Instant::now(), now, r);
            r
        } else {
            last
        }
    }

    /// Tells the pipeline which containers the watcher still follows: what is kept for
    /// the others (destroyed, no longer selected) is forgotten.
    fn prune_containers(&self) {
        let Some(w) = self.watcher.as_ref() else {
            return;
        };
        let status = w.status();
        let followed = status.containers;
        self.pipeline.send(pipeline::Command::Prune {
            ids: followed.iter().map(|c| c.id.clone()).collect(),
            names: followed.into_iter().map(|c| c.name).collect(),
            listed: status.connected,
        });
    }

    fn status_line(&self, s: &Summary) -> String {
        let (docker, n) = match self.watcher.as_ref().map(|w| w.status()) {
            Some(ws) if ws.connected => ("", ws.containers.len()),
            Some(_) => ("Docker unreachable, retrying; ", 0),
            None => ("Docker not watched; ", 0),
        };
        let reload = self
            .reload_error
            .as_deref()
            .map(|e| format!("; RELOAD FAILED: {e}"))
            .unwrap_or_default();
        format!(
            "{docker}{n} containers watched, {} active bans, {:.0} lines/s{reload}",
            s.active_bans, self.counts.last_rate.2
        )
    }
}

/// Starts the fleet task when the config enables it, and tells the enforcement thread
/// where to publish.
fn start_fleet(
    cfg: &Config,
    enforce: &enforcement::Handle,
    events: &Bus,
) -> Option<crate::fleet::Fleet> {
    if !cfg.fleet.enabled {
        return None;
    }
    let queue = enforce.queue()?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let me = crate::fleet::settings::host_id(&cfg.fleet, hostname.trim());
    // Records stay in the bucket a day past the longest ban (2.9 has no per-key TTL).
    let max_age = Duration::from_secs(cfg.ban.max_ban().saturating_add(86_400));
    let f = crate::fleet::spawn(
        cfg.fleet.clone(),
        me.clone(),
        max_age,
        queue,
        events.clone(),
    );
    enforce.send(enforcement::Msg::Fleet(Some(f.tx.clone())));
    tracing::info!(
        ACTION = "fleet",
        "fleet: this host is {me}; connecting to {}",
        cfg.fleet.urls.join(", ")
    );
    Some(f)
}

/// A panic anywhere ends the daemon (SIGABRT) rather than leaving it running with a dead
/// part: an enforcement thread that bans nothing, a watcher that reads nothing. systemd
/// restarts it (`Restart=on-failure`) and the bans come back from the kernel and
/// `blocked_ips.json`. `health` still names a part that has stopped for any other reason.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(
            "a part of the daemon panicked ({info}); stopping so that systemd restarts it"
        );
        default(info);
        std::process::abort();
    }));
}
