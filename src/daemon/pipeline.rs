//! A line in, verdicts out: the pipeline thread reads each container's lines, judges them
//! and hands verdicts to the enforcement thread.
//!
//! It runs on a thread of its own, not in the main loop: one crafted line may cost
//! milliseconds of regex work (more in a debug build), and however many of them come,
//! `status`, `health`, signals and the systemd watchdog are answered by a loop that never
//! judges a line. What `status` shows of the pipeline (counts, tracked IPs, containers
//! whose lines do not parse) is published at most `PUBLISH_EVERY` apart while lines come,
//! and at once when the queue is empty.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::alerts::errors::{self as error_rate, ErrorRates};
use crate::api::Unparsed;
use crate::ban::worker::{Msg, Queue};
use crate::ban::DockerNetwork;
use crate::config::Config;
use crate::detect::anomaly::{self, Mode};
use crate::detect::behaviour::{Behaviour, Seen};
use crate::detect::parse::{LineParser, ParseHealth, UnparsedNotice};
use crate::detect::{Detector, Scope};
use crate::docker::history::{read_history, HistoryRequest};
use crate::docker::{container_profile, ContainerLabels, LogLine};
use crate::events::Event;

/// How long the pipeline judges queued lines before it publishes its figures and looks at
/// its commands again.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What the pipeline has done, as `status` and the metrics show it.
#[derive(Debug, Clone, Default)]
pub(super) struct Stats {
    pub lines: u64,
    pub parsed: u64,
    pub tracked_ips: usize,
    pub lines_read: BTreeMap<String, u64>,
    pub parse_failures: BTreeMap<String, u64>,
    pub error_lines: BTreeMap<String, u64>,
    pub rule_hits: BTreeMap<(String, String), u64>,
    /// Anomalies of the endpoint baselines, by container.
    pub anomalies: BTreeMap<String, u64>,
    /// What the baselines hold per container (empty with `anomaly.mode: "off"`).
    pub anomaly_model: Vec<(String, anomaly::Stats)>,
    pub unparsed: Vec<Unparsed>,
    /// How each container is read and why (profile or format, reason), by name.
    pub profiles: BTreeMap<String, (String, String)>,
}

/// What the main loop tells the pipeline.
pub(super) enum Command {
    /// A reload: new rules and settings (and, with a new watcher, its labels).
    Reconfigure {
        cfg: Box<Config>,
        detector: Box<Detector>,
        labels: Option<ContainerLabels>,
    },
    /// An operator unbanned this address: its windows start afresh.
    Forget(IpAddr),
    /// Forget what is kept for containers other than these (by id, by name).
    /// `listed`: the watcher is connected, so `names` is every container it follows
    /// (and the baselines of the others may go too; before it has listed them, a
    /// model just loaded must not lose them all).
    Prune {
        ids: HashSet<String>,
        names: HashSet<String>,
        listed: bool,
    },
    /// Judge every line already queued, publish, then answer.
    Flush(oneshot::Sender<()>),
    /// A container's history, read for its baselines (see [`warm_up`]).
    Warm {
        name: String,
        lines: Vec<LogLine>,
        error: Option<String>,
    },
}

/// The main loop's side of the pipeline thread.
pub(super) struct PipelineHandle {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<Mutex<Stats>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PipelineHandle {
    /// A handle of no thread, left in place of one being stopped.
    pub fn stopped() -> PipelineHandle {
        PipelineHandle {
            commands: mpsc::unbounded_channel().0,
            stats: Arc::default(),
            thread: None,
        }
    }

    pub fn send(&self, c: Command) -> bool {
        self.commands.send(c).is_ok()
    }

    /// Lines read, as last published (without copying the rest of the figures).
    pub fn lines(&self) -> u64 {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).lines
    }

