//! A TTY container's log: one raw byte stream, read with a bound on what is held.
//!
//! Without a TTY, Docker frames every message (at most 16 KiB), so memory is bounded by
//! the frame. A TTY container's output has no frames: lines are whatever lies between
//! newlines, and a program that writes megabytes without one would have them buffered
//! whole by a reader that waits for the newline (as bollard's log decoder does on a Unix
//! socket). So TTY logs are read here: the HTTP request to dockerd is made directly on
//! its Unix socket, and [`ConsoleSplitter`] (inside the line assembler) cuts the bytes
//! into messages at newlines and, past `limits.max_line_bytes`, at the bound, skipping
//! the rest of that line.

use std::path::Path;

use futures_util::StreamExt;
use http_body_util::{BodyExt, BodyStream, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::lines::PIECE_BYTES;

/// Cuts a TTY log's bytes into the messages [`super::lines::Assembler`] takes: each
/// whole line with its newline; a line longer than the bound as its first part (no
/// newline) and then a bare newline once the line ends, the bytes between skipped.
#[derive(Debug, Default)]
pub struct ConsoleSplitter {
    buf: Vec<u8>,
    cap: usize,
    skipping: bool,
}

impl ConsoleSplitter {
    pub fn new(max_line_bytes: usize) -> ConsoleSplitter {
        // Room for the line, plus the timestamp Docker puts before every 16 KiB piece
        // (about 31 bytes each) so the kept part is whole once they are removed.
        let pieces = max_line_bytes / PIECE_BYTES + 2;
        ConsoleSplitter {
            buf: Vec::new(),
            cap: max_line_bytes.max(1) + pieces * 64,
            skipping: false,
        }
    }

    /// Takes the next bytes of the stream; each finished message goes to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let (segment, newline) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            bytes = &bytes[segment.len()..];
            if self.skipping {
                if newline {
                    self.skipping = false;
                    out(b"\n");
                }
                continue;
            }
            let room = self.cap - self.buf.len();
            if segment.len() <= room {
                self.buf.extend_from_slice(segment);
                if newline {
                    out(&self.buf);
                    self.buf.clear();
                }
                continue;
            }
            // Over the bound: hand on what fits, skip the rest of the line.
            self.buf.extend_from_slice(&segment[..room]);
            out(&self.buf);
            self.buf.clear();
            if newline {
                out(b"\n");
            } else {
                self.skipping = true;
            }
        }
        if self.buf.capacity() > 4 * PIECE_BYTES && self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// At the end of a stopped container's log: what is left is a line without its newline.
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            out(&self.buf);
            self.buf.clear();
        }
        self.skipping = false;
    }
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
    /// `GET /containers/ID/logs` with timestamps, from `since` (Unix seconds) on.
    pub async fn open(socket: &Path, id: &str, follow: bool, since: i32) -> Result<Self, String> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with dockerd: {e}"))?;
        let connection = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = format!(
            "/containers/{id}/logs?follow={}&stdout=1&stderr=1&timestamps=1&since={since}&tail=all",
            u8::from(follow)
        );
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the log request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("asking dockerd for the log: {e}"))?;
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
            return Err(format!(
                "dockerd answered {}: {}",
                status.as_u16(),
                message.trim()
            ));
        }
        Ok(ConsoleLog {
            body: BodyStream::new(response.into_body()),
            connection,
        })
    }

    /// The next bytes, an error, or None at the end of the log.
    pub async fn next(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.body.next().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue, // trailers
                },
                Err(e) => return Some(Err(format!("reading the log: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = ConsoleSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |m: &[u8]| out.push(m.to_vec()));
        }
        s.finish(&mut |m: &[u8]| out.push(m.to_vec()));
        out
    }

    #[test]
    fn lines_are_cut_at_newlines_whatever_the_chunks() {
        let out = split(1000, &[b"TS a\nTS b", b"c\nTS d\n", b"TS e"]);
        assert_eq!(
            out,
            vec![
                b"TS a\n".to_vec(),
                b"TS bc\n".to_vec(),
                b"TS d\n".to_vec(),
                b"TS e".to_vec()
            ]
        );
    }

    #[test]
    fn a_line_without_end_is_held_only_up_to_the_bound() {
        let max = 100;
        let mut s = ConsoleSplitter::new(max);
        let cap = s.cap;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let chunk = vec![b'x'; 4096];
        for _ in 0..10_000 {
            s.push(&chunk, &mut |m: &[u8]| out.push(m.to_vec()));
            assert!(s.buf.len() <= cap);
        }
        s.push(b"tail\nTS next\n", &mut |m: &[u8]| out.push(m.to_vec()));
        assert_eq!(out.len(), 3, "first part, end of the cut line, next line");
        assert_eq!(out[0].len(), cap);
        assert_eq!(out[1], b"\n");
        assert_eq!(out[2], b"TS next\n");
    }
}
