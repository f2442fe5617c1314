//! The daemon's side of the control socket. Each connection's requests are handed to the
//! daemon's main loop, which answers them; the socket itself holds no state.
//!
//! Connections are bounded ([`Conns`]), here and on the metrics listener: at most
//! [`ConnLimits::max`] are held, one that sends nothing for [`ConnLimits::idle`] is
//! closed, and over the cap the connection idle longest makes room for the new one. So
//! clients that open connections and sit on them cannot take the daemon's file
//! descriptors, nor keep an operator's `status` from being answered.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, Notify};

use super::{Request, Response};

/// A request with the way back to its connection.
pub type Call = (Request, oneshot::Sender<Response>);

/// Longest request line accepted; requests are tiny.
const MAX_REQUEST: usize = 64 * 1024;

/// How many connections a listener holds, and how long one may send nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections held at once; over it the one idle longest is closed.
    pub max: usize,
    /// A connection that sends no (complete) request for this long is closed; an answer
    /// the client does not read within it is abandoned.
    pub idle: Duration,
}

impl Default for ConnLimits {
    /// 64 connections, 10 s: the command line and scrapers connect, ask and go at once.
    fn default() -> Self {
        ConnLimits {
            max: 64,
            idle: Duration::from_secs(10),
        }
    }
}

/// The connections one listener holds (shared by its connection tasks).
#[derive(Clone)]
pub struct Conns {
    table: Arc<Mutex<ConnTable>>,
    pub limits: ConnLimits,
}

#[derive(Default)]
struct ConnTable {
    next: u64,
    /// By id: `Some(n)` while waiting for a request (n orders them: lower waited
    /// longer), None while a request is being answered; and the way to close it.
    held: BTreeMap<u64, (Option<u64>, Arc<Notify>)>,
}

/// One admitted connection; dropping it gives its place back.
pub struct ConnGuard {
    table: Arc<Mutex<ConnTable>>,
    id: u64,
    kick: Arc<Notify>,
}

fn lock(t: &Mutex<ConnTable>) -> std::sync::MutexGuard<'_, ConnTable> {
    // The table holds no invariant a panicking holder could break half-way.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conns {
    pub fn new(limits: ConnLimits) -> Conns {
        Conns {
            table: Arc::default(),
            limits: ConnLimits {
                max: limits.max.max(1),
                ..limits
            },
        }
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        lock(&self.table).held.len()
    }

    /// Takes a place for a new connection. At the cap, the connection idle longest is
    /// closed to make room; when every one is busy answering, None: close the new one.
    pub fn admit(&self) -> Option<ConnGuard> {
        let mut t = lock(&self.table);
        if t.held.len() >= self.limits.max {
            let oldest = t
                .held
                .iter()
                .filter_map(|(id, (idle, _))| idle.map(|n| (n, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some((_, kick)) = t.held.remove(&oldest) {
                kick.notify_one();
            }
        }
        t.next += 1;
        let (id, kick) = (t.next, Arc::new(Notify::new()));
        t.held.insert(id, (Some(id), kick.clone()));
        Some(ConnGuard {
            table: self.table.clone(),
            id,
            kick,
        })
    }
}

impl ConnGuard {
    /// Marks the connection as answering a request: it is not closed to make room.
    pub fn busy(&self) {
        self.mark(false);
    }

    /// Marks the connection as waiting for a request.
    pub fn idle(&self) {
        self.mark(true);
    }

    fn mark(&self, idle: bool) {
        let mut t = lock(&self.table);
        let n = t.next + 1;
        if let Some(slot) = t.held.get_mut(&self.id) {
            slot.0 = idle.then_some(n);
            if idle {
                t.next = n;
            }
        }
    }

    /// Resolves when the connection was closed to make room for a newer one.
    pub async fn kicked(&self) {
        self.kick.notified().await
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.table).held.remove(&self.id);
    }
}

/// Why the control socket cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create {}: {error}", dir.display())]
    CreateDir { dir: PathBuf, error: std::io::Error },
    #[error("cannot look at {}: {error}", path.display())]
    Look {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is {what}, not a socket; it is left alone: remove it yourself, or set control.socket to another path", path.display())]
    NotASocket { path: PathBuf, what: &'static str },
    #[error("{} is in use: is another security-monitor daemon running?", path.display())]
    InUse { path: PathBuf },
    #[error("cannot remove the stale socket {}: {error}", path.display())]
    RemoveStale {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot listen on {}: a socket path must be shorter than {max} bytes, without NUL", path.display())]
    BadPath { path: PathBuf, max: usize },
    #[error("cannot listen on {}: {error}", path.display())]
    Listen {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot set the mode of {}: {error}", path.display())]
    Mode {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot give {} to group {gid}: {error}", path.display())]
    Group {
        path: PathBuf,
        gid: u32,
        error: std::io::Error,
    },
}

/// What is at the socket's path before binding.
fn clear_stale_socket(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(BindError::Look {
                path: path.into(),
                error,
            })
        }
    };
    if !meta.file_type().is_socket() {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_dir() {
            "a directory"
        } else {
            "a regular file or other non-socket"
        };
        return Err(BindError::NotASocket {
            path: path.into(),
            what,
        });
    }
    // A socket left by a daemon that was killed: nobody answers on it, so it is ours.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(BindError::InUse { path: path.into() });
    }
    std::fs::remove_file(path).map_err(|error| BindError::RemoveStale {
        path: path.into(),
        error,
    })
}

/// Binds the socket: mode 0600 (root only), or 0660 with group `group` when given.
///
/// The mode and group are set between `bind` and `listen`: until `listen` nobody can
/// connect (a connect is refused), so no client ever reaches the socket with a looser
/// mode. std's `UnixListener::bind` does both at once, hence libc; a tight umask around
/// bind would do too, but the umask is process-wide and other threads create files.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| BindError::CreateDir {
            dir: dir.into(),
            error,
        })?;
    }
    clear_stale_socket(path)?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    let std_listener = bind_with_mode(path, mode, group)?;
    UnixListener::from_std(std_listener).map_err(|error| BindError::Listen {
        path: path.into(),
        error,
    })
}

