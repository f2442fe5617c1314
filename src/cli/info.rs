//! What the running daemon says about itself: `status`, `health`, `metrics`,
//! `insights`, `alerts` (read from the alerts log without a daemon) and `reload`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;

use security_monitor::alerts::log::AlertLog;
use security_monitor::alerts::{Alert, AlertBook, Filter};
use security_monitor::api::client::{self, ClientError};
use security_monitor::api::{
    Health, HealthState, Insights, NotifyStatus, Request, Status, Summary, WatcherStatus,
};
use security_monitor::clock::unix_now;
use security_monitor::config::{self, DEFAULT_CONFIG_PATH};
use security_monitor::time::format_time;

use super::table::{Column, Table};
use super::{accepted, ask, daemon_answer, load_config, show_answer, socket_of};

/// `status`'s followed containers.
const CONTAINER_COLUMNS: [Column; 6] = [
    Column::fixed("CONTAINER", 24),
    Column::fixed("STREAM", 14).close(),
    Column::fixed("LINES", 10).right().close(),
    Column::fixed("DROPPED", 8).right().close(),
    Column::fixed("TRUNCATED", 9).right().close(),
    Column::fit("IMAGE"),
];

/// `insights`' signals; the last column, why, is not padded.
const SIGNAL_COLUMNS: [Column; 4] = [
    Column::fixed("SIGNAL", 18),
    Column::fixed("POINTS", 7).right().close(),
    Column::fixed("OF", 7).right().close(),
    Column::fixed("WHY", 0),
];

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
    let d: Status = daemon_answer(config, &Request::Status, json)?;
    if json {
        return Ok(0);
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "security-monitor {} running for {}",
        d.version,
        security_monitor::time::format_duration(d.uptime_s)
    )?;
    writeln!(out, "  config       {}", d.config.display())?;
    if let Some(e) = &d.reload_error {
        writeln!(out, "  LAST RELOAD FAILED: {e}")?;
    }
    write_firewall(&mut out, &d.firewall)?;
    writeln!(
        out,
        "  lines        {} read, {} parsed, {:.0}/s now; {} client IPs tracked",
        d.lines_read, d.lines_parsed, d.lines_per_second, d.tracked_ips
    )?;
    write_notices(&mut out, &d.notify)?;
    if let Some(f) = &d.fleet {
        write_fleet(&mut out, f)?;
    }
    for u in &d.unparsed {
        writeln!(
            out,
            "  UNPARSED     container {}: {} of its first {} lines are not {}; set its log_format. Sample: {}",
            u.container, u.unparsed, u.lines, u.format, u.sample
        )?;
    }
    match &d.docker {
        None => writeln!(out, "  docker       not watched")?,
        Some(w) => write_docker(&mut out, w)?,
    }
    for p in &d.profiles {
        writeln!(
            out,
            "  profile      {}: {} ({})",
            p.container, p.profile, p.reason
        )?;
    }
    if let Some(a) = &d.anomaly {
        writeln!(out, "  baselines    mode {}", a.mode)?;
        for c in &a.containers {
            writeln!(
                out,
                "  baseline     {}: {} endpoints, {} requests learned, {} KiB; {} anomalies since start",
                c.container,
                c.endpoints,
                c.learned,
                c.bytes.div_ceil(1024),
                c.anomalies
            )?;
        }
    }
    Ok(0)
}

/// `status`'s firewall lines.
fn write_firewall(out: &mut impl Write, fw: &Summary) -> io::Result<()> {
    writeln!(
        out,
        "  firewall     {} ({} active bans; {} since start, {} lifted, {} held back, {} never-ban)",
        fw.backend,
        fw.active_bans,
        fw.bans_since_start,
        fw.unbans_since_start,
        fw.held_back,
        fw.never_banned
    )?;
    if let (Some(p50), Some(p99)) = (fw.time_to_ban_ms_p50, fw.time_to_ban_ms_p99) {
        writeln!(
            out,
            "  time to ban  median {p50:.1} ms, p99 {p99:.1} ms (log line to firewall)"
        )?;
    }
    if let Some(e) = &fw.last_error {
        writeln!(out, "  last firewall error: {e}")?;
    }
    Ok(())
}

/// `status`'s fleet lines.
fn write_fleet(out: &mut impl Write, f: &security_monitor::api::FleetStatus) -> io::Result<()> {
    let conn = if f.connected {
        format!("connected to {}", f.servers.join(", "))
    } else {
        format!(
            "NOT CONNECTED to {} ({})",
            f.servers.join(", "),
            f.error.as_deref().unwrap_or("connecting")
        )
    };
    writeln!(
        out,
        "  fleet        {} in bucket {}: {conn}; {} published; remote bans {} applied, {} refused, {} held, {} in force",
        f.host_id, f.bucket, f.published, f.remote_applied, f.remote_refused, f.remote_held, f.remote_in_force
    )?;
    if let (Some(p50), Some(p99)) = (f.latency_ms_p50, f.latency_ms_p99) {
        writeln!(
            out,
            "  propagation  median {p50:.1} ms, p99 {p99:.1} ms over {} ban(s) (origin's firewall to this host's)",
            f.latency_samples
        )?;
    }
    if let Some(ms) = f.last_converge_ms {
        writeln!(
            out,
            "  converged    in {ms:.0} ms after the last (re)connect"
        )?;
    }
    Ok(())
}

