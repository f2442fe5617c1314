//! A container's own past log lines, read once through the Docker API (not followed).
//!
//! `check --container` replays them through the detector, and the daemon can warm up
//! on them. The lines are assembled as the live streams assemble theirs ([`super::lines`]:
//! Docker's 16 KiB pieces joined, a TTY container's console output split, every line
//! cut at `limits.max_line_bytes`), each with Docker's timestamp.
//!
//! At most `max_lines` are read, the newest: Docker is asked for its last `max_lines`
//! messages since `since`. Whether that cut the history (there were older lines since
//! `since`) is asked of Docker afterwards, by looking for one message older than the
//! first line read.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{ListContainersOptions, LogsOptions};
use bollard::Docker;
use futures_util::StreamExt;

use super::console::ConsoleLog;
use super::lines::{split_timestamp, Assembled, Assembler, PIECE_BYTES};
use super::stream::{describe, Chunk, Open, Source};
use super::{connect, cursor::Mark, DockerError, LogLine, Stream, READABLE_DRIVERS};

/// What to read.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// The container's name (without a leading `/`) or id.
    pub container: String,
    /// From this Unix second on (0: the whole log Docker keeps).
    pub since: i64,
    /// At most this many lines, the newest (0: no cap).
    pub max_lines: u64,
    /// Each line is cut at this many bytes (`limits.max_line_bytes`).
    pub max_line_bytes: usize,
}

/// What was read of one container's history.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image it was started from (`Config.Image`).
    pub image: String,
    pub labels: HashMap<String, String>,
    pub tty: bool,
    /// Lines handed to the callback.
    pub lines: u64,
    /// Of those, how many were longer than `max_line_bytes` and were cut.
    pub truncated: u64,
    /// Whether `max_lines` cut the history: Docker holds older lines since `since` that
    /// were not read.
    pub cut: bool,
    /// Docker's timestamps of the oldest and newest line read (Unix ns).
    pub oldest_ns: Option<i64>,
    pub newest_ns: Option<i64>,
}

/// Why a container's history cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Connect(#[from] DockerError),
    #[error("dockerd at {host} has no container {name:?}: {}", known_names(known))]
    NotFound {
        name: String,
        host: String,
        known: Vec<String>,
    },
    #[error("cannot reach dockerd at {host}: {error}; is Docker running, and is this the right address? (it comes from docker.socket in the config, else DOCKER_HOST{}, else {})", docker_host_env(), super::DEFAULT_DOCKER_HOST)]
    Unreachable { host: String, error: String },
    #[error("dockerd at {host} would not say about container {name:?}: {error}")]
    Refused {
        name: String,
        host: String,
        error: String,
    },
    #[error("container {name} logs through the \"{driver}\" driver, whose logs Docker cannot read back: its history is not available (readable drivers: {})", READABLE_DRIVERS.join(", "))]
    Unreadable { name: String, driver: String },
    #[error("reading the log of container {name} from dockerd at {host}: {error}")]
    Read {
        name: String,
        host: String,
        error: String,
    },
}

/// How many container names an error lists at most.
const NAMES_LISTED: usize = 20;

fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        return "it has no containers at all (`docker ps -a` lists them)".into();
    }
    let mut s = format!(
        "it has {}",
        known[..known.len().min(NAMES_LISTED)].join(", ")
    );
    if known.len() > NAMES_LISTED {
        s.push_str(&format!(" and {} more", known.len() - NAMES_LISTED));
    }
    s.push_str(" (`docker ps -a` lists them)");
    s
}

fn docker_host_env() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(v) if !v.is_empty() => format!(" (now {v:?})"),
        _ => " (not set)".into(),
    }
}

/// Whether a bollard error means dockerd answered (with a status), as opposed to not
/// being reached at all.
fn answered(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { .. })
}

/// Reads the history of `req.container` from dockerd at `host` (see
/// [`super::docker_host`]), handing each line to `each` in order, oldest first: in one
/// go, [`HistoryReader::open`] then [`HistoryReader::read`].
pub async fn read_history(
    host: &str,
    req: &HistoryRequest,
    each: impl FnMut(LogLine),
) -> Result<History, HistoryError> {
    HistoryReader::open(host, req).await?.read(each).await
}

/// One container's history: inspected (so the caller can choose how to read its lines
/// from its image and labels), then read.
pub struct HistoryReader {
    docker: Docker,
    host: String,
    req: HistoryRequest,
    history: History,
}

