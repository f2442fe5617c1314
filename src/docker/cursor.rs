//! Where each container's log was read up to, so a reconnect or a restart of
//! security-monitor reads every line once: none lost, none twice.
//!
//! Docker's `since` works in whole seconds and includes lines at that second, so a resume
//! asks for the second of the last line seen and drops what it has already had: lines
//! older than the last timestamp, and as many lines *at* that timestamp as were already
//! passed on. A log file read inside a container (see [`super::files`]) has no such
//! timestamps: its cursor is the file's inode and the byte offset after the last line.
//! The cursors are kept in `STATE_DIR/cursors.json`, written atomically (temp file,
//! fsync, rename) and at most once a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub const CURSOR_FILE: &str = "cursors.json";

/// The newest line passed on: its Docker timestamp, and how many lines with exactly that
/// timestamp were passed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub ts_ns: i64,
    pub at_ts: u32,
}

impl Cursor {
    /// Notes that a line with timestamp `ts` was passed on.
    pub fn record(&mut self, ts: i64) {
        if ts > self.ts_ns {
            self.ts_ns = ts;
            self.at_ts = 1;
        } else if ts == self.ts_ns {
            self.at_ts = self.at_ts.saturating_add(1);
        }
        // An older line (stdout and stderr can be stamped slightly out of order) does
        // not move the cursor back.
    }

    /// The `since` (whole Unix seconds) that reads from this cursor on.
    pub fn since_secs(&self) -> i64 {
        self.ts_ns.div_euclid(1_000_000_000)
    }
}

impl Cursor {
    /// Whether this cursor is past `other`: a later line, or more lines at the same time.
    fn is_past(&self, other: &Cursor) -> bool {
        (self.ts_ns, self.at_ts) > (other.ts_ns, other.at_ts)
    }
}

/// Where a log file inside a container was read up to: the file (by inode, so a
/// rotated file is told from its successor) and the byte offset after the last line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    pub inode: u64,
    pub offset: u64,
}

/// Where one line stands in its container's log (or in one of its log files), handed on
/// with the line. The stored cursor (`cursors.json`) follows judged lines, not read
/// ones: once the detector has judged the line, `judged` moves it up to here. A line
/// that was read but never judged (a crash with lines still queued) is read again at the
/// next start.
#[derive(Debug, Clone, Default)]
pub struct Mark {
    place: Place,
}

#[derive(Debug, Clone, Default)]
enum Place {
    /// A line nobody keeps a cursor for.
    #[default]
    Nowhere,
    Stream {
        at: Cursor,
        judged: Arc<Mutex<Cursor>>,
    },
    File {
        at: FileCursor,
        judged: Arc<Mutex<FileCursor>>,
    },
}

