//! The command line's side of the control socket (blocking: one request, one answer).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{Request, Response};

/// Why the daemon could not be asked.
#[derive(Debug)]
pub enum ClientError {
    /// No socket, or nobody listening: the daemon is not running.
    NotRunning(String),
    /// The socket is there but we may not open it.
    Denied(String),
    Other(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning(s) | ClientError::Denied(s) | ClientError::Other(s) => {
                f.write_str(s)
            }
        }
    }
}

pub fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(format!("the daemon is not running (no one answers on {}); start it with `systemctl start security-monitor`", socket.display()))
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied(format!("permission denied on {}: run as root (or as a member of the configured control group)", socket.display())),
        _ => ClientError::Other(format!("cannot connect to {}: {e}", socket.display())),
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Other(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| ClientError::Other(format!("writing to {}: {e}", socket.display())))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| ClientError::Other(format!("reading from {}: {e}", socket.display())))?;
    serde_json::from_str(&answer).map_err(|e| {
        ClientError::Other(format!(
            "the daemon's answer is not valid ({e}): {answer:?}"
        ))
    })
}
