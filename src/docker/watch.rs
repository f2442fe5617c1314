//! The watcher: which containers to follow, and one stream task per followed container.
//!
//! It subscribes to container events *before* listing the containers (asking Docker for
//! events from a moment before the subscription, so none falls between the two), then
//! reacts to start, restart, rename and destroy. When dockerd goes away it reconnects
//! with capped backoff and lists again; each stream resumes from its own cursor. A
//! container with log files (its profile's, or the label `security-monitor.logfile`)
//! gets a second task that reads them through its mounts ([`super::files`]) while it
//! runs. The cursors are written to the state directory at most once a second and on
//! shutdown.

use crate::clock::unix_now_ns;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::cursor::{self, CursorEntry};
use super::files::{self, FileFollow, Mount, ProfileFiles};
use super::lines::parse_rfc3339_ns;
use super::networks;
use super::status::{lock, ContainerStatus, StreamState, Tracker, WatcherStatus};
use super::stream::{describe, Backoff, Follow, StreamSettings};
use super::{connect, docker_host, LogLine, Selection, READABLE_DRIVERS};
use crate::ban::DockerNetwork;
use crate::config::Config;
use crate::netaddr::parse_client_ip;

/// Everything the watcher takes from the config.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The Docker address (see [`docker_host`]).
    pub docker_host: String,
    pub selection: Selection,
    /// Where cursors are kept (`STATE_DIR/cursors.json`); None: keep none (every start
    /// reads `max_backlog`), as `security-monitor watch` does by default so it never
    /// moves the daemon's cursors.
    pub cursor_file: Option<PathBuf>,
    pub max_line_bytes: usize,
    pub max_backlog_secs: u64,
    pub max_lines_per_second: u32,
    /// The log files a container's profile names, from its image and labels (see
    /// [`super::files`]); the label `security-monitor.logfile` adds more.
    pub profile_files: ProfileFiles,
}

impl WatchSettings {
    pub fn from_config(cfg: &Config) -> Result<WatchSettings, super::DockerError> {
        Ok(WatchSettings {
            docker_host: docker_host(cfg.docker.socket.as_deref()),
            selection: Selection::from_config(cfg)?,
            cursor_file: Some(cursor::cursor_path(&cfg.state.dir)),
            max_line_bytes: cfg.limits.max_line_bytes,
            max_backlog_secs: cfg.docker.max_backlog,
            max_lines_per_second: cfg.docker.max_lines_per_second,
            profile_files: super::select::profile_files(cfg),
        })
    }
}

/// What the watcher and the status readers share.
struct Shared {
    docker_host: String,
    connection: Mutex<(bool, Option<String>)>,
    /// Woken whenever `connection` is set, so the daemon hears of a lost dockerd at once.
    connection_changed: tokio::sync::Notify,
    trackers: Mutex<BTreeMap<String, Arc<Tracker>>>,
}

/// A running watcher. Lines go into the channel given to [`Watcher::spawn`]; stop it
/// with [`Watcher::shutdown`] so the cursors are written one last time.
pub struct Watcher {
    shared: Arc<Shared>,
    /// Set: stop every stream.
    stop: watch::Sender<bool>,
    /// Set: write the cursors a last time and end (after the receiver judged what was queued).
    finish: watch::Sender<bool>,
    /// Set by the watcher once every stream has ended.
    streams_ended: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching on the current tokio runtime.
    pub fn spawn(settings: WatchSettings, lines: mpsc::Sender<LogLine>) -> Watcher {
        Self::spawn_inner(settings, lines, None)
    }

    /// Like [`Watcher::spawn`], and also sends Docker's networks into `networks`: on
    /// connecting, whenever a network changes, and — the point of it — *before* the
    /// first line of a container on a network not yet sent. A receiver that applies
    /// what is waiting in `networks` before each line therefore never judges a line
    /// without knowing the network it came from (a proxy container on a new network
    /// must not be banned because its network was learned a moment too late).
    pub fn spawn_reporting_networks(
        settings: WatchSettings,
        lines: mpsc::Sender<LogLine>,
        networks: mpsc::Sender<Vec<DockerNetwork>>,
    ) -> Watcher {
        Self::spawn_inner(settings, lines, Some(networks))
    }

