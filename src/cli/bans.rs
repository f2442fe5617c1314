//! The bans: `ban`, `unban`, `list`, `restore`, `remove-firewall`. Each asks the
//! running daemon first; without one, it takes the state lock and acts itself.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use security_monitor::api::client;
use security_monitor::api::Request;
use security_monitor::ban::state_file as state;
use security_monitor::ban::{Decision, Enforcer, StartReport, StateLock};
use security_monitor::clock::unix_now;
use security_monitor::config::Config;
use security_monitor::time::format_time;

use super::table::{Column, Table};
use super::{ask, load_config, show_answer};

/// `list`'s columns.
const LIST_COLUMNS: [Column; 7] = [
    Column::fit("IP"),
    Column::fit("RULE"),
    Column::fixed("CATEGORY", 16),
    Column::fixed("CONTAINER", 10).close(),
    Column::fixed("EXPIRES", 20).close(),
    Column::fixed("REMAINING", 9).right(),
    Column::fixed("TIMES", 5).right(),
];

fn parse_ip(text: &str) -> Result<std::net::IpAddr> {
    security_monitor::netaddr::parse_client_ip(text.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("{text:?} is not an IPv4 or IPv6 address"))
}

/// Takes the state lock and starts enforcement in this process (no daemon running).
fn direct(cfg: &Config) -> Result<(StateLock, Enforcer, StartReport)> {
    let lock = StateLock::acquire(&cfg.state.dir)?;
    let (enforcer, report) = Enforcer::start(cfg, unix_now())?;
    if let Some(err) = &report.state_error {
        eprintln!("security-monitor: warning: {err}");
    }
    Ok((lock, enforcer, report))
}

pub(super) fn ban(
    ip: &str,
    duration: Option<&str>,
    reason: &str,
    fleet: bool,
    config: Option<&Path>,
) -> Result<u8> {
    let ip = parse_ip(ip)?;
    let secs = duration
        .map(security_monitor::time::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--for: {e}"))?;
    if secs == Some(0) {
        anyhow::bail!("--for: a ban must last at least one second");
    }
    if let Some(resp) = ask(
        config,
        &Request::Ban {
            ip,
            seconds: secs,
            reason: reason.to_string(),
            fleet,
        },
    )? {
        return show_answer(resp);
    }
    if fleet {
        anyhow::bail!("--fleet needs the running daemon (with \"fleet\" enabled): it is the daemon that publishes to the fleet");
    }
    let cfg = load_config(config, true)?;
    let (_lock, mut enforcer, _) = direct(&cfg)?;
    let now = unix_now();
    let decision = enforcer.book.plan_manual(ip, secs, reason, now);
    match &decision {
        Decision::Ban {
            record,
            seconds,
            extended,
        } => {
            enforcer.apply(&decision, now)?;
            enforcer.save(now).context("writing blocked_ips.json")?;
            println!(
                "{} {} for {} (until {}, ban #{} of this IP) with {}{}",
                if *extended { "re-banned" } else { "banned" },
                record.shown(),
                security_monitor::time::format_duration(*seconds),
                format_time(record.expires_at),
                record.times_banned,
                enforcer.backend_name(),
                security_monitor::ban::worker::clamp_note(secs, *seconds)
            );
            Ok(0)
        }
        Decision::NeverBan { reason, .. } => {
            eprintln!("security-monitor: not banning {ip}: it is {reason}");
            Ok(1)
        }
        Decision::Held { reason, .. } => {
            eprintln!("security-monitor: not banning {ip}: {reason}");
            Ok(1)
        }
        Decision::AlreadyBanned { .. } => {
            println!("{ip} is already banned");
            Ok(0)
        }
    }
}

pub(super) fn unban(ip: &str, fleet: bool, config: Option<&Path>) -> Result<u8> {
    let ip = parse_ip(ip)?;
    if let Some(resp) = ask(config, &Request::Unban { ip, fleet })? {
        return show_answer(resp);
    }
    if fleet {
        anyhow::bail!("--fleet needs the running daemon (with \"fleet\" enabled): it is the daemon that asks the fleet");
    }
    let cfg = load_config(config, true)?;
    let (_lock, mut enforcer, _) = direct(&cfg)?;
    let was = enforcer.unban(ip)?;
    enforcer
        .save(unix_now())
        .context("writing blocked_ips.json")?;
    match was {
        Some(b) => println!(
            "unbanned {} (was banned for {} until {})",
            security_monitor::ban::worker::unbanned_what(&b, ip),
            b.rule,
            format_time(b.expires_at)
        ),
        None => println!("{ip} was not banned; made sure the firewall does not hold it"),
    }
    Ok(0)
}

pub(super) fn list(config: Option<&Path>, json: bool) -> Result<u8> {
    let now = unix_now();
    let mut path = PathBuf::from("the daemon");
    // The daemon's book is the freshest; without a daemon, the state file.
    let bans: Vec<state::BanRecord> = match ask(config, &Request::List)? {
        Some(resp) if resp.ok => resp.data_as().context("the daemon's list is not valid")?,
        Some(resp) => anyhow::bail!("{}", resp.error.unwrap_or_default()),
        None => match state::load_readonly({
            path = load_config(config, true)?.state.blocked_ips_file();
            &path
        }) {
            Ok(Some(f)) => f.bans.into_iter().filter(|b| b.expires_at > now).collect(),
            Ok(None) => Vec::new(),
            Err(e) => anyhow::bail!("{e}"),
        },
    };
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &bans)?;
        writeln!(out)?;
        return Ok(0);
    }
    if bans.is_empty() {
        writeln!(out, "no active bans ({})", path.display())?;
        return Ok(0);
    }
    let mut table = Table::new(&LIST_COLUMNS);
    for b in &bans {
        let container = if b.container.is_empty() {
            "-"
        } else {
            &b.container
        };
        table.row(vec![
            b.shown(),
            b.rule.clone(),
            b.category.clone(),
            container.to_string(),
            format_time(b.expires_at),
            security_monitor::time::format_duration((b.expires_at - now).max(0) as u64),
            b.times_banned.to_string(),
        ]);
    }
    write!(out, "{table}")?;
    writeln!(
        out,
        "{} active ban{}",
        bans.len(),
        if bans.len() == 1 { "" } else { "s" }
    )?;
    Ok(0)
}

