//! Subcommands that need no daemon: `check` (replay log files or a container's
//! history), `check-config`, `rules`, `test-notify`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use security_monitor::config::{self, Config, DEFAULT_CONFIG_PATH};
use security_monitor::detect::parse::LogFormat;
use security_monitor::detect::replay::{Batch, Replay, Report};
use security_monitor::detect::rules::RuleSet;
use security_monitor::detect::{anomaly, profile};
use security_monitor::docker::{self, HistoryReader, HistoryRequest};
use security_monitor::lines::for_each_line;

use super::load_config;
use super::table::{Column, Table};

/// What `check` replays.
pub(super) enum Input {
    Files(Vec<PathBuf>),
    /// Containers' own history through the Docker API: `since` as the operator wrote it
    /// (a duration back from now, or a time), at most `max_lines` lines each.
    Containers {
        names: Vec<String>,
        since: String,
        max_lines: u64,
    },
}

/// A progress line on stderr after every this many lines of a container's history.
const PROGRESS_EVERY: u64 = 100_000;

pub(super) fn check(
    config: Option<&Path>,
    format: Option<&str>,
    is_profile: bool,
    json: bool,
    learn: Option<&[PathBuf]>,
    input: &Input,
) -> Result<u8> {
    let cfg = load_config(config, json)?;
    let explicit_format = format.is_some();
    let format_name = format.unwrap_or(&cfg.log_format);
    if is_profile && profile::profile(format_name).is_none() {
        anyhow::bail!(
            "unknown profile {format_name:?}: use one of {} (`security-monitor profiles` describes them)",
            profile::profile_names().join(", ")
        );
    }
    let Some(log_format) = cfg.format(format_name) else {
        let mut known: Vec<String> = security_monitor::detect::parse::BUILTIN_FORMATS
            .iter()
            .map(|s| s.to_string())
            .collect();
        known.extend(cfg.formats.keys().cloned());
        known.extend(profile::profile_names().into_iter().map(str::to_string));
        anyhow::bail!(
            "unknown log format {format_name:?}: use one of {}",
            known.join(", ")
        );
    };
    let replay_format = log_format.clone();
    // A container is read in its own profile (as the daemon reads it), unless --format or
    // --profile says otherwise.
    let containers = matches!(input, Input::Containers { .. });
    let mut replay = Replay::new(
        &cfg.detect_settings(),
        if containers && !explicit_format {
            LogFormat::Auto
        } else {
            log_format
        },
        cfg.limits.max_line_bytes,
    )?;
    replay.set_reference(security_monitor::clock::unix_now());
    if let Some(learn) = learn {
        // The knobs of the config's `anomaly` section, so `check` judges as the daemon does.
        let mut model = anomaly::Model::new(cfg.anomaly.model);
        if !learn.is_empty() {
            // The learning logs go through a replay of their own (its rule hits decide
            // what is ordinary), so the report below is about LOGFILES alone.
            let mut warm = Replay::new(
                &cfg.detect_settings(),
                replay_format.clone(),
                cfg.limits.max_line_bytes,
            )?;
            warm.set_reference(security_monitor::clock::unix_now());
            model.set_teaching(true);
            warm.set_model(model);
            for path in learn {
                let file = File::open(path)
                    .with_context(|| format!("cannot open {} (--learn)", path.display()))?;
                for n in replay_input(&mut warm, file, &path.display().to_string())
                    .with_context(|| format!("reading {} (--learn)", path.display()))?
                {
                    eprintln!("warning: {n}");
                }
            }
            model = warm
                .take_model()
                .context("the learning replay lost its model")?;
            model.set_teaching(false);
            if !json {
                let st = model.stats();
                eprintln!(
                    "learned {} requests on {} endpoints from {}",
                    st.learned,
                    st.endpoints,
                    learn
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        replay.set_model(model);
    }
    let started = Instant::now();
    let histories = match input {
        Input::Files(logfiles) => {
            replay_files(&mut replay, logfiles)?;
            None
        }
        Input::Containers {
            names,
            since,
            max_lines,
        } => {
            let chosen = explicit_format.then_some(&replay_format);
            let since = since_of(since)?;
            let mut list = Vec::new();
            for name in names {
                list.push(replay_container(
                    &mut replay,
                    &cfg,
                    chosen,
                    &HistoryRequest {
                        container: name.clone(),
                        since,
                        max_lines: *max_lines,
                        max_line_bytes: cfg.limits.max_line_bytes,
                    },
                    json,
                )?);
            }
            Some(list)
        }
    };
    let report = replay.finish(started.elapsed().as_secs_f64());
    let mut out = io::stdout().lock();
    match (json, histories) {
        (true, None) => serde_json::to_writer(&mut out, &report)?,
        (true, Some(containers)) => serde_json::to_writer(
            &mut out,
            &ContainersReport {
                report: &report,
                containers,
            },
        )?,
        (false, histories) => {
            for h in histories.iter().flatten() {
                write!(out, "{}", render_history(h))?;
            }
            write!(out, "{}", render_text(&report, replay.detector().rules()))?;
        }
    }
    if json {
        writeln!(out)?;
    }
    Ok(0)
}

/// `check --json` for containers: the report, and what was read of each container.
#[derive(Serialize)]
struct ContainersReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    containers: Vec<ContainerHistory>,
}

/// What `check --container` read of one container.
#[derive(Serialize)]
struct ContainerHistory {
    name: String,
    id: String,
    image: String,
    /// The log format or profile its lines were read in, and why that one.
    format: String,
    format_reason: String,
    /// The history asked for: from this time on, at most this many lines.
    since: String,
    max_lines: u64,
    lines: u64,
    truncated: u64,
    /// Whether --max-lines cut the history: older lines since `since` were not read.
    cut: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    newest: Option<String>,
}

fn render_history(h: &ContainerHistory) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let id: String = h.id.chars().take(12).collect();
    let _ = writeln!(
        out,
        "Container {} ({id}, image {}): {} lines since {}, read as {} ({})",
        h.name,
        if h.image.is_empty() { "?" } else { &h.image },
        h.lines,
        h.since,
        h.format,
        h.format_reason
    );
    if let (Some(o), Some(n)) = (&h.oldest, &h.newest) {
        let _ = writeln!(out, "          from {o} to {n}");
    }
    if h.cut {
        let _ = writeln!(
            out,
            "          cut at --max-lines {}: the older lines since {} were not read (raise --max-lines or shorten --since)",
            h.max_lines, h.since
        );
    }
    out
}

/// `--since`: a duration back from now (`24h`), or a time (`2026-11-21T10:00:00Z`).
fn since_of(s: &str) -> Result<i64> {
    if let Ok(secs) = security_monitor::time::parse_duration(s) {
        return Ok(security_monitor::clock::unix_now().saturating_sub(secs as i64));
    }
    security_monitor::time::parse_time(s.trim().as_bytes()).ok_or_else(|| {
        anyhow::anyhow!(
            "--since {s:?}: give a duration back from now (\"24h\", \"30m\", \"7d\") or a time (\"2026-11-21T10:00:00Z\")"
        )
    })
}

/// Replays log files (`-`: standard input) in order.
fn replay_files(replay: &mut Replay, logfiles: &[PathBuf]) -> Result<()> {
    for path in logfiles {
        let notice = if path.as_os_str() == "-" {
            replay_input(replay, io::stdin().lock(), "standard input")
                .context("reading standard input")?
        } else {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            replay_input(replay, file, &path.display().to_string())
                .with_context(|| format!("reading {}", path.display()))?
        };
        for n in notice {
            eprintln!("warning: {n}");
        }
    }
    Ok(())
}

/// Replays one container's history through the Docker API (never following it), read in
/// `format` if given, else as the daemon would read the container: its profile from its
/// labels, the config and its image.
fn replay_container(
    replay: &mut Replay,
    cfg: &Config,
    format: Option<&LogFormat>,
    req: &HistoryRequest,
    quiet: bool,
) -> Result<ContainerHistory> {
    let host = docker::docker_host(cfg.docker.socket.as_deref());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reader = runtime.block_on(HistoryReader::open(&host, req))?;
    let c = reader.container();
    let (format, categories, reason) = match format {
        Some(f) => (f.clone(), None, "chosen on the command line".to_string()),
        None => {
            let labels = c.labels.clone().into_iter().collect();
            let (p, warnings) = docker::container_profile(cfg, &c.name, &c.image, &labels);
            for w in warnings {
                eprintln!("warning: {w}");
            }
            (p.format, p.categories, p.reason)
        }
    };
    let name = c.name.clone();
    let mut source = replay.source_as(&format, categories)?;
    let mut lines = 0u64;
    let history = runtime.block_on(reader.read(|line| {
        replay.line_at(
            &mut source,
            &line.bytes,
            line.truncated,
            line.docker_ts_ns.div_euclid(1_000_000_000),
        );
        lines += 1;
        if !quiet && lines % PROGRESS_EVERY == 0 {
            eprintln!("container {name}: {lines} lines replayed");
        }
    }))?;
    for n in replay.end(source, &format!("container {name}")) {
        eprintln!("warning: {n}");
    }
    let ts = |ns: Option<i64>| ns.map(docker::lines::format_ts_ns);
    Ok(ContainerHistory {
        name: history.name,
        id: history.id,
        image: history.image,
        format: format.name().to_string(),
        format_reason: reason,
        since: security_monitor::time::format_time(req.since),
        max_lines: req.max_lines,
        lines: history.lines,
        truncated: history.truncated,
        cut: history.cut,
        oldest: ts(history.oldest_ns),
        newest: ts(history.newest_ns),
    })
}

/// Reads one input to its end through the replay, with its own format recognition.
/// Returns its notices: most of its lines did not parse, a profile's hint.
fn replay_input(replay: &mut Replay, input: impl io::Read, name: &str) -> io::Result<Vec<String>> {
    let mut source = replay.source().map_err(io::Error::other)?;
    let max = replay.max_line();
    if replay.has_model() {
        // Judged a batch at a time: see `Replay::lines`.
        let mut batch = Batch::default();
        let read = for_each_line(input, max, |line, cut| {
            batch.push(line, cut);
            if batch.is_full() {
                replay.lines(&mut source, &batch);
                batch.clear();
            }
        });
        // What was read before an error is judged all the same.
        replay.lines(&mut source, &batch);
        read?;
    } else {
        for_each_line(input, max, |line, cut| replay.line(&mut source, line, cut))?;
    }
    Ok(replay.end(source, name))
}

pub(super) fn check_config(file: Option<&Path>) -> Result<u8> {
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

pub(super) fn rules(config: Option<&Path>, json: bool) -> Result<u8> {
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
        let mut table = Table::new(&RULE_COLUMNS).without_header();
        for r in set.rules() {
            table.row(vec![
                r.id.clone(),
                r.category.clone(),
                r.severity.as_str().to_string(),
                r.description.clone(),
            ]);
        }
        write!(out, "{table}")?;
    }
    Ok(0)
}

pub(super) fn test_notify(config: Option<&Path>) -> Result<u8> {
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

/// `rules`' columns (no heading): id, category, severity, description.
const RULE_COLUMNS: [Column; 4] = [
    Column::fit(""),
    Column::fixed("", 16),
    Column::fixed("", 8).close(),
    Column::fixed("", 0),
];

/// `check`'s rule hits (no heading): count, rule, category, severity.
const HIT_COLUMNS: [Column; 4] = [
    Column::fixed("", 8).right(),
    Column::fit(""),
    Column::fixed("", 16),
    Column::fixed("", 0).close(),
];

/// `check`'s offenders; the last column says why an allowlisted one is not banned.
const OFFENDER_COLUMNS: [Column; 8] = [
    Column::fit("IP"),
    Column::fit("RULE"),
    Column::fixed("CATEGORY", 16),
    Column::fixed("SEVERITY", 8).close(),
    Column::fixed("HITS", 6).close().right(),
    Column::fixed("FIRST SEEN", 20),
    Column::fixed("LAST SEEN", 20),
    Column::fixed("", 0).optional(),
];

/// `check`'s report as people read it, in the spirit of `fail2ban-regex`.
fn render_text(r: &Report, rules: &RuleSet) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let rate = if r.elapsed_s > 0.0 {
        r.lines as f64 / r.elapsed_s
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "Lines: {} read, {} parsed, {} unparsed ({:.2} s, {:.0} lines/s)",
        r.lines, r.parsed, r.unparsed, r.elapsed_s, rate
    );
    if r.truncated > 0 {
        let _ = writeln!(
            out,
            "       {} lines were longer than limits.max_line_bytes and were cut",
            r.truncated
        );
    }
    if let Some(p) = &r.profile {
        let shapes: Vec<String> = r
            .shapes
            .iter()
            .map(|s| format!("{} {}", s.shape, s.lines))
            .collect();
        let _ = writeln!(out, "Profile {p}: lines per shape: {}", shapes.join(", "));
    }
    let _ = writeln!(out);
    if r.rule_hits.is_empty() {
        let _ = writeln!(out, "Rule hits: none");
    } else {
        let total: u64 = r.rule_hits.values().sum();
        let _ = writeln!(out, "Rule hits: {total}");
        let mut hits: Vec<(&String, &u64)> = r.rule_hits.iter().collect();
        hits.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut table = Table::new(&HIT_COLUMNS).without_header().indent("  ");
        for (id, n) in hits {
            let (cat, sev) = rules
                .rules()
                .iter()
                .find(|x| &x.id == id)
                .map(|x| (x.category.as_str(), x.severity.as_str()))
                .unwrap_or(("", ""));
            table.row(vec![n.to_string(), id.clone(), cat.into(), sev.into()]);
        }
        let _ = write!(out, "{table}");
    }
    let _ = writeln!(out);
    for (title, list) in [
        ("Would ban", &r.bans),
        ("Never banned (allowlisted)", &r.allowlisted),
    ] {
        if list.is_empty() && title != "Would ban" {
            continue;
        }
        let _ = writeln!(
            out,
            "{title}: {} IP{}",
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        );
        if list.is_empty() {
            continue;
        }
        let mut table = Table::new(&OFFENDER_COLUMNS).indent("  ");
        for b in list {
            table.row(vec![
                b.ip.to_string(),
                b.rule.clone(),
                b.category.clone(),
                b.severity.clone(),
                b.hits.to_string(),
                b.first_seen.clone(),
                b.last_seen.clone(),
                b.reason
                    .as_ref()
                    .map_or_else(String::new, |r| format!("({r})")),
            ]);
        }
        let _ = write!(out, "{table}");
    }
    if let (Some(total), Some(list), Some(model)) =
        (r.anomalies_total, &r.anomalies, &r.anomaly_model)
    {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Unusual requests (endpoint baselines; never a ban in check): {total}, from {} learned requests on {} endpoints",
            model.learned, model.endpoints
        );
        let strong = list.iter().filter(|a| a.score >= 0.5).count();
        let _ = writeln!(out, "  {strong} of those listed score 0.5 or more");
        let mut shown: Vec<&security_monitor::detect::replay::AnomalyEntry> = list.iter().collect();
        shown.sort_by(|a, b| b.score.total_cmp(&a.score));
        for a in shown.iter().take(20) {
            let _ = writeln!(out, "  {:<15} {:.1}  {}", a.ip, a.score, a.reason);
        }
        if list.len() > 20 {
            let _ = writeln!(out, "  ... {} more (--json lists them)", list.len() - 20);
        }
    }
    out
}