/// socket, bind, chmod (and chown), listen; the socket is non-blocking for tokio.
fn bind_with_mode(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let listen_err = |error: std::io::Error| BindError::Listen {
        path: path.into(),
        error,
    };
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(BindError::BadPath {
            path: path.into(),
            max: addr.sun_path.len(),
        });
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a plain system call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(listen_err(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a new socket we own; OwnedFd closes it on every early return.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes, fd a socket we own.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if rc != 0 {
        return Err(listen_err(std::io::Error::last_os_error()));
    }
    let set_access = || -> Result<(), BindError> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|error| {
            BindError::Mode {
                path: path.into(),
                error,
            }
        })?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|error| BindError::Group {
                path: path.into(),
                gid,
                error,
            })?;
        }
        Ok(())
    };
    if let Err(e) = set_access() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    // SAFETY: listen on a bound socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 128) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        return Err(listen_err(e));
    }
    Ok(std::os::unix::net::UnixListener::from(fd))
}

/// Accepts connections until the listener is dropped; each line is a request. At most
/// `conns.limits.max` are held; each is closed after `conns.limits.idle` without a request.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>, path: PathBuf, conns: Conns) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket {}: accept failed: {e}", path.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Every held connection is busy answering: this one is closed at once.
        let Some(guard) = conns.admit() else {
            continue;
        };
        let calls = calls.clone();
        let idle = conns.limits.idle;
        let (read, write) = stream.into_split();
        tokio::spawn(async move {
            tokio::select! {
                _ = guard.kicked() => {}
                _ = answer(read, write, &guard, calls, idle) => {}
            }
        });
    }
}

