//! One container's log stream: open, read lines, reconnect, until the container stops.
//!
//! Reading resumes from the container's cursor, so a lost connection or a dockerd
//! restart loses and repeats nothing. One container cannot hold up the others: it passes
//! on at most `docker.max_lines_per_second` lines per second of Docker time (the rest is
//! dropped and counted), and when the channel is full only its own stream waits — Docker
//! keeps what it has not read yet, so nothing piles up in memory here.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use hyper::body::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::console::ConsoleLog;
use super::cursor::{Mark, Position};
use super::lines::{Assembled, Assembler};
use super::status::{lock, StreamState, Tracker};
use super::{LogLine, Stream};

/// What every stream needs to know from the config.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub max_line_bytes: usize,
    pub max_backlog_secs: u64,
    pub max_lines_per_second: u32,
}

/// Reconnect delays: from 100 ms, doubling, at most 5 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}

/// Lets through at most `limit` lines per second, and says when to warn about what it
/// dropped (at most every 10 s). One gate serves a container's stream (Docker's time)
/// and its log files (the time they were read); while the stream catches up on its
/// backlog the two clocks differ, so the last few seconds are counted apart rather than
/// one count being reset each time the other clock's line comes.
#[derive(Debug)]
pub(crate) struct RateGate {
    limit: u32,
    /// (second, lines in it), the oldest replaced when a new second comes.
    seconds: [(i64, u32); 4],
    unreported: u64,
    last_warning: Option<Instant>,
}

const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl RateGate {
    pub fn new(limit: u32) -> RateGate {
        RateGate {
            limit,
            seconds: [(i64::MIN, 0); 4],
            unreported: 0,
            last_warning: None,
        }
    }

    /// Whether a line stamped `ts_ns` passes.
    pub fn pass(&mut self, ts_ns: i64) -> bool {
        let second = ts_ns.div_euclid(1_000_000_000);
        let slot = match self.seconds.iter().position(|s| s.0 == second) {
            Some(i) => i,
            None => {
                let oldest = (0..self.seconds.len())
                    .min_by_key(|&i| self.seconds[i].0)
                    .unwrap_or(0);
                self.seconds[oldest] = (second, 0);
                oldest
            }
        };
        let count = &mut self.seconds[slot].1;
        *count = count.saturating_add(1);
        if *count <= self.limit {
            return true;
        }
        self.unreported += 1;
        false
    }

    /// How many drops to warn about now, if it is time to.
    pub fn warning_due(&mut self) -> Option<u64> {
        if self.unreported == 0 {
            return None;
        }
        let due = self
            .last_warning
            .is_none_or(|t| t.elapsed() >= DROP_WARNING_INTERVAL);
        if !due {
            return None;
        }
        self.last_warning = Some(Instant::now());
        Some(std::mem::take(&mut self.unreported))
    }
}

/// Passes one line of container `tracker` through its gate; a dropped line is counted
/// and warned about (at most every 10 s). Returns whether it passes.
pub(crate) fn admit_rate(tracker: &Tracker, name: &str, limit: u32, ts_ns: i64) -> bool {
    let mut gate = lock(&tracker.gate);
    if gate.pass(ts_ns) {
        return true;
    }
    tracker.lines_dropped.fetch_add(1, Ordering::Relaxed);
    if let Some(n) = gate.warning_due() {
        warn!(container = %name,
            "container {name} writes more than {limit} lines a second (docker.max_lines_per_second): dropped {n} lines");
    }
    false
}

pub(crate) struct Follow {
    pub docker: Docker,
    pub tracker: Arc<Tracker>,
    pub name: String,
    pub tty: bool,
    /// dockerd's Unix socket, where a TTY container's log is read directly (see
    /// [`super::console`]); None for a TCP address.
    pub unix_socket: Option<std::path::PathBuf>,
    pub settings: Arc<StreamSettings>,
    pub lines: mpsc::Sender<LogLine>,
    /// Told the container id when the stream ends (the container stopped or is gone).
    pub ended: mpsc::UnboundedSender<String>,
}

/// The receiver of the lines is gone: nothing more to do.
struct Closed;

/// Where a log is read from: bollard's framed stream, or a TTY log read raw.
pub(super) enum Source {
    Api(Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, DockerError>> + Send>>),
    Console(ConsoleLog),
}

/// What a source yields: a framed message of one stream, or raw TTY bytes.
pub(super) enum Chunk {
    Framed(Stream, Bytes),
    Console(Bytes),
}