/// `list --fleet`'s columns.
const FLEET_COLUMNS: [Column; 6] = [
    Column::fit("IP"),
    Column::fit("ORIGIN"),
    Column::fit("RULE"),
    Column::fixed("EXPIRES", 20).close(),
    Column::fixed("HERE", 8),
    Column::fit("WHY"),
];

pub(super) fn list_fleet(config: Option<&Path>, json: bool) -> Result<u8> {
    use security_monitor::api::FleetRow;
    use security_monitor::fleet::record::Record;
    use security_monitor::fleet::remote::State;
    let rows: Vec<FleetRow> = match ask(config, &Request::FleetList)? {
        Some(resp) if resp.ok => resp
            .data_as()
            .context("the daemon's fleet list is not valid")?,
        Some(resp) => anyhow::bail!("{}", resp.error.unwrap_or_default()),
        None => anyhow::bail!("list --fleet needs the running daemon (with \"fleet\" enabled)"),
    };
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(0);
    }
    if rows.is_empty() {
        writeln!(out, "no records in the fleet's bucket")?;
        return Ok(0);
    }
    let mut table = Table::new(&FLEET_COLUMNS);
    for r in &rows {
        let (state, why) = match &r.state {
            State::Own => ("own", String::new()),
            State::Pending => ("pending", String::new()),
            State::Applied => ("applied", String::new()),
            State::Refused(w) => ("refused", w.clone()),
            State::Held(w) => ("held", w.clone()),
            State::Expired => ("expired", String::new()),
            State::Unban => ("unban", String::new()),
        };
        let (ip, rule, expires) = match &r.record {
            Record::Ban(b) => (
                b.net().to_string(),
                b.rule.clone(),
                format_time(b.expires_at),
            ),
            Record::Unban(u) => (
                u.net().to_string(),
                "(unban --fleet)".to_string(),
                format!("asked {}", format_time(u.at)),
            ),
        };
        table.row(vec![
            ip,
            r.record.origin().to_string(),
            rule,
            expires,
            state.to_string(),
            why,
        ]);
    }
    write!(out, "{table}")?;
    writeln!(
        out,
        "{} record{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )?;
    Ok(0)
}

pub(super) fn restore(config: Option<&Path>, json: bool) -> Result<u8> {
    let cfg = load_config(config, true)?;
    let (_lock, enforcer, report) = direct(&cfg)?;
    let active = enforcer.book.len();
    if json {
        let v = serde_json::json!({
            "backend": report.backend, "active": active, "restored": report.restored,
            "adopted": report.adopted, "expired": report.expired,
            "lifted": report.lifted, "state_error": report.state_error, "restore_ms": report.restore_ms,
        });
        println!("{v}");
    } else {
        println!(
            "{active} active bans applied in one batch with {} in {} ms ({} from {}, {} adopted from the firewall, {} expired, {} lifted as never-ban)",
            report.backend,
            report.restore_ms,
            report.restored,
            enforcer.state_path().display(),
            report.adopted,
            report.expired,
            report.lifted.len()
        );
    }
    Ok(0)
}

pub(super) fn remove_firewall(config: Option<&Path>) -> Result<u8> {
    let cfg = load_config(config, true)?;
    if client::call(&cfg.control.socket, &Request::Status).is_ok() {
        anyhow::bail!("the daemon is running; stop it first (systemctl stop security-monitor)");
    }
    let (mut backend, how) =
        security_monitor::firewall::open(&cfg.firewall).map_err(|e| anyhow::anyhow!(e))?;
    backend.teardown().map_err(|e| anyhow::anyhow!(e))?;
    println!("removed security-monitor's firewall objects ({how}); every ban is lifted");
    Ok(0)
}
