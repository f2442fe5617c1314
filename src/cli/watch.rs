//! `security-monitor watch`: follows the selected containers and prints their lines,
//! to see by hand what the daemon would read.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use security_monitor::config::Config;
use security_monitor::docker::cursor::cursor_path;
use security_monitor::docker::lines::format_ts_ns;
use security_monitor::docker::{LogLine, WatchSettings, Watcher};
use tokio::sync::mpsc;

pub fn run(cfg: Config, json: bool, state_dir: Option<PathBuf>) -> Result<u8> {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut settings = WatchSettings::from_config(&cfg)?;
    settings.cursor_file = state_dir.as_deref().map(cursor_path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(follow(settings, json))
}

async fn follow(settings: WatchSettings, json: bool) -> Result<u8> {
    let (tx, mut rx) = mpsc::channel(4096);
    let watcher = Watcher::spawn(settings, tx);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    loop {
        let line = tokio::select! {
            l = rx.recv() => l,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        let Some(line) = line else { break };
        if print(&mut out, &line, json).is_err() {
            // stdout is gone (e.g. piped into `head`): stop quietly.
            watcher.shutdown().await;
            return Ok(0);
        }
        if rx.is_empty() && out.flush().is_err() {
            watcher.shutdown().await;
            return Ok(0);
        }
    }
    watcher.shutdown().await;
    while let Ok(line) = rx.try_recv() {
        if print(&mut out, &line, json).is_err() {
            break;
        }
    }
    let _ = out.flush();
    Ok(0)
}

fn print(out: &mut impl Write, l: &LogLine, json: bool) -> io::Result<()> {
    let text = String::from_utf8_lossy(&l.bytes);
    if json {
        let v = serde_json::json!({
            "container": l.container,
            "container_id": l.container_id,
            "stream": l.stream.as_str(),
            "file": l.file.as_deref(),
            "ts": format_ts_ns(l.docker_ts_ns),
            "ts_ns": l.docker_ts_ns,
            "line": text,
            "truncated": l.truncated,
        });
        serde_json::to_writer(&mut *out, &v)?;
        writeln!(out)
    } else {
        writeln!(
            out,
            "{} {} {} {}",
            l.container,
            // A log file's lines name the file instead of the stream.
            l.file.as_deref().unwrap_or(l.stream.as_str()),
            format_ts_ns(l.docker_ts_ns),
            text
        )
    }
}
