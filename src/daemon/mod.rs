//! `security-monitor run`: Docker log streams → detector → ban book → firewall and state
//! file, under systemd.
//!
//! Tasks: the Docker watcher (one stream per container) feeds lines into a bounded
//! channel; the main loop parses and detects (the detector is synchronous and cheap);
//! verdicts go to the enforcement thread, which never blocks the main loop; the control
//! socket's requests come into the main loop as messages. Shutdown is a signal plus
//! drop-to-finish: the watcher writes its cursors, the enforcement thread applies what is
//! queued and writes the state file, and the bans stay in the kernel.

pub mod logging;
pub mod systemd;

use crate::clock::unix_now;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::alerts::errors::{self as error_rate, ErrorRates};
use crate::alerts::log::AlertLog;
use crate::alerts::{AlertBook, Filter, Recorded};
use crate::api::server::{self, Call};
use crate::api::{Request, Response};
use crate::ban::worker::{self as enforcement, Msg, Summary};
use crate::ban::DockerNetwork;
use crate::ban::{Enforcer, StateLock};
use crate::config::{self, Config};
use crate::detect::parse::{LineParser, ParseHealth, UnparsedNotice};
use crate::detect::Detector;
use crate::docker::{container_profile, LogLine, WatchSettings, Watcher};
use crate::events::{Bus, Event};
use crate::metrics::Metrics;

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
    runtime.block_on(main_loop(opts, cfg))
}

struct Source {
    parser: LineParser,
    categories: Option<Vec<String>>,
    /// The container's name and format name, for the unparsed-lines notice.
    container: String,
    format: String,
    /// Lines that did not parse; says once when most of them fail.
    health: ParseHealth,
}

struct State {
    cfg: Config,
    detector: Detector,
    sources: HashMap<String, Source>,
    lines: u64,
    parsed: u64,
    started: Instant,
    last_rate: (Instant, u64, f64),
    reload_error: Option<String>,
    events: Bus,
    /// Docker's networks as last read (never-ban list, trusted proxies).
    docker_networks: Vec<DockerNetwork>,
    /// Where the watcher reports Docker's networks (kept for the watcher a reload makes).
    networks_tx: mpsc::Sender<Vec<DockerNetwork>>,
    alerts: AlertBook,
    alert_log: AlertLog,
    /// Set after a failed write, so a full disk is logged once, not per alert.
    alert_log_error: Option<String>,
    error_rates: ErrorRates,
    metrics: Metrics,
    /// Whether the watcher was connected at the last look (None: not looked yet).
    docker_connected: Option<bool>,
    /// The Prometheus listener and the address it is on.
    metrics_server: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
    calls: mpsc::Sender<Call>,
    /// Mail and webhook notices; listens on `events`.
    notifier: crate::notify::Notifier,
}