    /// The figures as last published.
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Returns once every line queued before the call has been judged.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Flush(tx)) {
            let _ = rx.await;
        }
    }

    /// Judges what is queued, then ends the thread (and with it its sender to the
    /// enforcement thread, which can then stop).
    pub async fn stop(mut self) {
        self.flush().await;
        drop(self.commands);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The pipeline's inputs, made by the daemon's start.
pub(super) struct Inputs {
    pub lines: mpsc::Receiver<LogLine>,
    pub networks: mpsc::Receiver<Vec<DockerNetwork>>,
    /// The main loop's own alerts and metrics take the pipeline's events.
    pub events: mpsc::UnboundedSender<Event>,
}

/// Starts the pipeline thread.
pub(super) fn spawn(
    cfg: Config,
    detector: Detector,
    labels: Option<ContainerLabels>,
    enforce: Queue,
    inputs: Inputs,
) -> std::io::Result<PipelineHandle> {
    let (commands, commands_rx) = mpsc::unbounded_channel::<Command>();
    let (warm_tx, warm_rx) = mpsc::unbounded_channel();
    // History is read on the daemon's runtime (it is I/O); the pipeline thread only
    // learns from what comes back. The task ends with the pipeline (its requests'
    // sender), and holds the pipeline's commands only weakly, so it never keeps the
    // thread alive.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(warm_up(warm_rx, commands.downgrade()));
    }
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut saver = super::anomaly::Saver::new(&cfg);
    let (model, behaviour) = match cfg.anomaly.mode {
        Mode::Off => (None, None),
        _ => {
            let (m, b) = super::anomaly::start(&cfg);
            saver.loaded(&m, Some(&b));
            (Some(m), Some(b))
        }
    };
    let mut p = Pipeline {
        behaviour,
        anomaly: model,
        saver,
        anomaly_missing: HashMap::new(),
        cfg,
        detector,
        labels,
        sources: HashMap::new(),
        error_rates: ErrorRates::new(),
        stats: Stats::default(),
        docker_networks: Vec::new(),
        enforce,
        events: inputs.events,
        published: stats.clone(),
        last_publish: Instant::now(),
        warm_tx,
        warmed: HashSet::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let (mut lines, mut networks) = (inputs.lines, inputs.networks);
    let thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            runtime.block_on(p.run(&mut lines, &mut networks, commands_rx));
        })?;
    Ok(PipelineHandle {
        commands,
        stats,
        thread: Some(thread),
    })
}

/// How one container's lines are read.
struct Source {
    parser: LineParser,
    /// The rule categories and the profile that judge its lines.
    scope: Scope,
    /// The container's name and format name, for the unparsed-lines notice.
    container: String,
    format: String,
    /// Why it is read so, for `status`.
    reason: String,
    /// Lines that did not parse; says once when most of them fail.
    health: ParseHealth,
}

/// A container id, and the log file's path for a line of one (None: its stream).
type SourceKey = (String, Option<Arc<str>>);

struct Pipeline {
    cfg: Config,
    detector: Detector,
    labels: Option<ContainerLabels>,
    /// How each container's lines are read, by container id and, for a log file inside
    /// it, the file's path there: each file is parsed apart from the stream.
    sources: HashMap<SourceKey, Source>,
    error_rates: ErrorRates,
    stats: Stats,
    /// Docker's networks as last read (kept for the detector a reload makes).
    docker_networks: Vec<DockerNetwork>,
    enforce: Queue,
    events: mpsc::UnboundedSender<Event>,
    published: Arc<Mutex<Stats>>,
    last_publish: Instant,
    /// The endpoint baselines (None: `anomaly.mode` is off), one source per container
    /// name, and what saves them.
    anomaly: Option<anomaly::Model>,
    /// Each client measured against its container's other clients (on with the
    /// baselines; kept in memory only: it is relearned within the first clients).
    behaviour: Option<Behaviour>,
    saver: super::anomaly::Saver,
    /// Where containers' histories are asked for, and the containers asked for already.
    warm_tx: mpsc::UnboundedSender<WarmRequest>,
    warmed: HashSet<String>,
    /// Since when each container with baselines has been missing from the watcher's
    /// list (see `anomaly::PRUNE_GRACE`).
    anomaly_missing: HashMap<String, Instant>,
}

