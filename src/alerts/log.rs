//! `STATE_DIR/alerts.jsonl`: every alert as one JSON line, so alerts outlive the daemon
//! and can be read with `jq` or shipped elsewhere.
//!
//! A folded alert is written again when its count changed, under the same `id`: readers
//! take the last line of an id. The file is rotated when the day changes (UTC) or it
//! would grow past a quarter of `alerts.max_log_size` (at most [`MAX_FILE_BYTES`]): it is
//! renamed `alerts-YYYY-MM-DDTHHMMSSZ.jsonl` (the time of the rotation). Rotated files
//! older than `log_retention_days` are deleted, and so are the oldest rotated files
//! whenever the current file and the rotated ones together would pass
//! `alerts.max_log_size`: a flood of alerts costs old alerts, never the disk.
//! Every function takes `now`, so rotation and pruning are tested with a chosen clock.
//!
//! The files are opened without following symbolic links and created with mode 0640.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::Alert;
use crate::fsutil::{self, with_path};
use crate::time::{format_time, parse_time};

pub const FILE_NAME: &str = "alerts.jsonl";
/// The current file is rotated before it grows past this size (or a quarter of the
/// total allowed, when that is smaller).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// `alerts.max_log_size` by default: the current file and the rotated ones together.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 50 * 1024 * 1024;
/// Mode of the alert files: they hold attackers' lines, for root and the group.
pub const FILE_MODE: u32 = 0o640;
const DAY: i64 = 86_400;

pub struct AlertLog {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    /// The UTC day (Unix days) the current file was started on.
    day: Option<i64>,
    retention_days: u32,
    /// The current file and the rotated ones together stay within this many bytes.
    max_total: u64,
}

/// What [`AlertLog::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest alerts still within retention, oldest first, at most `keep`.
    pub alerts: Vec<Alert>,
    /// Lines that were not alerts (a torn write after a crash, an edit by hand).
    pub bad_lines: usize,
}

impl AlertLog {
    pub fn new(dir: &Path, retention_days: u32) -> AlertLog {
        AlertLog {
            dir: dir.to_path_buf(),
            file: None,
            size: 0,
            day: None,
            retention_days,
            max_total: DEFAULT_MAX_TOTAL_BYTES,
        }
    }

    /// Sets `alerts.max_log_size`; the oldest rotated files go at the next write if the
    /// files already take more.
    pub fn set_max_size(&mut self, bytes: u64) {
        self.max_total = bytes.max(1);
    }

