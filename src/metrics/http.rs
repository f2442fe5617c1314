//! The optional Prometheus listener (`metrics.listen`): a tiny HTTP/1.1 server on tokio,
//! no framework. `GET /metrics` answers the exposition text, `GET /health` the health
//! JSON; each connection gets one answer and is closed. It asks the daemon's main loop
//! through the same channel as the control socket, so it holds no state of its own.
//!
//! It is read-only and unauthenticated, like most exporters: it binds 127.0.0.1 unless
//! an operator gives another address on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::api::server::Call;
use crate::api::Request;

/// Longest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// A client that has not sent its request within this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("metrics.listen: cannot listen on {addr}: {e} (is another program using the port? choose another port or set \"listen\": \"\" to turn the listener off)")
    })
}

pub async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), answer(stream, calls)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, calls: mpsc::Sender<Call>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&buf[..n]);
        if memchr::memmem::find(&head, b"\r\n\r\n").is_some()
            || memchr::memmem::find(&head, b"\n\n").is_some()
        {
            break;
        }
        if head.len() > MAX_HEAD {
            let _ = respond(
                &mut stream,
                431,
                "text/plain",
                b"request head too large\n",
                false,
            )
            .await;
            return;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(
            &mut stream,
            405,
            "text/plain",
            b"only GET and HEAD\n",
            false,
        )
        .await;
        return;
    }
    let path = target.split('?').next().unwrap_or("");
    let (req, content_type) = match path {
        "/metrics" => (Request::Metrics, "text/plain; version=0.0.4; charset=utf-8"),
        "/health" => (Request::Health, "application/json"),
        _ => {
            let _ = respond(
                &mut stream,
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
            let _ = respond(&mut stream, code, content_type, &body, head_only).await;
        }
        Some(r) => {
            let msg = format!("{}\n", r.error.unwrap_or_default());
            let _ = respond(&mut stream, 500, "text/plain", msg.as_bytes(), head_only).await;
        }
        None => {
            let _ = respond(
                &mut stream,
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
    stream: &mut TcpStream,
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
