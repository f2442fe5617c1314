//! What the watcher can tell about each followed container, for `status` and the
//! control socket. Counters are atomics the streams bump as they go; a snapshot is taken
//! only when asked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::cursor::{Cursor, FileCursor};
use super::files::Mount;
use super::lines::format_ts_ns;
use super::stream::RateGate;

/// How a container's log stream is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StreamState {
    /// Reading new lines as they are written.
    Following,
    /// The connection to dockerd was lost; retrying with backoff.
    Reconnecting { error: String },
    /// The container is not running; it is picked up again when it starts.
    Stopped,
    /// Its logging driver cannot be read through the Docker API (`none`, `syslog`, …).
    Unreadable { driver: String },
}

impl StreamState {
    pub fn name(&self) -> &'static str {
        match self {
            StreamState::Following => "following",
            StreamState::Reconnecting { .. } => "reconnecting",
            StreamState::Stopped => "stopped",
            StreamState::Unreadable { .. } => "unreadable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    /// The image it runs, as it was started (`vaultwarden/server:1.30.1`).
    #[serde(default)]
    pub image: String,
    #[serde(flatten)]
    pub state: StreamState,
    pub tty: bool,
    /// Lines passed on.
    pub lines_read: u64,
    /// Lines dropped because the container wrote more than `docker.max_lines_per_second`.
    pub lines_dropped: u64,
    /// Lines longer than `limits.max_line_bytes`, passed on cut.
    pub lines_truncated: u64,
    /// Docker's timestamp of the newest line passed on (RFC 3339), if any.
    pub last_line_at: Option<String>,
    /// The container's `security-monitor.*` labels: with
    /// [`container_profile`](super::container_profile) they give its log format and
    /// rule categories.
    pub labels: BTreeMap<String, String>,
    /// Its log files read through its mounts, and the ones that cannot be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileStatus>,
}

/// One log file of a container (see [`super::files`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    /// The path inside the container (or the pattern, for a problem with one).
    pub path: String,
    pub lines_read: u64,
    /// Why it is not read, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherStatus {
    /// The Docker address in use.
    pub docker_host: String,
    pub connected: bool,
    /// Why the watcher is not connected, when it is not.
    pub error: Option<String>,
    /// The followed containers, by name.
    pub containers: Vec<ContainerStatus>,
}

/// The live record of one container, shared by its stream and the watcher.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub id: String,
    pub name: Mutex<String>,
    pub state: Mutex<StreamState>,
    pub tty: AtomicBool,
    pub labels: Mutex<BTreeMap<String, String>>,
    /// The image reference it was started from (inspect's `Config.Image`).
    pub image: Mutex<String>,
    /// Its mounts, through which its log files are read.
    pub mounts: Mutex<Vec<Mount>>,
    /// Its log files, by path inside the container.
    pub files: Mutex<BTreeMap<String, Arc<FileTrack>>>,
    /// Log file paths (or patterns) that cannot be read, and why: each is warned about
    /// once.
    pub file_problems: Mutex<BTreeMap<String, String>>,
    /// `docker.max_lines_per_second`, shared by its stream and its files.
    pub gate: Mutex<RateGate>,
    pub lines_read: AtomicU64,
    pub lines_dropped: AtomicU64,
    pub lines_truncated: AtomicU64,
    /// The last line passed on (see [`Cursor`]); updated only after it was sent. A
    /// reconnect resumes from here.
    pub cursor: Mutex<Cursor>,
    /// The last line judged (see [`super::cursor::Mark`]): what `cursors.json` keeps, so a
    /// restart reads again what was queued but never judged.
    pub judged: Arc<Mutex<Cursor>>,
}

/// Locks a mutex even if a thread panicked while holding it: every value kept under
/// these locks is valid at all times.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where one log file of a container stands: read (a restarted reader goes on from
/// here) and judged (what `cursors.json` keeps), like [`Tracker::cursor`] and
/// [`Tracker::judged`] for the stream.
#[derive(Debug, Default)]
pub(crate) struct FileTrack {
    pub read: Mutex<FileCursor>,
    pub judged: Arc<Mutex<FileCursor>>,
    pub lines_read: AtomicU64,
}