    /// The size the current file is rotated at.
    fn segment(&self) -> u64 {
        (self.max_total / 4).clamp(1, MAX_FILE_BYTES)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn set_retention(&mut self, days: u32) {
        self.retention_days = days;
    }

    fn cutoff(&self, now: i64) -> i64 {
        now - i64::from(self.retention_days) * DAY
    }

    /// The rotated files, oldest first, with their rotation times.
    fn rotated(&self) -> Vec<(i64, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(i64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let t = rotated_time(&name)?;
                Some((t, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    /// Reads the newest `keep` alerts last seen within retention, newest file first.
    pub fn load(&self, now: i64, keep: usize) -> Loaded {
        let cutoff = self.cutoff(now);
        let mut files: Vec<PathBuf> = self.rotated().into_iter().map(|(_, p)| p).collect();
        files.push(self.path());
        let mut loaded = Loaded::default();
        let mut by_id: std::collections::BTreeMap<u64, Alert> = Default::default();
        for path in files.iter().rev() {
            let Ok(f) = fsutil::open_read_nofollow(path) else {
                continue;
            };
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else {
                    loaded.bad_lines += 1;
                    break;
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Alert>(&line) {
                    // Files are read newest first but each from its start: within a file
                    // the later line of an id wins; an id seen in a newer file is kept.
                    Ok(a) if a.last_seen >= cutoff => {
                        let newer_file_has_it = by_id
                            .get(&a.id)
                            .is_some_and(|old| old.last_seen > a.last_seen);
                        if !newer_file_has_it {
                            by_id.insert(a.id, a);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => loaded.bad_lines += 1,
                }
            }
            if by_id.len() >= keep {
                break;
            }
        }
        let skip = by_id.len().saturating_sub(keep);
        loaded.alerts = by_id.into_values().skip(skip).collect();
        loaded
    }

    /// Appends alerts, rotating first when the day changed or the file is full.
    pub fn append(&mut self, alerts: &[Alert], now: i64) -> io::Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for a in alerts {
            serde_json::to_writer(&mut buf, a).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.rotate_if_due(now, buf.len() as u64)?;
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let path = self.path();
                let f = fsutil::open_append(&path, FILE_MODE)?;
                let meta = f.metadata().map_err(|e| with_path(e, &path))?;
                self.size = meta.len();
                if self.day.is_none() {
                    self.day = Some(if self.size == 0 {
                        now.div_euclid(DAY)
                    } else {
                        first_time(&path).unwrap_or(now).div_euclid(DAY)
                    });
                }
                self.file.insert(f)
            }
        };
        file.write_all(&buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Rotates before `incoming` bytes are written when the day changed or the file
    /// would pass its segment size, then keeps the rotated files within the total.
    fn rotate_if_due(&mut self, now: i64, incoming: u64) -> io::Result<()> {
        let path = self.path();
        if self.file.is_none() {
            // Learn the current file's day and size before appending to it.
            match fs::symlink_metadata(&path) {
                Ok(m) if m.len() > 0 => {
                    self.size = m.len();
                    self.day = Some(first_time(&path).unwrap_or(now).div_euclid(DAY));
                }
                _ => {
                    self.size = 0;
                    self.day = None;
                }
            }
        }
        let new_day = self.day.is_some_and(|d| d != now.div_euclid(DAY));
        let full = self.size.saturating_add(incoming) > self.segment();
        if self.size == 0 || !(new_day || full) {
            return Ok(());
        }
        self.file = None;
        let mut target = self.dir.join(rotated_name(now));
        let mut n = 1;
        while target.exists() {
            target = self.dir.join(rotated_name(now + n));
            n += 1;
        }
        fs::rename(&path, &target).map_err(|e| with_path(e, &path))?;
        self.size = 0;
        self.day = None;
        self.cap_rotated();
        Ok(())
    }

    /// Deletes the oldest rotated files until they and a full current file fit within
    /// `max_total`, and says so in the journal; returns them.
    fn cap_rotated(&self) -> Vec<PathBuf> {
        let files: Vec<(PathBuf, u64)> = self
            .rotated()
            .into_iter()
            .map(|(_, p)| {
                let len = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, len)
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, l)| *l).sum();
        let room = self.max_total.saturating_sub(self.segment());
        let mut gone = Vec::new();
        for (path, len) in files {
            if total <= room {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::info!(
                    "deleted {} (the alerts log reached alerts.max_log_size)",
                    path.display()
                );
                total -= len;
                gone.push(path);
            }
        }
        gone
    }

    /// Deletes rotated files whose every alert is older than the retention; returns them.
    pub fn prune(&mut self, now: i64) -> Vec<PathBuf> {
        let cutoff = self.cutoff(now);
        let mut gone = Vec::new();
        for (t, path) in self.rotated() {
            if t < cutoff && fs::remove_file(&path).is_ok() {
                gone.push(path);
            }
        }
        // A smaller alerts.max_log_size after a reload applies here too.
        self.cap_rotated();
        // The current file is rotated on the next write after a day change; one that
        // saw no write for longer than the retention is rotated (and so pruned) here.
        if self
            .day
            .or_else(|| first_time(&self.path()).map(|t| t.div_euclid(DAY)))
            .is_some_and(|d| (d + 1) * DAY < cutoff)
        {
            self.file = None;
            let path = self.path();
            if fs::remove_file(&path).is_ok() {
                gone.push(path);
            }
            self.size = 0;
            self.day = None;
        }
        gone
    }
}

/// `alerts-2026-11-21T101500Z.jsonl`: readable, sortable, no colons.
fn rotated_name(t: i64) -> String {
    format!("alerts-{}.jsonl", format_time(t).replace(':', ""))
}

fn rotated_time(name: &str) -> Option<i64> {
    let stem = name.strip_prefix("alerts-")?.strip_suffix(".jsonl")?;
    // 2026-11-21T101500Z → 2026-11-21T10:15:00Z
    if stem.len() != 18 {
        return None;
    }
    let text = format!(
        "{}:{}:{}",
        &stem.get(..13)?,
        stem.get(13..15)?,
        stem.get(15..)?
    );
    parse_time(text.as_bytes())
}

/// The `time` of the first alert in a file.
fn first_time(path: &Path) -> Option<i64> {
    let f = fsutil::open_read_nofollow(path).ok()?;
    let mut line = String::new();
    BufReader::new(f).read_line(&mut line).ok()?;
    serde_json::from_str::<Alert>(&line).ok().map(|a| a.time)
}

#[cfg(test)]
mod tests {
    use super::super::{AlertBook, Recorded};
    use super::*;

    /// An alert whose id is the IP's last number (as if recorded by a book).
    fn hit(t: i64, ip: &str) -> Alert {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let id = match ip {
            std::net::IpAddr::V4(v4) => u64::from(v4.octets()[3]),
            std::net::IpAddr::V6(_) => 0,
        };
        Alert {
            id,
            ip: Some(ip),
            rule: "sqli-union".into(),
            ..Alert::new(t, crate::detect::Severity::High, "rule_hit", "sqli")
        }
    }

    const T0: i64 = 1_795_000_000; // 2026-11-18

    #[test]
    fn rotated_names_read_back_as_times() {
        let name = rotated_name(T0 + 37);
        assert!(name.starts_with("alerts-") && !name.contains(':'), "{name}");
        assert_eq!(rotated_time(&name), Some(T0 + 37));
        assert_eq!(rotated_time("alerts.jsonl"), None);
        assert_eq!(rotated_time("alerts-junk.jsonl"), None);
    }

    /// A line as earlier builds wrote it (severity a lowercase word), and one whose
    /// severity is no word this build knows (an edit by hand): the first loads and is
    /// written back byte for byte; the second is a bad line, skipped and counted, like a
    /// torn write.
    #[test]
    fn old_lines_load_unchanged_and_an_unknown_severity_is_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"id":4,"time":"2026-11-18T11:06:40Z","last_seen":"2026-11-18T11:07:00Z","severity":"critical","kind":"rule_hit","category":"sqli","rule":"sqli-union","ip":"203.0.113.9","container":"web","line":"GET /?q=union select","count":3}"#;
        let dire = old
            .replace("\"id\":4", "\"id\":5")
            .replace("critical", "dire");
        std::fs::write(dir.path().join(FILE_NAME), format!("{old}\n{dire}\n")).unwrap();
        let loaded = AlertLog::new(dir.path(), 30).load(T0 + 60, 100);
        assert_eq!(loaded.bad_lines, 1);
        assert_eq!(loaded.alerts.len(), 1);
        let a = &loaded.alerts[0];
        assert_eq!(
            (a.id, a.severity, a.count),
            (4, crate::detect::Severity::Critical, 3)
        );
        assert_eq!(serde_json::to_string(a).unwrap(), old);
    }

    #[test]
    fn the_log_survives_a_restart_with_folded_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = AlertBook::new(300, 100);
        let mut log = AlertLog::new(dir.path(), 30);
        for (i, ip) in ["203.0.113.1", "203.0.113.1", "203.0.113.2"]
            .iter()
            .enumerate()
        {
            let a = hit(T0 + i as i64, ip);
            if let Recorded::New(id) = book.record(a) {
                log.append(&[book.get(id).unwrap().clone()], T0).unwrap();
            }
        }
        log.append(&book.take_dirty(), T0 + 5).unwrap();
        drop(log);

        // A torn last line (a crash mid-write) is skipped and counted.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        f.write_all(b"{\"id\": 9, \"ti").unwrap();

        let log = AlertLog::new(dir.path(), 30);
        let loaded = log.load(T0 + 60, 100);
        assert_eq!(loaded.bad_lines, 1);
        let counts: Vec<(u64, u64)> = loaded.alerts.iter().map(|a| (a.id, a.count)).collect();
        assert_eq!(counts, vec![(1, 2), (2, 1)]);

        // The restored book folds into the same alert and continues the ids.
        let mut book = AlertBook::new(300, 100);
        book.restore(loaded.alerts);
        assert_eq!(
            book.record(hit(T0 + 70, "203.0.113.1")),
            Recorded::Folded(1)
        );
        assert_eq!(book.record(hit(T0 + 70, "203.0.113.3")), Recorded::New(3));
        // `keep` bounds what is loaded: the newest.
        let loaded = log.load(T0 + 60, 1);
        assert_eq!(loaded.alerts.len(), 1);
        assert_eq!(loaded.alerts[0].id, 2);
    }

    #[test]
    fn the_log_rotates_daily_and_is_pruned_by_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AlertLog::new(dir.path(), 2);
        log.append(&[hit(T0, "203.0.113.1")], T0).unwrap();
        log.append(&[hit(T0 + 10, "203.0.113.2")], T0 + 10).unwrap();
        // The next day: the file is rotated before the write.
        let d1 = T0 + DAY;
        log.append(&[hit(d1, "203.0.113.3")], d1).unwrap();
        let d2 = T0 + 2 * DAY;
        log.append(&[hit(d2, "203.0.113.4")], d2).unwrap();
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(dir.path()).len(), 3, "{:?}", names(dir.path()));
        // All four are there within retention, across the files.
        assert_eq!(log.load(d2, 100).alerts.len(), 4);

        // Two days after d1's rotation the first rotated file is past retention.
        let later = d1 + 2 * DAY + 1;
        let gone = log.prune(later);
        assert_eq!(gone.len(), 1, "{gone:?}");
        // Loading also drops alerts past retention, wherever they are (d1's alert is in a
        // file rotated within retention, but is itself older).
        let ips: Vec<String> = log
            .load(later, 100)
            .alerts
            .iter()
            .map(|a| a.ip.unwrap().to_string())
            .collect();
        assert_eq!(ips, vec!["203.0.113.4"]);

        // Long silence: the current file goes too.
        let gone = log.prune(d2 + 10 * DAY);
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    /// Bytes taken by every file in the directory.
    fn dir_bytes(d: &Path) -> u64 {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn the_log_stays_within_its_size_cap_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AlertLog::new(dir.path(), 30);
        let cap = 40 * 1024;
        log.set_max_size(cap);
        let line = "x".repeat(200);
        let mut written = 0u64;
        for i in 0..2000u64 {
            let a = Alert {
                id: i + 1,
                line: line.clone(),
                ..hit(T0 + i as i64 / 10, "203.0.113.1")
            };
            log.append(&[a], T0 + i as i64 / 10).unwrap();
            written += 300;
            assert!(
                dir_bytes(dir.path()) <= cap,
                "over the cap after {i} alerts"
            );
        }
        assert!(written > 10 * cap, "the test writes well past the cap");
        // Rotated files exist (it rotates rather than stops), the newest alert is kept.
        assert!(fs::read_dir(dir.path()).unwrap().count() > 1);
        let newest = log.load(T0 + 200, 100_000).alerts;
        assert_eq!(newest.last().map(|a| a.id), Some(2000));
        assert!(newest.len() < 2000);
    }

    #[test]
    fn the_log_is_not_appended_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(FILE_NAME)).unwrap();
        let mut log = AlertLog::new(dir.path(), 30);
        let e = log.append(&[hit(T0, "203.0.113.1")], T0).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        // A regular file is created with mode 0640.
        fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        log.append(&[hit(T0, "203.0.113.1")], T0).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
