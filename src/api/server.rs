//! The daemon's side of the control socket. Each connection's requests are handed to the
//! daemon's main loop, which answers them; the socket itself holds no state.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use super::{Request, Response};

/// A request with the way back to its connection.
pub type Call = (Request, oneshot::Sender<Response>);

/// Longest request line accepted; requests are tiny.
const MAX_REQUEST: usize = 64 * 1024;

/// Binds the socket: mode 0600 (root only), or 0660 with group `group` when given.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // A socket left by a daemon that was killed: nobody answers on it, so it is ours.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use: is another security-monitor daemon running?",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("cannot give {} to group {gid}: {e}", path.display()))?;
    }
    Ok(listener)
}

/// Accepts connections until the listener is dropped; each line is a request.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>, path: PathBuf) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket {}: accept failed: {e}", path.display());
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let response = if line.len() > MAX_REQUEST {
                    Response::err("request too long")
                } else {
                    match serde_json::from_str::<Request>(&line) {
                        Err(e) => Response::err(format!("not a valid request: {e}")),
                        Ok(req) => {
                            let (tx, rx) = oneshot::channel();
                            if calls.send((req, tx)).await.is_err() {
                                Response::err("the daemon is shutting down")
                            } else {
                                rx.await.unwrap_or_else(|_| {
                                    Response::err("the daemon is shutting down")
                                })
                            }
                        }
                    }
                };
                let mut out =
                    serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
                out.push(b'\n');
                if write.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
    }
}

use tokio::io::AsyncReadExt as _;