/// `status`'s lines about mail and webhook notices.
fn write_notices(out: &mut impl Write, nt: &NotifyStatus) -> io::Result<()> {
    if nt.channels.is_empty() {
        writeln!(out, "  notices      none configured (email, webhooks)")?;
    }
    for c in &nt.channels {
        let mut line = format!(
            "  notices      {}: {} sent, {} failed, {} pending",
            c.name, c.sent, c.failed, c.pending
        );
        match (&c.last_error, &c.last_error_at) {
            (Some(e), Some(at)) => line.push_str(&format!("; last error at {at}: {e}")),
            (Some(e), None) => line.push_str(&format!("; last error: {e}")),
            (None, _) => {}
        }
        if let Some(r) = c.retry_in_s {
            line.push_str(&format!("; retrying in {r}s"));
        }
        writeln!(out, "{line}")?;
    }
    for e in &nt.setup_errors {
        writeln!(out, "  NOTICES OFF: {e}")?;
    }
    if nt.events_missed > 0 {
        writeln!(
            out,
            "  notices      {} events missed (fell behind)",
            nt.events_missed
        )?;
    }
    Ok(())
}

/// `status`'s Docker connection and the followed containers.
fn write_docker(out: &mut impl Write, dk: &WatcherStatus) -> io::Result<()> {
    let conn = if dk.connected {
        "connected".to_string()
    } else {
        format!(
            "NOT CONNECTED ({})",
            dk.error.as_deref().unwrap_or("retrying")
        )
    };
    writeln!(out, "  docker       {} {conn}", dk.docker_host)?;
    if dk.containers.is_empty() {
        return Ok(());
    }
    let mut table = Table::new(&CONTAINER_COLUMNS).indent("  ");
    for c in &dk.containers {
        table.row(vec![
            c.name.clone(),
            c.state.name().to_string(),
            c.lines_read.to_string(),
            c.lines_dropped.to_string(),
            c.lines_truncated.to_string(),
            c.image.clone(),
        ]);
    }
    write!(out, "{table}")?;
    for c in &dk.containers {
        for f in &c.files {
            match &f.problem {
                None => writeln!(out, "  {} file {}: {} lines", c.name, f.path, f.lines_read)?,
                Some(p) => writeln!(out, "  {} file NOT READ: {p}", c.name)?,
            }
        }
    }
    Ok(())
}

pub(super) fn health(config: Option<&Path>, json: bool) -> Result<u8> {
    let d: Health = daemon_answer(config, &Request::Health, json)?;
    if !json {
        println!("{}", d.status.as_str());
        for p in &d.problems {
            println!("  {p}");
        }
    }
    Ok(if d.status == HealthState::Ok { 0 } else { 1 })
}

pub(super) fn metrics(config: Option<&Path>) -> Result<u8> {
    let text: String = daemon_answer(config, &Request::Metrics, false)?;
    print!("{text}");
    Ok(0)
}

pub(super) fn insights(config: Option<&Path>, json: bool) -> Result<u8> {
    let d: Insights = daemon_answer(config, &Request::Insights, json)?;
    if json {
        return Ok(0);
    }
    if d.mode.is_empty() {
        println!("risk {}/100: {}", d.risk_score, d.risk_level.to_uppercase());
    } else {
        println!(
            "risk {}/100: {} (mode {})",
            d.risk_score,
            d.risk_level.to_uppercase(),
            d.mode
        );
    }
    println!("  {}", d.summary);
    println!();
    let mut table = Table::new(&SIGNAL_COLUMNS).indent("  ");
    for s in &d.signals {
        table.row(vec![
            s.name.clone(),
            format!("{:.1}", s.points),
            format!("{:.0}", s.max_points),
            s.explanation.clone(),
        ]);
    }
    print!("{table}");
    if !d.top_ips.is_empty() {
        println!();
        println!("  most alerts in the last hour:");
        for (ip, n) in &d.top_ips {
            println!("    {ip:<40} {n}");
        }
    }
    Ok(0)
}

pub(super) fn alerts(req: Request, config: Option<&Path>, json: bool) -> Result<u8> {
    let list: Vec<Alert> = match ask(config, &req)? {
        Some(resp) => accepted(resp)?,
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
            a.severity.to_string(),
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
        kind,
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
    let filter = Filter::parse(
        since.clone(),
        severity.clone(),
        ip.clone(),
        container.clone(),
        *limit,
        now,
    )
    .and_then(|f| f.with_kind(kind.clone()))
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
        Ok(resp) => show_answer(resp),
        Err(e @ ClientError::NotRunning { .. }) => match config::load(&path) {
            Ok(_) => {
                eprintln!("security-monitor: {e}");
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