impl Pipeline {
    async fn run(
        &mut self,
        lines: &mut mpsc::Receiver<LogLine>,
        networks: &mut mpsc::Receiver<Vec<DockerNetwork>>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        loop {
            // Commands first (a reload's new rules before the new watcher's lines), then
            // networks (before any line from a network not yet known), then lines. A
            // turn of lines is bounded, so commands never wait long.
            tokio::select! {
                biased;
                c = commands.recv() => match c {
                    Some(Command::Flush(reply)) => {
                        while let Ok(line) = lines.try_recv() {
                            self.line(line, networks);
                        }
                        self.publish();
                        let _ = reply.send(());
                    }
                    Some(c) => self.command(c),
                    None => break,
                },
                Some(nets) = networks.recv() => self.apply_networks(nets),
                Some(line) = lines.recv() => {
                    // What is queued, for up to a turn: then the figures are published
                    // and a command (a reload, an unban) gets its turn.
                    self.line(line, networks);
                    let turn = Instant::now();
                    while turn.elapsed() < PUBLISH_EVERY {
                        match lines.try_recv() {
                            Ok(line) => self.line(line, networks),
                            Err(_) => break,
                        }
                    }
                    self.publish();
                }
            }
        }
        self.publish();
        if let Some(m) = &self.anomaly {
            self.saver.save_now(m, self.behaviour.as_ref());
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Reconfigure {
                cfg,
                detector,
                labels,
            } => {
                self.detector = *detector;
                set_detector_networks(&mut self.detector, &self.docker_networks);
                self.sources.clear();
                self.enforce.send(Msg::Reconfigure {
                    cfg: cfg.clone(),
                    docker_networks: self.docker_networks.clone(),
                });
                self.reconfigure_anomaly(&cfg);
                self.cfg = *cfg;
                if labels.is_some() {
                    self.labels = labels;
                }
            }
            Command::Forget(ip) => self.detector.forget(ip),
            Command::Prune { ids, names, listed } => self.prune(&ids, &names, listed),
            Command::Flush(reply) => {
                let _ = reply.send(());
            }
            Command::Warm { name, lines, error } => self.warm(&name, lines, error),
        }
        self.publish();
    }

    /// A reload keeps what the baselines learned, with the new settings; `off` drops
    /// them (saved first, so switching them on again starts from there), and switching
    /// them on loads the file.
    fn reconfigure_anomaly(&mut self, cfg: &Config) {
        self.saver.set_interval(cfg.anomaly.save_interval);
        match (&mut self.anomaly, cfg.anomaly.mode) {
            (Some(m), Mode::Off) => {
                self.saver.save_now(m, self.behaviour.as_ref());
                self.anomaly = None;
                self.behaviour = None;
                tracing::info!("endpoint baselines: off");
            }
            (Some(m), _) => m.set_settings(cfg.anomaly.model),
            (None, Mode::Off) => {}
            (None, _) => {
                let (m, b) = super::anomaly::start(cfg);
                self.saver.loaded(&m, Some(&b));
                self.anomaly = Some(m);
                self.behaviour = Some(b);
            }
        }
    }

    fn publish(&mut self) {
        if let Some(m) = &self.anomaly {
            self.saver.tick(m, self.behaviour.as_ref());
        }
        self.stats.anomaly_model = self
            .anomaly
            .as_ref()
            .map(anomaly::Model::source_stats)
            .unwrap_or_default();
        self.stats.tracked_ips = self.detector.tracked_ips();
        self.stats.unparsed = self.unparsed();
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = self.stats.clone();
        self.last_publish = Instant::now();
    }

    /// Docker's networks changed: the detector (trusted proxies) and the never-ban list
    /// follow, in that order before any later line.
    fn apply_networks(&mut self, nets: Vec<DockerNetwork>) {
        tracing::info!(
            "Docker networks: {}",
            nets.iter()
                .map(|n| format!("{} {}", n.name, n.subnet))
                .collect::<Vec<_>>()
                .join(", ")
        );
        set_detector_networks(&mut self.detector, &nets);
        self.docker_networks = nets.clone();
        self.enforce.send(Msg::DockerNetworks(nets));
    }

    /// Judges one line, after any networks the watcher reported ahead of it (see
    /// `spawn_reporting_networks`); its cursor moves once it is judged.
    fn line(&mut self, line: LogLine, networks: &mut mpsc::Receiver<Vec<DockerNetwork>>) {
        while let Ok(nets) = networks.try_recv() {
            self.apply_networks(nets);
        }
        self.judge(&line);
        line.mark.judged();
    }