/// Answers one connection's requests, one per line, until it closes or idles too long.
/// Generic over the stream's halves so tests can run it in memory on paused time.
async fn answer(
    read: impl tokio::io::AsyncRead + Unpin,
    mut write: impl tokio::io::AsyncWrite + Unpin,
    guard: &ConnGuard,
    calls: mpsc::Sender<Call>,
    idle: Duration,
) {
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(idle, lines.next_line()).await {
        guard.busy();
        let response = if line.len() > MAX_REQUEST {
            Response::err("request too long")
        } else {
            match serde_json::from_str::<Request>(&line) {
                Err(e) => Response::err(format!("not a valid request: {e}")),
                Ok(req) => ask(&calls, req).await,
            }
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        match tokio::time::timeout(idle, write.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        guard.idle();
    }
}

/// Hands a request to the daemon's main loop and waits for its answer.
async fn ask(calls: &mpsc::Sender<Call>, req: Request) -> Response {
    let (tx, rx) = oneshot::channel();
    if calls.send((req, tx)).await.is_err() {
        return Response::err("the daemon is shutting down");
    }
    rx.await
        .unwrap_or_else(|_| Response::err("the daemon is shutting down"))
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use tokio::io::AsyncReadExt;

    /// A main loop that answers every call `ok`.
    fn fake_daemon() -> mpsc::Sender<Call> {
        let (tx, mut rx) = mpsc::channel::<Call>(64);
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Response::ok(serde_json::json!("pong")));
            }
        });
        tx
    }

    /// Waits (a generous bound, so a hang fails) until the server closes `s`.
    async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn a_regular_file_or_symlink_at_the_socket_path_is_refused_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, b"not a socket").unwrap();
        let e = bind(&path, None)
            .expect_err("a regular file must be refused")
            .to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = bind(&link, None)
            .expect_err("a symlink must be refused")
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    #[tokio::test]
    async fn the_socket_has_its_mode_when_it_listens_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        // A stale socket (its daemon gone) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind(&path, None).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o600);
        // A live one is not.
        assert!(bind(&path, None)
            .unwrap_err()
            .to_string()
            .contains("in use"));
        drop(listener);
        let with_group = dir.path().join("group.sock");
        let _l = bind(&with_group, Some(meta.gid())).unwrap();
        let mode = std::fs::metadata(&with_group).unwrap().mode();
        assert_eq!(mode & 0o777, 0o660);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_idle_connections_do_not_starve_a_control_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let calls = fake_daemon();
        // A long idle time: what keeps the socket answering is the cap, not the timeout.
        let limits = ConnLimits {
            max: 64,
            idle: Duration::from_secs(600),
        };
        let control = Conns::new(limits);
        tokio::spawn(serve(
            bind(&path, None).unwrap(),
            calls.clone(),
            path.clone(),
            control.clone(),
        ));
        let metrics_listener = crate::metrics::http::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let metrics_addr = metrics_listener.local_addr().unwrap();
        let metrics = Conns::new(limits);
        tokio::spawn(crate::metrics::http::serve(
            metrics_listener,
            calls,
            metrics.clone(),
        ));

        let mut held_tcp = Vec::new();
        let mut held_unix = Vec::new();
        for _ in 0..300 {
            held_tcp.push(tokio::net::TcpStream::connect(metrics_addr).await.unwrap());
            held_unix.push(tokio::net::UnixStream::connect(&path).await.unwrap());
        }
        let p = path.clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || crate::api::client::call(&p, &Request::Status)),
        )
        .await
        .expect("a control call must be answered while 600 idle connections are held")
        .unwrap()
        .unwrap();
        assert!(answer.ok, "{answer:?}");

        // The 300 before it were accepted first; the server holds at most the cap.
        assert!(control.held() <= 64, "{} held", control.held());
        // The metrics listener still answers a scrape too.
        let mut s = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut text))
            .await
            .unwrap()
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(metrics.held() <= 64, "{} held", metrics.held());
        // The oldest idle ones made room: they were closed by the server.
        assert!(closed_by_server(&mut held_unix[0]).await);
        assert!(closed_by_server(&mut held_tcp[0]).await);
    }

    /// On paused time, so it takes milliseconds and the timeout is exact. The control
    /// socket is a Unix socket: the kernel delivers its data and its close within the
    /// system call, so the runtime sees them before it advances the clock. (The metrics
    /// listener's idle drop is tested in memory in `metrics::http`: a loopback TCP close
    /// can reach the client later than paused time moves on.)
    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let idle = Duration::from_millis(300);
        let control = Conns::new(ConnLimits { max: 64, idle });
        tokio::spawn(serve(
            bind(&path, None).unwrap(),
            fake_daemon(),
            path.clone(),
            control.clone(),
        ));
        // A control client that asked once and then sits there is closed too.
        let mut asked = tokio::net::UnixStream::connect(&path).await.unwrap();
        asked
            .write_all(b"{\"command\":\"status\"}\n")
            .await
            .unwrap();
        let mut idle_unix = Vec::new();
        for _ in 0..10 {
            idle_unix.push(tokio::net::UnixStream::connect(&path).await.unwrap());
        }
        let start = tokio::time::Instant::now();
        let mut line = String::new();
        let mut reader = BufReader::new(&mut asked);
        reader.read_line(&mut line).await.unwrap();
        assert!(line.contains("pong"), "{line}");
        assert!(closed_by_server(&mut asked).await);
        for s in &mut idle_unix {
            assert!(closed_by_server(s).await);
        }
        assert_eq!(start.elapsed(), idle, "closed at the idle time, not before");
        // Closed connections give their places back (a moment after the client sees it).
        let freed = tokio::time::timeout(Duration::from_secs(20), async {
            while control.held() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(freed.await.is_ok(), "{} still held", control.held());
    }

    /// The idle time runs from the last answer, not from the connection: a client that
    /// keeps asking is kept; one that stops is closed exactly `idle` after its last
    /// answer. In memory, on paused time.
    #[tokio::test(start_paused = true)]
    async fn the_idle_time_runs_from_the_last_answer() {
        let idle = Duration::from_secs(10);
        let conns = Conns::new(ConnLimits { max: 4, idle });
        let guard = conns.admit().unwrap();
        let (client, server) = tokio::io::duplex(4096);
        let (read, write) = tokio::io::split(server);
        let task = tokio::spawn(async move {
            answer(read, write, &guard, fake_daemon(), idle).await;
        });
        let (client_read, mut client_write) = tokio::io::split(client);
        let mut lines = BufReader::new(client_read).lines();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(9)).await;
            client_write
                .write_all(b"{\"command\":\"status\"}\n")
                .await
                .unwrap();
            let line = lines.next_line().await.unwrap().unwrap();
            assert!(line.contains("pong"), "{line}");
        }
        let last = tokio::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        assert_eq!(closed.expect("closed").unwrap(), None);
        assert_eq!(last.elapsed(), idle);
        task.await.unwrap();
        assert_eq!(conns.held(), 0);
    }
}
