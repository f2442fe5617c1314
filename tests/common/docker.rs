//! Helpers for the tests that talk to the private dockerd `tests/run.sh` starts.
//!
//! Containers are made with the `docker` command (as an operator would), each named
//! with a prefix unique to the test and labelled `secmon-test`, so `tests/run.sh` can
//! clean up after a failed run. The watcher under test is the library's own.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use security_monitor::config::parse_str;
use security_monitor::docker::{LogLine, WatchSettings, Watcher, WatcherStatus};
use tokio::sync::mpsc;

pub struct Env {
    pub host: String,
    pub image: String,
}

/// The test environment, or None (after a loud SKIP) when there is no test dockerd.
/// With CI=true a missing dockerd is a failure.
pub fn env(test: &str) -> Option<Env> {
    match std::env::var("SECMON_DOCKER_SOCK") {
        Ok(host) if !host.is_empty() => Some(Env {
            host,
            image: std::env::var("SECMON_TEST_IMAGE")
                .unwrap_or_else(|_| "secmon-busybox:test".into()),
        }),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: SECMON_DOCKER_SOCK is not set (CI=true: the Docker tests must run; use tests/run.sh)");
            }
            skip(&format!("{test}: SECMON_DOCKER_SOCK is not set; run tests/run.sh as root to start a private dockerd"));
            None
        }
    }
}

/// Says SKIP on stderr itself: the test harness captures `eprintln!`, and a skipped
/// test passes, so that text would never be seen.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!!\n!!! SKIP {why}\n!!!!!!!!");
}

impl Env {
    /// Runs `docker ARGS` against the test dockerd; panics with its stderr on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .expect("run the docker command");
        assert!(
            out.status.success(),
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker run -d --label secmon-test=1 EXTRA… IMAGE sh -c SCRIPT`; returns the id.
    pub fn run(&self, name: &str, extra: &[&str], script: &str) -> String {
        let mut args = vec!["run", "-d", "--name", name, "--label", "secmon-test=1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&self.image, "sh", "-c", script]);
        self.docker(&args)
    }

    /// Removes every container whose name starts with `prefix`.
    pub fn remove_all(&self, prefix: &str) {
        let ids = self.docker(&["ps", "-aq", "--filter", &format!("name=^/{prefix}")]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = Command::new("docker")
                .env("DOCKER_HOST", &self.host)
                .args(&args)
                .output();
        }
    }

    /// Watcher settings that follow the containers named `PREFIX…`, with `extra` config
    /// JSON members (e.g. `"limits": {...}`) and cursors in `state_dir`.
    pub fn settings(
        &self,
        prefix: &str,
        state_dir: &std::path::Path,
        extra: &str,
    ) -> WatchSettings {
        let text = format!(
            r#"{{"docker": {{"socket": "{}", "name_pattern": "^{}", "label": ""}}, "state": {{"dir": "{}"}} {}}}"#,
            self.host,
            prefix,
            state_dir.display(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(", {extra}")
            }
        );
        let cfg = parse_str(&text).unwrap_or_else(|e| panic!("test config {text}: {e:?}"));
        WatchSettings::from_config(&cfg).expect("settings")
    }
}

/// A unique container-name prefix for one test.
/// A container script that writes `seq 0`, `seq 1`, … every 20 ms, for tests that
/// count lines across restarts.
pub const COUNTER: &str = "i=0; while true; do echo \"seq $i\"; i=$((i+1)); sleep 0.02; done";

pub fn prefix(test: &str) -> String {
    format!("smt-{test}-{}-", std::process::id())
}

/// A line as received, with when it was received.
pub struct Received {
    pub line: LogLine,
    pub at: Instant,
}

/// Runs a watcher and keeps what it sends.
pub struct Watch {
    pub watcher: Option<Watcher>,
    rx: mpsc::Receiver<LogLine>,
    pub got: Vec<Received>,
    /// Whether lines received are marked judged (as the daemon does once the detector
    /// has seen them); the stored cursor follows judged lines only.
    pub judging: bool,
}

impl Watch {
    pub fn start(settings: WatchSettings) -> Watch {
        let (tx, rx) = mpsc::channel(1024);
        Watch {
            watcher: Some(Watcher::spawn(settings, tx)),
            rx,
            got: Vec::new(),
            judging: true,
        }
    }

    pub fn status(&self) -> WatcherStatus {
        self.watcher.as_ref().expect("watcher running").status()
    }

    /// Receives until `done(lines so far)` holds; panics after `timeout` with what came.
    pub async fn until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(line)) => self.take(line),
                Ok(None) => panic!("the watcher closed its channel while waiting for {what}"),
                Err(_) => {
                    let status = self.watcher.as_ref().map(|w| w.status());
                    panic!(
                        "timed out after {timeout:?} waiting for {what}; got {} lines, last: {:?}; status: {status:#?}",
                        self.got.len(),
                        self.got.iter().rev().take(5).map(|r| text(&r.line)).collect::<Vec<_>>()
                    )
                }
            }
        }
    }

    /// Receives whatever arrives within `wait`.
    pub async fn settle(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(Some(line)) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.rx.recv(),
        )
        .await
        {
            self.take(line);
        }
    }

    fn take(&mut self, line: LogLine) {
        if self.judging {
            line.mark.judged();
        }
        self.got.push(Received {
            line,
            at: Instant::now(),
        });
    }

    /// Stops the watcher (writing its cursors) and takes the lines still in the channel.
    /// Judges what is still queued between the two steps, as the daemon does.
    pub async fn stop(&mut self) {
        let Some(mut w) = self.watcher.take() else {
            return;
        };
        w.stop_reading().await;
        while let Ok(line) = self.rx.try_recv() {
            self.take(line);
        }
        w.shutdown().await;
    }

    /// Lines from containers whose name is `name`.
    pub fn texts_of(&self, name: &str) -> Vec<String> {
        self.got
            .iter()
            .filter(|r| r.line.container == name)
            .map(|r| text(&r.line))
            .collect()
    }
}

pub fn text(l: &LogLine) -> String {
    String::from_utf8_lossy(&l.bytes).into_owned()
}

/// The numbers N of lines "`tag` N", in the order received.
pub fn numbers(lines: &[String], tag: &str) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(tag)?.trim().parse().ok())
        .collect()
}

/// Asserts `nums` is 0, 1, 2, … without a gap or a repeat (order aside); returns the max.
pub fn assert_each_once(nums: &[u64], what: &str) -> u64 {
    let mut count: HashMap<u64, usize> = HashMap::new();
    for &n in nums {
        *count.entry(n).or_default() += 1;
    }
    let max = nums.iter().copied().max().unwrap_or(0);
    let doubled: Vec<u64> = count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&n, _)| n)
        .collect();
    let missing: Vec<u64> = (0..=max).filter(|n| !count.contains_key(n)).collect();
    assert!(
        doubled.is_empty() && missing.is_empty(),
        "{what}: {} lines up to {max}; read twice: {doubled:?}; missing: {missing:?}",
        nums.len()
    );
    max
}

pub fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
