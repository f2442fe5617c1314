//! Subcommands.

use security_monitor::clock::unix_now;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use security_monitor::alerts::log::AlertLog;
use security_monitor::alerts::{Alert, AlertBook};
use security_monitor::api::client::{self, ClientError};
use security_monitor::api::{Request, Response};
use security_monitor::ban::state_file as state;
use security_monitor::ban::Decision;
use security_monitor::ban::{Enforcer, StartReport, StateLock};
use security_monitor::check::{render_text, Checker};
use security_monitor::config::{self, Config, DEFAULT_CONFIG_PATH};
use security_monitor::detect::parse::format_time;
use security_monitor::detect::rules::RuleSet;

#[derive(Parser)]
#[command(
    name = "security-monitor",
    version,
    about = "Watches Docker container logs, recognises attacks per client IP and bans them in the kernel firewall"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay log files through the detector and report what the daemon would do.
    Check {
        /// Config file (default: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log format: auto, combined, common, vhost_combined, json, or a name under "formats" in the config.
        #[arg(long, short)]
        format: Option<String>,
        /// Print one JSON object instead of the report.
        #[arg(long)]
        json: bool,
        /// Log files to read; `-` reads standard input.
        #[arg(required = true)]
        logfiles: Vec<PathBuf>,
    },
    /// Validate a config file (like `nginx -t`); exits non-zero on any error.
    CheckConfig {
        /// Config file (default: /etc/security-monitor/monitor_config.json).
        file: Option<PathBuf>,
    },
    /// Run the daemon: follow Docker logs, detect, ban (what systemd starts).
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// How the running daemon is doing: uptime, firewall, containers and their streams, bans, rates.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon re-read its config (like `systemctl reload security-monitor`).
    Reload {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Ban an IP now (in the firewall and blocked_ips.json).
    Ban {
        ip: String,
        /// How long, e.g. 90s, 10m, 24h, 7d (default: ban.duration with repeat escalation).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why, kept in blocked_ips.json.
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Lift a ban now. Unbanning an IP that is not banned is not an error.
    Unban {
        ip: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List the active bans.
    List {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Reconcile blocked_ips.json with the firewall and apply every active ban in one batch
    /// (what the daemon does at start).
    Restore {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Follow the selected containers' logs through the Docker API and print each line
    /// (a debugging tool: what the daemon would read).
    Watch {
        /// Config file (default: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep log cursors in this directory and resume from them (by default `watch`
        /// keeps none and starts docker.max_backlog back; never point it at the daemon's
        /// state.dir while the daemon runs).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Remove security-monitor's own firewall table/chains/sets (lifts every ban; used by
    /// `install.sh --uninstall`).
    RemoveFirewall {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Recent alerts: rule hits, bans, unbans, held bans, error-rate jumps, lost Docker
    /// connections (repeats folded, with a count). Without a running daemon, read from
    /// the alerts log in state.dir.
    Alerts {
        /// Only alerts seen within this long (`1h`, `30m`) or since this time
        /// (`2026-11-21T10:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        /// The least severity shown: low, medium, high, critical.
        #[arg(long, value_parser = ["low", "medium", "high", "critical"])]
        severity: Option<String>,
        /// Only alerts about this IP.
        #[arg(long)]
        ip: Option<String>,
        /// Only alerts about this container (by name).
        #[arg(long)]
        container: Option<String>,
        /// At most this many, the newest.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The risk summary: a score from 0 to 100, its band, and the signals behind it.
    Insights {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Whether the running daemon is well (exit 0) or degraded (exit 1), and why.
    Health {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the daemon's Prometheus metrics (what `metrics.listen` serves over HTTP).
    Metrics {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Send a test notice through every configured channel (mail, each webhook) now and
    /// report each result; exits non-zero if any failed.
    TestNotify {
        /// Config file (default: /etc/security-monitor/monitor_config.json).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// List the rules in effect: built-in and the config's own patterns.
    Rules {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            format,
            json,
            logfiles,
        } => check(config.as_deref(), format.as_deref(), json, &logfiles),
        Command::CheckConfig { file } => check_config(file.as_deref()),
        Command::Rules { config, json } => rules(config.as_deref(), json),
        Command::Run { config } => run_daemon(&config),
        Command::RemoveFirewall { config } => remove_firewall(config.as_deref()),
        Command::TestNotify { config } => test_notify(config.as_deref()),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "security-monitor",
                &mut io::stdout(),
            );
            Ok(0)
        }
        Command::Status { config, json } => status(config.as_deref(), json),
        Command::Reload { config } => reload(config.as_deref()),
        Command::Ban {
            ip,
            duration,
            reason,
            config,
        } => ban(&ip, duration.as_deref(), &reason, config.as_deref()),
        Command::Unban { ip, config } => unban(&ip, config.as_deref()),
        Command::List { config, json } => list(config.as_deref(), json),
        Command::Restore { config, json } => restore(config.as_deref(), json),
        Command::Alerts {
            since,
            severity,
            ip,
            container,
            limit,
            config,
            json,
        } => alerts(
            Request::Alerts {
                since,
                severity,
                ip,
                container,
                limit: Some(limit),
            },
            config.as_deref(),
            json,
        ),
        Command::Insights { config, json } => insights(config.as_deref(), json),
        Command::Health { config, json } => health(config.as_deref(), json),
        Command::Metrics { config } => metrics(config.as_deref()),
        Command::Watch {
            config,
            json,
            state_dir,
        } => crate::watch::run(load_config(config.as_deref(), false)?, json, state_dir),
    }
}

/// The explicit config, or the installed one, or the built-in defaults.
fn load_config(explicit: Option<&Path>, quiet: bool) -> Result<Config> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => PathBuf::from(DEFAULT_CONFIG_PATH),
        None => {
            if !quiet {
                eprintln!("security-monitor: no config given and {DEFAULT_CONFIG_PATH} does not exist; using the built-in defaults");
            }
            return Ok(Config::default());
        }
    };
    config::load(&path).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

fn check(
    config: Option<&Path>,
    format: Option<&str>,
    json: bool,
    logfiles: &[PathBuf],
) -> Result<u8> {
    let cfg = load_config(config, json)?;
    let format_name = format.unwrap_or(&cfg.log_format);
    let Some(log_format) = cfg.format(format_name) else {
        let mut known: Vec<String> = config::BUILTIN_FORMATS
            .iter()
            .map(|s| s.to_string())
            .collect();
        known.extend(cfg.formats.keys().cloned());
        anyhow::bail!(
            "unknown log format {format_name:?}: use one of {}",
            known.join(", ")
        );
    };
    let mut checker = Checker::new(&cfg, log_format).map_err(|e| anyhow::anyhow!(e))?;
    for path in logfiles {
        let notice = if path.as_os_str() == "-" {
            checker
                .read_named(io::stdin().lock(), "standard input")
                .context("reading standard input")?
        } else {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            checker
                .read_named(file, &path.display().to_string())
                .with_context(|| format!("reading {}", path.display()))?
        };
        if let Some(n) = notice {
            eprintln!("warning: {n}");
        }
    }
    let report = checker.finish();
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render_text(&report, checker.detector().rules()))?;
    }
    Ok(0)
}

fn check_config(file: Option<&Path>) -> Result<u8> {
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    match config::load(&path) {
        Ok(cfg) => match RuleSet::new(cfg.builtin_rules, &cfg.disabled_rules, &cfg.patterns) {
            Ok(rules) => {
                for w in cfg.warnings() {
                    eprintln!("{}: warning: {w}", path.display());
                }
                println!(
                    "{}: the configuration is valid ({} rules, {} containers listed, firewall {}, state in {})",
                    path.display(),
                    rules.rules().len(),
                    cfg.docker_containers.len(),
                    cfg.firewall.backend.as_str(),
                    cfg.state.dir.display()
                );
                Ok(0)
            }
            Err(e) => {
                eprintln!("{}: the rules cannot be compiled: {e}", path.display());
                Ok(1)
            }
        },
        Err(e) => {
            eprint!("{e}");
            Ok(1)
        }
    }
}

fn rules(config: Option<&Path>, json: bool) -> Result<u8> {
    let cfg = load_config(config, true)?;
    let set = RuleSet::new(cfg.builtin_rules, &cfg.disabled_rules, &cfg.patterns)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut out = io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = set
            .rules()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "category": r.category, "severity": r.severity.as_str(),
                    "fields": r.fields.iter().map(|f| f.name()).collect::<Vec<_>>(),
                    "pattern": r.pattern, "description": r.description,
                    "status": r.status, "methods": r.methods, "builtin": r.builtin,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        let w = set.rules().iter().map(|r| r.id.len()).max().unwrap_or(2);
        for r in set.rules() {
            writeln!(
                out,
                "{:<w$}  {:<16} {:<8}  {}",
                r.id,
                r.category,
                r.severity.as_str(),
                r.description
            )?;
        }
    }
    Ok(0)
}

fn parse_ip(text: &str) -> Result<std::net::IpAddr> {
    security_monitor::netaddr::parse_client_ip(text.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("{text:?} is not an IPv4 or IPv6 address"))
}

/// Takes the state lock and starts enforcement in this process (no daemon running).
fn direct(cfg: &Config) -> Result<(StateLock, Enforcer, StartReport)> {
    let lock = StateLock::acquire(&cfg.state.dir).map_err(|e| anyhow::anyhow!(e))?;
    let (enforcer, report) = Enforcer::start(cfg, unix_now()).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(err) = &report.state_error {
        eprintln!("security-monitor: warning: {err}");
    }
    Ok((lock, enforcer, report))
}

/// Asks the running daemon (found even when the config is otherwise broken); None when
/// it is not running.
fn ask(config: Option<&Path>, req: &Request) -> Result<Option<Response>> {
    match client::call(&socket_of(config), req) {
        Ok(r) => Ok(Some(r)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => anyhow::bail!("{e}"),
    }
}

/// Prints the daemon's answer the way the direct commands print theirs.
fn show_answer(resp: Response) -> u8 {
    match (resp.ok, resp.data, resp.error) {
        (true, serde_json::Value::String(msg), _) => {
            println!("{msg}");
            0
        }
        (true, other, _) => {
            println!("{other}");
            0
        }
        (false, _, e) => {
            eprintln!(
                "security-monitor: {}",
                e.unwrap_or_else(|| "the daemon refused".into())
            );
            1
        }
    }
}

/// The control socket named by a config, even one that is otherwise broken (so that
/// `reload` and `status` can still tell the daemon about it).
fn socket_of(config: Option<&Path>) -> PathBuf {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    match config::load(&path) {
        Ok(cfg) => cfg.control.socket,
        Err(_) => std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| config::control_socket_of(&t))
            .unwrap_or_else(|| config::ControlConfig::default().socket),
    }
}

/// Requests that only make sense with the daemon running: not reaching it is exit 3.
fn need_daemon(socket: &Path, req: &Request) -> Result<Response> {
    client::call(socket, req).map_err(|e| Failure::new(3, e).into())
}

/// An error worded for the operator that calls for its own exit code (any other error
/// exits 2). `main` prints it once, like every error.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code an error calls for: a [`Failure`]'s own, else 2.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<Failure>().map_or(2, |f| f.code)
}

fn run_daemon(config: &Path) -> Result<u8> {
    // The config is read again by the daemon itself; here only the socket settings.
    let cfg = config::load(config).ok();
    let control = cfg.map(|c| c.control).unwrap_or_default();
    let socket_group = match &control.group {
        None => None,
        Some(name) => Some(group_id(name).ok_or_else(|| {
            anyhow::anyhow!("control.group: there is no group {name:?} on this host")
        })?),
    };
    let code = security_monitor::daemon::run(security_monitor::daemon::Options {
        config: config.to_path_buf(),
        socket: control.socket,
        socket_group,
    });
    Ok(u8::try_from(code).unwrap_or(1))
}

fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam reads a NUL-terminated name and returns a pointer into static
    // storage, which we read at once on this thread.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        None
    } else {
        // SAFETY: checked non-null above.
        Some(unsafe { (*g).gr_gid })
    }
}

/// Asks the running daemon for `req` (exit 3 if it is not running). `Err(code)`: the
/// answer was an error, already shown; `Ok(None)`: `--json` was asked and the data is
/// printed; `Ok(Some(data))`: the caller prints it for people.
fn daemon_data(
    config: Option<&Path>,
    req: &Request,
    json: bool,
) -> Result<std::result::Result<Option<serde_json::Value>, u8>> {
    let resp = need_daemon(&socket_of(config), req)?;
    if !resp.ok {
        return Ok(Err(show_answer(resp)));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&resp.data)?);
        return Ok(Ok(None));
    }
    Ok(Ok(Some(resp.data)))
}

