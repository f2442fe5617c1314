//! The optional Prometheus listener (`metrics.listen`): a tiny HTTP/1.1 server on tokio,
//! no framework. `GET /metrics` answers the exposition text, `GET /health` the health
//! JSON, and, like the seeds' Flask endpoints, `GET /alerts` the recent alerts
//! (`{"count", "limit", "alerts"}`, filtered by query parameters named like the `alerts`
//! command's flags) and `GET /insights` the risk summary; each connection gets one
//! answer and is closed. It asks the daemon's main loop through the same channel as the
//! control socket, so it holds no state of its own.
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

use crate::alerts::Filter;
use crate::api::server::{Call, ConnGuard, Conns};
use crate::api::Request;
use crate::clock::unix_now;

/// Longest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// Alerts one `GET /alerts` answers when it gives no `limit`.
pub const ALERTS_DEFAULT_LIMIT: usize = 100;
/// The most alerts one answer holds: an alert's line is at most 300 characters, so its
/// JSON is at most about 1.7 KB (a line of 4-byte characters) and an answer stays under
/// a megabyte (a test holds it to that).
pub const ALERTS_MAX_LIMIT: usize = 500;
/// The query parameters of `GET /alerts`: the `alerts` command's flags.
pub const ALERT_PARAMS: [&str; 6] = ["since", "severity", "ip", "container", "kind", "limit"];

/// What the listener says for a path it does not serve.
const NOT_FOUND: &[u8] = b"not found: the paths are /metrics, /health, /alerts and /insights\n";

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

/// What a request line asks for.
#[derive(Debug, PartialEq)]
enum Route {
    /// A question for the daemon, and how its answer is sent.
    Ask(Request, Page),
    /// An answer without asking: an error status and its message.
    Refuse(u16, String),
}

/// The page whose answer is being sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Page {
    Metrics,
    Health,
    /// The limit applied, reported beside the alerts.
    Alerts(usize),
    Insights,
}

impl Page {
    fn content_type(self) -> &'static str {
        match self {
            Page::Metrics => "text/plain; version=0.0.4; charset=utf-8",
            _ => "application/json",
        }
    }
}

/// Routes a request's method and target; `now` reads `since` durations.
fn route(method: &str, target: &str, now: i64) -> Route {
    if method != "GET" && method != "HEAD" {
        return Route::Refuse(405, "only GET and HEAD\n".into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/metrics" => Route::Ask(Request::Metrics, Page::Metrics),
        "/health" => Route::Ask(Request::Health, Page::Health),
        "/insights" => Route::Ask(Request::Insights, Page::Insights),
        "/alerts" => match alerts_request(query, now) {
            Ok((req, limit)) => Route::Ask(req, Page::Alerts(limit)),
            Err(msg) => Route::Refuse(400, format!("{msg}\n")),
        },
        _ => Route::Refuse(404, String::from_utf8_lossy(NOT_FOUND).into_owned()),
    }
}

/// The alerts request a `/alerts` query asks for, checked as the daemon checks it (the
/// same [`Filter::parse`]), with the limit applied; or what is wrong with it, naming the
/// parameter and what it takes. An empty value is as if the parameter were not given.
fn alerts_request(query: &str, now: i64) -> Result<(Request, usize), String> {
    let mut given: [Option<String>; 6] = Default::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).map_err(|e| format!("a parameter's name: {e}"))?;
        let Some(i) = ALERT_PARAMS.iter().position(|p| *p == key) else {
            return Err(format!(
                "unknown parameter {key:?}: /alerts takes {}",
                ALERT_PARAMS.join(", ")
            ));
        };
        if given[i].is_some() {
            return Err(format!("{key}: given more than once; give it once"));
        }
        let value = percent_decode(value).map_err(|e| format!("{key}: {e}"))?;
        given[i] = Some(value);
    }
    let [since, severity, ip, container, kind, limit] = given.map(|v| v.filter(|v| !v.is_empty()));
    let limit = match limit {
        None => ALERTS_DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=ALERTS_MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit: {text:?} is not a number from 1 to {ALERTS_MAX_LIMIT} (the most one answer holds; narrow it with since, severity, ip, container or kind)"
                ))
            }
        },
    };
    Filter::parse(
        since.clone(),
        severity.clone(),
        ip.clone(),
        container.clone(),
        Some(limit),
        now,
    )
    .and_then(|f| f.with_kind(kind.clone()))
    .map_err(|e| e.to_string())?;
    Ok((
        Request::Alerts {
            since,
            severity,
            ip,
            container,
            limit: Some(limit),
            kind,
        },
        limit,
    ))
}

