//! The command line's side of the control socket (blocking: one request, one answer).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Request, Response};

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket, or nobody listening: the daemon is not running.
    #[error("the daemon is not running (no one answers on {}); start it with `systemctl start security-monitor`", socket.display())]
    NotRunning { socket: PathBuf },
    /// The socket is there but we may not open it.
    #[error("permission denied on {}: run as root (or as a member of the configured control group)", socket.display())]
    Denied { socket: PathBuf },
    #[error("cannot connect to {}: {error}", socket.display())]
    Connect {
        socket: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("writing to {}: {error}", socket.display())]
    Write {
        socket: PathBuf,
        error: std::io::Error,
    },
    #[error("reading from {}: {error}", socket.display())]
    Read {
        socket: PathBuf,
        error: std::io::Error,
    },
    #[error("the daemon's answer is not valid ({error}): {answer:?}")]
    Invalid {
        answer: String,
        error: serde_json::Error,
    },
}

pub fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let at = || socket.to_path_buf();
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning { socket: at() }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied { socket: at() },
        _ => ClientError::Connect {
            socket: at(),
            error: e,
        },
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut line = serde_json::to_vec(req).map_err(ClientError::Encode)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|error| ClientError::Write {
            socket: at(),
            error,
        })?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|error| ClientError::Read {
            socket: at(),
            error,
        })?;
    serde_json::from_str(&answer).map_err(|error| ClientError::Invalid { answer, error })
}
