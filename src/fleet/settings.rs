//! The `fleet` section: where the NATS servers are, how this host logs in, and how much
//! of other hosts' bans it takes at once.

use std::path::PathBuf;

/// The KV bucket every host of a fleet shares, unless configured.
pub const DEFAULT_BUCKET: &str = "security-monitor-bans";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    /// `nats://host:4222` or `tls://host:4222`; several for a cluster.
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey: Option<String>,
    /// A `.creds` file (JWT and seed), as `nsc` writes them.
    pub creds_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the servers' certificates; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    pub bucket: String,
    /// This host's name in the fleet, the first token of its keys. None: the host name.
    pub host_id: Option<String>,
    /// Other hosts' bans applied here at most; more are held and alerted.
    pub max_remote_bans: usize,
    /// More new bans than this from one origin within `remote_burst_window` seconds are
    /// held and alerted: a compromised host cannot wall off the internet.
    pub remote_burst: u32,
    pub remote_burst_window: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            urls: vec!["nats://127.0.0.1:4222".into()],
            user: None,
            password: None,
            nkey: None,
            creds_file: None,
            tls_ca_file: None,
            bucket: DEFAULT_BUCKET.into(),
            host_id: None,
            max_remote_bans: 100_000,
            remote_burst: 1000,
            remote_burst_window: 60,
        }
    }
}

/// Whether `s` may be a bucket name or a host id: one NATS subject token of letters,
/// digits, `_` and `-` (a `.` would split the key `<host_id>.<ip>` in the wrong place).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// This host's id in the fleet: the configured one, else the host name made into a token
/// (dots and other characters become `-`).
pub fn host_id(settings: &Settings, hostname: &str) -> String {
    if let Some(id) = &settings.host_id {
        return id.clone();
    }
    let id: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        "host".into()
    } else {
        id
    }
}