/// Why a log stream broke off: bollard's words (see [`describe`]) or the TTY reader's.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error("{0}")]
    Api(String),
    #[error(transparent)]
    Console(#[from] super::console::ConsoleError),
}

/// Where and how to open a container's log (see [`Source::open`]).
pub(super) struct Open<'a> {
    pub docker: &'a Docker,
    /// dockerd's Unix socket, where a TTY log is read raw; None for a TCP address.
    pub unix_socket: Option<&'a std::path::Path>,
    pub tty: bool,
    pub id: &'a str,
    pub follow: bool,
    /// Unix seconds; 0: from the start.
    pub since: i32,
    /// Docker's `tail`: "all", or how many of the last messages.
    pub tail: &'a str,
}

impl Source {
    /// Opens a container's log with timestamps: a TTY log straight from dockerd's Unix
    /// socket (so no line is held beyond its bound, see super::console), any other
    /// through bollard.
    pub(super) async fn open(o: Open<'_>) -> Result<Source, StreamError> {
        if let (Some(socket), true) = (o.unix_socket, o.tty) {
            let log = ConsoleLog::open_with(socket, o.id, o.follow, o.since, o.tail).await?;
            return Ok(Source::Console(log));
        }
        Ok(Source::Api(Box::pin(o.docker.logs(
            o.id,
            Some(LogsOptions {
                follow: o.follow,
                stdout: true,
                stderr: true,
                since: o.since,
                until: 0,
                timestamps: true,
                tail: o.tail.into(),
            }),
        ))))
    }

    pub(super) async fn next(&mut self) -> Option<Result<Chunk, StreamError>> {
        match self {
            Source::Api(logs) => loop {
                return Some(match logs.next().await? {
                    Ok(LogOutput::StdOut { message }) => Ok(Chunk::Framed(Stream::Stdout, message)),
                    Ok(LogOutput::StdErr { message }) => Ok(Chunk::Framed(Stream::Stderr, message)),
                    Ok(LogOutput::Console { message }) => Ok(Chunk::Console(message)),
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) => Err(StreamError::Api(describe(&e))),
                });
            },
            Source::Console(log) => log
                .next()
                .await
                .map(|r| r.map(Chunk::Console).map_err(StreamError::from)),
        }
    }
}