impl FileTrack {
    pub fn at(cursor: FileCursor) -> Arc<FileTrack> {
        Arc::new(FileTrack {
            read: Mutex::new(cursor),
            judged: Arc::new(Mutex::new(cursor)),
            lines_read: AtomicU64::new(0),
        })
    }
}

impl Tracker {
    /// A new record, starting from the stored cursors of its stream and files.
    pub fn new(
        id: &str,
        name: &str,
        cursor: Cursor,
        files: BTreeMap<String, FileCursor>,
        max_lines_per_second: u32,
    ) -> Arc<Tracker> {
        Arc::new(Tracker {
            id: id.to_string(),
            name: Mutex::new(name.to_string()),
            state: Mutex::new(StreamState::Stopped),
            tty: AtomicBool::new(false),
            labels: Mutex::new(BTreeMap::new()),
            image: Mutex::new(String::new()),
            mounts: Mutex::new(Vec::new()),
            files: Mutex::new(
                files
                    .into_iter()
                    .map(|(path, c)| (path, FileTrack::at(c)))
                    .collect(),
            ),
            file_problems: Mutex::new(BTreeMap::new()),
            gate: Mutex::new(RateGate::new(max_lines_per_second)),
            lines_read: AtomicU64::new(0),
            lines_dropped: AtomicU64::new(0),
            lines_truncated: AtomicU64::new(0),
            cursor: Mutex::new(cursor),
            judged: Arc::new(Mutex::new(cursor)),
        })
    }

    pub fn set_state(&self, state: StreamState) {
        *lock(&self.state) = state;
    }

    pub fn name(&self) -> String {
        lock(&self.name).clone()
    }

    /// The record of log file `path`, made (reading from its start) if there is none.
    pub fn file(&self, path: &str) -> Arc<FileTrack> {
        lock(&self.files)
            .entry(path.to_string())
            .or_default()
            .clone()
    }

    /// Where each log file was read up to.
    pub fn file_read_cursors(&self) -> BTreeMap<String, FileCursor> {
        lock(&self.files)
            .iter()
            .map(|(p, t)| (p.clone(), *lock(&t.read)))
            .collect()
    }

    /// Where each log file was judged up to (files with no line judged yet left out).
    pub fn file_judged_cursors(&self) -> BTreeMap<String, FileCursor> {
        lock(&self.files)
            .iter()
            .map(|(p, t)| (p.clone(), *lock(&t.judged)))
            .filter(|(_, c)| c.inode != 0)
            .collect()
    }

    /// Notes a problem with log file `path`; true if it is new (and to be warned about).
    pub fn file_problem(&self, path: &str, problem: &str) -> bool {
        let mut problems = lock(&self.file_problems);
        if problems.get(path).map(String::as_str) == Some(problem) {
            return false;
        }
        problems.insert(path.to_string(), problem.to_string());
        true
    }

    fn file_statuses(&self) -> Vec<FileStatus> {
        let mut out: Vec<FileStatus> = lock(&self.files)
            .iter()
            .map(|(path, t)| FileStatus {
                path: path.clone(),
                lines_read: t.lines_read.load(Ordering::Relaxed),
                problem: None,
            })
            .collect();
        out.extend(
            lock(&self.file_problems)
                .iter()
                .map(|(path, p)| FileStatus {
                    path: path.clone(),
                    lines_read: 0,
                    problem: Some(p.clone()),
                }),
        );
        out
    }

    pub fn snapshot(&self) -> ContainerStatus {
        let cursor = *lock(&self.cursor);
        ContainerStatus {
            id: self.id.clone(),
            name: self.name(),
            image: lock(&self.image).clone(),
            state: lock(&self.state).clone(),
            tty: self.tty.load(Ordering::Relaxed),
            lines_read: self.lines_read.load(Ordering::Relaxed),
            lines_dropped: self.lines_dropped.load(Ordering::Relaxed),
            lines_truncated: self.lines_truncated.load(Ordering::Relaxed),
            last_line_at: (cursor.ts_ns != 0).then(|| format_ts_ns(cursor.ts_ns)),
            labels: lock(&self.labels).clone(),
            files: self.file_statuses(),
        }
    }
}