/// A query component with its `%XX` escapes decoded (a `+` is a plus sign: write a
/// space as `%20`); it must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(format!(
                    "{text:?} has a % not followed by two hex digits (write % itself as %25)"
                ));
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8 text"))
}

/// Answers a complete request head.
async fn reply(stream: &mut impl Stream, head: &[u8], calls: mpsc::Sender<Call>) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    let (req, page) = match route(method, target, unix_now()) {
        Route::Ask(req, page) => (req, page),
        Route::Refuse(code, msg) => {
            let _ = respond(stream, code, "text/plain", msg.as_bytes(), head_only).await;
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
            let unhealthy = page == Page::Health && r.data["status"] != "ok";
            let data = match (page, r.data) {
                // The seeds' shape: how many, and the alerts (oldest first).
                (Page::Alerts(limit), serde_json::Value::Array(list)) => serde_json::json!({
                    "count": list.len(),
                    "limit": limit,
                    "alerts": list,
                }),
                (_, data) => data,
            };
            let body = match data {
                serde_json::Value::String(s) => s.into_bytes(),
                other => {
                    let mut v = serde_json::to_vec_pretty(&other).unwrap_or_default();
                    v.push(b'\n');
                    v
                }
            };
            let code = if unhealthy { 503 } else { 200 };
            let _ = respond(stream, code, page.content_type(), &body, head_only).await;
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
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
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

    /// The alerts query as the daemon reads it.
    fn query(q: &str) -> Result<Request, String> {
        alerts_request(q, 10_000).map(|(r, _)| r)
    }

    fn alerts(
        since: Option<&str>,
        severity: Option<&str>,
        ip: Option<&str>,
        container: Option<&str>,
        limit: usize,
    ) -> Request {
        Request::Alerts {
            since: since.map(String::from),
            severity: severity.map(String::from),
            ip: ip.map(String::from),
            container: container.map(String::from),
            limit: Some(limit),
            kind: None,
        }
    }

    #[test]
    fn the_alerts_query_maps_onto_the_alerts_filter_percent_decoded() {
        assert_eq!(query(""), Ok(alerts(None, None, None, None, 100)));
        assert_eq!(
            query("severity=high&ip=2001%3Adb8%3A%3A1&since=2026-11-21T10%3A00%3A00%2B01%3A00&container=web&limit=5"),
            Ok(alerts(
                Some("2026-11-21T10:00:00+01:00"),
                Some("high"),
                Some("2001:db8::1"),
                Some("web"),
                5
            ))
        );
        // An empty value is no filter; a stray & is nothing; a + is a plus sign.
        assert_eq!(
            query("since=&&ip=&limit=500"),
            Ok(alerts(None, None, None, None, 500))
        );
        assert_eq!(
            query("since=1h&container=a+b"),
            Ok(alerts(Some("1h"), None, None, Some("a+b"), 100))
        );
        assert_eq!(alerts_request("limit=7", 0).map(|(_, l)| l), Ok(7));
        assert_eq!(
            query("kind=ban"),
            Ok(Request::Alerts {
                since: None,
                severity: None,
                ip: None,
                container: None,
                limit: Some(100),
                kind: Some("ban".into()),
            })
        );
    }

    #[test]
    fn a_bad_alerts_query_says_which_parameter_and_what_it_takes() {
        let err = |q: &str| query(q).unwrap_err();
        assert_eq!(
            err("sev=high"),
            "unknown parameter \"sev\": /alerts takes since, severity, ip, container, kind, limit"
        );
        assert_eq!(
            err("ip=1.2.3.4&ip=1.2.3.5"),
            "ip: given more than once; give it once"
        );
        assert_eq!(
            err("severity=dire"),
            "severity: \"dire\" is not one of low, medium, high, critical"
        );
        assert_eq!(err("ip=1.2"), "ip: \"1.2\" is not an IPv4 or IPv6 address");
        assert!(
            err("kind=bans").starts_with("kind: \"bans\" is not one of rule_hit, ban, "),
            "{}",
            err("kind=bans")
        );
        assert!(err("since=soon").starts_with("since: \"soon\" is neither a duration"));
        for bad in ["0", "501", "ten", "-1"] {
            assert_eq!(
                err(&format!("limit={bad}")),
                format!("limit: \"{bad}\" is not a number from 1 to 500 (the most one answer holds; narrow it with since, severity, ip, container or kind)")
            );
        }
        assert_eq!(
            err("ip=1.2.3.4%zz"),
            "ip: \"1.2.3.4%zz\" has a % not followed by two hex digits (write % itself as %25)"
        );
        assert_eq!(
            err("ip=%4"),
            "ip: \"%4\" has a % not followed by two hex digits (write % itself as %25)"
        );
        assert_eq!(
            err("container=%ff"),
            "container: \"%ff\" does not decode to UTF-8 text"
        );
        assert_eq!(
            err("%73everity=high&severity=low"),
            "severity: given more than once; give it once"
        );
    }

    #[test]
    fn paths_and_methods_are_routed() {
        let now = 10_000;
        assert_eq!(
            route("GET", "/metrics?x=1", now),
            Route::Ask(Request::Metrics, Page::Metrics)
        );
        assert_eq!(
            route("HEAD", "/health", now),
            Route::Ask(Request::Health, Page::Health)
        );
        assert_eq!(
            route("GET", "/insights", now),
            Route::Ask(Request::Insights, Page::Insights)
        );
        assert_eq!(
            route("GET", "/alerts?limit=3", now),
            Route::Ask(alerts(None, None, None, None, 3), Page::Alerts(3))
        );
        match route("GET", "/alerts?limit=3000", now) {
            Route::Refuse(400, msg) => assert!(msg.starts_with("limit: "), "{msg}"),
            other => panic!("{other:?}"),
        }
        for path in ["/", "/alerts/", "/ai-insights", "/metricsx"] {
            assert_eq!(
                route("GET", path, now),
                Route::Refuse(404, String::from_utf8_lossy(NOT_FOUND).into_owned()),
                "{path}"
            );
        }
        for m in ["POST", "PUT", "DELETE", "get", ""] {
            assert!(
                matches!(route(m, "/alerts", now), Route::Refuse(405, _)),
                "{m}"
            );
        }
    }

    /// The largest alert the ring can hold, written as the listener writes it, times the
    /// cap: under a megabyte.
    #[test]
    fn the_largest_answer_stays_under_a_megabyte() {
        let long = "\u{1f600}".repeat(2000);
        let mut book = crate::alerts::AlertBook::new(0, 10);
        book.record(crate::alerts::Alert {
            ip: Some("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()),
            prefix: Some("2001:db8:ffff:ffff::/64".parse().unwrap()),
            container: "c".repeat(128),
            rule: "sqli-union,sqli-comment,xss-script,traversal-dotdot".into(),
            ..crate::alerts::from_event(&crate::events::Event::FirewallError {
                at: 1_800_000_000,
                error: long,
            })
            .unwrap()
        });
        let one = serde_json::to_value(book.query(&Filter::default())).unwrap();
        let size = serde_json::to_vec_pretty(&one).unwrap().len();
        assert!(size > 1200, "the line was not its longest: {size} bytes");
        assert!(
            size * ALERTS_MAX_LIMIT < 1 << 20,
            "{size} bytes × {ALERTS_MAX_LIMIT} is over a megabyte"
        );
    }

    /// A daemon's main loop in miniature: the real alert ring, filter and insights.
    fn daemon_loop(mut rx: mpsc::Receiver<Call>, book: crate::alerts::AlertBook, now: i64) {
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let resp = match req {
                    Request::Alerts {
                        since,
                        severity,
                        ip,
                        container,
                        limit,
                        kind,
                    } => match Filter::parse(since, severity, ip, container, limit, now)
                        .and_then(|f| f.with_kind(kind))
                    {
                        Ok(f) => Response::answer(&book.query(&f)),
                        Err(e) => Response::err(e.to_string()),
                    },
                    Request::Insights => {
                        Response::answer(&crate::alerts::insights::compute(&book, &[], now, true))
                    }
                    other => Response::err(format!("not in this test: {other:?}")),
                };
                let _ = reply.send(resp);
            }
        });
    }

    /// Sends one request over an in-memory connection; the status line's code, the
    /// head and the body.
    async fn exchange(calls: &mpsc::Sender<Call>, request: &str) -> (u16, String, String) {
        let conns = Conns::new(ConnLimits {
            max: 8,
            idle: Duration::from_secs(10),
        });
        let guard = conns.admit().expect("a place");
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let calls = calls.clone();
        let task =
            tokio::spawn(
                async move { answer(server, &guard, calls, Duration::from_secs(10)).await },
            );
        client.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        task.await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let code = head[9..12].parse().expect("a status code");
        (code, head.to_string(), body.to_string())
    }

    #[tokio::test]
    async fn alerts_and_insights_are_served_as_json() {
        let now = crate::clock::unix_now();
        let mut book = crate::alerts::AlertBook::new(0, 1000);
        for i in 0..150i64 {
            let sev = if i % 3 == 0 { "high" } else { "low" };
            book.record(crate::alerts::Alert {
                ip: Some(format!("203.0.{}.7", i % 50).parse().unwrap()),
                ..crate::alerts::Alert::new(
                    now - 1000 + i,
                    sev.parse().unwrap(),
                    "rule_hit",
                    "sqli",
                )
            });
        }
        book.record(crate::alerts::Alert {
            ip: Some("198.51.100.4".parse().unwrap()),
            ..crate::alerts::Alert::new(now - 10, "medium".parse().unwrap(), "anomaly", "anomaly")
        });
        let (calls, rx) = mpsc::channel::<Call>(8);
        daemon_loop(rx, book, now);
        let json = |body: &str| -> serde_json::Value {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };

        // The default limit holds the newest 100 of 151.
        let (code, head, body) = exchange(&calls, "GET /alerts HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(code, 200, "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let all = json(&body);
        assert_eq!(all["count"], 100);
        assert_eq!(all["limit"], 100);
        assert_eq!(all["alerts"].as_array().map(Vec::len), Some(100));
        assert_eq!(all["alerts"][99]["kind"], "anomaly");

        // Filters narrow it: one IP's high alerts (i = 3 only: 0 mod 3 and 3 mod 50). Each
        // IP has its own /24, so no flood folds them.
        let (code, _, body) = exchange(
            &calls,
            "GET /alerts?ip=203.0.3.7&severity=high&limit=500 HTTP/1.1\r\n\r\n",
        )
        .await;
        assert_eq!(code, 200);
        let some = json(&body);
        let list = some["alerts"].as_array().unwrap();
        assert_eq!(some["count"].as_u64(), Some(list.len() as u64));
        assert_eq!(list.len(), 1, "{some:#}");
        assert!(list
            .iter()
            .all(|a| a["ip"] == "203.0.3.7" && a["severity"] == "high"));

        // By kind: the one anomaly.
        let (code, _, body) = exchange(&calls, "GET /alerts?kind=anomaly HTTP/1.1\r\n\r\n").await;
        assert_eq!(code, 200);
        let anomalies = json(&body);
        assert_eq!(anomalies["count"], 1, "{anomalies:#}");
        assert_eq!(anomalies["alerts"][0]["ip"], "198.51.100.4");

        // A bad value: 400, saying what is wrong; HEAD gets the head alone.
        let (code, _, body) =
            exchange(&calls, "GET /alerts?severity=urgent HTTP/1.1\r\n\r\n").await;
        assert_eq!(code, 400);
        assert_eq!(
            body,
            "severity: \"urgent\" is not one of low, medium, high, critical\n"
        );
        let (code, head, body) = exchange(&calls, "HEAD /alerts?kinds=ban HTTP/1.1\r\n\r\n").await;
        assert_eq!((code, body.as_str()), (400, ""), "{head}");

        // Insights: the seed's fields and the anomaly signal.
        let (code, _, body) = exchange(&calls, "GET /insights HTTP/1.1\r\n\r\n").await;
        assert_eq!(code, 200);
        let ins = json(&body);
        assert_eq!(ins["mode"], "rules+baselines");
        assert!(["low", "medium", "high"].contains(&ins["risk_level"].as_str().unwrap()));
        assert!(ins["risk_score"].as_u64().is_some_and(|s| s > 0), "{ins:#}");
        let anomalies = ins["signals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "anomalies")
            .expect("the anomaly signal");
        assert_eq!(
            (anomalies["value"].as_f64(), anomalies["points"].as_f64()),
            (Some(1.0), Some(1.0))
        );
        let (code, head, body) = exchange(&calls, "HEAD /insights HTTP/1.1\r\n\r\n").await;
        assert_eq!((code, body.as_str()), (200, ""));
        assert!(!head.contains("Content-Length: 0\r"), "{head}");

        // Other paths list the four; other methods are refused with what is allowed.
        let (code, _, body) = exchange(&calls, "GET /ai-insights HTTP/1.1\r\n\r\n").await;
        assert_eq!(code, 404);
        for path in ["/metrics", "/health", "/alerts", "/insights"] {
            assert!(body.contains(path), "{body}");
        }
        let (code, head, _) =
            exchange(&calls, "POST /alerts HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(code, 405);
        assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    }
}
