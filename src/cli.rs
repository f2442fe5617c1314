//! Subcommands.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use security_monitor::check::{render_text, Checker};
use security_monitor::config::{self, Config, DEFAULT_CONFIG_PATH};
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
        /// Log format: auto, combined, common, json, or a name under "formats" in the config.
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
    /// List the rules in effect: built-in and the config's own patterns.
    Rules {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run() -> Result<i32> {
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
) -> Result<i32> {
    let cfg = load_config(config, json)?;
    let format_name = format.unwrap_or(&cfg.log_format);
    let Some(log_format) = cfg.format(format_name) else {
        let mut known: Vec<String> = ["auto", "combined", "common", "json"]
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
        if path.as_os_str() == "-" {
            checker
                .read(io::stdin().lock())
                .context("reading standard input")?;
        } else {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            checker
                .read(file)
                .with_context(|| format!("reading {}", path.display()))?;
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

fn check_config(file: Option<&Path>) -> Result<i32> {
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    match config::load(&path) {
        Ok(cfg) => match RuleSet::new(cfg.builtin_rules, &cfg.disabled_rules, &cfg.patterns) {
            Ok(rules) => {
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

fn rules(config: Option<&Path>, json: bool) -> Result<i32> {
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