/// `profiles`: every built-in application profile, for people (a paragraph each) or
/// scripts (`--json`).
pub(super) fn profiles(json: bool) -> Result<u8> {
    let list = profile::builtin_profiles();
    let mut out = io::stdout().lock();
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "app": p.app,
                    "images": p.images,
                    "shapes": p.shapes.iter().map(|s| &s.name).collect::<Vec<_>>(),
                    "files": p.files,
                    "failures": p.failures,
                    "thresholds": p.thresholds.describe(),
                    "rules": p.rules.iter().map(|r| &r.id).collect::<Vec<_>>(),
                    "disabled_rules": p.disabled_rules,
                    "limits": p.limits,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(0);
    }
    for p in list {
        writeln!(out, "{} ({})", p.name, p.app)?;
        let images = if p.images.is_empty() {
            "none (choose it with the label security-monitor.profile)".to_string()
        } else {
            p.images.join(", ")
        };
        writeln!(out, "  images      {images}")?;
        let shapes: Vec<&str> = p.shapes.iter().map(|s| s.name.as_str()).collect();
        writeln!(out, "  shapes      {}", shapes.join(", "))?;
        if !p.files.is_empty() {
            writeln!(out, "  files       {}", p.files.join(", "))?;
        }
        if !p.failures.is_empty() {
            writeln!(out, "  failures    {}", p.failures)?;
        }
        if !p.thresholds.is_empty() {
            writeln!(out, "  thresholds  {}", p.thresholds.describe())?;
        }
        if !p.limits.is_empty() {
            writeln!(out, "  limits      {}", p.limits)?;
        }
    }
    Ok(0)
}