impl Follow {
    pub async fn run(self) {
        let id = self.tracker.id.clone();
        let mut backoff = Backoff::new();
        loop {
            let read = self.read(true, &mut backoff).await;
            let failure = match read {
                Err(Closed) => return,
                Ok(f) => f,
            };
            match self.docker.inspect_container(&id, None).await {
                Ok(info) => {
                    let running = info.state.and_then(|s| s.running).unwrap_or(false);
                    if running {
                        // Docker closed the stream while the container runs (a restart
                        // in between, or dockerd going down): read on from the cursor.
                        if let Some(e) = failure {
                            self.tracker
                                .set_state(StreamState::Reconnecting { error: e });
                        }
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                    // Stopped. Docker may close a follow stream before the container's
                    // last words reach the log, so read once more to the end; there, a
                    // last line without a newline is a whole line.
                    if self.read(false, &mut backoff).await.is_err() {
                        return;
                    }
                    self.stopped(&id);
                    return;
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    self.stopped(&id);
                    return;
                }
                Err(e) => {
                    let error = failure.unwrap_or_else(|| describe(&e));
                    let was_following =
                        matches!(*lock(&self.tracker.state), StreamState::Following);
                    if was_following {
                        warn!(container = %self.name, "lost the log stream of container {}: {error}; reconnecting", self.name);
                    }
                    self.tracker.set_state(StreamState::Reconnecting { error });
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Reads the log from the cursor on: following it (until Docker ends the stream), or
    /// to its current end, then hands out a dangling last line too. Returns why the
    /// stream broke, if it did.
    async fn read(&self, follow: bool, backoff: &mut Backoff) -> Result<Option<String>, Closed> {
        let mut pos = Position::resume(*lock(&self.tracker.cursor));
        let since = self.since(&pos);
        let opened = Source::open(Open {
            docker: &self.docker,
            unix_socket: self.unix_socket.as_deref(),
            tty: self.tty,
            id: &self.tracker.id,
            follow,
            since,
            tail: "all",
        })
        .await;
        let mut source = match opened {
            Ok(s) => s,
            Err(e) => return Ok(Some(e.to_string())),
        };
        let mut assembler = Assembler::new(self.settings.max_line_bytes);
        let mut batch: Vec<Assembled> = Vec::new();
        let mut first = true;
        while let Some(item) = source.next().await {
            let chunk = match item {
                Ok(c) => c,
                Err(e) => return Ok(Some(e.to_string())),
            };
            if first && follow {
                first = false;
                self.tracker.set_state(StreamState::Following);
                backoff.reset();
            }
            match chunk {
                Chunk::Framed(stream, message) => assembler.push(stream, &message, &mut batch),
                // Over TCP bollard hands TTY output on in whatever chunks arrive.
                Chunk::Console(bytes) => assembler.push_console_bytes(&bytes, &mut batch),
            }
            self.deliver(&mut batch, &mut pos).await?;
        }
        if !follow {
            assembler.flush(&mut batch);
            self.deliver(&mut batch, &mut pos).await?;
        }
        Ok(None)
    }

    fn stopped(&self, id: &str) {
        self.tracker.set_state(StreamState::Stopped);
        info!(container = %self.name, "container {} stopped; its log was read to the end", self.name);
        let _ = self.ended.send(id.to_string());
    }

    /// The `since` for a (re)connect: the cursor's second, but never further back than
    /// `docker.max_backlog`.
    fn since(&self, pos: &Position) -> i32 {
        let now = crate::clock::unix_now();
        let floor = now - self.settings.max_backlog_secs as i64;
        let mut since = floor;
        if pos.cursor.ts_ns != 0 {
            since = pos.cursor.since_secs();
            if since < floor {
                warn!(container = %self.name,
                    "container {}: the last line read is {}s old; reading only the last {}s (docker.max_backlog)",
                    self.name, now - since, self.settings.max_backlog_secs);
                since = floor;
            }
        }
        since.clamp(0, i32::MAX as i64) as i32
    }

    /// Sends the new lines of `batch` on, in order.
    async fn deliver(&self, batch: &mut Vec<Assembled>, pos: &mut Position) -> Result<(), Closed> {
        let limit = self.settings.max_lines_per_second;
        for a in batch.drain(..) {
            if !pos.admit(a.ts_ns) {
                continue;
            }
            if !admit_rate(&self.tracker, &self.name, limit, a.ts_ns) {
                *lock(&self.tracker.cursor) = pos.cursor;
                continue;
            }
            if a.truncated {
                self.tracker.lines_truncated.fetch_add(1, Ordering::Relaxed);
            }
            let line = LogLine {
                container_id: self.tracker.id.clone(),
                container: self.name.clone(),
                stream: if self.tty { Stream::Console } else { a.stream },
                docker_ts_ns: a.ts_ns,
                bytes: a.bytes,
                truncated: a.truncated,
                file: None,
                mark: Mark::new(pos.cursor, self.tracker.judged.clone()),
            };
            self.lines.send(line).await.map_err(|_| Closed)?;
            self.tracker.lines_read.fetch_add(1, Ordering::Relaxed);
            // Only now is the line passed on; a stream stopped during the send above
            // reads it again next time.
            *lock(&self.tracker.cursor) = pos.cursor;
        }
        Ok(())
    }
}

/// A bollard error in a few words.
pub(crate) fn describe(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => format!("dockerd answered {status_code}: {}", message.trim()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_passes_the_limit_per_docker_second_and_warns_rarely() {
        let mut g = RateGate::new(3);
        let s = 1_000_000_000;
        let passed = (0..10).filter(|i| g.pass(5 * s + i)).count();
        assert_eq!(passed, 3);
        assert_eq!(g.warning_due(), Some(7));
        assert!(g.pass(6 * s));
        assert!(!(0..5).all(|_| g.pass(6 * s + 1)));
        // Within ten seconds of the last warning: no new one yet.
        assert_eq!(g.warning_due(), None);
    }

    #[test]
    fn two_clocks_through_one_gate_are_counted_apart() {
        // The stream's backlog at second 5 and a file's lines at second 100, interleaved:
        // each second keeps its own count.
        let mut g = RateGate::new(3);
        let s = 1_000_000_000;
        let passed = (0..10)
            .filter(|i| g.pass(if i % 2 == 0 { 5 * s } else { 100 * s }))
            .count();
        assert_eq!(passed, 6);
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[9], Duration::from_secs(5));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
