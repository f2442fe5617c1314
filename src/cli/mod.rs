//! The command line: the clap definitions and the dispatch, plus what every group of
//! subcommands shares (finding the config and the daemon, printing its answers). Each
//! group lives in its own file, named by what the operator does.

mod bans;
mod info;
mod offline;
mod table;
mod watch;

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;

use security_monitor::api::client::{self, ClientError};
use security_monitor::api::{Request, Response};
use security_monitor::config::{self, Config, DEFAULT_CONFIG_PATH};
use security_monitor::detect::Severity;

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
    /// Replay log files, or a container's own history through the Docker API, through the
    /// detector and report what the daemon would do (never banning).
    Check {
        /// Config file (default: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log format: auto, combined, common, vhost_combined, json, a profile, or a name under "formats" in the config.
        #[arg(long, short)]
        format: Option<String>,
        /// Read the logs as this application profile (`security-monitor profiles` lists them).
        #[arg(long, short, conflicts_with = "format")]
        profile: Option<String>,
        /// Print one JSON object instead of the report.
        #[arg(long)]
        json: bool,
        /// Also judge each request against per-endpoint baselines learned from the logs' own ordinary traffic, and list what looks unusual.
        #[arg(long)]
        anomalies: bool,
        /// Learn the baselines from this log first (ordinary traffic; repeatable), then judge LOGFILES. Implies --anomalies.
        #[arg(long, value_name = "FILE")]
        learn: Vec<PathBuf>,
        /// Replay this container's past log (through the Docker API, read as the daemon
        /// would read it) instead of log files; repeatable. Implies --anomalies.
        #[arg(long, value_name = "NAME", conflicts_with = "logfiles")]
        container: Vec<String>,
        /// With --container: the history from this long ago (`24h`, `30m`, `7d`) or this
        /// time (`2026-11-21T10:00:00Z`) on [default: 24h].
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// With --container: at most this many lines per container, the newest (the report
        /// says when this cut the history) [default: 1000000].
        #[arg(long, value_name = "N")]
        max_lines: Option<u64>,
        /// Log files to read; `-` reads standard input.
        #[arg(required_unless_present = "container")]
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
        /// Wait until the fleet has the ban (every host applies it) and say so; needs the
        /// running daemon with `fleet` enabled.
        #[arg(long)]
        fleet: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Lift a ban now. Unbanning an IP that is not banned is not an error.
    Unban {
        ip: String,
        /// Lift it on every host of the fleet (each host deletes its own record of it).
        #[arg(long)]
        fleet: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List the active bans.
    List {
        /// The fleet's records instead: each ban's origin, rule, expiry and whether this
        /// host applied, refused or held it.
        #[arg(long)]
        fleet: bool,
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
        #[arg(long, value_parser = severity_arg())]
        severity: Option<Severity>,
        /// Only alerts about this IP.
        #[arg(long)]
        ip: Option<String>,
        /// Only alerts about this container (by name).
        #[arg(long)]
        container: Option<String>,
        /// Only alerts of this kind.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(security_monitor::alerts::KINDS))]
        kind: Option<String>,
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
    /// List the application profiles: the images that choose each, its line shapes, what counts as a failure.
    Profiles {
        #[arg(long)]
        json: bool,
    },
}

/// `--severity`: one of the four words (clap lists them when another is given), read
/// into the enum.
fn severity_arg() -> impl clap::builder::TypedValueParser<Value = Severity> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Severity::ALL.map(Severity::as_str))
        .try_map(|s| s.parse::<Severity>())
}

pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            format,
            profile,
            json,
            anomalies,
            learn,
            container,
            since,
            max_lines,
            logfiles,
        } => {
            if container.is_empty() && (since.is_some() || max_lines.is_some()) {
                anyhow::bail!("--since and --max-lines choose how much of a container's history `check --container NAME` reads; with log files they mean nothing");
            }
            offline::check(
                config.as_deref(),
                format.as_deref().or(profile.as_deref()),
                profile.is_some(),
                json,
                (anomalies || !learn.is_empty() || !container.is_empty()).then_some(&learn[..]),
                &if container.is_empty() {
                    offline::Input::Files(logfiles)
                } else {
                    offline::Input::Containers {
                        names: container,
                        since: since.unwrap_or_else(|| "24h".into()),
                        max_lines: max_lines.unwrap_or(1_000_000),
                    }
                },
            )
        }
        Command::Profiles { json } => offline::profiles(json),
        Command::CheckConfig { file } => offline::check_config(file.as_deref()),
        Command::Rules { config, json } => offline::rules(config.as_deref(), json),
        Command::Run { config } => run_daemon(&config),
        Command::RemoveFirewall { config } => bans::remove_firewall(config.as_deref()),
        Command::TestNotify { config } => offline::test_notify(config.as_deref()),
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
        Command::Status { config, json } => info::status(config.as_deref(), json),
        Command::Reload { config } => info::reload(config.as_deref()),
        Command::Ban {
            ip,
            duration,
            reason,
            fleet,
            config,
        } => bans::ban(&ip, duration.as_deref(), &reason, fleet, config.as_deref()),
        Command::Unban { ip, fleet, config } => bans::unban(&ip, fleet, config.as_deref()),
        Command::List {
            fleet: true,
            config,
            json,
        } => bans::list_fleet(config.as_deref(), json),
        Command::List { config, json, .. } => bans::list(config.as_deref(), json),
        Command::Restore { config, json } => bans::restore(config.as_deref(), json),
        Command::Alerts {
            since,
            severity,
            ip,
            container,
            kind,
            limit,
            config,
            json,
        } => info::alerts(
            Request::Alerts {
                since,
                severity: severity.map(|s| s.to_string()),
                ip,
                container,
                limit: Some(limit),
                kind,
            },
            config.as_deref(),
            json,
        ),
        Command::Insights { config, json } => info::insights(config.as_deref(), json),
        Command::Health { config, json } => info::health(config.as_deref(), json),
        Command::Metrics { config } => info::metrics(config.as_deref()),
        Command::Watch {
            config,
            json,
            state_dir,
        } => watch::run(load_config(config.as_deref(), false)?, json, state_dir),
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

/// Asks the running daemon (found even when the config is otherwise broken); None when
/// it is not running.
fn ask(config: Option<&Path>, req: &Request) -> Result<Option<Response>> {
    match client::call(&socket_of(config), req) {
        Ok(r) => Ok(Some(r)),
        Err(ClientError::NotRunning { .. }) => Ok(None),
        Err(e) => anyhow::bail!("{e}"),
    }
}

/// Prints the daemon's answer to `ban`, `unban` or `reload`, a sentence, the way the
/// direct commands print theirs; a refusal is the daemon's words, exit 1.
fn show_answer(resp: Response) -> Result<u8> {
    let sentence: String = accepted(resp)?;
    println!("{sentence}");
    Ok(0)
}

/// The daemon's answer read as `T`, the type its request calls for; a refusal is the
/// daemon's words, exit 1.
fn accepted<T: DeserializeOwned>(resp: Response) -> Result<T> {
    if !resp.ok {
        let why = resp.error.unwrap_or_else(|| "the daemon refused".into());
        return Err(Failure::new(1, why).into());
    }
    resp.data_as()
        .context("the daemon's answer is not what this version of the command expects")
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
            .unwrap_or_else(|| security_monitor::api::Settings::default().socket),
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

/// Asks the running daemon for `req` (exit 3 if it is not running, 1 if it refuses)
/// and reads its answer as `T`. With `json`, the answer is also printed as it came.
fn daemon_answer<T: DeserializeOwned>(
    config: Option<&Path>,
    req: &Request,
    json: bool,
) -> Result<T> {
    let resp = need_daemon(&socket_of(config), req)?;
    let json_text = match json && resp.ok {
        true => Some(serde_json::to_string_pretty(&resp.data)?),
        false => None,
    };
    let answer = accepted(resp)?;
    if let Some(text) = json_text {
        println!("{text}");
    }
    Ok(answer)
}