    fn judge(&mut self, line: &LogLine) {
        self.stats.lines += 1;
        match self.stats.lines_read.get_mut(&line.container) {
            Some(n) => *n += 1,
            None => {
                self.stats.lines_read.insert(line.container.clone(), 1);
            }
        }
        let key: SourceKey = (line.container_id.clone(), line.file.clone());
        if !self.sources.contains_key(&key) {
            let (labels, image) = self.labels_and_image(&line.container_id);
            let source = new_source(&self.cfg, &labels, &image, line);
            self.stats.profiles.insert(
                line.container.clone(),
                (source.format.clone(), source.reason.clone()),
            );
            self.sources.insert(key.clone(), source);
            if line.file.is_none() {
                self.ask_warm_up(line);
            }
        }
        let Some(source) = self.sources.get_mut(&key) else {
            return;
        };
        // Docker's receive time is the clock: it cannot be forged by what a line says.
        let now = line.docker_ts_ns.div_euclid(1_000_000_000);
        source.parser.set_reference(now);
        let parsed = source.parser.parse(&line.bytes);
        let hint = match parsed {
            None => source.parser.hint(&line.bytes),
            Some(_) => None,
        };
        if let Some(notice) = source.health.record(&line.bytes, parsed.is_some()) {
            let (notice, format) = (notice.clone(), source.format.clone());
            self.unparsed_notice(line, &format, notice, now);
        }
        let Some(req) = parsed else {
            if let Some(hint) = hint {
                tracing::warn!(CONTAINER = %line.container, ACTION = "unparsed", "container {}: {hint}", line.container);
            }
            *self
                .stats
                .parse_failures
                .entry(line.container.clone())
                .or_default() += 1;
            if error_rate::is_error(None, false, &line.bytes) {
                self.error_line(line, now);
            }
            return;
        };
        self.stats.parsed += 1;
        if error_rate::is_error(req.status, true, &line.bytes) {
            self.error_line(line, now);
        }
        let Some(source) = self.sources.get(&key) else {
            return;
        };
        let obs = self
            .detector
            .observe_in(&req, &line.bytes, now, &source.scope);
        for &i in &obs.hits {
            let r = self.detector.rules().rule(i);
            let key = (r.id.clone(), r.category.clone());
            *self.stats.rule_hits.entry(key).or_default() += 1;
        }
        // The baselines see every request, as `check` feeds them, and learn from the
        // surely ordinary: a client with no rule hit and no ban (and, they see to it,
        // answered 2xx/3xx).
        let client = obs.client.unwrap_or(req.ip);
        let finding = self.anomaly.as_mut().and_then(|m| {
            let rule_free = obs.hits.is_empty()
                && obs.verdict.is_none()
                && !self.detector.is_quiet(client, now);
            m.observe_from(&line.container, &req, client, rule_free)
        });
        // Beside the endpoints, the client measured against the container's others.
        let behaviour = self.behaviour.as_mut().and_then(|b| {
            let seen = Seen {
                rule_hit: !obs.hits.is_empty() || obs.verdict.is_some(),
                unusual: finding.as_ref().is_some_and(|a| a.score >= 0.5),
            };
            b.observe(&line.container, client, &req, now, seen)
        });
        for a in finding.into_iter().chain(behaviour) {
            *self
                .stats
                .anomalies
                .entry(line.container.clone())
                .or_default() += 1;
            let ban = self.cfg.anomaly.mode == Mode::Ban && obs.verdict.is_none();
            if ban {
                let via = (client != req.ip).then_some(req.ip);
                if let Some(v) =
                    self.detector
                        .anomaly(client, via, a.score, now, &source.scope, &line.bytes)
                {
                    self.enforce
                        .verdict(v, line.container.clone(), line.docker_ts_ns);
                }
            }
            // An endpoint never seen (a score below 0.5) is counted, not alerted: on a
            // busy site with open-ended routes such alerts would crowd the ring out.
            if a.score >= 0.5 {
                let _ = self.events.send(Event::Anomaly {
                    at: now,
                    ip: client,
                    container: line.container.clone(),
                    score: a.score,
                    reason: a.reason,
                    endpoint: a.endpoint,
                    line: crate::detect::decode::escape_excerpt(&line.bytes, 300),
                });
            }
        }
        if let Some(v) = obs.verdict {
            self.enforce
                .verdict(v, line.container.clone(), line.docker_ts_ns);
            return;
        }
        let rules = self.detector.rules();
        let worst = obs
            .hits
            .iter()
            .map(|&i| rules.rule(i))
            .max_by_key(|r| r.severity);
        if let Some(w) = worst {
            let _ = self.events.send(Event::RuleHit {
                at: now,
                ip: req.ip,
                rules: obs.hits.iter().map(|&i| rules.rule(i).id.clone()).collect(),
                category: w.category.clone(),
                severity: w.severity,
                container: line.container.clone(),
                line: crate::detect::decode::escape_excerpt(&line.bytes, 300),
            });
        }
    }