async fn main_loop(opts: Options, cfg: Config) -> i32 {
    let _lock = match StateLock::acquire(&cfg.state.dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let detector = match Detector::new(&cfg) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("the rules cannot be compiled: {e}");
            return 1;
        }
    };
    let (enforcer, report) = match Enforcer::start(&cfg, unix_now()) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("cannot start enforcement: {e}");
            systemd::status(&format!("firewall error: {e}"));
            return 1;
        }
    };
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
    // Subscribed before enforcement starts, so no ban is missed; bans restored above are
    // not events and send nothing.
    let notifier = crate::notify::Notifier::spawn(&cfg, events.subscribe());
    let enforce = enforcement::spawn(enforcer, events.clone());

    let (line_tx, mut line_rx) = mpsc::channel::<LogLine>(LINE_QUEUE);
    let (nets_tx, mut nets_rx) = mpsc::channel::<Vec<DockerNetwork>>(4);
    let mut watcher = match WatchSettings::from_config(&cfg) {
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

    let (call_tx, mut call_rx) = mpsc::channel::<Call>(64);
    let listener = match server::bind(&opts.socket, opts.socket_group) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let server_task = tokio::spawn(server::serve(
        listener,
        call_tx.clone(),
        opts.socket.clone(),
        server::Conns::new(server::ConnLimits::default()),
    ));

    let mut events_rx = events.subscribe();
    let (alerts, alert_log) = open_alerts(&cfg);
    let mut st = State {
        cfg,
        detector,
        sources: HashMap::new(),
        lines: 0,
        parsed: 0,
        started: Instant::now(),
        last_rate: (Instant::now(), 0, 0.0),
        reload_error: None,
        events,
        docker_networks: Vec::new(),
        networks_tx: nets_tx,
        alerts,
        alert_log,
        alert_log_error: None,
        error_rates: ErrorRates::new(),
        metrics: Metrics::default(),
        docker_connected: None,
        metrics_server: None,
        calls: call_tx,
        notifier,
    };
    if let Err(e) = start_metrics_server(&mut st).await {
        tracing::error!("{e}");
        return 1;
    }

    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            tracing::error!("cannot install signal handlers");
            return 1;
        }
    };
    let watchdog = systemd::watchdog_interval();
    let mut tick = tokio::time::interval(
        watchdog
            .map(|w| w / 2)
            .unwrap_or(Duration::from_secs(5))
            .min(Duration::from_secs(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    systemd::ready(&status_line(
        &st,
        watcher.as_ref(),
        &summary(&enforce).await,
    ));
    tracing::info!(
        "security-monitor {} running; control socket {}",
        env!("CARGO_PKG_VERSION"),
        opts.socket.display()
    );

    loop {
        // Not `biased`: under a flood of lines the signals, calls and the watchdog tick
        // must still get their turn.
        tokio::select! {
            Some(nets) = nets_rx.recv() => apply_networks(&mut st, &enforce, nets),
            Some(line) = line_rx.recv() => {
                // Networks before lines: a line is never judged before the networks the
                // watcher reported ahead of it (see spawn_reporting_networks).
                while let Ok(nets) = nets_rx.try_recv() {
                    apply_networks(&mut st, &enforce, nets);
                }
                handle_line(&mut st, &enforce, watcher.as_ref(), line);
                // Drain what is already queued before looking at anything else, for up to
                // LINE_TURN: costly lines must not keep the signals, calls and the
                // watchdog waiting, however few they are.
                for_up_to(LINE_TURN, Instant::now, || {
                    while let Ok(nets) = nets_rx.try_recv() {
                        apply_networks(&mut st, &enforce, nets);
                    }
                    match line_rx.try_recv() {
                        Ok(line) => {
                            handle_line(&mut st, &enforce, watcher.as_ref(), line);
                            true
                        }
                        Err(_) => false,
                    }
                });
            }
            ev = events_rx.recv() => match ev {
                Ok(e) => on_event(&mut st, e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    st.metrics.events_lost += n;
                    tracing::warn!("alerts and metrics fell behind and missed {n} event(s)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            Some((req, reply)) = call_rx.recv() => {
                let resp = handle_call(&mut st, &enforce, &mut watcher, &line_tx, &opts, req).await;
                let _ = reply.send(resp);
            }
            _ = async {
                match watcher.as_ref() {
                    Some(w) => w.connection_changed().await,
                    None => std::future::pending().await,
                }
            } => watch_docker_connection(&mut st, watcher.as_ref()),
            _ = hup.recv() => {
                let _ = reload(&mut st, &enforce, &mut watcher, &line_tx, &opts).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {
                systemd::watchdog();
                rate(&mut st);
                watch_docker_connection(&mut st, watcher.as_ref());
                flush_alerts(&mut st);
                let s = summary(&enforce).await;
                systemd::status(&status_line(&st, watcher.as_ref(), &s));
            }
        }
    }

    systemd::stopping();
    tracing::info!("stopping: writing cursors and the state file; bans stay in the firewall");
    server_task.abort();
    let _ = std::fs::remove_file(&opts.socket);
    if let Some(w) = watcher.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
    }
    while let Ok(line) = line_rx.try_recv() {
        handle_line(&mut st, &enforce, None, line);
    }
    tokio::task::spawn_blocking(move || enforce.shutdown())
        .await
        .ok();
    while let Ok(e) = events_rx.try_recv() {
        on_event(&mut st, e);
    }
    flush_alerts(&mut st);
    if let Some((_, task)) = st.metrics_server.take() {
        task.abort();
    }
    // Bans still waiting for their digest are mailed now rather than forgotten.
    let (sent, lost) = st.notifier.shutdown(NOTICES_AT_STOP).await;
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

/// Docker's networks changed: the detector (trusted proxies) and the never-ban list
/// follow, in that order before any later line.
fn apply_networks(st: &mut State, enforce: &enforcement::Handle, nets: Vec<DockerNetwork>) {
    tracing::info!(
        "Docker networks: {}",
        nets.iter()
            .map(|n| format!("{} {}", n.name, n.subnet))
            .collect::<Vec<_>>()
            .join(", ")
    );
    set_detector_networks(&mut st.detector, &nets);
    st.docker_networks = nets.clone();
    enforce.send(Msg::DockerNetworks(nets));
}

fn set_detector_networks(detector: &mut Detector, nets: &[DockerNetwork]) {
    let attached: Vec<(String, std::net::IpAddr)> = nets
        .iter()
        .flat_map(|n| n.containers.iter().cloned())
        .collect();
    detector.set_docker_networks(
        nets.iter().map(|n| n.subnet).collect(),
        nets.iter().filter_map(|n| n.gateway).collect(),
        &attached,
    );
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

/// How long a stop waits for the last notices to go out.
const NOTICES_AT_STOP: Duration = Duration::from_secs(5);

/// How long one turn of the main loop may spend on queued lines before signals, control
/// calls and the watchdog tick get their turn again. A line costs microseconds, so this is
/// thousands of lines; a turn is bounded by time because a count of crafted lines is not.
const LINE_TURN: Duration = Duration::from_millis(50);

/// Runs `step` while it finds work and less than `budget` has passed on `clock` since the
/// call; returns how many steps did work.
fn for_up_to(
    budget: Duration,
    mut clock: impl FnMut() -> Instant,
    mut step: impl FnMut() -> bool,
) -> usize {
    let start = clock();
    let mut done = 0;
    while step() {
        done += 1;
        if clock().saturating_duration_since(start) >= budget {
            break;
        }
    }
    done
}

fn handle_line(
    st: &mut State,
    enforce: &enforcement::Handle,
    watcher: Option<&Watcher>,
    line: LogLine,
) {
    st.lines += 1;
    match st.metrics.lines_read.get_mut(&line.container) {
        Some(n) => *n += 1,
        None => {
            st.metrics.lines_read.insert(line.container.clone(), 1);
        }
    }
    if !st.sources.contains_key(&line.container_id) {
        let source = new_source(&st.cfg, watcher, &line);
        st.sources.insert(line.container_id.clone(), source);
    }
    let Some(source) = st.sources.get_mut(&line.container_id) else {
        return;
    };
    // Docker's receive time is the clock: it cannot be forged by what a line says.
    let now = line.docker_ts_ns.div_euclid(1_000_000_000);
    let parsed = source.parser.parse(&line.bytes);
    if let Some(notice) = source.health.record(&line.bytes, parsed.is_some()) {
        let (notice, format) = (notice.clone(), source.format.clone());
        unparsed_notice(st, &line, &format, notice, now);
    }
    let Some(req) = parsed else {
        *st.metrics
            .parse_failures
            .entry(line.container.clone())
            .or_default() += 1;
        if error_rate::is_error(None, false, &line.bytes) {
            error_line(st, &line, now);
        }
        return;
    };
    st.parsed += 1;
    if error_rate::is_error(req.status, true, &line.bytes) {
        error_line(st, &line, now);
    }
    let Some(source) = st.sources.get_mut(&line.container_id) else {
        return;
    };
    let obs = st
        .detector
        .observe_in(&req, &line.bytes, now, source.categories.as_deref());
    for &i in &obs.hits {
        let r = st.detector.rules().rule(i);
        let key = (r.id.clone(), r.category.clone());
        *st.metrics.rule_hits.entry(key).or_default() += 1;
    }
    if let Some(v) = obs.verdict {
        enforce.verdict(v, line.container.clone(), line.docker_ts_ns);
    } else if !obs.hits.is_empty() {
        let rules = st.detector.rules();
        let worst = obs
            .hits
            .iter()
            .map(|&i| rules.rule(i))
            .max_by_key(|r| r.severity);
        if let Some(w) = worst {
            st.events.send(Event::RuleHit {
                at: now,
                ip: req.ip,
                rules: obs.hits.iter().map(|&i| rules.rule(i).id.clone()).collect(),
                category: w.category.clone(),
                severity: w.severity.to_string(),
                container: line.container.clone(),
                line: crate::detect::decode::escape_excerpt(&line.bytes, 300),
            });
        }
    }
}

/// Most of a container's lines do not parse: said once, in the journal and as an alert
/// (`status` lists it from the source).
fn unparsed_notice(st: &State, line: &LogLine, format: &str, n: UnparsedNotice, now: i64) {
    tracing::warn!(CONTAINER = %line.container, ACTION = "unparsed", "{}", n.describe(&format!("container {}", line.container), format));
    st.events.send(Event::Unparsed {
        at: now,
        container: line.container.clone(),
        format: format.to_string(),
        lines: n.lines,
        unparsed: n.unparsed,
        sample: n.sample,
    });
}

/// Counts an error line (5xx, traceback) and raises an error-rate event on a jump.
fn error_line(st: &mut State, line: &LogLine, now: i64) {
    *st.metrics
        .error_lines
        .entry(line.container.clone())
        .or_default() += 1;
    if let Some(jump) = st.error_rates.error(&line.container, now) {
        tracing::warn!(CONTAINER = %line.container, ACTION = "error-rate", "{}: {} error lines this minute against a usual {:.1}/min", line.container, jump.errors, jump.baseline);
        st.events.send(Event::ErrorRate {
            at: now,
            container: line.container.clone(),
            errors: jump.errors,
            baseline: jump.baseline,
            sample: crate::detect::decode::escape_excerpt(&line.bytes, 200),
        });
    }
}

/// The alert ring, reloaded from the alerts log so alerts survive a restart.
fn open_alerts(cfg: &Config) -> (AlertBook, AlertLog) {
    let mut book = AlertBook::new(cfg.alerts.cooldown, cfg.alerts.keep);
    let mut log = AlertLog::new(&cfg.state.dir, cfg.log_retention_days);
    log.set_max_size(cfg.alerts.max_log_size);
    let now = unix_now();
    for gone in log.prune(now) {
        tracing::info!("deleted {} (older than log_retention_days)", gone.display());
    }
    let loaded = log.load(now, cfg.alerts.keep);
    if loaded.bad_lines > 0 {
        tracing::warn!(
            "{}: skipped {} line(s) that are not alerts (a write cut short by a crash?)",
            log.path().display(),
            loaded.bad_lines
        );
    }
    book.restore(loaded.alerts);
    (book, log)
}

/// An event from the bus: counted, and recorded as an alert when noteworthy.
fn on_event(st: &mut State, e: Event) {
    st.metrics.on_event(&e);
    let Some(alert) = crate::alerts::from_event(&e) else {
        return;
    };
    let severity = alert.severity.clone();
    if let Recorded::New(id) = st.alerts.record(alert) {
        *st.metrics.alerts.entry(severity).or_default() += 1;
        if let Some(a) = st.alerts.get(id).cloned() {
            let r = st.alert_log.append(&[a], unix_now());
            alert_log_result(st, r);
        }
    }
}

fn alert_log_result(st: &mut State, r: std::io::Result<()>) {
    match r {
        Ok(()) => {
            if st.alert_log_error.take().is_some() {
                tracing::info!("writing {} again", st.alert_log.path().display());
            }
        }
        Err(e) => {
            if st.alert_log_error.is_none() {
                tracing::error!(
                    "cannot write the alerts log {}: {e}; alerts are kept in memory until it can be written (is the disk full?)",
                    st.alert_log.path().display()
                );
            }
            st.alert_log_error = Some(e.to_string());
        }
    }
}

/// Writes folded alerts whose counts moved, and applies the retention.
fn flush_alerts(st: &mut State) {
    let now = unix_now();
    let dirty = st.alerts.take_dirty();
    // Nothing to write proves nothing: an earlier failure stays until a write works.
    if !dirty.is_empty() {
        let r = st.alert_log.append(&dirty, now);
        alert_log_result(st, r);
    }
    let cutoff = now - i64::from(st.cfg.log_retention_days) * 86_400;
    st.alerts.prune(cutoff, now);
    for gone in st.alert_log.prune(now) {
        tracing::info!("deleted {} (older than log_retention_days)", gone.display());
    }
}

/// Raises an event when the watcher loses or regains dockerd (looked at every tick).
fn watch_docker_connection(st: &mut State, watcher: Option<&Watcher>) {
    let Some(ws) = watcher.map(|w| w.status()) else {
        return;
    };
    let was = st.docker_connected.replace(ws.connected);
    // At start the watcher needs a moment to connect: only a change from connected, or
    // a first look that finds an error, is news.
    let news = match was {
        Some(was) => was != ws.connected,
        None => !ws.connected && ws.error.is_some(),
    };
    if news {
        st.events.send(Event::DockerConnection {
            at: unix_now(),
            connected: ws.connected,
            error: ws.error,
        });
    }
}

/// Starts, moves or stops the Prometheus listener to match `metrics.listen`.
async fn start_metrics_server(st: &mut State) -> Result<(), String> {
    let want = st.cfg.metrics.listen;
    if st.metrics_server.as_ref().map(|(a, _)| *a) == want {
        return Ok(());
    }
    let listener = match want {
        Some(addr) => Some(crate::metrics::http::bind(addr).await?),
        None => None,
    };
    if let Some((old, task)) = st.metrics_server.take() {
        task.abort();
        tracing::info!("stopped the metrics listener on {old}");
    }
    if let (Some(addr), Some(l)) = (want, listener) {
        let conns = server::Conns::new(server::ConnLimits::default());
        let task = tokio::spawn(crate::metrics::http::serve(l, st.calls.clone(), conns));
        tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
        st.metrics_server = Some((addr, task));
    }
    Ok(())
}

/// How a newly seen container's lines are read: its labels (from the watcher), then the
/// `containers` section, then the global `log_format`.
fn new_source(cfg: &Config, watcher: Option<&Watcher>, line: &LogLine) -> Source {
    let labels: HashMap<String, String> = watcher
        .and_then(|w| {
            w.status()
                .containers
                .into_iter()
                .find(|c| c.id == line.container_id)
        })
        .map(|c| c.labels.into_iter().collect())
        .unwrap_or_default();
    let (profile, warnings) = container_profile(cfg, &line.container, &labels);
    for w in warnings {
        tracing::warn!(CONTAINER = %line.container, "{w}");
    }
    let parser = match LineParser::new(&profile.format) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(CONTAINER = %line.container, "container {}: log format {}: {e}; reading it as auto", line.container, profile.format.name());
            LineParser::auto()
        }
    };
    tracing::info!(CONTAINER = %line.container, "reading {} as {}{}", line.container, profile.format.name(), profile.categories.as_ref().map(|c| format!(" (rules: {})", c.join(", "))).unwrap_or_default());
    Source {
        parser,
        categories: profile.categories,
        container: line.container.clone(),
        format: profile.format.name().to_string(),
        health: ParseHealth::default(),
    }
}

/// Enforcement's summary as last published: never waits for the worker.
async fn summary(enforce: &enforcement::Handle) -> Summary {
    enforce.summary()
}

fn rate(st: &mut State) -> f64 {
    let (at, lines, last) = st.last_rate;
    let dt = at.elapsed().as_secs_f64();
    if dt >= 1.0 {
        let r = (st.lines - lines) as f64 / dt;
        st.last_rate = (Instant::now(), st.lines, r);
        r
    } else {
        last
    }
}

fn status_line(st: &State, watcher: Option<&Watcher>, s: &Summary) -> String {
    let (docker, n) = match watcher.map(|w| w.status()) {
        Some(ws) if ws.connected => ("", ws.containers.len()),
        Some(_) => ("Docker unreachable, retrying; ", 0),
        None => ("Docker not watched; ", 0),
    };
    let reload = st
        .reload_error
        .as_deref()
        .map(|e| format!("; RELOAD FAILED: {e}"))
        .unwrap_or_default();
    format!(
        "{docker}{n} containers watched, {} active bans, {:.0} lines/s{reload}",
        s.active_bans, st.last_rate.2
    )
}

async fn reload(
    st: &mut State,
    enforce: &enforcement::Handle,
    watcher: &mut Option<Watcher>,
    line_tx: &mpsc::Sender<LogLine>,
    opts: &Options,
) -> Result<String, String> {
    systemd::reloading();
    let result = apply_reload(st, enforce, watcher, line_tx, &opts.config).await;
    match &result {
        Ok(msg) => {
            st.reload_error = None;
            tracing::info!(ACTION = "reload", "{msg}");
            st.events.send(Event::Reload {
                at: unix_now(),
                error: None,
            });
        }
        Err(e) => {
            for line in e.lines() {
                tracing::error!(ACTION = "reload", "{line}");
            }
            // The errors without the "N errors in the config:" heading, on one line.
            let lines: Vec<&str> = e
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.ends_with("in the config:"))
                .collect();
            st.reload_error = Some(if lines.is_empty() {
                e.trim().to_string()
            } else {
                lines.join("; ")
            });
            tracing::error!(
                ACTION = "reload",
                "the new config was rejected; carrying on with the old one"
            );
            st.events.send(Event::Reload {
                at: unix_now(),
                error: st.reload_error.clone(),
            });
        }
    }
    let s = summary(enforce).await;
    systemd::ready(&status_line(st, watcher.as_ref(), &s));
    result
}

async fn apply_reload(
    st: &mut State,
    enforce: &enforcement::Handle,
    watcher: &mut Option<Watcher>,
    line_tx: &mpsc::Sender<LogLine>,
    path: &Path,
) -> Result<String, String> {
    let cfg = config::load(path).map_err(|e| e.to_string().trim_end().to_string())?;
    let detector = Detector::new(&cfg).map_err(|e| format!("the rules cannot be compiled: {e}"))?;
    let settings = WatchSettings::from_config(&cfg).map_err(|e| e.to_string())?;
    // The new config is good: swap everything over. Active bans are untouched.
    st.detector = detector;
    set_detector_networks(&mut st.detector, &st.docker_networks);
    st.sources.clear();
    let _ = enforce.send(Msg::Reconfigure {
        cfg: Box::new(cfg.clone()),
        docker_networks: st.docker_networks.clone(),
    });
    if let Some(w) = watcher.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
    }
    *watcher = Some(Watcher::spawn_reporting_networks(
        settings,
        line_tx.clone(),
        st.networks_tx.clone(),
    ));
    // The new watcher starts unconnected: that is not a lost connection.
    st.docker_connected = None;
    let n = st.detector.rules().rules().len();
    st.alerts.reconfigure(cfg.alerts.cooldown, cfg.alerts.keep);
    st.alert_log.set_retention(cfg.log_retention_days);
    st.alert_log.set_max_size(cfg.alerts.max_log_size);
    st.notifier.reconfigure(&cfg);
    st.cfg = cfg;
    // A port that cannot be bound leaves the old listener as it was; the rest applies.
    start_metrics_server(st).await?;
    Ok(format!("reloaded {}: {n} rules", path.display()))
}

async fn handle_call(
    st: &mut State,
    enforce: &enforcement::Handle,
    watcher: &mut Option<Watcher>,
    line_tx: &mpsc::Sender<LogLine>,
    opts: &Options,
    req: Request,
) -> Response {
    match req {
        Request::Status => {
            let s = summary(enforce).await;
            let r = rate(st);
            let ws = watcher.as_ref().map(|w| w.status());
            Response::answer(&crate::api::Status {
                version: env!("CARGO_PKG_VERSION").to_string(),
                uptime_s: st.started.elapsed().as_secs(),
                config: opts.config.clone(),
                firewall: s,
                lines_read: st.lines,
                lines_parsed: st.parsed,
                lines_per_second: r,
                tracked_ips: st.detector.tracked_ips(),
                reload_error: st.reload_error.clone(),
                docker: ws,
                notify: st.notifier.status(),
                unparsed: unparsed_sources(st),
            })
        }
        Request::List => {
            let (tx, rx) = oneshot::channel();
            if !enforce.send(Msg::List { reply: tx }) {
                return Response::err("enforcement has stopped");
            }
            match rx.await {
                Ok(list) => Response::ok(serde_json::to_value(list).unwrap_or_default()),
                Err(_) => Response::err("enforcement has stopped"),
            }
        }
        Request::Ban {
            ip,
            seconds,
            reason,
        } => {
            let (tx, rx) = oneshot::channel();
            if !enforce.send(Msg::Ban {
                ip,
                seconds,
                reason,
                reply: tx,
            }) {
                return Response::err("enforcement has stopped");
            }
            answer(rx.await)
        }
        Request::Unban { ip } => {
            st.detector.forget(ip);
            let (tx, rx) = oneshot::channel();
            if !enforce.send(Msg::Unban { ip, reply: tx }) {
                return Response::err("enforcement has stopped");
            }
            answer(rx.await)
        }
        Request::Health => {
            let s = summary(enforce).await;
            Response::answer(&health(st, enforce, watcher.as_ref(), &s))
        }
        Request::Alerts {
            since,
            severity,
            ip,
            container,
            limit,
        } => match Filter::parse(since, severity, ip, container, limit, unix_now()) {
            Ok(f) => {
                let list = st.alerts.query(&f);
                Response::ok(serde_json::to_value(list).unwrap_or_default())
            }
            Err(e) => Response::err(e.to_string()),
        },
        Request::Insights => {
            let bans = active_bans(enforce).await;
            let i = crate::alerts::insights::compute(&st.alerts, &bans, unix_now());
            Response::ok(serde_json::to_value(i).unwrap_or_default())
        }
        Request::Metrics => {
            let s = summary(enforce).await;
            let bans = active_bans(enforce).await;
            let ws = watcher.as_ref().map(|w| w.status());
            let risk = crate::alerts::insights::compute(&st.alerts, &bans, unix_now()).risk_score;
            // Failed delivery attempts over every channel (each retry counts).
            st.metrics.notification_failures =
                st.notifier.status().channels.iter().map(|c| c.failed).sum();
            let text = crate::metrics::render(
                &st.metrics,
                &crate::metrics::Snapshot {
                    summary: &s,
                    docker: ws.as_ref(),
                    uptime_s: st.started.elapsed().as_secs(),
                    alerts_kept: st.alerts.len(),
                    risk_score: risk,
                },
            );
            Response::ok(serde_json::Value::String(text))
        }
        Request::Reload => match reload(st, enforce, watcher, line_tx, opts).await {
            Ok(msg) => Response::ok(serde_json::Value::String(msg)),
            Err(e) => Response::err(format!(
                "the new config was rejected; the daemon carries on with the old one:\n{e}"
            )),
        },
    }
}

/// Containers most of whose lines do not parse, for `status`.
fn unparsed_sources(st: &State) -> Vec<crate::api::Unparsed> {
    let mut list: Vec<crate::api::Unparsed> = st
        .sources
        .values()
        .filter_map(|s| {
            let n = s.health.notice()?;
            Some(crate::api::Unparsed {
                container: s.container.clone(),
                format: s.format.clone(),
                lines: n.lines,
                unparsed: n.unparsed,
                sample: n.sample.clone(),
            })
        })
        .collect();
    list.sort_by(|a, b| a.container.cmp(&b.container));
    list
}

async fn active_bans(enforce: &enforcement::Handle) -> Vec<crate::ban::state_file::BanRecord> {
    let (tx, rx) = oneshot::channel();
    if !enforce.send(Msg::List { reply: tx }) {
        return Vec::new();
    }
    rx.await.unwrap_or_default()
}

/// Whether each long-running part still runs. Each ends only at shutdown, so one that
/// has ended while the daemon runs died (a panic: its message is in the daemon's log).
/// A release build aborts on panic and systemd restarts it; this is for every other case.
#[derive(Debug, Clone, Copy)]
struct Alive {
    enforcement: bool,
    /// None: Docker is not watched at all (reported from the watcher status).
    watcher: Option<bool>,
    notifier: bool,
}

/// `ok` when every part runs, Docker is connected, the firewall and the state file work
/// and the config loaded; otherwise `degraded` with the problems in words. Each problem
/// is a present one: it goes once what caused it works again.
fn health(
    st: &State,
    enforce: &enforcement::Handle,
    watcher: Option<&Watcher>,
    s: &Summary,
) -> crate::api::Health {
    let ws = watcher.map(|w| w.status());
    let alive = Alive {
        enforcement: enforce.alive(),
        watcher: watcher.map(Watcher::alive),
        notifier: st.notifier.alive(),
    };
    let problems = health_problems(
        alive,
        s,
        ws.as_ref(),
        st.reload_error.as_deref(),
        st.alert_log_error.as_deref(),
    );
    crate::api::Health {
        status: crate::api::Health::state_of(&problems),
        problems,
        docker_connected: alive.watcher == Some(true) && ws.as_ref().is_some_and(|w| w.connected),
        firewall: s.backend.clone(),
        active_bans: s.active_bans,
        uptime_s: st.started.elapsed().as_secs(),
    }
}

/// What `health` lists, most serious first.
fn health_problems(
    alive: Alive,
    s: &Summary,
    ws: Option<&crate::docker::WatcherStatus>,
    reload_error: Option<&str>,
    alert_log_error: Option<&str>,
) -> Vec<String> {
    const RESTART: &str = "see the daemon's log for why, and restart the service (systemctl restart security-monitor)";
    let mut problems = Vec::new();
    if !alive.enforcement {
        problems.push(format!("the enforcement thread has stopped: no ban is applied or lifted and blocked_ips.json is not written; {RESTART}"));
    }
    if alive.watcher == Some(false) {
        problems.push(format!(
            "the Docker watcher has stopped: no container's log is read; {RESTART}"
        ));
    }
    if !alive.notifier {
        problems.push(format!(
            "the notifier has stopped: no mail or webhook notice is sent; {RESTART}"
        ));
    }
    match ws {
        None => problems.push("Docker is not watched (see the daemon's log)".to_string()),
        Some(w) if !w.connected && alive.watcher != Some(false) => problems.push(format!(
            "not connected to dockerd at {}: {}",
            w.docker_host,
            w.error.as_deref().unwrap_or("connecting")
        )),
        Some(_) => {}
    }
    if let Some(e) = &s.firewall_error {
        problems.push(format!("the firewall is failing: {e}"));
    }
    if let Some(e) = &s.state_file_error {
        problems.push(format!("the state file cannot be written: {e}"));
    }
    if let Some(e) = reload_error {
        problems.push(format!("the last reload failed: {e}"));
    }
    if let Some(e) = alert_log_error {
        problems.push(format!("cannot write the alerts log: {e}"));
    }
    problems
}

fn answer(r: Result<Result<String, String>, oneshot::error::RecvError>) -> Response {
    match r {
        Ok(Ok(msg)) => Response::ok(serde_json::Value::String(msg)),
        Ok(Err(e)) => Response::err(e),
        Err(_) => Response::err("enforcement has stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::WatcherStatus;

    const ALL_RUN: Alive = Alive {
        enforcement: true,
        watcher: Some(true),
        notifier: true,
    };

    fn connected() -> WatcherStatus {
        WatcherStatus {
            docker_host: "unix:///run/docker.sock".into(),
            connected: true,
            error: None,
            containers: Vec::new(),
        }
    }

    #[test]
    fn healthy_when_every_part_runs_and_nothing_fails() {
        let p = health_problems(ALL_RUN, &Summary::default(), Some(&connected()), None, None);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_dead_part_is_reported_by_name() {
        let cases = [
            (
                Alive {
                    enforcement: false,
                    ..ALL_RUN
                },
                "the enforcement thread has stopped",
            ),
            (
                Alive {
                    watcher: Some(false),
                    ..ALL_RUN
                },
                "the Docker watcher has stopped",
            ),
            (
                Alive {
                    notifier: false,
                    ..ALL_RUN
                },
                "the notifier has stopped",
            ),
        ];
        for (alive, want) in cases {
            // A dead watcher's last status may still say connected: it must not hide it.
            let p = health_problems(alive, &Summary::default(), Some(&connected()), None, None);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with(want), "{p:?}");
            assert!(p[0].contains("restart the service"), "{p:?}");
        }
    }

    #[test]
    fn a_firewall_or_state_file_failure_is_reported_while_it_lasts() {
        let failing = Summary {
            firewall_error: Some("adding 1 ban: no buffer space available".into()),
            state_file_error: Some("cannot write blocked_ips.json: No space left".into()),
            // An error in the past is history, not a present problem.
            last_error: Some("an old one".into()),
            ..Summary::default()
        };
        let p = health_problems(ALL_RUN, &failing, Some(&connected()), None, None);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("the firewall is failing: adding 1 ban"),
            "{p:?}"
        );
        assert!(p[1].contains("No space left"), "{p:?}");
        let cleared = Summary {
            last_error: failing.last_error.clone(),
            firewall_errors: 2,
            ..Summary::default()
        };
        let p = health_problems(ALL_RUN, &cleared, Some(&connected()), None, None);
        assert!(p.is_empty(), "{p:?}");
    }
}

#[cfg(test)]
mod turn_tests {
    use super::*;

    #[test]
    fn a_turn_of_the_main_loop_ends_when_its_time_is_up() {
        // Every step finds work and takes 10 ms on a made-up clock: the turn stops at the
        // budget, not after a count of steps.
        let t0 = Instant::now();
        let now = std::cell::Cell::new(t0);
        let steps = for_up_to(
            LINE_TURN,
            || now.get(),
            || {
                now.set(now.get() + Duration::from_millis(10));
                true
            },
        );
        assert_eq!(steps, (LINE_TURN.as_millis() / 10) as usize);
        // And it stops at once when there is no more work.
        assert_eq!(for_up_to(LINE_TURN, || t0, || false), 0);
    }
}
