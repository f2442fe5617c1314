//! Measures the Docker log path; run by `bench/docker_latency.sh` (see bench/README.md).
//!
//! ```text
//! docker_bench latency N      N lines, each carrying the container's own clock (µs)
//! docker_bench live N         one container writes N lines as fast as it can, followed live
//! docker_bench backlog C N    C stopped containers with N lines each, read through the API
//! ```
//! Needs SECMON_DOCKER_SOCK (and SECMON_TEST_IMAGE, default secmon-busybox:test). The
//! containers it makes are named `smbench-…` and labelled `secmon-test`; it removes them.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use security_monitor::config::parse_str;
use security_monitor::docker::{LogLine, WatchSettings, Watcher};
use tokio::sync::mpsc;

fn docker(host: &str, args: &[&str]) -> String {
    let out = Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .expect("run docker");
    if !out.status.success() {
        eprintln!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cleanup(host: &str) {
    let ids = docker(host, &["ps", "-aq", "--filter", "name=^/smbench-"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        docker(host, &args);
    }
}

fn settings(host: &str, state: &std::path::Path) -> WatchSettings {
    let cfg = parse_str(&format!(
        r#"{{"docker": {{"socket": "{host}", "name_pattern": "^smbench-", "label": "", "max_backlog": "1h",
            "max_lines_per_second": 10000000}}, "state": {{"dir": "{}"}}}}"#,
        state.display()
    ))
    .expect("bench config");
    WatchSettings::from_config(&cfg).expect("settings")
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn receive(rx: &mut mpsc::Receiver<LogLine>, timeout: Duration) -> Option<LogLine> {
    tokio::time::timeout(timeout, rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let host = std::env::var("SECMON_DOCKER_SOCK").unwrap_or_else(|_| {
        eprintln!("docker_bench: set SECMON_DOCKER_SOCK (bench/docker_latency.sh does)");
        std::process::exit(2)
    });
    let image = std::env::var("SECMON_TEST_IMAGE").unwrap_or_else(|_| "secmon-busybox:test".into());
    let state = tempfile::tempdir().expect("temp dir");
    cleanup(&host);
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match mode {
        "latency" => latency(&host, &image, state.path(), num(2, 2000)).await,
        "live" => live(&host, &image, state.path(), num(2, 300_000)).await,
        "backlog" => backlog(&host, &image, state.path(), num(2, 50), num(3, 20_000)).await,
        _ => {
            eprintln!("usage: docker_bench latency N | live N | backlog CONTAINERS N");
            std::process::exit(2);
        }
    }
    cleanup(&host);
}

/// Time from the container writing a line to the watcher handing it over, by the
/// container's own clock (read with `adjtimex` just before the line is printed) and by
/// Docker's timestamp (when dockerd received it).
async fn latency(host: &str, image: &str, state: &std::path::Path, n: u64) {
    let (tx, mut rx) = mpsc::channel(4096);
    let w = Watcher::spawn(settings(host, state), tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do adjtimex | awk -v i=$i '/tv_sec/{{s=$2}} /tv_usec/{{u=$2}} END{{printf \"lat %d %d%06d\\n\", i, s, u}}'; i=$((i+1)); sleep 0.005; done; sleep 1000"
    );
    docker(
        host,
        &[
            "run",
            "-d",
            "--name",
            "smbench-latency",
            "--label",
            "secmon-test=1",
            image,
            "sh",
            "-c",
            &script,
        ],
    );
    let mut own = Vec::new();
    let mut stamped = Vec::new();
    while (own.len() as u64) < n {
        let Some(line) = receive(&mut rx, Duration::from_secs(30)).await else {
            eprintln!("latency: only {} of {n} lines arrived", own.len());
            break;
        };
        let got = now_us();
        let text = String::from_utf8_lossy(&line.bytes);
        let mut f = text.split_whitespace();
        if f.next() != Some("lat") {
            continue;
        }
        let Some(written) = f.nth(1).and_then(|s| s.parse::<i64>().ok()) else {
            continue;
        };
        own.push(got - written);
        stamped.push(got - line.docker_ts_ns / 1000);
    }
    w.shutdown().await;
    own.sort_unstable();
    stamped.sort_unstable();
    let ms = |us: i64| us as f64 / 1000.0;
    println!(
        "latency over {} lines: container clock -> watcher: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        own.len(),
        ms(percentile(&own, 0.5)),
        ms(percentile(&own, 0.99)),
        ms(*own.last().unwrap_or(&0))
    );
    println!(
        "latency over {} lines: Docker timestamp -> watcher: median {:.2} ms, p99 {:.2} ms",
        stamped.len(),
        ms(percentile(&stamped, 0.5)),
        ms(percentile(&stamped, 0.99))
    );
}

/// One container writing `n` lines as fast as it can while it is followed.
async fn live(host: &str, image: &str, state: &std::path::Path, n: u64) {
    let (tx, mut rx) = mpsc::channel(4096);
    let w = Watcher::spawn(settings(host, state), tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let script = format!("seq 1 {n}; sleep 1000");
    docker(
        host,
        &[
            "run",
            "-d",
            "--name",
            "smbench-live",
            "--label",
            "secmon-test=1",
            image,
            "sh",
            "-c",
            &script,
        ],
    );
    let mut count = 0u64;
    let mut first: Option<Instant> = None;
    while count < n {
        let Some(_line) = receive(&mut rx, Duration::from_secs(60)).await else {
            eprintln!("live: only {count} of {n} lines arrived");
            break;
        };
        first.get_or_insert_with(Instant::now);
        count += 1;
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    let st = w.status();
    w.shutdown().await;
    println!(
        "live, 1 container: {count} lines in {secs:.2} s = {:.0} lines/s (dropped {})",
        count as f64 / secs.max(1e-9),
        st.containers.iter().map(|c| c.lines_dropped).sum::<u64>()
    );
}

/// `containers` stopped containers with `n` lines each, read through the Docker API at
/// once: the rate the API path itself sustains.
async fn backlog(host: &str, image: &str, state: &std::path::Path, containers: u64, n: u64) {
    for i in 0..containers {
        let name = format!("smbench-backlog-{i:02}");
        let script = format!("seq 1 {n}");
        docker(
            host,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                "secmon-test=1",
                image,
                "sh",
                "-c",
                &script,
            ],
        );
    }
    // Wait until all have written everything and exited.
    loop {
        let running = docker(host, &["ps", "-q", "--filter", "name=^/smbench-backlog-"]);
        if running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = containers * n;
    let (tx, mut rx) = mpsc::channel(4096);
    let started = Instant::now();
    let w = Watcher::spawn(settings(host, state), tx);
    let mut count = 0u64;
    while count < total {
        if receive(&mut rx, Duration::from_secs(60)).await.is_none() {
            eprintln!("backlog: only {count} of {total} lines arrived");
            break;
        }
        count += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    w.shutdown().await;
    println!(
        "through the API, {containers} container(s) x {n} lines: {count} lines in {secs:.2} s = {:.0} lines/s",
        count as f64 / secs.max(1e-9)
    );
}