    /// Most of a container's lines do not parse: said once, in the journal and as an
    /// alert (`status` lists it from the source).
    fn unparsed_notice(&mut self, line: &LogLine, format: &str, n: UnparsedNotice, now: i64) {
        tracing::warn!(CONTAINER = %line.container, ACTION = "unparsed", "{}", n.describe(&format!("container {}", line.container), format));
        let _ = self.events.send(Event::Unparsed {
            at: now,
            container: line.container.clone(),
            format: format.to_string(),
            lines: n.lines,
            unparsed: n.unparsed,
            sample: n.sample,
        });
    }

    /// Counts an error line (5xx, traceback) and raises an error-rate alert on a jump.
    fn error_line(&mut self, line: &LogLine, now: i64) {
        *self
            .stats
            .error_lines
            .entry(line.container.clone())
            .or_default() += 1;
        if let Some(jump) = self.error_rates.error(&line.container, now) {
            tracing::warn!(CONTAINER = %line.container, ACTION = "error-rate", "{}: {} error lines this minute against a usual {:.1}/min", line.container, jump.errors, jump.baseline);
            let _ = self.events.send(Event::ErrorRate {
                at: now,
                container: line.container.clone(),
                errors: jump.errors,
                baseline: jump.baseline,
                sample: crate::detect::decode::escape_excerpt(&line.bytes, 200),
            });
        }
    }

