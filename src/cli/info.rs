//! What the running daemon says about itself: `status`, `health`, `metrics`,
//! `insights`, `alerts` (read from the alerts log without a daemon) and `reload`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use security_monitor::alerts::log::AlertLog;
use security_monitor::alerts::{Alert, AlertBook};
use security_monitor::api::client::{self, ClientError};
use security_monitor::api::Request;
use security_monitor::clock::unix_now;
use security_monitor::config::{self, DEFAULT_CONFIG_PATH};
use security_monitor::detect::parse::format_time;

use super::table::{Column, Table};
use super::{ask, daemon_data, load_config, need_daemon, show_answer, socket_of};

/// `alerts`' columns; the last, what happened, is not padded.
const ALERT_COLUMNS: [Column; 8] = [
    Column::fixed("LAST SEEN", 20),
    Column::fixed("SEVERITY", 8),
    Column::fit("KIND"),
    Column::fit("IP"),
    Column::fit("CONTAINER"),
    Column::fit("RULE"),
    Column::fixed("COUNT", 5).right(),
    Column::fixed("WHAT", 0),
];

pub(super) fn status(config: Option<&Path>, json: bool) -> Result<u8> {
    let d = match daemon_data(config, &Request::Status, json)? {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(0),
        Err(code) => return Ok(code),
    };
    let fw = &d["firewall"];
    println!(
        "security-monitor {} running for {}",
        d["version"].as_str().unwrap_or("?"),
        config::format_duration(d["uptime_s"].as_u64().unwrap_or(0))
    );
    println!("  config       {}", d["config"].as_str().unwrap_or("?"));
    if let Some(e) = d["reload_error"].as_str() {
        println!("  LAST RELOAD FAILED: {e}");
    }
    println!(
        "  firewall     {} ({} active bans; {} since start, {} lifted, {} held back, {} never-ban)",
        fw["backend"].as_str().unwrap_or("?"),
        fw["active_bans"],
        fw["bans_since_start"],
        fw["unbans_since_start"],
        fw["held_back"],
        fw["never_banned"]
    );
    if let (Some(p50), Some(p99)) = (
        fw["time_to_ban_ms_p50"].as_f64(),
        fw["time_to_ban_ms_p99"].as_f64(),
    ) {
        println!("  time to ban  median {p50:.1} ms, p99 {p99:.1} ms (log line to firewall)");
    }
    if let Some(e) = fw["last_error"].as_str() {
        println!("  last firewall error: {e}");
    }
    println!(
        "  lines        {} read, {} parsed, {:.0}/s now; {} client IPs tracked",
        d["lines_read"],
        d["lines_parsed"],
        d["lines_per_second"].as_f64().unwrap_or(0.0),
        d["tracked_ips"]
    );
    let nt = &d["notify"];
    let empty = Vec::new();
    let channels = nt["channels"].as_array().unwrap_or(&empty);
    if channels.is_empty() {
        println!("  notices      none configured (email, webhooks)");
    }
    for c in channels {
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        let mut line = format!(
            "  notices      {}: {} sent, {} failed, {} pending",
            c["name"].as_str().unwrap_or("?"),
            n("sent"),
            n("failed"),
            n("pending")
        );
        if let Some(e) = c["last_error"].as_str() {
            line.push_str(&format!(
                "; last error at {}: {e}",
                c["last_error_at"].as_str().unwrap_or("?")
            ));
        }
        if let Some(r) = c["retry_in_s"].as_u64() {
            line.push_str(&format!("; retrying in {r}s"));
        }
        println!("{line}");
    }
    for e in nt["setup_errors"].as_array().unwrap_or(&empty) {
        println!("  NOTICES OFF: {}", e.as_str().unwrap_or("?"));
    }
    if nt["events_missed"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  notices      {} events missed (fell behind)",
            nt["events_missed"]
        );
    }
    for u in d["unparsed"].as_array().unwrap_or(&empty) {
        println!(
            "  UNPARSED     container {}: {} of its first {} lines are not {}; set its log_format. Sample: {}",
            u["container"].as_str().unwrap_or("?"),
            u["unparsed"],
            u["lines"],
            u["format"].as_str().unwrap_or("?"),
            u["sample"].as_str().unwrap_or("")
        );
    }
    let dk = &d["docker"];
    if dk.is_null() {
        println!("  docker       not watched");
    } else {
        let conn = if dk["connected"].as_bool() == Some(true) {
            "connected".to_string()
        } else {
            format!(
                "NOT CONNECTED ({})",
                dk["error"].as_str().unwrap_or("retrying")
            )
        };
        println!(
            "  docker       {} {conn}",
            dk["docker_host"].as_str().unwrap_or("?")
        );
        let empty = Vec::new();
        let containers = dk["containers"].as_array().unwrap_or(&empty);
        if !containers.is_empty() {
            println!(
                "  {:<24} {:<14} {:>10} {:>8} {:>9}",
                "CONTAINER", "STREAM", "LINES", "DROPPED", "TRUNCATED"
            );
            for c in containers {
                let n = |k: &str| c[k].as_u64().unwrap_or(0);
                println!(
                    "  {:<24} {:<14} {:>10} {:>8} {:>9}",
                    c["name"].as_str().unwrap_or("?"),
                    c["state"].as_str().unwrap_or("?"),
                    n("lines_read"),
                    n("lines_dropped"),
                    n("lines_truncated")
                );
            }
        }
    }
    Ok(0)
}

pub(super) fn health(config: Option<&Path>, json: bool) -> Result<u8> {
    let resp = need_daemon(&socket_of(config), &Request::Health)?;
    if !resp.ok {
        return Ok(show_answer(resp));
    }
    let d = resp.data;
    let ok = d["status"] == "ok";
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        println!("{}", d["status"].as_str().unwrap_or("?"));
        let empty = Vec::new();
        for p in d["problems"].as_array().unwrap_or(&empty) {
            println!("  {}", p.as_str().unwrap_or(""));
        }
    }
    Ok(if ok { 0 } else { 1 })
}

