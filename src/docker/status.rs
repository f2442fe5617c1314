//! What the watcher can tell about each followed container, for `status` and the
//! control socket. Counters are atomics the streams bump as they go; a snapshot is taken
//! only when asked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::cursor::Cursor;
use super::lines::format_ts_ns;

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

impl Tracker {
    pub fn new(id: &str, name: &str, cursor: Cursor) -> Arc<Tracker> {
        Arc::new(Tracker {
            id: id.to_string(),
            name: Mutex::new(name.to_string()),
            state: Mutex::new(StreamState::Stopped),
            tty: AtomicBool::new(false),
            labels: Mutex::new(BTreeMap::new()),
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

    pub fn snapshot(&self) -> ContainerStatus {
        let cursor = *lock(&self.cursor);
        ContainerStatus {
            id: self.id.clone(),
            name: self.name(),
            state: lock(&self.state).clone(),
            tty: self.tty.load(Ordering::Relaxed),
            lines_read: self.lines_read.load(Ordering::Relaxed),
            lines_dropped: self.lines_dropped.load(Ordering::Relaxed),
            lines_truncated: self.lines_truncated.load(Ordering::Relaxed),
            last_line_at: (cursor.ts_ns != 0).then(|| format_ts_ns(cursor.ts_ns)),
            labels: lock(&self.labels).clone(),
        }
    }
}