fn status(config: Option<&Path>, json: bool) -> Result<u8> {
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

fn test_notify(config: Option<&Path>) -> Result<u8> {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let cfg = config::load(&path).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    if !cfg.email.enabled && cfg.webhooks.is_empty() {
        eprintln!(
            "security-monitor: {} configures no notices: set email.enabled to true or add webhooks",
            path.display()
        );
        return Ok(1);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let results = runtime.block_on(security_monitor::notify::test_all(&cfg));
    let mut failed = 0;
    for (name, r) in &results {
        match r {
            Ok(()) => println!("{name}: sent"),
            Err(e) => {
                failed += 1;
                println!("{name}: FAILED: {e}");
            }
        }
    }
    println!(
        "{} of {} channel(s) delivered the test notice",
        results.len() - failed,
        results.len()
    );
    Ok(if failed == 0 { 0 } else { 1 })
}

fn remove_firewall(config: Option<&Path>) -> Result<u8> {
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

/// Asks the daemon to re-read its config. A running daemon checks the file itself and
/// answers with its errors; when none answers and the file is broken, the file is the
/// news (a syntax error can hide the `control.socket` it names, so "not running" alone
/// would send the operator to the wrong problem).
fn reload(config: Option<&Path>) -> Result<u8> {
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

fn ban(ip: &str, duration: Option<&str>, reason: &str, config: Option<&Path>) -> Result<u8> {
    let ip = parse_ip(ip)?;
    let secs = duration
        .map(config::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--for: {e}"))?;
    if secs == Some(0) {
        anyhow::bail!("--for: a ban must last at least one second");
    }
    if let Some(resp) = ask(
        config,
        &Request::Ban {
            ip: ip.to_string(),
            seconds: secs,
            reason: reason.to_string(),
        },
    )? {
        return Ok(show_answer(resp));
    }
    let cfg = load_config(config, true)?;
    let (_lock, mut enforcer, _) = direct(&cfg)?;
    let now = unix_now();
    let decision = enforcer.book.manual_ban(ip, secs, reason, now);
    match &decision {
        Decision::Ban {
            record,
            seconds,
            extended,
        } => {
            enforcer.apply(&decision).map_err(|e| anyhow::anyhow!(e))?;
            enforcer.save(now).context("writing blocked_ips.json")?;
            println!(
                "{} {} for {} (until {}, ban #{} of this IP) with {}{}",
                if *extended { "re-banned" } else { "banned" },
                record.shown(),
                config::format_duration(*seconds),
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

fn unban(ip: &str, config: Option<&Path>) -> Result<u8> {
    let ip = parse_ip(ip)?;
    if let Some(resp) = ask(config, &Request::Unban { ip: ip.to_string() })? {
        return Ok(show_answer(resp));
    }
    let cfg = load_config(config, true)?;
    let (_lock, mut enforcer, _) = direct(&cfg)?;
    let was = enforcer.unban(ip).map_err(|e| anyhow::anyhow!(e))?;
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

fn list(config: Option<&Path>, json: bool) -> Result<u8> {
    let now = unix_now();
    let mut path = PathBuf::from("the daemon");
    // The daemon's book is the freshest; without a daemon, the state file.
    let bans: Vec<state::BanRecord> = match ask(config, &Request::List)? {
        Some(resp) if resp.ok => {
            serde_json::from_value(resp.data).context("the daemon's list is not valid")?
        }
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
    let ipw = bans
        .iter()
        .map(|b| b.shown().len())
        .max()
        .unwrap_or(2)
        .max(2);
    let rw = bans.iter().map(|b| b.rule.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<ipw$}  {:<rw$}  {:<16} {:<10} {:<20}  {:>9}  {:>5}",
        "IP", "RULE", "CATEGORY", "CONTAINER", "EXPIRES", "REMAINING", "TIMES"
    )?;
    for b in &bans {
        writeln!(
            out,
            "{:<ipw$}  {:<rw$}  {:<16} {:<10} {:<20}  {:>9}  {:>5}",
            b.shown(),
            b.rule,
            b.category,
            if b.container.is_empty() {
                "-"
            } else {
                &b.container
            },
            format_time(b.expires_at),
            config::format_duration((b.expires_at - now).max(0) as u64),
            b.times_banned
        )?;
    }
    writeln!(
        out,
        "{} active ban{}",
        bans.len(),
        if bans.len() == 1 { "" } else { "s" }
    )?;
    Ok(0)
}

fn restore(config: Option<&Path>, json: bool) -> Result<u8> {
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

fn alerts(req: Request, config: Option<&Path>, json: bool) -> Result<u8> {
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
    let w =
        |f: &dyn Fn(&Alert) -> usize, min: usize| list.iter().map(f).max().unwrap_or(min).max(min);
    let ipw = w(&|a| a.ip.map(|i| i.to_string().len()).unwrap_or(1), 2);
    let kw = w(&|a| a.kind.len(), 4);
    let cw = w(&|a| a.container.len().min(24), 9);
    let rw = w(&|a| a.rule.len().min(24), 4);
    writeln!(
        out,
        "{:<20}  {:<8}  {:<kw$}  {:<ipw$}  {:<cw$}  {:<rw$}  {:>5}  WHAT",
        "LAST SEEN", "SEVERITY", "KIND", "IP", "CONTAINER", "RULE", "COUNT"
    )?;
    for a in &list {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.chars().take(24).collect()
            }
        };
        writeln!(
            out,
            "{:<20}  {:<8}  {:<kw$}  {:<ipw$}  {:<cw$}  {:<rw$}  {:>5}  {}",
            format_time(a.last_seen),
            a.severity,
            a.kind,
            a.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            dash(&a.container),
            dash(&a.rule),
            a.count,
            a.line.chars().take(120).collect::<String>()
        )?;
    }
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

fn insights(config: Option<&Path>, json: bool) -> Result<u8> {
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

fn health(config: Option<&Path>, json: bool) -> Result<u8> {
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

fn metrics(config: Option<&Path>) -> Result<u8> {
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
