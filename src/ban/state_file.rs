//! `blocked_ips.json`: the ban book as operators read it with `cat`, and as the daemon
//! restores it on start.
//!
//! Written atomically (temp file, fsync, rename, fsync of the directory), so a crash at
//! any moment leaves either the old file or the new one. A file that cannot be read is
//! moved aside with a clear error, never a reason to stop: the kernel still holds the
//! bans, and they are adopted back from it.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::Severity;
use crate::netaddr::IpNet;
use crate::time::rfc3339;

pub const STATE_VERSION: u32 = 1;

/// One active ban, as written to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanRecord {
    pub ip: IpAddr,
    /// The rule that decided it, or `manual`.
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    /// The container whose log showed the offence (empty for a manual ban).
    #[serde(default)]
    pub container: String,
    #[serde(with = "rfc3339")]
    pub first_offence: i64,
    #[serde(with = "rfc3339")]
    pub last_offence: i64,
    #[serde(with = "rfc3339")]
    pub banned_at: i64,
    #[serde(with = "rfc3339")]
    pub expires_at: i64,
    /// How many times this IP has been banned, this ban included.
    pub times_banned: u32,
    /// A few offending lines, escaped and truncated.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// `detector`, `manual`, or `kernel` (found in the firewall but not in the file).
    #[serde(default = "default_source")]
    pub source: String,
    /// Set when the ban covers a whole network rather than one address (`ban.ipv6_prefix`:
    /// 64); `ip` is then the network's first address. Absent in files of older builds and
    /// for single addresses, so those files load unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
}

impl BanRecord {
    /// Whether this host took the ban from another host of the fleet (`fleet:<origin>`).
    pub fn is_remote(&self) -> bool {
        self.source.starts_with(crate::fleet::record::SOURCE_PREFIX)
    }

    /// The host a remote ban came from.
    pub fn origin(&self) -> Option<&str> {
        self.source
            .strip_prefix(crate::fleet::record::SOURCE_PREFIX)
    }

    /// What the firewall holds for this ban: the address, or the network.
    pub fn net(&self) -> IpNet {
        self.prefix
            .and_then(|p| IpNet::new(self.ip, p).ok())
            .unwrap_or_else(|| IpNet::host(self.ip))
    }

    /// The banned address, or the network as `2001:db8:1:2::/64`: for `list` and messages.
    pub fn shown(&self) -> String {
        match self.prefix {
            Some(_) => self.net().to_string(),
            None => self.ip.to_string(),
        }
    }

    /// Whether this ban covers `ip`.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.net().contains(ip)
    }
}

fn default_source() -> String {
    "detector".into()
}

/// What is remembered of an IP after its ban ended, so repeat offenders are escalated
/// across restarts. Kept for `log_retention_days`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub ip: IpAddr,
    pub times_banned: u32,
    #[serde(with = "rfc3339")]
    pub last_banned_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StateFile {
    pub version: u32,
    #[serde(with = "rfc3339")]
    pub written_at: i64,
    pub bans: Vec<BanRecord>,
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
}

/// The outcome of reading the file at start-up.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet: a first start.
    Missing,
    Ok(StateFile),
    /// The file could not be used; it was moved to `moved_to`.
    Corrupt {
        error: String,
        moved_to: Option<PathBuf>,
    },
}

/// Reads the state file. Never fails: a bad file is moved aside and reported.
pub fn load(path: &Path) -> Loaded {
    let bytes = match crate::fsutil::read_nofollow(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => {
            return Loaded::Corrupt {
                error: format!("cannot read {e}"),
                moved_to: None,
            }
        }
    };
    let error = match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(s) if s.version == STATE_VERSION => return Loaded::Ok(s),
        Ok(s) => format!(
            "{} has version {}, this build reads version {STATE_VERSION}",
            path.display(),
            s.version
        ),
        Err(e) => format!("{} is not a valid state file: {e}", path.display()),
    };
    let aside = path.with_extension(format!("json.corrupt-{}", std::process::id()));
    let moved_to = fs::rename(path, &aside).ok().map(|_| aside);
    Loaded::Corrupt { error, moved_to }
}