    fn spawn_inner(
        settings: WatchSettings,
        lines: mpsc::Sender<LogLine>,
        networks: Option<mpsc::Sender<Vec<DockerNetwork>>>,
    ) -> Watcher {
        let shared = Arc::new(Shared {
            docker_host: settings.docker_host.clone(),
            connection: Mutex::new((false, None)),
            connection_changed: tokio::sync::Notify::new(),
            trackers: Mutex::new(BTreeMap::new()),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (finish_tx, finish_rx) = watch::channel(false);
        let (ended_tx, ended_rx) = watch::channel(false);
        let mut supervisor = Supervisor::new(settings, shared.clone(), lines);
        supervisor.networks = networks;
        let task = tokio::spawn(supervisor.run(stop_rx, finish_rx, ended_tx));
        Watcher {
            shared,
            stop: stop_tx,
            finish: finish_tx,
            streams_ended: ended_rx,
            task: Some(task),
        }
    }

    /// How the watcher and every followed container are doing.
    pub fn status(&self) -> WatcherStatus {
        let (connected, error) = lock(&self.shared.connection).clone();
        let mut containers: Vec<ContainerStatus> = lock(&self.shared.trackers)
            .values()
            .map(|t| t.snapshot())
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        WatcherStatus {
            docker_host: self.shared.docker_host.clone(),
            connected,
            error,
            containers,
        }
    }

    /// A handle that reads the labels of followed containers, for a part that runs
    /// beside the watcher (the pipeline picks each container's log format by them).
    pub fn labels(&self) -> ContainerLabels {
        ContainerLabels {
            shared: self.shared.clone(),
        }
    }

    /// Whether the watcher's task still runs. It ends only when told to stop; ended
    /// before that (a panic) means no container is followed any more.
    pub fn alive(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Returns when the connection to dockerd was made or lost since the last call
    /// (see [`Watcher::status`] for which).
    pub async fn connection_changed(&self) {
        self.shared.connection_changed.notified().await
    }

    /// Stops every stream and returns once they have ended: no line comes after this.
    /// The cursors are written, and written again by `shutdown`, so a receiver that judges
    /// the lines still in its channel in between has them stored too.
    pub async fn stop_reading(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.streams_ended.wait_for(|e| *e).await;
    }

    /// Stops every stream and writes the cursors (of judged lines). Lines already in the
    /// channel stay there for the receiver; judge them between `stop_reading` and this.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = self.finish.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Reads the labels of the containers a watcher follows (see [`Watcher::labels`]).
#[derive(Clone)]
pub struct ContainerLabels {
    shared: Arc<Shared>,
}

/// What the watcher knows of a followed container, for picking how to read its lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Its `security-monitor.*` labels.
    pub labels: BTreeMap<String, String>,
    /// The image reference it was started from (`vaultwarden/server:1.30.1`,
    /// `lscr.io/linuxserver/openssh-server:latest`), as inspect's `Config.Image` says.
    pub image: String,
    /// Its bind mounts and named volumes.
    pub mounts: Vec<Mount>,
}

impl ContainerLabels {
    /// The labels of container `id`, if the watcher follows it.
    pub fn of(&self, id: &str) -> Option<BTreeMap<String, String>> {
        lock(&self.shared.trackers)
            .get(id)
            .map(|t| lock(&t.labels).clone())
    }

    /// The labels, image and mounts of container `id`, if the watcher follows it.
    pub fn info(&self, id: &str) -> Option<ContainerInfo> {
        lock(&self.shared.trackers).get(id).map(|t| ContainerInfo {
            labels: lock(&t.labels).clone(),
            image: lock(&t.image).clone(),
            mounts: lock(&t.mounts).clone(),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropped without shutdown(): still stop the streams and write the cursors, in
        // the background while the runtime lives.
        let _ = self.stop.send(true);
        let _ = self.finish.send(true);
    }
}

/// A container as the watcher needs to know it.
#[derive(Debug)]
struct Inspected {
    id: String,
    name: String,
    labels: HashMap<String, String>,
    /// `Config.Image`, else the list's `Image`.
    image: String,
    mounts: Vec<Mount>,
    running: bool,
    /// When it last stopped (Unix ns), if it ever did.
    finished_ns: Option<i64>,
    tty: bool,
    driver: String,
    /// Its addresses on its Docker networks.
    addresses: Vec<IpAddr>,
}

fn inspected(r: ContainerInspectResponse, listed_image: Option<&str>) -> Option<Inspected> {
    let id = r.id?;
    let name = r
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let config = r.config.unwrap_or_default();
    let state = r.state.unwrap_or_default();
    let addresses = r
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .values()
        .flat_map(|e| [e.ip_address.as_deref(), e.global_ipv6_address.as_deref()])
        .flatten()
        .filter_map(|a| parse_client_ip(a.as_bytes()))
        .collect();
    let image = config
        .image
        .filter(|i| !i.is_empty())
        .or_else(|| listed_image.map(str::to_string))
        .unwrap_or_default();
    Some(Inspected {
        id,
        name,
        labels: config.labels.unwrap_or_default(),
        image,
        mounts: files::mounts_from(r.mounts.as_deref().unwrap_or_default()),
        running: state.running.unwrap_or(false),
        finished_ns: state
            .finished_at
            .as_deref()
            .and_then(|t| parse_rfc3339_ns(t.as_bytes()))
            .filter(|&t| t > 0),
        tty: config.tty.unwrap_or(false),
        driver: r
            .host_config
            .and_then(|h| h.log_config)
            .and_then(|l| l.typ)
            .unwrap_or_default(),
        addresses,
    })
}

struct Supervisor {
    settings: WatchSettings,
    stream_settings: Arc<StreamSettings>,
    shared: Arc<Shared>,
    lines: mpsc::Sender<LogLine>,
    tasks: HashMap<String, JoinHandle<()>>,
    /// The log-file readers of running containers that have log files.
    file_tasks: HashMap<String, FileTask>,
    ended_tx: mpsc::UnboundedSender<String>,
    ended_rx: mpsc::UnboundedReceiver<String>,
    /// Cursors read from the file for containers not followed right now.
    stored: BTreeMap<String, CursorEntry>,
    /// What was last written, so unchanged cursors are not written again.
    written: BTreeMap<String, CursorEntry>,
    /// Containers already warned about (unreadable driver), so each is told once.
    warned: HashSet<String>,
    save_failed: bool,
    /// Where Docker's networks are reported, if anywhere, and what was last reported.
    networks: Option<mpsc::Sender<Vec<DockerNetwork>>>,
    reported_networks: Option<Vec<DockerNetwork>>,
}

impl Supervisor {
    fn new(settings: WatchSettings, shared: Arc<Shared>, lines: mpsc::Sender<LogLine>) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        let stream_settings = Arc::new(StreamSettings {
            max_line_bytes: settings.max_line_bytes,
            max_backlog_secs: settings.max_backlog_secs,
            max_lines_per_second: settings.max_lines_per_second,
        });
        let mut stored = BTreeMap::new();
        if let Some(path) = &settings.cursor_file {
            match cursor::load(path) {
                Ok(c) => stored = c,
                Err(e) => {
                    warn!("log cursors: {e}; containers are read from docker.max_backlog ago")
                }
            }
        }
        Supervisor {
            written: stored.clone(),
            stored,
            settings,
            stream_settings,
            shared,
            lines,
            tasks: HashMap::new(),
            file_tasks: HashMap::new(),
            ended_tx,
            ended_rx,
            warned: HashSet::new(),
            save_failed: false,
            networks: None,
            reported_networks: None,
        }
    }

    async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut finish: watch::Receiver<bool>,
        ended: watch::Sender<bool>,
    ) {
        info!(
            "following {} through {}",
            self.settings.selection.describe(),
            self.settings.docker_host
        );
        let mut backoff = Backoff::new();
        let mut last_error: Option<String> = None;
        loop {
            let Some(error) = self.session(&mut stop, &mut backoff).await else {
                break;
            };
            if last_error.as_deref() != Some(error.as_str()) {
                warn!("Docker at {}: {error}", self.settings.docker_host);
            }
            *lock(&self.shared.connection) = (false, Some(error.clone()));
            self.shared.connection_changed.notify_one();
            last_error = Some(error);
            let delay = backoff.next_delay();
            tokio::select! {
                _ = stopping(&mut stop) => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        for (_, task) in self.tasks.drain() {
            task.abort();
            let _ = task.await;
        }
        for (_, files) in self.file_tasks.drain() {
            files.handle.abort();
            let _ = files.handle.await;
        }
        self.save_cursors().await;
        let _ = ended.send(true);
        let _ = finish.wait_for(|f| *f).await;
        self.save_cursors().await;
    }

    /// One connection to dockerd: events, listing, and reacting until it breaks.
    /// Returns why it ended, or None when the watcher should stop.
    async fn session(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Option<String> {
        if *stop.borrow() {
            return None;
        }
        let docker = match connect(&self.settings.docker_host) {
            Ok(d) => d,
            Err(e) => return Some(e.to_string()),
        };
        let negotiated = tokio::select! {
            _ = stopping(stop) => return None,
            r = docker.negotiate_version() => r,
        };
        let docker = match negotiated {
            Ok(d) => d,
            Err(e) => {
                return Some(format!(
                    "cannot reach dockerd: {}; is Docker running, and is this the right address (docker.socket, DOCKER_HOST)?",
                    describe(&e)
                ))
            }
        };
        // Events from a moment ago on: those between this request and the listing
        // below are delivered too (and handling one twice does no harm).
        let since = (crate::clock::unix_now() - 2).max(0);
        let mut filters = HashMap::new();
        let mut types = vec!["container".to_string()];
        if self.networks.is_some() {
            types.push("network".to_string());
        }
        filters.insert("type".to_string(), types);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        let listed = tokio::select! {
            _ = stopping(stop) => return None,
            r = async {
                self.report_networks(&docker).await;
                self.reconcile(&docker).await
            } => r,
        };
        if let Err(e) = listed {
            return Some(format!("cannot list containers: {}", describe(&e)));
        }
        *lock(&self.shared.connection) = (true, None);
        self.shared.connection_changed.notify_one();
        info!("connected to dockerd at {}", self.settings.docker_host);
        backoff.reset();
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = stopping(stop) => return None,
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(&docker, ev).await,
                    Some(Err(e)) => return Some(format!("lost the event stream: {}", describe(&e))),
                    None => return Some("dockerd closed the event stream".into()),
                },
                Some(id) = self.ended_rx.recv() => {
                    // A stream ended: the container stopped, or restarted in between.
                    self.refresh(&docker, &id, Drain::No, None).await;
                }
                _ = flush.tick() => {
                    if self.lines.is_closed() {
                        return None;
                    }
                    self.save_cursors().await;
                    // Network events already say when to look again; this catches
                    // anything they missed.
                    ticks += 1;
                    if ticks % networks::POLL_EVERY.as_secs().max(1) == 0 {
                        self.report_networks(&docker).await;
                    }
                }
            }
        }
    }

    /// Lists every container: follows the selected running ones, and forgets the
    /// cursors and records of containers that no longer exist.
    async fn reconcile(&mut self, docker: &Docker) -> Result<(), DockerError> {
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let mut present = HashSet::new();
        for c in list {
            let Some(id) = c.id else { continue };
            present.insert(id.clone());
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let labels = c.labels.unwrap_or_default();
            if !self.settings.selection.selects(&name, &labels) {
                self.forget(&id, false);
                continue;
            }
            self.refresh(docker, &id, Drain::IfUnread, c.image.as_deref())
                .await;
        }
        self.stored.retain(|id, _| present.contains(id));
        let gone: Vec<String> = lock(&self.shared.trackers)
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id, true);
        }
        Ok(())
    }

    async fn on_event(&mut self, docker: &Docker, ev: EventMessage) {
        if ev.typ == Some(EventMessageTypeEnum::NETWORK) {
            self.report_networks(docker).await;
            return;
        }
        let Some(id) = ev.actor.and_then(|a| a.id) else {
            return;
        };
        match ev.action.as_deref().unwrap_or("") {
            "start" | "restart" | "unpause" | "rename" | "update" => {
                self.refresh(docker, &id, Drain::IfUnread, None).await
            }
            "destroy" => self.forget(&id, true),
            _ => {}
        }
    }

    /// Looks at container `id` again and follows it if it is selected and running, or
    /// (with [`Drain::IfUnread`]) if it stopped after the last line read from it: a
    /// container that ran and exited in a moment, or while the watcher was away.
    async fn refresh(
        &mut self,
        docker: &Docker,
        id: &str,
        drain: Drain,
        listed_image: Option<&str>,
    ) {
        let info = match docker.inspect_container(id, None).await {
            Ok(r) => inspected(r, listed_image),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.forget(id, true);
                return;
            }
            Err(e) => {
                warn!("cannot inspect container {id}: {}", describe(&e));
                return;
            }
        };
        let Some(info) = info else { return };
        if !self.settings.selection.selects(&info.name, &info.labels) {
            self.forget(&info.id, false);
            return;
        }
        let tracker = self.tracker(&info.id, &info.name);
        tracker
            .tty
            .store(info.tty, std::sync::atomic::Ordering::Relaxed);
        *lock(&tracker.labels) = info
            .labels
            .iter()
            .filter(|(k, _)| k.starts_with("security-monitor."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        lock(&tracker.image).clone_from(&info.image);
        lock(&tracker.mounts).clone_from(&info.mounts);
        let renamed = {
            let mut name = lock(&tracker.name);
            let renamed = *name != info.name;
            name.clone_from(&info.name);
            renamed
        };
        self.follow_files(&info, &tracker);
        if !READABLE_DRIVERS.contains(&info.driver.as_str()) {
            if self.warned.insert(info.id.clone()) {
                warn!(container = %info.name,
                    "container {} uses the logging driver \"{}\", whose logs cannot be read through the Docker API; it is NOT watched. Run it with --log-driver json-file, local or journald (or set dockerd's log-opts \"mode\": \"non-blocking\" with a dual-logging capable driver)",
                    info.name, info.driver);
            }
            tracker.set_state(StreamState::Unreadable {
                driver: info.driver,
            });
            return;
        }
        if !info.running {
            if !self.task_alive(&info.id) {
                tracker.set_state(StreamState::Stopped);
            }
            let floor_ns = unix_now_ns() - self.settings.max_backlog_secs as i64 * 1_000_000_000;
            let cursor_ns = lock(&tracker.cursor).ts_ns;
            let unread = info
                .finished_ns
                .is_some_and(|f| f > cursor_ns && f > floor_ns);
            if drain == Drain::No || !unread {
                return;
            }
        }
        if self.task_alive(&info.id) {
            if !renamed {
                return;
            }
            // The stream stamps lines with the name: restart it; the cursor makes the
            // switch lose and repeat nothing.
            if let Some(task) = self.tasks.remove(&info.id) {
                task.abort();
                let _ = task.await;
            }
        }
        let unknown_network = info.addresses.iter().any(|&a| {
            !self
                .reported_networks
                .iter()
                .flatten()
                .any(|n| n.subnet.contains(a))
        });
        if unknown_network {
            // Its lines must not be judged before its networks are known.
            self.report_networks(docker).await;
        }
        info!(container = %info.name, "following container {} ({})", info.name, short(&info.id));
        let follow = Follow {
            docker: docker.clone(),
            tracker,
            name: info.name,
            tty: info.tty,
            unix_socket: self
                .settings
                .docker_host
                .strip_prefix("unix://")
                .map(std::path::PathBuf::from),
            settings: self.stream_settings.clone(),
            lines: self.lines.clone(),
            ended: self.ended_tx.clone(),
        };
        self.tasks.insert(info.id, tokio::spawn(follow.run()));
    }

    /// Reads Docker's networks and sends them when they changed (the first time always).
    /// Returns once they are in the channel.
    async fn report_networks(&mut self, docker: &Docker) {
        let Some(tx) = &self.networks else { return };
        match networks::list(docker).await {
            Ok(nets) if self.reported_networks.as_ref() != Some(&nets) => {
                if tx.send(nets.clone()).await.is_ok() {
                    self.reported_networks = Some(nets);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("{e}"),
        }
    }

    /// Reads the log files of a running container, if it has any; a stopped one's files
    /// are looked at once more, then no longer.
    fn follow_files(&mut self, info: &Inspected, tracker: &Arc<Tracker>) {
        let profile = self
            .settings
            .profile_files
            .of(&info.name, &info.image, &info.labels);
        let paths = files::wanted(profile, &info.labels);
        if !info.running || paths.is_empty() {
            if let Some(t) = self.file_tasks.get(&info.id) {
                let _ = t.finish.send(true);
            }
            return;
        }
        if let Some(t) = self.file_tasks.get(&info.id) {
            if !t.handle.is_finished() {
                // Started again before its last look ended: it reads on. Should it end
                // anyway, it says so and this runs again.
                let _ = t.finish.send(false);
                return;
            }
        }
        let (finish, finish_rx) = watch::channel(false);
        let follow = FileFollow {
            tracker: tracker.clone(),
            paths,
            settings: self.stream_settings.clone(),
            lines: self.lines.clone(),
            finish: finish_rx,
            ended: self.ended_tx.clone(),
        };
        let handle = tokio::spawn(follow.run());
        self.file_tasks
            .insert(info.id.clone(), FileTask { handle, finish });
    }

    fn task_alive(&self, id: &str) -> bool {
        self.tasks.get(id).is_some_and(|t| !t.is_finished())
    }

    /// The record of container `id`, made (with its stored cursor) if there is none.
    fn tracker(&mut self, id: &str, name: &str) -> Arc<Tracker> {
        let mut trackers = lock(&self.shared.trackers);
        if let Some(t) = trackers.get(id) {
            return t.clone();
        }
        let stored = self.stored.remove(id).unwrap_or_default();
        let t = Tracker::new(
            id,
            name,
            stored.cursor,
            stored.files,
            self.settings.max_lines_per_second,
        );
        trackers.insert(id.to_string(), t.clone());
        t
    }

    /// Stops following container `id`. When it is gone for good (`destroyed`) its cursor
    /// goes too; otherwise (no longer selected) the cursor is kept.
    fn forget(&mut self, id: &str, destroyed: bool) {
        if let Some(task) = self.tasks.remove(id) {
            task.abort();
        }
        if let Some(files) = self.file_tasks.remove(id) {
            files.handle.abort();
        }
        let removed = lock(&self.shared.trackers).remove(id);
        if destroyed {
            self.stored.remove(id);
            self.warned.remove(id);
        } else if let Some(t) = removed {
            let entry = stored_entry(&t);
            if !entry.is_empty() {
                self.stored.insert(id.to_string(), entry);
            }
        }
    }

    /// Writes the cursors if they changed since the last write.
    async fn save_cursors(&mut self) {
        let Some(path) = self.settings.cursor_file.clone() else {
            return;
        };
        let mut all = self.stored.clone();
        for t in lock(&self.shared.trackers).values() {
            let entry = stored_entry(t);
            if !entry.is_empty() {
                all.insert(t.id.clone(), entry);
            }
        }
        if all == self.written {
            return;
        }
        let snapshot = all.clone();
        let result = tokio::task::spawn_blocking(move || cursor::save(&path, &snapshot)).await;
        match result {
            Ok(Ok(())) => {
                self.written = all;
                if self.save_failed {
                    info!("log cursors are written again");
                    self.save_failed = false;
                }
            }
            Ok(Err(e)) => {
                if !self.save_failed {
                    warn!("cannot write the log cursors to {}: {e}; a restart may read lines again (check state.dir)", self.settings.cursor_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default());
                    self.save_failed = true;
                }
            }
            Err(e) => warn!("writing the log cursors failed: {e}"),
        }
    }
}

/// A container's log-file reader.
struct FileTask {
    handle: JoinHandle<()>,
    /// Set: look at the files once more, then end (the container stopped).
    finish: watch::Sender<bool>,
}

/// What `cursors.json` keeps of a container: its judged cursors.
fn stored_entry(t: &Tracker) -> CursorEntry {
    CursorEntry {
        name: t.name(),
        cursor: *lock(&t.judged),
        files: t.file_judged_cursors(),
    }
}

/// Whether [`Supervisor::refresh`] reads a stopped container's last lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    IfUnread,
    /// Its stream just ended, having read it to the end.
    No,
}

/// Resolves once the watcher is told to stop (or its handle is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