pub(super) fn metrics(config: Option<&Path>) -> Result<u8> {
    let resp = need_daemon(&socket_of(config), &Request::Metrics)?;
    match (resp.ok, resp.data) {
        (true, serde_json::Value::String(text)) => {
            print!("{text}");
            Ok(0)
        }
        (_, _) => {
            eprintln!(
                "security-monitor: {}",
                resp.error
                    .unwrap_or_else(|| "the daemon sent no metrics".into())
            );
            Ok(1)
        }
    }
}

pub(super) fn insights(config: Option<&Path>, json: bool) -> Result<u8> {
    let d = match daemon_data(config, &Request::Insights, json)? {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(0),
        Err(code) => return Ok(code),
    };
    println!(
        "risk {}/100: {}",
        d["risk_score"],
        d["risk_level"].as_str().unwrap_or("?").to_uppercase()
    );
    println!("  {}", d["summary"].as_str().unwrap_or(""));
    println!();
    println!("  {:<18} {:>7} {:>7}  WHY", "SIGNAL", "POINTS", "OF");
    let empty = Vec::new();
    for s in d["signals"].as_array().unwrap_or(&empty) {
        println!(
            "  {:<18} {:>7.1} {:>7.0}  {}",
            s["name"].as_str().unwrap_or("?"),
            s["points"].as_f64().unwrap_or(0.0),
            s["max_points"].as_f64().unwrap_or(0.0),
            s["explanation"].as_str().unwrap_or("")
        );
    }
    let top = d["top_ips"].as_array().unwrap_or(&empty);
    if !top.is_empty() {
        println!();
        println!("  most alerts in the last hour:");
        for t in top {
            println!("    {:<40} {}", t[0].as_str().unwrap_or("?"), t[1]);
        }
    }
    Ok(0)
}

pub(super) fn alerts(req: Request, config: Option<&Path>, json: bool) -> Result<u8> {
    let list: Vec<Alert> = match ask(config, &req)? {
        Some(resp) if resp.ok => {
            serde_json::from_value(resp.data).context("the daemon's alerts are not valid")?
        }
        Some(resp) => return Ok(show_answer(resp)),
        None => alerts_from_log(config, &req)?,
    };
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(0);
    }
    if list.is_empty() {
        writeln!(out, "no alerts")?;
        return Ok(0);
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.chars().take(24).collect()
        }
    };
    let mut table = Table::new(&ALERT_COLUMNS);
    for a in &list {
        table.row(vec![
            format_time(a.last_seen),
            a.severity.clone(),
            a.kind.clone(),
            a.ip.map_or_else(|| "-".into(), |i| i.to_string()),
            dash(&a.container),
            dash(&a.rule),
            a.count.to_string(),
            a.line.chars().take(120).collect(),
        ]);
    }
    write!(out, "{table}")?;
    writeln!(
        out,
        "{} alert{}",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    )?;
    Ok(0)
}

/// Without a daemon: the alerts log in state.dir, with the same filters.
fn alerts_from_log(config: Option<&Path>, req: &Request) -> Result<Vec<Alert>> {
    let Request::Alerts {
        since,
        severity,
        ip,
        container,
        limit,
    } = req
    else {
        return Ok(Vec::new());
    };
    let cfg = load_config(config, true)?;
    let now = unix_now();
    let log = AlertLog::new(&cfg.state.dir, cfg.log_retention_days);
    let loaded = log.load(now, cfg.alerts.keep);
    let mut book = AlertBook::new(cfg.alerts.cooldown, cfg.alerts.keep);
    book.restore(loaded.alerts);
    // The daemon's own filter checks: one reading of --since, --severity and --ip.
    let filter = security_monitor::daemon::alert_filter(
        since.clone(),
        severity.clone(),
        ip.clone(),
        container.clone(),
        *limit,
        now,
    )
    .map_err(|e| anyhow::anyhow!("--{e}"))?;
    eprintln!(
        "security-monitor: the daemon is not running; reading {}",
        log.path().display()
    );
    Ok(book.query(&filter))
}

/// Asks the daemon to re-read its config. A running daemon checks the file itself and
/// answers with its errors; when none answers and the file is broken, the file is the
/// news (a syntax error can hide the `control.socket` it names, so "not running" alone
/// would send the operator to the wrong problem).
pub(super) fn reload(config: Option<&Path>) -> Result<u8> {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let socket = socket_of(config);
    match client::call(&socket, &Request::Reload) {
        Ok(resp) => Ok(show_answer(resp)),
        Err(ClientError::NotRunning(msg)) => match config::load(&path) {
            Ok(_) => {
                eprintln!("security-monitor: {msg}");
                Ok(3)
            }
            Err(errors) => {
                eprint!("{errors}");
                eprintln!("{}", reload_refused(&path, &socket));
                Ok(1)
            }
        },
        Err(e) => {
            eprintln!("security-monitor: {e}");
            Ok(3)
        }
    }
}

/// What `reload` says when no daemon answers and the config has errors.
fn reload_refused(path: &Path, socket: &Path) -> String {
    let named = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| config::control_socket_of(&t))
        .is_some();
    let which = if named {
        format!("the control socket it names, {}", socket.display())
    } else {
        format!(
            "the default control socket {} (the errors hide any control.socket the file sets)",
            socket.display()
        )
    };
    format!(
        "security-monitor: nothing was reloaded: {} has the errors above, and no daemon answers on {which}. Fix the file (security-monitor check-config {}) and reload again.",
        path.display(),
        path.display()
    )
}