impl HistoryReader {
    /// Finds the container and checks that its log can be read back.
    pub async fn open(host: &str, req: &HistoryRequest) -> Result<HistoryReader, HistoryError> {
        let docker = connect(host)?;
        let name = req.container.trim_start_matches('/').to_string();
        let info = match docker.inspect_container(&name, None).await {
            Ok(i) => i,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(HistoryError::NotFound {
                    known: container_names(&docker).await,
                    name,
                    host: host.into(),
                })
            }
            Err(e) if answered(&e) => {
                return Err(HistoryError::Refused {
                    name,
                    host: host.into(),
                    error: describe(&e),
                })
            }
            Err(e) => {
                return Err(HistoryError::Unreachable {
                    host: host.into(),
                    error: describe(&e),
                })
            }
        };
        let config = info.config.unwrap_or_default();
        let driver = info
            .host_config
            .and_then(|h| h.log_config)
            .and_then(|l| l.typ)
            .unwrap_or_default();
        if !driver.is_empty() && !READABLE_DRIVERS.contains(&driver.as_str()) {
            return Err(HistoryError::Unreadable { name, driver });
        }
        let history = History {
            id: info.id.unwrap_or_else(|| name.clone()),
            name: info
                .name
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or(name),
            image: config.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            tty: config.tty.unwrap_or(false),
            lines: 0,
            truncated: 0,
            cut: false,
            oldest_ns: None,
            newest_ns: None,
        };
        Ok(HistoryReader {
            docker,
            host: host.into(),
            req: req.clone(),
            history,
        })
    }

    /// The container as inspected (nothing read yet).
    pub fn container(&self) -> &History {
        &self.history
    }

    /// Reads the history, handing each line to `each` in order, oldest first. A line's
    /// `mark` is nobody's: history moves no cursor.
    pub async fn read(self, mut each: impl FnMut(LogLine)) -> Result<History, HistoryError> {
        let HistoryReader {
            docker,
            host,
            req,
            mut history,
        } = self;
        let host = host.as_str();
        let read_error = |error: String, h: &History| HistoryError::Read {
            name: h.name.clone(),
            host: host.into(),
            error,
        };
        let since = req.since.clamp(0, i32::MAX as i64) as i32;
        let tail = match req.max_lines {
            0 => "all".to_string(),
            n => n.to_string(),
        };
        let unix_socket = host.strip_prefix("unix://").map(std::path::Path::new);
        let mut source = Source::open(Open {
            docker: &docker,
            unix_socket,
            tty: history.tty,
            id: &history.id,
            follow: false,
            since,
            tail: &tail,
        })
        .await
        .map_err(|e| read_error(e.to_string(), &history))?;
        let mut assembler = Assembler::new(req.max_line_bytes);
        let mut batch: Vec<Assembled> = Vec::new();
        let mut full = false;
        let mut long = 0u64;
        while let Some(item) = source.next().await {
            match item.map_err(|e| read_error(e.to_string(), &history))? {
                Chunk::Framed(stream, message) => assembler.push(stream, &message, &mut batch),
                Chunk::Console(bytes) => assembler.push_console_bytes(&bytes, &mut batch),
            }
            full = hand_on(
                &mut history,
                req.max_lines,
                &mut batch,
                &mut long,
                &mut each,
            );
            if full {
                break;
            }
        }
        if !full {
            // The end of the log: a last line without a newline is a whole line.
            assembler.flush(&mut batch);
            full = hand_on(
                &mut history,
                req.max_lines,
                &mut batch,
                &mut long,
                &mut each,
            );
        }
        drop(source);
        // Docker counts the pieces of a long line apart: with one, fewer lines than the
        // cap may still have been cut.
        let maybe_cut = req.max_lines > 0 && (history.lines >= req.max_lines || long > 0);
        if let (false, true, Some(oldest)) = (full, maybe_cut, history.oldest_ns) {
            let tty_socket = unix_socket.filter(|_| history.tty);
            full = older_than(&docker, tty_socket, &history.id, since, oldest)
                .await
                .map_err(|e| read_error(e, &history))?;
        }
        history.cut = full;
        Ok(history)
    }
}

/// Hands the assembled lines on, up to the cap; returns whether the cap was reached
/// (the lines after it are dropped).
fn hand_on(
    history: &mut History,
    max_lines: u64,
    batch: &mut Vec<Assembled>,
    long: &mut u64,
    each: &mut impl FnMut(LogLine),
) -> bool {
    for a in batch.drain(..) {
        if max_lines > 0 && history.lines >= max_lines {
            // Docker sent more than was asked (a logging driver that ignores
            // `tail`): the cap holds all the same.
            return true;
        }
        history.lines += 1;
        if a.truncated {
            history.truncated += 1;
        }
        if a.truncated || a.bytes.len() >= PIECE_BYTES {
            *long += 1;
        }
        history.oldest_ns.get_or_insert(a.ts_ns);
        history.newest_ns = Some(a.ts_ns);
        each(LogLine {
            container_id: history.id.clone(),
            container: history.name.clone(),
            stream: if history.tty {
                Stream::Console
            } else {
                a.stream
            },
            docker_ts_ns: a.ts_ns,
            bytes: a.bytes,
            truncated: a.truncated,
            file: None,
            mark: Mark::default(),
        });
    }
    false
}

