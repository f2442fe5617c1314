//! Following the watched containers' logs through the Docker API (bollard).
//!
//! A [`Watcher`] subscribes to Docker's container events, lists the containers, and runs
//! one log stream per followed container. Each stream turns Docker's messages into whole
//! lines ([`lines`]), drops what it has already read after a reconnect ([`cursor`]),
//! limits how many lines one container can pass on ([`stream`]), and sends [`LogLine`]s
//! into one bounded channel the caller hands in. Log files a container writes inside
//! itself (named by the label `security-monitor.logfile` or by its profile) are read
//! through its mounts on the host ([`files`]) into the same channel. [`Watcher::status`]
//! tells, per container, how its stream and files are doing. [`history`] reads a
//! container's past lines once, the same way (for `check --container`).
//!
//! ```text
//!  dockerd ── events ──▶ watch (which containers; start, stop, rename, destroy)
//!     ├──── logs, one per container ──▶ stream: lines ─▶ cursor ─▶ rate ─▶ channel
//!     └──── inspect: mounts ──▶ files: host paths, polled ─▶ lines ─▶ rate ─▶ channel
//! ```

mod console;
pub mod cursor;
pub mod files;
pub mod history;
pub mod lines;
pub mod networks;
pub mod select;
mod settings;
pub mod status;
mod stream;
pub mod watch;

use std::time::Duration;

use bollard::Docker;
use serde::Serialize;

pub use files::{Mount, LOGFILE_LABEL};
pub use history::{read_history, History, HistoryError, HistoryReader, HistoryRequest};
pub use select::{container_profile, ContainerProfile, Selection};
pub use settings::{ContainerSettings, Limits, Settings, DEFAULT_SELECT_LABEL};
pub use status::{ContainerStatus, FileStatus, StreamState, WatcherStatus};
pub use watch::{ContainerInfo, ContainerLabels, WatchSettings, Watcher};

/// Where dockerd listens when neither the config nor `DOCKER_HOST` says.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Logging drivers whose logs the Docker API can read back.
pub const READABLE_DRIVERS: [&str; 3] = ["json-file", "local", "journald"];

/// Which of a container's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
    /// A container with a TTY (`docker run -t`): stdout and stderr are one stream.
    Console = 2,
    /// A log file inside the container (see [`LogLine::file`]).
    File = 3,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Console => "tty",
            Stream::File => "file",
        }
    }
}

/// One complete line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub container_id: String,
    /// The container's name, without Docker's leading `/`.
    pub container: String,
    pub stream: Stream,
    /// When dockerd received the line, Unix nanoseconds; for a line of a log file, when
    /// it was read (a file line has no Docker timestamp).
    pub docker_ts_ns: i64,
    /// The line without its newline (and, from a TTY, without its `\r`), cut at
    /// `limits.max_line_bytes`. Bytes as written: not necessarily UTF-8.
    pub bytes: Vec<u8>,
    /// Whether the line was longer than `limits.max_line_bytes` and was cut.
    pub truncated: bool,
    /// For a line of a log file inside the container: its path there (the stream is
    /// then [`Stream::File`]). Each file is parsed apart from the stream and the others.
    pub file: Option<std::sync::Arc<str>>,
    /// Call `mark.judged()` once the line is judged: the stored cursor follows it.
    pub mark: cursor::Mark,
}

/// The Docker address in effect: the config's `docker.socket`, else `DOCKER_HOST`, else
/// `/var/run/docker.sock`. A bare path becomes a `unix://` URL.
pub fn docker_host(configured: Option<&str>) -> String {
    let chosen = configured
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
    if chosen.starts_with('/') {
        format!("unix://{chosen}")
    } else {
        chosen
    }
}

/// A client for `host` (no request is made yet). Requests that wait for an answer give
/// up after this long; log and event streams, once answered, run for as long as they last.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why Docker cannot be watched with the settings given.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker.name_pattern \"{pattern}\": {error}")]
    NamePattern {
        pattern: String,
        error: regex::Error,
    },
    #[error("there is no Docker socket at {path}: is Docker running? (the address comes from docker.socket, else DOCKER_HOST, else {DEFAULT_DOCKER_HOST})")]
    NoSocket { path: String },
    #[error("cannot use Docker address \"{host}\": give a socket path, or a unix://, tcp:// or http:// URL (in docker.socket or DOCKER_HOST)")]
    BadAddress { host: String },
    #[error("cannot use Docker address \"{host}\": {error}")]
    Client {
        host: String,
        error: bollard::errors::Error,
    },
}

pub fn connect(host: &str) -> Result<Docker, DockerError> {
    let secs = REQUEST_TIMEOUT.as_secs();
    let result = if let Some(path) = host.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(DockerError::NoSocket { path: path.into() });
        }
        Docker::connect_with_unix(host, secs, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, secs, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(DockerError::BadAddress { host: host.into() });
    };
    result.map_err(|error| DockerError::Client {
        host: host.into(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_socket_comes_first_and_paths_become_urls() {
        assert_eq!(docker_host(Some("/run/d.sock")), "unix:///run/d.sock");
        assert_eq!(
            docker_host(Some("tcp://127.0.0.1:2375")),
            "tcp://127.0.0.1:2375"
        );
        assert!(connect("ssh://x").is_err());
        let e = connect("unix:///nonexistent/docker.sock")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no Docker socket at /nonexistent/docker.sock"),
            "{e}"
        );
        assert!(connect("tcp://127.0.0.1:1").is_ok());
    }
}
