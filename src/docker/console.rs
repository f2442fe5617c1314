//! A TTY container's log: one raw byte stream, read with a bound on what is held.
//!
//! Without a TTY, Docker frames every message (at most 16 KiB), so memory is bounded by
//! the frame. A TTY container's output has no frames: lines are whatever lies between
//! newlines, and a program that writes megabytes without one would have them buffered
//! whole by a reader that waits for the newline (as bollard's log decoder does on a Unix
//! socket). So TTY logs are read here: the HTTP request to dockerd is made directly on
//! its Unix socket, and the bounded [`LineSplitter`](crate::lines::LineSplitter) (inside
//! the line assembler) cuts the bytes into messages at newlines and, past
//! [`line_bound`], at the bound, skipping the rest of that line.

use std::path::Path;

use futures_util::StreamExt;
use http_body_util::{BodyExt, BodyStream, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::lines::PIECE_BYTES;

/// How much of one TTY line is held: `limits.max_line_bytes`, plus the timestamp Docker
/// puts before every 16 KiB piece (about 31 bytes each), so the kept part is whole once
/// they are removed.
pub fn line_bound(max_line_bytes: usize) -> usize {
    let pieces = max_line_bytes / PIECE_BYTES + 2;
    max_line_bytes.max(1) + pieces * 64
}

/// Why a TTY container's log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot connect to {}: {error}", socket.display())]
    Connect {
        socket: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("HTTP handshake with dockerd: {0}")]
    Handshake(hyper::Error),
    #[error("building the log request: {0}")]
    Request(hyper::http::Error),
    #[error("asking dockerd for the log: {0}")]
    Ask(hyper::Error),
    /// dockerd said no, in its own words.
    #[error("dockerd answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("reading the log: {0}")]
    Read(hyper::Error),
}

/// The raw bytes of a TTY container's log, read from dockerd's Unix socket.
pub struct ConsoleLog {
    body: BodyStream<hyper::body::Incoming>,
    connection: JoinHandle<()>,
}

impl Drop for ConsoleLog {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl ConsoleLog {
    /// `GET /containers/ID/logs` with timestamps, from `since` (Unix seconds) on;
    /// `tail` is Docker's: "all", or how many of the last messages.
    pub async fn open_with(
        socket: &Path,
        id: &str,
        follow: bool,
        since: i32,
        tail: &str,
    ) -> Result<Self, ConsoleError> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|error| ConsoleError::Connect {
                socket: socket.into(),
                error,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ConsoleError::Handshake)?;
        let connection = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = format!(
            "/containers/{id}/logs?follow={}&stdout=1&stderr=1&timestamps=1&since={since}&tail={tail}",
            u8::from(follow)
        );
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(ConsoleError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(ConsoleError::Ask)?;
        let status = response.status();
        if !status.is_success() {
            // dockerd explains in a small JSON body: {"message": "..."}.
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()
                });
            return Err(ConsoleError::Refused {
                status: status.as_u16(),
                message: message.trim().to_string(),
            });
        }
        Ok(ConsoleLog {
            body: BodyStream::new(response.into_body()),
            connection,
        })
    }

    /// The next bytes, an error, or None at the end of the log.
    pub async fn next(&mut self) -> Option<Result<Bytes, ConsoleError>> {
        loop {
            match self.body.next().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue, // trailers
                },
                Err(e) => return Some(Err(ConsoleError::Read(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lines::Assembler;
    use super::*;

    #[test]
    fn a_tty_line_without_end_is_held_only_up_to_the_bound() {
        let max = 100;
        let mut a = Assembler::new(max);
        let mut out = Vec::new();
        a.push_console_bytes(b"2026-11-21T06:25:32Z ", &mut out);
        let chunk = vec![b'x'; 4096];
        for _ in 0..10_000 {
            a.push_console_bytes(&chunk, &mut out);
        }
        a.push_console_bytes(b"tail\n2026-11-21T06:25:33Z next\n", &mut out);
        assert_eq!(out.len(), 2, "the cut line, then the next one: {out:?}");
        assert_eq!(out[0].bytes.len(), max);
        assert!(out[0].truncated);
        assert_eq!(out[1].bytes, b"next");
        assert!(line_bound(max) > max);
    }
}