/// Why the state file cannot be read for `list`.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {0}")]
    Read(io::Error),
    #[error("{} is not a valid state file: {error}", path.display())]
    Invalid {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// Reads the state file without touching it (for `list`): None when there is none yet.
pub fn load_readonly(path: &Path) -> Result<Option<StateFile>, ReadError> {
    match crate::fsutil::read_nofollow(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| ReadError::Invalid {
                path: path.into(),
                error,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReadError::Read(e)),
    }
}

/// Writes the state file atomically through [`crate::fsutil::write_atomic`]: a new temp
/// file beside it, fsync, rename, fsync the directory; mode 0640, never through a link.
pub fn save(path: &Path, state: &StateFile) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    text.push(b'\n');
    crate::fsutil::write_atomic(path, &text, crate::fsutil::STATE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateFile {
        StateFile {
            version: STATE_VERSION,
            written_at: 1_763_683_200,
            bans: vec![BanRecord {
                ip: "203.0.113.7".parse().unwrap(),
                rule: "sqli-union-select".into(),
                category: "sqli".into(),
                severity: Severity::Critical,
                container: "web".into(),
                first_offence: 1_763_683_100,
                last_offence: 1_763_683_150,
                banned_at: 1_763_683_150,
                expires_at: 1_763_769_550,
                times_banned: 1,
                evidence: vec!["GET /?q=union select".into()],
                source: "detector".into(),
                prefix: None,
            }],
            history: vec![],
        }
    }

    #[test]
    fn round_trip_is_readable_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocked_ips.json");
        save(&p, &sample()).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("\"expires_at\": \"2025-11-21T23:59:10Z\""),
            "{text}"
        );
        assert!(text.contains("\n  \"bans\": ["), "pretty-printed: {text}");
        match load(&p) {
            Loaded::Ok(s) => assert_eq!(s, sample()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn network_bans_round_trip_and_older_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocked_ips.json");
        let mut s = sample();
        s.bans[0].ip = "2001:db8:1:2::".parse().unwrap();
        s.bans[0].prefix = Some(64);
        save(&p, &s).unwrap();
        assert!(fs::read_to_string(&p).unwrap().contains("\"prefix\": 64"));
        let Loaded::Ok(back) = load(&p) else { panic!() };
        assert_eq!(back, s);
        assert_eq!(back.bans[0].net().to_string(), "2001:db8:1:2::/64");
        assert!(back.bans[0].covers("2001:db8:1:2:ffff::1".parse().unwrap()));
        // A file written before the field existed: no "prefix", one address.
        save(&p, &sample()).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(!text.contains("prefix"), "{text}");
        let Loaded::Ok(old) = load(&p) else { panic!() };
        assert_eq!(old.bans[0].net().to_string(), "203.0.113.7/32");
    }

    /// `blocked_ips.json` as earlier builds wrote it, severity a lowercase word.
    const OLD_FILE: &str = r#"{
  "version": 1,
  "written_at": "2025-11-21T00:00:00Z",
  "bans": [
    {
      "ip": "203.0.113.7",
      "rule": "sqli-union-select",
      "category": "sqli",
      "severity": "critical",
      "container": "web",
      "first_offence": "2025-11-20T23:58:20Z",
      "last_offence": "2025-11-20T23:59:10Z",
      "banned_at": "2025-11-20T23:59:10Z",
      "expires_at": "2025-11-21T23:59:10Z",
      "times_banned": 1,
      "evidence": [
        "GET /?q=union select"
      ],
      "source": "detector"
    }
  ],
  "history": []
}
"#;

    #[test]
    fn an_old_file_loads_and_is_written_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocked_ips.json");
        fs::write(&p, OLD_FILE).unwrap();
        let Loaded::Ok(s) = load(&p) else { panic!() };
        assert_eq!(s, sample());
        save(&p, &s).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), OLD_FILE);
    }

    /// A severity that is none of the four words (an edit by hand) makes the file
    /// unreadable like any other bad field: moved aside with the reason, never guessed;
    /// the bans are adopted back from the kernel. `list` says the same.
    #[test]
    fn an_unknown_severity_makes_the_file_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocked_ips.json");
        fs::write(&p, OLD_FILE.replace("\"critical\"", "\"dire\"")).unwrap();
        let err = load_readonly(&p).unwrap_err().to_string();
        assert!(err.contains("unknown variant `dire`"), "{err}");
        match load(&p) {
            Loaded::Corrupt {
                error,
                moved_to: Some(_),
            } => assert!(
                error.contains("is not a valid state file: unknown variant `dire`, expected one of `low`, `medium`, `high`, `critical`"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocked_ips.json");
        fs::write(&p, b"{\"version\": 1, \"bans\": [tru").unwrap();
        match load(&p) {
            Loaded::Corrupt {
                error,
                moved_to: Some(to),
            } => {
                assert!(error.contains("not a valid state file"), "{error}");
                assert!(to.exists());
                assert!(!p.exists());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(load(&p), Loaded::Missing));
    }

    #[test]
    fn a_time_of_400_digits_makes_the_file_unreadable_not_the_daemon_hang() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocked_ips.json");
        let mut text = serde_json::to_string(&sample()).unwrap();
        text = text.replace("2025-11-21T23:59:10Z", &"9".repeat(400));
        fs::write(&p, &text).unwrap();
        match load(&p) {
            Loaded::Corrupt { error, .. } => {
                assert!(error.contains("is not an RFC 3339 time"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        // So is a year no ban can have.
        fs::write(&p, text.replace(&"9".repeat(400), "99999-01-01T00:00:00Z")).unwrap();
        assert!(matches!(load(&p), Loaded::Corrupt { .. }));
    }

    #[test]
    fn symlinks_at_the_state_and_temp_paths_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.json");
        let original = serde_json::to_vec(&sample()).unwrap();
        fs::write(&victim, &original).unwrap();
        let p = dir.path().join("blocked_ips.json");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        // Loading does not read through the link (nor move the target aside).
        match load(&p) {
            Loaded::Corrupt { error, .. } => assert!(error.contains("symbolic link"), "{error}"),
            other => panic!("read through a symlink: {other:?}"),
        }
        assert!(load_readonly(&p).is_err());
        // A link at the temp path is not written through; the one at the path is replaced.
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        std::os::unix::fs::symlink(&victim, p.with_extension("json.tmp")).unwrap();
        save(&p, &StateFile::default()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), original);
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
