//! How the daemon reaches Docker and which containers it follows (`docker`,
//! `docker_containers`, `containers`), and the `limits` on lines and tracked clients.

/// Per-container settings (by container name).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerSettings {
    pub log_format: Option<String>,
    /// The application profile to read it with (`security-monitor profiles`).
    pub profile: Option<String>,
    /// Rule categories that apply to this container; None: all.
    pub categories: Option<Vec<String>>,
}

/// The `limits` section: how much memory and work one line or one client may cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Client IPs whose windows are held in memory; the idlest are let go beyond this.
    pub max_tracked_ips: usize,
    /// Bytes of one log line that are examined; the rest is cut (and counted).
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tracked_ips: 100_000,
            max_line_bytes: 64 * 1024,
        }
    }
}

/// The label that selects a container by default: `--label security-monitor.enable=true`.
pub const DEFAULT_SELECT_LABEL: &str = "security-monitor.enable=true";

/// How the daemon reaches Docker and which containers it follows (besides
/// `docker_containers`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where dockerd listens: a socket path or a `unix://`, `tcp://` or `http://` URL.
    /// None: `DOCKER_HOST`, then `/var/run/docker.sock`.
    pub socket: Option<String>,
    /// Follow every container, whatever its name or labels.
    pub all_containers: bool,
    /// Follow containers whose name matches this regex.
    pub name_pattern: Option<String>,
    /// Follow containers carrying this label: `key=value`, or `key` for any value.
    /// None: no selection by label.
    pub label: Option<String>,
    /// Seconds of history read at most when a container is first seen, or when its
    /// cursor is older than this (after a long stop), so a restart never replays days.
    pub max_backlog: u64,
    /// Lines per second (by Docker's timestamp) passed on per container; beyond this
    /// they are dropped and counted, so one flooding container cannot starve the rest.
    pub max_lines_per_second: u32,
    /// Whether addresses inside Docker's own networks may be banned. Off: such an address
    /// in a log is a proxy container (or docker-proxy), and banning it would cut every
    /// visitor off; the verdict becomes an alert that explains how to fix the setup.
    pub ban_internal_addresses: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket: None,
            all_containers: false,
            name_pattern: None,
            label: Some(DEFAULT_SELECT_LABEL.into()),
            max_backlog: 600,
            max_lines_per_second: 20_000,
            ban_internal_addresses: false,
        }
    }
}