/// Whether Docker holds a message since `since` older than `oldest_ns`: the first
/// message up to the second after it is read, and its timestamp compared. A TTY log on
/// a Unix socket is read raw (`tty_socket`), so no long line is held whole for this.
async fn older_than(
    docker: &Docker,
    tty_socket: Option<&std::path::Path>,
    id: &str,
    since: i32,
    oldest_ns: i64,
) -> Result<bool, String> {
    if let Some(socket) = tty_socket {
        let mut log = ConsoleLog::open_with(socket, id, false, since, "all")
            .await
            .map_err(|e| e.to_string())?;
        // The first message's timestamp is in its first 40 bytes.
        let mut head = Vec::new();
        while head.len() < 40 {
            match log.next().await {
                Some(bytes) => head.extend_from_slice(&bytes.map_err(|e| e.to_string())?),
                None => break,
            }
        }
        return Ok(split_timestamp(&head).is_some_and(|(ts, _)| ts < oldest_ns));
    }
    let until = oldest_ns.div_euclid(1_000_000_000).saturating_add(1);
    let mut logs = docker.logs(
        id,
        Some(LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            since,
            until: until.clamp(0, i32::MAX as i64) as i32,
            timestamps: true,
            tail: "all".into(),
        }),
    );
    use bollard::container::LogOutput;
    while let Some(item) = logs.next().await {
        let message = match item.map_err(|e| describe(&e))? {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } => message,
            LogOutput::StdIn { .. } => continue,
        };
        return Ok(split_timestamp(&message).is_some_and(|(ts, _)| ts < oldest_ns));
    }
    Ok(false)
}

/// The names of every container dockerd has, sorted (for a name that is not one).
async fn container_names(docker: &Docker) -> Vec<String> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    let mut names: Vec<String> = list
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: i64 = 1_795_242_332_954_352_105;

    fn assembled(n: usize) -> Vec<Assembled> {
        (0..n)
            .map(|i| Assembled {
                stream: Stream::Stdout,
                ts_ns: TS + i as i64,
                bytes: format!("line {i}").into_bytes(),
                truncated: i == 1,
            })
            .collect()
    }

    fn history() -> History {
        History {
            id: "abc".into(),
            name: "web".into(),
            image: String::new(),
            labels: HashMap::new(),
            tty: false,
            lines: 0,
            truncated: 0,
            cut: false,
            oldest_ns: None,
            newest_ns: None,
        }
    }

    #[test]
    fn lines_are_handed_on_up_to_the_cap() {
        let mut h = history();
        let mut got = Vec::new();
        let mut batch = assembled(5);
        let mut long = 0;
        assert!(hand_on(&mut h, 3, &mut batch, &mut long, &mut |l| got.push(l)));
        assert_eq!(long, 1, "the cut line");
        assert_eq!(got.len(), 3);
        assert_eq!((h.lines, h.truncated), (3, 1));
        assert_eq!((h.oldest_ns, h.newest_ns), (Some(TS), Some(TS + 2)));
        assert_eq!(got[2].bytes, b"line 2");
        assert_eq!(got[0].container, "web");
        assert_eq!(got[0].container_id, "abc");
        let mut h = history();
        h.tty = true;
        let mut got = Vec::new();
        assert!(!hand_on(
            &mut h,
            0,
            &mut assembled(5),
            &mut long,
            &mut |l| got.push(l)
        ));
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|l| l.stream == Stream::Console));
    }

    #[test]
    fn a_missing_container_is_named_with_those_that_exist() {
        let e = HistoryError::NotFound {
            name: "wbe".into(),
            host: "unix:///run/docker.sock".into(),
            known: vec!["db".into(), "web".into()],
        }
        .to_string();
        assert!(
            e.contains("unix:///run/docker.sock") && e.contains("\"wbe\"") && e.contains("db, web"),
            "{e}"
        );
        let many: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        assert!(known_names(&many).contains("and 5 more"));
        assert!(known_names(&[]).contains("no containers"));
    }

    #[tokio::test]
    async fn an_absent_socket_is_an_error_that_names_it() {
        let req = HistoryRequest {
            container: "web".into(),
            since: 0,
            max_lines: 10,
            max_line_bytes: 1024,
        };
        let e = read_history("unix:///nonexistent/docker.sock", &req, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/docker.sock"), "{e}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_unreachable_and_says_where_to_look() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let host = format!("unix://{}", path.display());
        let req = HistoryRequest {
            container: "web".into(),
            since: 0,
            max_lines: 10,
            max_line_bytes: 1024,
        };
        let e = read_history(&host, &req, |_| {}).await.unwrap_err();
        assert!(matches!(e, HistoryError::Unreachable { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains(&host) && e.contains("DOCKER_HOST") && e.contains("docker.socket"),
            "{e}"
        );
    }
}