/// Two marks are equal when they stand at the same place (whoever judges them).
impl PartialEq for Mark {
    fn eq(&self, other: &Mark) -> bool {
        match (&self.place, &other.place) {
            (Place::Nowhere, Place::Nowhere) => true,
            (Place::Stream { at: a, .. }, Place::Stream { at: b, .. }) => a == b,
            (Place::File { at: a, .. }, Place::File { at: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Mark {}

impl Mark {
    pub fn new(at: Cursor, judged: Arc<Mutex<Cursor>>) -> Mark {
        Mark {
            place: Place::Stream { at, judged },
        }
    }

    /// The mark of a line read from a log file, ending at `at`.
    pub fn file(at: FileCursor, judged: Arc<Mutex<FileCursor>>) -> Mark {
        Mark {
            place: Place::File { at, judged },
        }
    }

    /// The line has been judged: the judged cursor moves up to it (never back). Lines
    /// of one file are judged in the order read, so a file line on another inode is the
    /// rotated file's successor (or, while finishing a rotated file, its last lines).
    pub fn judged(&self) {
        match &self.place {
            Place::Nowhere => {}
            Place::Stream { at, judged } => {
                let mut c = judged.lock().unwrap_or_else(|e| e.into_inner());
                if at.is_past(&c) {
                    *c = *at;
                }
            }
            Place::File { at, judged } => {
                let mut c = judged.lock().unwrap_or_else(|e| e.into_inner());
                if at.inode != c.inode || at.offset > c.offset {
                    *c = *at;
                }
            }
        }
    }
}

/// The cursor of one log connection: after a resume it drops what was already read.
#[derive(Debug, Clone)]
pub struct Position {
    pub cursor: Cursor,
    /// While resuming: lines at `cursor.ts_ns` still to be dropped. None once past it.
    resuming: Option<u32>,
}

impl Position {
    /// Starts reading after `cursor` (a zero cursor drops nothing).
    pub fn resume(cursor: Cursor) -> Position {
        Position {
            cursor,
            resuming: (cursor.ts_ns != 0).then_some(cursor.at_ts),
        }
    }

    /// Whether a line with timestamp `ts` is new; if it is, it is recorded as passed on.
    pub fn admit(&mut self, ts: i64) -> bool {
        if let Some(skip) = &mut self.resuming {
            if ts < self.cursor.ts_ns {
                return false;
            }
            if ts == self.cursor.ts_ns && *skip > 0 {
                *skip -= 1;
                return false;
            }
            if ts > self.cursor.ts_ns {
                self.resuming = None;
            }
        }
        self.cursor.record(ts);
        true
    }
}

/// One container's cursor as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorEntry {
    /// The container's name when last seen, for people reading the file.
    pub name: String,
    #[serde(flatten)]
    pub cursor: Cursor,
    /// Its log files read through its mounts, by path inside the container (version 2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileCursor>,
}

impl CursorEntry {
    /// Whether there is anything to keep.
    pub fn is_empty(&self) -> bool {
        self.cursor.ts_ns == 0 && self.files.is_empty()
    }
}

/// The cursor file, versioned so a later layout can read an older one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum CursorFile {
    /// Stream cursors only.
    #[serde(rename = "1")]
    V1 {
        /// By container id.
        containers: BTreeMap<String, CursorEntry>,
    },
    /// Stream cursors, and each container's log files (`files`).
    #[serde(rename = "2")]
    V2 {
        /// By container id.
        containers: BTreeMap<String, CursorEntry>,
    },
}

pub fn cursor_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CURSOR_FILE)
}

/// Why the cursors cannot be read; the watcher warns and starts without them.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot read {0}")]
    Read(std::io::Error),
    #[error("{} is damaged ({error}); it will be rewritten", path.display())]
    Damaged {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// Reads the cursors; a missing file is no cursors. A damaged file is an error the
/// caller warns about and then starts without cursors (reading `max_backlog`).
pub fn load(path: &Path) -> Result<BTreeMap<String, CursorEntry>, CursorError> {
    let text = match crate::fsutil::read_nofollow(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(CursorError::Read(e)),
    };
    match serde_json::from_slice::<CursorFile>(&text) {
        Ok(CursorFile::V1 { containers } | CursorFile::V2 { containers }) => Ok(containers),
        Err(error) => Err(CursorError::Damaged {
            path: path.into(),
            error,
        }),
    }
}

/// Writes the cursors atomically through [`crate::fsutil::write_atomic`] (mode 0640,
/// never through a link), like `blocked_ips.json`.
pub fn save(path: &Path, containers: &BTreeMap<String, CursorEntry>) -> std::io::Result<()> {
    let file = CursorFile::V2 {
        containers: containers.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    text.push(b'\n');
    crate::fsutil::write_atomic(path, &text, crate::fsutil::STATE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_drops_exactly_what_was_read() {
        // Read before: 10, 20, 20. Lines at 20 were two; a third at 20 is new.
        let mut first = Position::resume(Cursor::default());
        for ts in [10, 20, 20] {
            assert!(first.admit(ts));
        }
        assert_eq!(
            first.cursor,
            Cursor {
                ts_ns: 20,
                at_ts: 2
            }
        );
        let mut again = Position::resume(first.cursor);
        let admitted: Vec<i64> = [5, 10, 20, 20, 20, 30, 30, 15]
            .into_iter()
            .filter(|&ts| again.admit(ts))
            .collect();
        // After passing the cursor, an out-of-order older line is a new line.
        assert_eq!(admitted, vec![20, 30, 30, 15]);
        assert_eq!(
            again.cursor,
            Cursor {
                ts_ns: 30,
                at_ts: 2
            }
        );
    }

    #[test]
    fn the_file_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = cursor_path(&dir.path().join("sub"));
        assert!(load(&path).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            "abc".to_string(),
            CursorEntry {
                name: "web".into(),
                cursor: Cursor {
                    ts_ns: 1_795_242_332_954_352_105,
                    at_ts: 3,
                },
                files: BTreeMap::from([(
                    "/data/logs/proxy-host-1_access.log".to_string(),
                    FileCursor {
                        inode: 1234,
                        offset: 5678,
                    },
                )]),
            },
        );
        save(&path, &m).unwrap();
        assert_eq!(load(&path).unwrap(), m);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": \"2\""), "{text}");
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("damaged"));
    }

    #[test]
    fn a_version_1_file_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = cursor_path(dir.path());
        std::fs::write(
            &path,
            br#"{"version": "1", "containers": {"abc": {"name": "web", "ts_ns": 7, "at_ts": 2}}}"#,
        )
        .unwrap();
        let got = load(&path).unwrap();
        assert_eq!(got["abc"].cursor, Cursor { ts_ns: 7, at_ts: 2 });
        assert!(got["abc"].files.is_empty());
    }

    #[test]
    fn a_file_mark_moves_on_within_a_file_and_to_its_successor() {
        let judged = Arc::new(Mutex::new(FileCursor::default()));
        let at = |inode, offset| Mark::file(FileCursor { inode, offset }, judged.clone());
        at(5, 100).judged();
        at(5, 40).judged();
        assert_eq!(
            *judged.lock().unwrap(),
            FileCursor {
                inode: 5,
                offset: 100
            }
        );
        at(6, 10).judged();
        assert_eq!(
            *judged.lock().unwrap(),
            FileCursor {
                inode: 6,
                offset: 10
            }
        );
        assert_ne!(at(6, 10), Mark::new(Cursor::default(), Arc::default()));
    }

    #[test]
    fn symlinks_at_the_cursor_and_temp_paths_are_not_followed() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"{\"version\": \"1\", \"containers\": {}}").unwrap();
        let path = cursor_path(dir.path());
        symlink(&victim, &path).unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        symlink(&victim, path.with_extension("json.tmp")).unwrap();
        save(&path, &BTreeMap::new()).unwrap();
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"{\"version\": \"1\", \"containers\": {}}"
        );
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }
}