    /// Containers most of whose lines do not parse.
    fn unparsed(&self) -> Vec<Unparsed> {
        let mut list: Vec<Unparsed> = self
            .sources
            .values()
            .filter_map(|s| {
                let n = s.health.notice()?;
                Some(Unparsed {
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

    /// Forgets what is kept for containers the watcher no longer follows (destroyed, or
    /// no longer selected): containers that come and go must not grow these maps without
    /// bound. A container that comes back starts afresh, except for its endpoint
    /// baselines, which go only once it has been missing for `PRUNE_GRACE` (a deploy
    /// recreates a container under the same name, and the baselines took long to learn).
    fn prune(&mut self, ids: &HashSet<String>, names: &HashSet<String>, listed: bool) {
        self.sources.retain(|(id, _), _| ids.contains(id));
        if listed {
            if let Some(m) = &mut self.anomaly {
                let gone = super::anomaly::gone(
                    &mut self.anomaly_missing,
                    m.source_names(),
                    names,
                    Instant::now(),
                    super::anomaly::PRUNE_GRACE,
                );
                if !gone.is_empty() {
                    tracing::info!(
                        "endpoint baselines: dropped those of {} (not followed for {} minutes)",
                        gone.join(", "),
                        super::anomaly::PRUNE_GRACE.as_secs() / 60
                    );
                    m.retain_sources(|name| !gone.iter().any(|g| g == name));
                }
            }
        }
        self.stats.anomalies.retain(|k, _| names.contains(k));
        self.stats.profiles.retain(|name, _| names.contains(name));
        self.stats.lines_read.retain(|k, _| names.contains(k));
        self.stats.parse_failures.retain(|k, _| names.contains(k));
        self.stats.error_lines.retain(|k, _| names.contains(k));
        self.error_rates.retain(|c| names.contains(c));
    }
}

/// A container's history wanted for its baselines: its lines since `since` (Unix
/// seconds) and older than `until_ns` (the first line judged live), at most `max_lines`.
struct WarmRequest {
    host: String,
    id: String,
    name: String,
    since: i64,
    until_ns: i64,
    max_lines: u64,
    max_line_bytes: usize,
}

/// Reads the histories asked for, one at a time, and hands them to the pipeline.
async fn warm_up(
    mut requests: mpsc::UnboundedReceiver<WarmRequest>,
    commands: mpsc::WeakUnboundedSender<Command>,
) {
    while let Some(r) = requests.recv().await {
        let req = HistoryRequest {
            container: r.id.clone(),
            since: r.since,
            max_lines: r.max_lines,
            max_line_bytes: r.max_line_bytes,
        };
        let mut lines = Vec::new();
        let read = read_history(&r.host, &req, |l| {
            if l.docker_ts_ns < r.until_ns {
                lines.push(l);
            }
        })
        .await;
        let Some(commands) = commands.upgrade() else {
            return;
        };
        let _ = commands.send(Command::Warm {
            name: r.name,
            lines,
            error: read.err().map(|e| e.to_string()),
        });
    }
}

impl Pipeline {
    /// A container's labels and image, as the watcher last listed them.
    fn labels_and_image(&self, id: &str) -> (HashMap<String, String>, String) {
        let info = self
            .labels
            .as_ref()
            .and_then(|l| l.info(id))
            .unwrap_or_default();
        (info.labels.into_iter().collect(), info.image)
    }

    /// A container seen for the first time: when its baselines hold nothing (new to
    /// this host, or the model file was lost), its own history is asked for, once per
    /// container while the daemon runs. Baselines loaded from the file already learned
    /// that history, and the log cursor resumes after it: it is not read again.
    fn ask_warm_up(&mut self, line: &LogLine) {
        let a = &self.cfg.anomaly;
        let Some(model) = &self.anomaly else {
            return;
        };
        if a.warmup == 0
            || a.warmup_lines == 0
            || model.learned_in(&line.container) > 0
            || !self.warmed.insert(line.container.clone())
        {
            return;
        }
        let now = line.docker_ts_ns.div_euclid(1_000_000_000);
        let _ = self.warm_tx.send(WarmRequest {
            host: crate::docker::docker_host(self.cfg.docker.socket.as_deref()),
            id: line.container_id.clone(),
            name: line.container.clone(),
            since: now.saturating_sub(a.warmup as i64),
            until_ns: line.docker_ts_ns,
            max_lines: a.warmup_lines,
            max_line_bytes: self.cfg.limits.max_line_bytes,
        });
    }

    /// Learns from a container's history, read as its live lines are read: what no rule
    /// matches and was answered 2xx/3xx teaches its baselines. Nothing in it is judged,
    /// alerted or banned (what the live stream reads again on a restart is).
    fn warm(&mut self, name: &str, lines: Vec<LogLine>, error: Option<String>) {
        if let Some(e) = &error {
            tracing::warn!(CONTAINER = %name, "container {name}: its history could not be read to warm its baselines: {e}");
        }
        let Some(first) = lines.first().filter(|_| self.anomaly.is_some()) else {
            if error.is_none() {
                tracing::info!(CONTAINER = %name, "container {name}: no history to warm its baselines from");
            }
            return;
        };
        let (labels, image) = self.labels_and_image(&first.container_id);
        let (profile, _) = container_profile(&self.cfg, name, &image, &labels);
        let Some(model) = self.anomaly.as_mut() else {
            return;
        };
        let mut parser = LineParser::new(&profile.format).unwrap_or_else(|_| LineParser::auto());
        let before = model.learned_in(name);
        let (mut parsed, mut clean) = (0u64, 0u64);
        for line in &lines {
            parser.set_reference(line.docker_ts_ns.div_euclid(1_000_000_000));
            let Some(req) = parser.parse(&line.bytes) else {
                continue;
            };
            parsed += 1;
            let (client, hit) = self.detector.matches_only(&req, &line.bytes);
            clean += u64::from(!hit && req.status.is_some_and(|s| (200..400).contains(&s)));
            let _ = model.observe_from(name, &req, client, !hit);
        }
        let learned = model.learned_in(name) - before;
        tracing::info!(CONTAINER = %name, "container {name}: baselines warmed from its history: {} lines read ({parsed} parsed, {clean} clean), {learned} requests learned", lines.len());
    }
}

pub(super) fn set_detector_networks(detector: &mut Detector, nets: &[DockerNetwork]) {
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

/// How a newly seen container's lines are read: its labels (from the watcher), then the
/// `containers` section, then the global `log_format`.
fn new_source(
    cfg: &Config,
    labels: &HashMap<String, String>,
    image: &str,
    line: &LogLine,
) -> Source {
    let (profile, warnings) = container_profile(cfg, &line.container, image, labels);
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
    tracing::info!(CONTAINER = %line.container, "reading {} as {} ({}){}", line.container, profile.format.name(), profile.reason, profile.categories.as_ref().map(|c| format!(" (rules: {})", c.join(", "))).unwrap_or_default());
    Source {
        parser,
        scope: profile.scope(),
        container: match &line.file {
            Some(file) => format!("{} {file}", line.container),
            None => line.container.clone(),
        },
        format: profile.format.name().to_string(),
        reason: profile.reason,
        health: ParseHealth::for_format(&profile.format),
    }
}
