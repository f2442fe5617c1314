//! The optional Prometheus listener (`metrics.listen`): a tiny HTTP/1.1 server on tokio,
//! no framework. `GET /metrics` answers the exposition text, `GET /health` the health
//! JSON; each connection gets one answer and is closed. It asks the daemon's main loop
//! through the same channel as the control socket, so it holds no state of its own.
//!
//! It is read-only and unauthenticated, like most exporters: it binds 127.0.0.1 unless
//! an operator gives another address on purpose. Its connections are bounded like the
//! control socket's ([`Conns`]: at most 64, the request head within 10 s), with their
//! own table, so a flood here never touches the control socket's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::api::server::{Call, ConnGuard, Conns};
use crate::api::Request;

/// Longest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// The metrics listener's address cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen: cannot listen on {addr}: {source} (is another program using the port? choose another port or set \"listen\": \"\" to turn the listener off)")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves until the task is aborted. A client that has not sent its whole request head
/// within `conns.limits.idle` is dropped; at most `conns.limits.max` are held.
pub async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>, conns: Conns) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
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
        tokio::spawn(async move {
            tokio::select! {
                _ = guard.kicked() => {}
                _ = answer(stream, &guard, calls, idle) => {}
            }
        });
    }
}

/// What came of reading a request head.
enum Head {
    Complete(Vec<u8>),
    TooLarge,
    /// Closed, failed, or not complete in time: nothing to answer.
    Gone,
}

/// A connection: a TCP stream, or an in-memory one in tests (which run on paused time).
trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for S {}

/// Reads the request head; the whole of it must arrive within `idle` (a client sending
/// a byte now and then is not kept).
async fn read_head(stream: &mut impl Stream, idle: Duration) -> Head {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Head::Gone,
                Ok(n) => n,
            };
            head.extend_from_slice(&buf[..n]);
            if memchr::memmem::find(&head, b"\r\n\r\n").is_some()
                || memchr::memmem::find(&head, b"\n\n").is_some()
            {
                return Head::Complete(std::mem::take(&mut head));
            }
            if head.len() > MAX_HEAD {
                return Head::TooLarge;
            }
        }
    };
    tokio::time::timeout(idle, read).await.unwrap_or(Head::Gone)
}

async fn answer(
    mut stream: impl Stream,
    guard: &ConnGuard,
    calls: mpsc::Sender<Call>,
    idle: Duration,
) {
    let head = match read_head(&mut stream, idle).await {
        Head::Complete(h) => h,
        Head::Gone => return,
        Head::TooLarge => {
            let _ = tokio::time::timeout(
                idle,
                respond(
                    &mut stream,
                    431,
                    "text/plain",
                    b"request head too large\n",
                    false,
                ),
            )
            .await;
            return;
        }
    };
    guard.busy();
    // The daemon's main loop may take a moment under load; as before, 30 s at most.
    let bound = idle.max(Duration::from_secs(30));
    let _ = tokio::time::timeout(bound, reply(&mut stream, &head, calls)).await;
}

/// Answers a complete request head.
async fn reply(stream: &mut impl Stream, head: &[u8], calls: mpsc::Sender<Call>) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(stream, 405, "text/plain", b"only GET and HEAD\n", false).await;
        return;
    }
    let path = target.split('?').next().unwrap_or("");
    let (req, content_type) = match path {
        "/metrics" => (Request::Metrics, "text/plain; version=0.0.4; charset=utf-8"),
        "/health" => (Request::Health, "application/json"),
        _ => {
            let _ = respond(
                stream,
                404,
                "text/plain",
                b"not found: try /metrics or /health\n",
                head_only,
            )
            .await;
            return;
        }
    };
    let (tx, rx) = oneshot::channel();
    let resp = if calls.send((req, tx)).await.is_ok() {
        rx.await.ok()
    } else {
        None
    };
    match resp {
        Some(r) if r.ok => {
            // An unhealthy daemon answers 503, so a plain HTTP probe sees it.
            let unhealthy = path == "/health" && r.data["status"] != "ok";
            let body = match r.data {
                serde_json::Value::String(s) => s.into_bytes(),
                other => {
                    let mut v = serde_json::to_vec_pretty(&other).unwrap_or_default();
                    v.push(b'\n');
                    v
                }
            };
            let code = if unhealthy { 503 } else { 200 };
            let _ = respond(stream, code, content_type, &body, head_only).await;
        }
        Some(r) => {
            let msg = format!("{}\n", r.error.unwrap_or_default());
            let _ = respond(stream, 500, "text/plain", msg.as_bytes(), head_only).await;
        }
        None => {
            let _ = respond(
                stream,
                503,
                "text/plain",
                b"the daemon is shutting down\n",
                head_only,
            )
            .await;
        }
    }
}

async fn respond(
    stream: &mut impl Stream,
    code: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::server::ConnLimits;
    use crate::api::Response;
    use tokio::time::Instant;

    /// A scraper that trickles its head a byte at a time is dropped `idle` after it
    /// connected, however steadily it writes; one that sends nothing is dropped too; a
    /// whole head in time is answered. On paused time: milliseconds, exact.
    #[tokio::test(start_paused = true)]
    async fn a_head_not_complete_within_the_idle_time_is_dropped() {
        let idle = Duration::from_millis(300);
        let conns = Conns::new(ConnLimits { max: 8, idle });
        let (calls, mut rx) = mpsc::channel::<Call>(8);
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Response::ok(serde_json::json!("up 1")));
            }
        });
        let serve_one = |stream: tokio::io::DuplexStream| {
            let guard = conns.admit().expect("a place");
            let calls = calls.clone();
            tokio::spawn(async move { answer(stream, &guard, calls, idle).await })
        };

        let (mut slow, server) = tokio::io::duplex(4096);
        let slow_task = serve_one(server);
        let start = Instant::now();
        let failed_at = loop {
            if slow.write_all(b"G").await.is_err() {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the slow scraper was kept"
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        };
        assert_eq!(
            failed_at,
            Duration::from_millis(320),
            "dropped at 300 ms, not before"
        );
        slow_task.await.unwrap();

        let (mut silent, server) = tokio::io::duplex(4096);
        let start = Instant::now();
        let dropped = tokio::time::timeout(Duration::from_secs(60), serve_one(server)).await;
        dropped.expect("the silent client was kept").unwrap();
        assert_eq!(start.elapsed(), idle);
        assert_eq!(silent.read(&mut [0u8; 8]).await.unwrap(), 0);

        let (mut quick, server) = tokio::io::duplex(4096);
        let task = serve_one(server);
        quick
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        quick.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with("up 1"), "{text}");
        task.await.unwrap();
        assert_eq!(conns.held(), 0, "every place was given back");
    }
}
