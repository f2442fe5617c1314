//! The `monitor_config.json` model: defaults, reading, and validation.
//!
//! Reading never stops at the first problem: every bad key, value and pattern is
//! collected with its key path and line:column, so an operator fixes a config in one pass
//! (as `nginx -t` would tell them, but all at once).

pub mod jsonc;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use jsonc::{Member, Node, Pos, Value};

use crate::alerts::Settings as AlertsSettings;
use crate::api::Settings as ControlSettings;
use crate::ban::{Policy as BanPolicy, StateSettings};
use crate::detect::parse::{JsonFields, LogFormat, BUILTIN_FORMATS};
use crate::detect::proxy::TrustedProxies;
use crate::detect::rules::UserPattern;
use crate::detect::{Severity, Thresholds};
use crate::docker::{ContainerSettings, Limits, Settings as DockerSettings, DEFAULT_SELECT_LABEL};
use crate::firewall::{BackendChoice, Settings as FirewallSettings};
use crate::metrics::Settings as MetricsSettings;
use crate::netaddr::IpNet;
use crate::notify::{EmailSettings, SmtpSecurity, WebhookFormat, WebhookSettings};
use crate::time::{parse_duration, DurationError, MAX_DURATION_SECS};

/// Where operators keep the config; `install.sh` puts the default there.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/security-monitor/monitor_config.json";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub patterns: Vec<UserPattern>,
    pub thresholds: Thresholds,
    pub docker_containers: Vec<String>,
    pub docker: DockerSettings,
    pub ban: BanPolicy,
    pub allowlist: Vec<IpNet>,
    pub trusted_proxies: TrustedProxies,
    pub log_format: String,
    pub formats: BTreeMap<String, LogFormat>,
    pub containers: BTreeMap<String, ContainerSettings>,
    pub builtin_rules: bool,
    pub disabled_rules: Vec<String>,
    pub log_retention_days: u32,
    pub firewall: FirewallSettings,
    pub state: StateSettings,
    pub email: EmailSettings,
    pub webhooks: Vec<WebhookSettings>,
    pub limits: Limits,
    pub control: ControlSettings,
    pub alerts: AlertsSettings,
    pub metrics: MetricsSettings,
}

/// Smallest `alerts.max_log_size`: room for a few rotated files of useful size.
pub const MIN_LOG_SIZE: u64 = 1024 * 1024;
/// Largest `alerts.max_log_size` (1 TiB): beyond it a typo is more likely than a wish.
pub const MAX_LOG_SIZE: u64 = 1 << 40;

/// Reads a size: a number of bytes, or a number with `K`, `M`, `G` or `T`, optionally
/// followed by `B` or `iB` (`"50M"`, `"50MB"`, `"50MiB"`). Like journald's sizes, every
/// unit is a power of 1024, so `"50MB"` is 52,428,800 bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("\"{s}\" is not a size: use bytes or a number with a unit, such as \"500K\", \"50M\" or \"1G\"")
    };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Reads `metrics.listen`: `""` (off), `PORT` or `:PORT` (127.0.0.1), `IP:PORT`,
/// `[IPv6]:PORT`. Only addresses, not host names: what a daemon binds must not depend
/// on DNS at start.
pub fn parse_listen(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        if port == 0 {
            return Err("port 0 is not a port to listen on; use e.g. \"9184\"".into());
        }
        return Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
    }
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(Some(a)),
        Ok(_) => Err("port 0 is not a port to listen on; use e.g. \"127.0.0.1:9184\"".into()),
        Err(_) => Err(format!(
            "{s:?} is not an address to listen on: use \"PORT\" (127.0.0.1), \"IP:PORT\" or \"[IPv6]:PORT\", e.g. \"127.0.0.1:9184\", or \"\" for no listener"
        )),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            patterns: Vec::new(),
            thresholds: Thresholds::default(),
            docker_containers: Vec::new(),
            docker: DockerSettings::default(),
            ban: BanPolicy::default(),
            allowlist: Vec::new(),
            trusted_proxies: TrustedProxies::default(),
            log_format: "auto".into(),
            formats: BTreeMap::new(),
            containers: BTreeMap::new(),
            builtin_rules: true,
            disabled_rules: Vec::new(),
            log_retention_days: 30,
            firewall: FirewallSettings::default(),
            state: StateSettings::default(),
            email: EmailSettings::default(),
            webhooks: Vec::new(),
            limits: Limits::default(),
            control: ControlSettings::default(),
            alerts: AlertsSettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

impl Config {
    /// What is valid but unwise, one sentence each: `check-config` prints these and the
    /// daemon logs them at start. They never stop it.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let e = &self.email;
        let has_password = e.password.is_some() || e.password_file.is_some();
        if e.enabled && has_password && e.security == SmtpSecurity::None {
            out.push(format!(
                "email: the SMTP password is sent in clear text: \"security\" is \"none\", so anyone on the way to {}:{} can read it (and every notice); set \"security\" to \"starttls\" (port 587) or \"tls\" (port 465)",
                e.smtp_host, e.smtp_port
            ));
        }
        out
    }

    /// The format named `name`: a built-in one or one from `formats`.
    pub fn format(&self, name: &str) -> Option<LogFormat> {
        match name {
            "auto" => Some(LogFormat::Auto),
            "combined" => Some(LogFormat::Combined),
            "common" => Some(LogFormat::Common),
            "vhost_combined" => Some(LogFormat::VhostCombined),
            "json" => Some(LogFormat::Json(JsonFields::default())),
            other => self.formats.get(other).cloned(),
        }
    }

    /// The format for a container: its own setting, else the global `log_format`.
    pub fn format_for_container(&self, container: &str) -> LogFormat {
        let name = self
            .containers
            .get(container)
            .and_then(|c| c.log_format.as_deref())
            .unwrap_or(&self.log_format);
        self.format(name).unwrap_or(LogFormat::Auto)
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `thresholds.max_failed_auth` or `allowlist[2]`.
    pub path: String,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.pos, self.message)
        } else {
            write!(f, "{}: {}: {}", self.pos, self.path, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {} error{} in the config:",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {}:{e}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| ConfigErrors {
        file: file.clone(),
        errors: vec![ConfigError {
            path: String::new(),
            pos: Pos { line: 0, col: 0 },
            message: format!("cannot read the config: {e}"),
        }],
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        let (line, col) = line_col_of_offset(e.as_bytes(), e.utf8_error().valid_up_to());
        ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                path: String::new(),
                pos: Pos { line, col },
                message: "the config is not valid UTF-8".into(),
            }],
        }
    })?;
    parse_str(&text).map_err(|errors| ConfigErrors { file, errors })
}

fn line_col_of_offset(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
    (line, col)
}

/// The `control.socket` of a config text that may be invalid elsewhere.
pub fn control_socket_of(text: &str) -> Option<PathBuf> {
    let root = jsonc::parse(text).ok()?;
    let Value::Object(top) = root.value else {
        return None;
    };
    let control = top.iter().rev().find(|m| m.key == "control")?;
    let Value::Object(c) = &control.node.value else {
        return None;
    };
    match &c.iter().rev().find(|m| m.key == "socket")?.node.value {
        Value::String(s) if s.starts_with('/') => Some(PathBuf::from(s)),
        _ => None,
    }
}

/// Parses and validates config text; returns every error found.
pub fn parse_str(text: &str) -> Result<Config, Vec<ConfigError>> {
    let root = jsonc::parse(text).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            pos: e.pos,
            message: e.message,
        }]
    })?;
    let mut v = Validator::default();
    let cfg = v.config(&root);
    if v.errors.is_empty() {
        Ok(cfg)
    } else {
        v.errors.sort_by_key(|e| (e.pos.line, e.pos.col));
        Err(v.errors)
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

/// The members of one object, with a record of which keys were read, so the unknown
/// ones can be reported with a suggestion.
struct Obj<'a> {
    path: String,
    members: &'a [Member],
    known: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        self.known.push(key);
        // The last occurrence wins, as in most JSON readers; duplicates are reported.
        self.members
            .iter()
            .rev()
            .find(|m| m.key == key)
            .map(|m| &m.node)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Validator {
    fn err(&mut self, path: &str, pos: Pos, message: impl fmt::Display) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            pos,
            message: message.to_string(),
        });
    }

    fn object<'a>(&mut self, node: &'a Node, path: &str) -> Option<Obj<'a>> {
        match &node.value {
            Value::Object(members) => {
                let mut seen: Vec<&str> = Vec::new();
                for m in members {
                    if seen.contains(&m.key.as_str()) {
                        self.err(
                            &join(path, &m.key),
                            m.key_pos,
                            "this key is given twice; the last one is used",
                        );
                    }
                    seen.push(&m.key);
                }
                Some(Obj {
                    path: path.to_string(),
                    members,
                    known: Vec::new(),
                })
            }
            other => {
                self.err(
                    path,
                    node.pos,
                    format!("expected an object, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// Reports every key that was not asked for, with the closest known key as a hint.
    fn finish(&mut self, obj: Obj<'_>) {
        for m in obj.members {
            // Besides comments, keys starting with "_" or "//" are a common way to annotate
            // JSON; they are ignored.
            if obj.known.contains(&m.key.as_str())
                || m.key.starts_with('_')
                || m.key.starts_with("//")
                || m.key == "$schema"
            {
                continue;
            }
            let hint = did_you_mean(&m.key, &obj.known)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_else(|| format!("; known keys here: {}", obj.known.join(", ")));
            let path = obj.child_path(&m.key);
            self.err(&path, m.key_pos, format!("unknown key \"{}\"{hint}", m.key));
        }
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            ref other => {
                self.err(
                    path,
                    node.pos,
                    format!("expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        match node.value {
            Value::Number(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => {
                Some(n as u64)
            }
            Value::Number(n) => {
                self.err(
                    path,
                    node.pos,
                    format!("{n} is out of range: expected a whole number from {min} to {max}"),
                );
                None
            }
            ref other => {
                self.err(
                    path,
                    node.pos,
                    format!(
                        "expected a whole number from {min} to {max}, found {}",
                        other.kind()
                    ),
                );
                None
            }
        }
    }

    fn float(&mut self, node: &Node, path: &str, min: f64, max: f64) -> Option<f64> {
        match node.value {
            Value::Number(n) if n >= min && n <= max => Some(n),
            ref other => {
                self.err(
                    path,
                    node.pos,
                    format!(
                        "expected a number from {min} to {max}, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn string<'a>(&mut self, node: &'a Node, path: &str) -> Option<&'a str> {
        match &node.value {
            Value::String(s) => Some(s),
            other => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A size in bytes ([`parse_size`]) from `min` to `max`.
    fn size(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let bytes = match &node.value {
            Value::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n <= max as f64 => *n as u64,
            Value::String(s) => match parse_size(s) {
                Ok(v) => v,
                Err(e) => {
                    self.err(path, node.pos, e);
                    return None;
                }
            },
            other => {
                self.err(
                    path,
                    node.pos,
                    format!(
                        "expected a size such as \"50M\" or a number of bytes, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        if !(min..=max).contains(&bytes) {
            self.err(
                path,
                node.pos,
                format!("{bytes} bytes is out of range: expected from 1M ({min} bytes) to 1T ({max} bytes)"),
            );
            return None;
        }
        Some(bytes)
    }

    fn duration(&mut self, node: &Node, path: &str, min: u64) -> Option<u64> {
        let secs = match &node.value {
            Value::Number(n) if !n.is_finite() || *n > MAX_DURATION_SECS as f64 => {
                self.err(path, node.pos, too_long(&n.to_string()));
                return None;
            }
            Value::Number(n) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u64),
            Value::String(s) => match parse_duration(s) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(path, node.pos, e);
                    return None;
                }
            },
            other => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a duration such as \"90s\", \"10m\", \"24h\", \"7d\" or a number of seconds, found {}", describe(other)),
                );
                return None;
            }
        }?;
        if secs < min {
            self.err(path, node.pos, format!("must be at least {min} seconds"));
            return None;
        }
        Some(secs)
    }

    fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<(String, Pos)>> {
        match &node.value {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.string(item, &format!("{path}[{i}]")) {
                        out.push((s.to_string(), item.pos));
                    }
                }
                Some(out)
            }
            other => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a list of strings, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn config(&mut self, root: &Node) -> Config {
        let mut cfg = Config::default();
        let Some(mut o) = self.object(root, "") else {
            return cfg;
        };

        if let Some(n) = o.get("patterns") {
            cfg.patterns = self.patterns(n);
        }
        if let Some(n) = o.get("thresholds") {
            self.thresholds(n, &mut cfg.thresholds);
        }
        if let Some(n) = o.get("docker_containers") {
            if let Some(list) = self.string_list(n, "docker_containers") {
                for (i, (name, pos)) in list.iter().enumerate() {
                    if name.trim().is_empty() {
                        self.err(
                            &format!("docker_containers[{i}]"),
                            *pos,
                            "a container name cannot be empty",
                        );
                    }
                }
                cfg.docker_containers = list
                    .into_iter()
                    .map(|(s, _)| s.trim_start_matches('/').to_string())
                    .collect();
            }
        }
        if let Some(n) = o.get("docker") {
            self.docker(n, &mut cfg.docker);
        }
        if let Some(n) = o.get("ban") {
            self.ban(n, &mut cfg.ban);
        }
        if let Some(n) = o.get("trusted_proxies") {
            if let Some(list) = self.string_list(n, "trusted_proxies") {
                for (i, (s, pos)) in list.iter().enumerate() {
                    if s == "docker" {
                        cfg.trusted_proxies.docker = true;
                        continue;
                    }
                    if let Some(name) = s.strip_prefix("container:") {
                        let name = name.trim().trim_start_matches('/');
                        if name.is_empty() {
                            self.err(
                                &format!("trusted_proxies[{i}]"),
                                *pos,
                                "\"container:\" needs a container name, e.g. \"container:traefik\""
                                    .to_string(),
                            );
                        } else {
                            cfg.trusted_proxies.containers.push(name.to_string());
                        }
                        continue;
                    }
                    match s.parse::<IpNet>() {
                        Ok(net) => cfg.trusted_proxies.nets.push(net),
                        Err(e) => self.err(
                            &format!("trusted_proxies[{i}]"),
                            *pos,
                            format!("{e} (expected \"docker\" for the containers of Docker's networks, \"container:NAME\" for one proxy container, an IP address, or a CIDR range such as 172.18.0.0/16)"),
                        ),
                    }
                }
            }
        }
        if let Some(n) = o.get("allowlist") {
            if let Some(list) = self.string_list(n, "allowlist") {
                for (i, (s, pos)) in list.iter().enumerate() {
                    match s.parse::<IpNet>() {
                        Ok(net) => cfg.allowlist.push(net),
                        Err(e) => self.err(
                            &format!("allowlist[{i}]"),
                            *pos,
                            format!(
                                "{e} (expected an IP address or CIDR range such as 203.0.113.0/24)"
                            ),
                        ),
                    }
                }
            }
        }
        if let Some(n) = o.get("formats") {
            cfg.formats = self.formats(n);
        }
        let format_names: Vec<String> = BUILTIN_FORMATS
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.formats.keys().cloned())
            .collect();
        if let Some(n) = o.get("log_format") {
            if let Some(s) = self.string(n, "log_format") {
                if self.check_format_name(s, &format_names, "log_format", n.pos) {
                    cfg.log_format = s.to_string();
                }
            }
        }
        if let Some(n) = o.get("containers") {
            cfg.containers = self.containers(n, &format_names);
        }
        if let Some(n) = o.get("rules") {
            if let Some(mut r) = self.object(n, "rules") {
                if let Some(b) = r.get("builtin") {
                    if let Some(v) = self.bool(b, "rules.builtin") {
                        cfg.builtin_rules = v;
                    }
                }
                if let Some(d) = r.get("disabled") {
                    if let Some(list) = self.string_list(d, "rules.disabled") {
                        let known = crate::detect::rules::builtin_rule_ids();
                        for (i, (id, pos)) in list.iter().enumerate() {
                            if !known.iter().any(|k| k == id) {
                                let hint = did_you_mean(id, &known)
                                    .map(|k| format!("; did you mean \"{k}\"?"))
                                    .unwrap_or_default();
                                self.err(&format!("rules.disabled[{i}]"), *pos, format!("there is no built-in rule \"{id}\"{hint} (`security-monitor rules` lists them)"));
                            }
                        }
                        cfg.disabled_rules = list.into_iter().map(|(s, _)| s).collect();
                    }
                }
                self.finish(r);
            }
        }
        if let Some(n) = o.get("log_retention_days") {
            if let Some(v) = self.uint(n, "log_retention_days", 1, 3650) {
                cfg.log_retention_days = v as u32;
            }
        }
        if let Some(n) = o.get("firewall") {
            self.firewall(n, &mut cfg.firewall);
        }
        if let Some(n) = o.get("state") {
            if let Some(mut s) = self.object(n, "state") {
                if let Some(d) = s.get("dir") {
                    if let Some(p) = self.string(d, "state.dir") {
                        if !p.starts_with('/') {
                            self.err(
                                "state.dir",
                                d.pos,
                                "must be an absolute path, such as /var/lib/security-monitor",
                            );
                        } else {
                            cfg.state.dir = PathBuf::from(p);
                        }
                    }
                }
                self.finish(s);
            }
        }
        if let Some(n) = o.get("email") {
            self.email(n, &mut cfg.email);
        }
        if let Some(n) = o.get("webhooks") {
            cfg.webhooks = self.webhooks(n);
        }
        if let Some(n) = o.get("control") {
            if let Some(mut c) = self.object(n, "control") {
                if let Some(v) = c.get("socket") {
                    if let Some(p) = self.string(v, "control.socket") {
                        if p.starts_with('/') {
                            cfg.control.socket = PathBuf::from(p);
                        } else {
                            self.err("control.socket", v.pos, "must be an absolute path, such as /run/security-monitor/control.sock");
                        }
                    }
                }
                if let Some(v) = c.get("group") {
                    if let Some(g) = self.string(v, "control.group") {
                        cfg.control.group = (!g.is_empty()).then(|| g.to_string());
                    }
                }
                self.finish(c);
            }
        }
        if let Some(n) = o.get("alerts") {
            if let Some(mut a) = self.object(n, "alerts") {
                if let Some(v) = a.get("cooldown") {
                    if let Some(x) = self.duration(v, "alerts.cooldown", 0) {
                        cfg.alerts.cooldown = x;
                    }
                }
                if let Some(v) = a.get("keep") {
                    if let Some(x) = self.uint(v, "alerts.keep", 10, 1_000_000) {
                        cfg.alerts.keep = x as usize;
                    }
                }
                if let Some(v) = a.get("max_log_size") {
                    if let Some(x) = self.size(v, "alerts.max_log_size", MIN_LOG_SIZE, MAX_LOG_SIZE)
                    {
                        cfg.alerts.max_log_size = x;
                    }
                }
                self.finish(a);
            }
        }
        if let Some(n) = o.get("metrics") {
            if let Some(mut m) = self.object(n, "metrics") {
                if let Some(v) = m.get("listen") {
                    if let Some(s) = self.string(v, "metrics.listen") {
                        match parse_listen(s) {
                            Ok(a) => cfg.metrics.listen = a,
                            Err(e) => self.err("metrics.listen", v.pos, e),
                        }
                    }
                }
                self.finish(m);
            }
        }
        if let Some(n) = o.get("limits") {
            if let Some(mut l) = self.object(n, "limits") {
                if let Some(v) = l.get("max_tracked_ips") {
                    if let Some(x) = self.uint(v, "limits.max_tracked_ips", 100, 100_000_000) {
                        cfg.limits.max_tracked_ips = x as usize;
                    }
                }
                if let Some(v) = l.get("max_line_bytes") {
                    if let Some(x) = self.uint(v, "limits.max_line_bytes", 1024, 64 * 1024 * 1024) {
                        cfg.limits.max_line_bytes = x as usize;
                    }
                }
                self.finish(l);
            }
        }
        self.finish(o);
        cfg
    }

    fn check_format_name(&mut self, name: &str, known: &[String], path: &str, pos: Pos) -> bool {
        if known.iter().any(|k| k == name) {
            return true;
        }
        let refs: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        let hint = did_you_mean(name, &refs)
            .map(|k| format!("; did you mean \"{k}\"?"))
            .unwrap_or_default();
        self.err(
            path,
            pos,
            format!(
                "unknown log format \"{name}\"{hint} ({}, or a name defined under \"formats\")",
                BUILTIN_FORMATS.join(", ")
            ),
        );
        false
    }

    fn patterns(&mut self, node: &Node) -> Vec<UserPattern> {
        let Some(o) = self.object(node, "patterns") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in o.members {
            let path = format!("patterns.{}", m.key);
            let mut p = UserPattern {
                name: m.key.clone(),
                regex: String::new(),
                fields: None,
                severity: Severity::Medium,
                category: "custom".into(),
            };
            let regex_pos;
            match &m.node.value {
                Value::String(s) => {
                    p.regex = s.clone();
                    regex_pos = m.node.pos;
                }
                Value::Object(_) => {
                    let Some(mut po) = self.object(&m.node, &path) else {
                        continue;
                    };
                    let Some(r) = po.get("regex") else {
                        self.err(&path, m.node.pos, "a pattern object needs a \"regex\"");
                        self.finish(po);
                        continue;
                    };
                    regex_pos = r.pos;
                    p.regex = self
                        .string(r, &format!("{path}.regex"))
                        .unwrap_or("")
                        .to_string();
                    if let Some(f) = po.get("fields") {
                        if let Some(list) = self.string_list(f, &format!("{path}.fields")) {
                            for (i, (name, pos)) in list.iter().enumerate() {
                                if !crate::detect::rules::Field::NAMES.contains(&name.as_str())
                                    && name != "line"
                                {
                                    self.err(
                                        &format!("{path}.fields[{i}]"),
                                        *pos,
                                        format!(
                                            "unknown field \"{name}\" (one of: line, {})",
                                            crate::detect::rules::Field::NAMES.join(", ")
                                        ),
                                    );
                                }
                            }
                            p.fields = Some(list.into_iter().map(|(s, _)| s).collect());
                        }
                    }
                    if let Some(s) = po.get("severity") {
                        p.severity = self
                            .severity(s, &format!("{path}.severity"))
                            .unwrap_or(Severity::Medium);
                    }
                    if let Some(c) = po.get("category") {
                        if let Some(c) = self.string(c, &format!("{path}.category")) {
                            p.category = c.to_string();
                        }
                    }
                    self.finish(po);
                }
                other => {
                    self.err(
                        &path,
                        m.node.pos,
                        format!(
                            "expected a regex string or an object with \"regex\", found {}",
                            other.kind()
                        ),
                    );
                    continue;
                }
            }
            if p.regex.is_empty() {
                self.err(
                    &path,
                    regex_pos,
                    "the regex is empty: it would match every line",
                );
                continue;
            }
            if let Err(e) = crate::detect::rules::check_user_regex(&p.regex) {
                self.err(
                    &path,
                    regex_pos,
                    format!("pattern \"{}\" cannot be used: {e}", p.name),
                );
                continue;
            }
            out.push(p);
        }
        out
    }

    fn severity(&mut self, node: &Node, path: &str) -> Option<Severity> {
        let s = self.string(node, path)?;
        match Severity::parse(s) {
            Some(v) => Some(v),
            None => {
                self.err(
                    path,
                    node.pos,
                    format!("unknown severity \"{s}\": expected low, medium, high or critical"),
                );
                None
            }
        }
    }

    fn thresholds(&mut self, node: &Node, t: &mut Thresholds) {
        let Some(mut o) = self.object(node, "thresholds") else {
            return;
        };
        let count = |v: &mut Self, o: &mut Obj, key: &'static str, field: &mut u32| {
            if let Some(n) = o.get(key) {
                if let Some(x) = v.uint(n, &format!("thresholds.{key}"), 1, 1_000_000) {
                    *field = x as u32;
                }
            }
        };
        count(self, &mut o, "max_failed_auth", &mut t.max_failed_auth);
        count(
            self,
            &mut o,
            "max_pattern_matches",
            &mut t.max_pattern_matches,
        );
        count(
            self,
            &mut o,
            "max_requests_per_minute",
            &mut t.max_requests_per_minute,
        );
        count(self, &mut o, "max_not_found", &mut t.max_not_found);
        if let Some(n) = o.get("max_not_found_burst") {
            if let Some(x) = self.uint(n, "thresholds.max_not_found_burst", 0, 1_000_000) {
                t.max_not_found_burst = x as u32;
            }
        }
        for (key, field) in [
            ("failed_auth_window", &mut t.failed_auth_window),
            ("pattern_window", &mut t.pattern_window),
            ("not_found_window", &mut t.not_found_window),
            ("not_found_burst_window", &mut t.not_found_burst_window),
        ] {
            if let Some(n) = o.get(key) {
                if let Some(x) = self.duration(n, &format!("thresholds.{key}"), 1) {
                    *field = x;
                }
            }
        }
        if let Some(n) = o.get("ban_on_critical") {
            if let Some(b) = self.bool(n, "thresholds.ban_on_critical") {
                t.ban_on_critical = b;
            }
        }
        self.finish(o);
    }

    fn docker(&mut self, node: &Node, d: &mut DockerSettings) {
        let Some(mut o) = self.object(node, "docker") else {
            return;
        };
        if let Some(n) = o.get("socket") {
            if let Some(s) = self.string(n, "docker.socket") {
                match check_docker_socket(s) {
                    Ok(()) => d.socket = (!s.is_empty()).then(|| s.to_string()),
                    Err(e) => self.err("docker.socket", n.pos, e),
                }
            }
        }
        if let Some(n) = o.get("ban_internal_addresses") {
            if let Some(b) = self.bool(n, "docker.ban_internal_addresses") {
                d.ban_internal_addresses = b;
            }
        }
        if let Some(n) = o.get("all_containers") {
            if let Some(b) = self.bool(n, "docker.all_containers") {
                d.all_containers = b;
            }
        }
        if let Some(n) = o.get("name_pattern") {
            if let Some(s) = self.string(n, "docker.name_pattern") {
                if s.is_empty() {
                    d.name_pattern = None;
                } else {
                    match regex::Regex::new(s) {
                        Ok(_) => d.name_pattern = Some(s.to_string()),
                        Err(e) => self.err(
                            "docker.name_pattern",
                            n.pos,
                            format!(
                                "\"{s}\" is not a usable regex: {}",
                                crate::detect::rules::explain_regex_error(&e)
                            ),
                        ),
                    }
                }
            }
        }
        if let Some(n) = o.get("label") {
            if let Some(s) = self.string(n, "docker.label") {
                let key = s.split_once('=').map_or(s, |(k, _)| k);
                if s.is_empty() {
                    d.label = None;
                } else if key.trim().is_empty() || key.contains(char::is_whitespace) {
                    self.err(
                        "docker.label",
                        n.pos,
                        format!("\"{s}\" is not a label: write key=value (or just key, for any value), e.g. \"{DEFAULT_SELECT_LABEL}\"; \"\" selects nothing by label"),
                    );
                } else {
                    d.label = Some(s.to_string());
                }
            }
        }
        if let Some(n) = o.get("max_backlog") {
            if let Some(x) = self.duration(n, "docker.max_backlog", 0) {
                d.max_backlog = x;
            }
        }
        if let Some(n) = o.get("max_lines_per_second") {
            if let Some(x) = self.uint(n, "docker.max_lines_per_second", 1, 10_000_000) {
                d.max_lines_per_second = x as u32;
            }
        }
        self.finish(o);
    }

    fn ban(&mut self, node: &Node, b: &mut BanPolicy) {
        let Some(mut o) = self.object(node, "ban") else {
            return;
        };
        if let Some(n) = o.get("duration") {
            if let Some(x) = self.duration(n, "ban.duration", 1) {
                b.duration = x;
            }
        }
        if let Some(n) = o.get("repeat_multiplier") {
            if let Some(x) = self.float(n, "ban.repeat_multiplier", 1.0, 100.0) {
                b.repeat_multiplier = x;
            }
        }
        let max_pos = o.get("max_duration").map(|n| {
            if let Some(x) = self.duration(n, "ban.max_duration", 1) {
                b.max_duration = x;
            }
            n.pos
        });
        if let Some(n) = o.get("burst_max_bans") {
            if let Some(x) = self.uint(n, "ban.burst_max_bans", 1, 1_000_000) {
                b.burst_max_bans = x as u32;
            }
        }
        if let Some(n) = o.get("burst_window") {
            if let Some(x) = self.duration(n, "ban.burst_window", 1) {
                b.burst_window = x;
            }
        }
        if let Some(n) = o.get("burst_max_bans_total") {
            if let Some(x) = self.uint(n, "ban.burst_max_bans_total", 0, 100_000_000) {
                b.burst_max_bans_total = x as u32;
            }
        }
        if let Some(n) = o.get("ipv6_prefix") {
            match self.uint(n, "ban.ipv6_prefix", 0, 128) {
                Some(x @ (64 | 128)) => b.ipv6_prefix = x as u8,
                Some(x) => self.err(
                    "ban.ipv6_prefix",
                    n.pos,
                    format!(
                        "{x} is not supported: use 128 (ban the address) or 64 (ban its whole /64)"
                    ),
                ),
                None => {}
            }
        }
        if b.max_duration < b.duration {
            self.err(
                "ban.max_duration",
                max_pos.unwrap_or(node.pos),
                format!(
                    "is shorter than ban.duration ({}s < {}s)",
                    b.max_duration, b.duration
                ),
            );
        }
        self.finish(o);
    }

    fn formats(&mut self, node: &Node) -> BTreeMap<String, LogFormat> {
        let mut out = BTreeMap::new();
        let Some(o) = self.object(node, "formats") else {
            return out;
        };
        for m in o.members {
            let path = format!("formats.{}", m.key);
            if BUILTIN_FORMATS.contains(&m.key.as_str()) {
                self.err(
                    &path,
                    m.key_pos,
                    "this name is a built-in format; give your format another name",
                );
                continue;
            }
            let Some(mut f) = self.object(&m.node, &path) else {
                continue;
            };
            let regex = f.get("regex");
            let json = f.get("json_fields");
            match (regex, json) {
                (Some(r), None) => {
                    if let Some(s) = self.string(r, &format!("{path}.regex")) {
                        match crate::detect::parse::check_custom_regex(s) {
                            Ok(()) => {
                                out.insert(m.key.clone(), LogFormat::Custom { name: m.key.clone(), regex: s.to_string() });
                            }
                            Err(e) => self.err(&format!("{path}.regex"), r.pos, e),
                        }
                    }
                }
                (None, Some(j)) => {
                    if let Some(fields) = self.json_fields(j, &format!("{path}.json_fields")) {
                        out.insert(m.key.clone(), LogFormat::Json(fields));
                    }
                }
                (Some(_), Some(_)) => self.err(&path, m.node.pos, "give either \"regex\" or \"json_fields\", not both"),
                (None, None) => self.err(&path, m.node.pos, "a format needs \"regex\" (with named groups, `ip` required) or \"json_fields\""),
            }
            self.finish(f);
        }
        out
    }

    fn json_fields(&mut self, node: &Node, path: &str) -> Option<JsonFields> {
        let mut o = self.object(node, path)?;
        let mut f = JsonFields::default();
        let slots: [(&'static str, &mut Vec<String>); 10] = [
            ("ip", &mut f.ip),
            ("request", &mut f.request),
            ("method", &mut f.method),
            ("uri", &mut f.uri),
            ("status", &mut f.status),
            ("user_agent", &mut f.user_agent),
            ("referer", &mut f.referer),
            ("time", &mut f.time),
            ("forwarded_for", &mut f.forwarded_for),
            ("message", &mut f.message),
        ];
        for (key, slot) in slots {
            if let Some(n) = o.get(key) {
                let p = format!("{path}.{key}");
                match &n.value {
                    Value::String(s) => *slot = vec![s.clone()],
                    Value::Array(_) => {
                        if let Some(list) = self.string_list(n, &p) {
                            *slot = list.into_iter().map(|(s, _)| s).collect();
                        }
                    }
                    other => self.err(
                        &p,
                        n.pos,
                        format!(
                            "expected a JSON key (or a list of keys), found {}",
                            other.kind()
                        ),
                    ),
                }
            }
        }
        self.finish(o);
        Some(f)
    }

    fn containers(
        &mut self,
        node: &Node,
        formats: &[String],
    ) -> BTreeMap<String, ContainerSettings> {
        let mut out = BTreeMap::new();
        let Some(o) = self.object(node, "containers") else {
            return out;
        };
        for m in o.members {
            let path = format!("containers.{}", m.key);
            let Some(mut c) = self.object(&m.node, &path) else {
                continue;
            };
            let mut settings = ContainerSettings::default();
            if let Some(n) = c.get("log_format") {
                let p = format!("{path}.log_format");
                if let Some(s) = self.string(n, &p) {
                    if self.check_format_name(s, formats, &p, n.pos) {
                        settings.log_format = Some(s.to_string());
                    }
                }
            }
            if let Some(n) = c.get("categories") {
                let p = format!("{path}.categories");
                if let Some(list) = self.string_list(n, &p) {
                    settings.categories = Some(list.into_iter().map(|(s, _)| s).collect());
                }
            }
            self.finish(c);
            out.insert(m.key.trim_start_matches('/').to_string(), settings);
        }
        out
    }

    fn firewall(&mut self, node: &Node, f: &mut FirewallSettings) {
        let Some(mut o) = self.object(node, "firewall") else {
            return;
        };
        if let Some(n) = o.get("backend") {
            if let Some(s) = self.string(n, "firewall.backend") {
                f.backend = match s {
                    "auto" => BackendChoice::Auto,
                    "nftables" | "nft" => BackendChoice::Nftables,
                    "iptables" => BackendChoice::Iptables,
                    "none" => BackendChoice::None,
                    other => {
                        let hint = did_you_mean(other, &["auto", "nftables", "iptables", "none"])
                            .map(|k| format!("; did you mean \"{k}\"?"))
                            .unwrap_or_default();
                        self.err("firewall.backend", n.pos, format!("unknown backend \"{other}\"{hint} (auto, nftables, iptables or none)"));
                        f.backend
                    }
                };
            }
        }
        if let Some(n) = o.get("table") {
            if let Some(s) = self.string(n, "firewall.table") {
                if s.is_empty()
                    || s.len() > 28
                    || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    || s.as_bytes()[0].is_ascii_digit()
                {
                    self.err("firewall.table", n.pos, "must be 1-28 letters, digits or '_', not starting with a digit (it names an nftables table, an iptables chain and ipsets)");
                } else {
                    f.table = s.to_string();
                }
            }
        }
        self.finish(o);
    }

    fn email(&mut self, node: &Node, e: &mut EmailSettings) {
        let Some(mut o) = self.object(node, "email") else {
            return;
        };
        if let Some(n) = o.get("enabled") {
            if let Some(b) = self.bool(n, "email.enabled") {
                e.enabled = b;
            }
        }
        if let Some(n) = o.get("smtp_host") {
            if let Some(s) = self.string(n, "email.smtp_host") {
                e.smtp_host = s.to_string();
            }
        }
        if let Some(n) = o.get("smtp_port") {
            if let Some(p) = self.uint(n, "email.smtp_port", 1, 65535) {
                e.smtp_port = p as u16;
            }
        }
        if let Some(n) = o.get("security") {
            if let Some(s) = self.string(n, "email.security") {
                match s {
                    "starttls" => e.security = SmtpSecurity::StartTls,
                    "tls" => e.security = SmtpSecurity::Tls,
                    "none" => e.security = SmtpSecurity::None,
                    other => self.err(
                        "email.security",
                        n.pos,
                        format!("unknown security \"{other}\": expected starttls, tls or none"),
                    ),
                }
            }
        }
        let opt = |v: &mut Self, o: &mut Obj, key: &'static str| -> Option<(String, Pos)> {
            let n = o.get(key)?;
            let s = v.string(n, &format!("email.{key}"))?;
            (!s.is_empty()).then(|| (s.to_string(), n.pos))
        };
        e.username = opt(self, &mut o, "username").map(|(s, _)| s);
        e.password = opt(self, &mut o, "password").map(|(s, _)| s);
        let password_file = opt(self, &mut o, "password_file");
        if let Some((p, pos)) = &password_file {
            if e.password.is_some() {
                self.err(
                    "email.password_file",
                    *pos,
                    "give either password or password_file, not both",
                );
            }
            e.password_file = Some(PathBuf::from(p));
        }
        let from = opt(self, &mut o, "from");
        if let Some((f, pos)) = from {
            if !looks_like_address(&f) {
                self.err(
                    "email.from",
                    pos,
                    format!("\"{f}\" is not a mail address such as monitor@example.com"),
                );
            }
            e.from = f;
        }
        let to_node = o.get("to");
        if let Some(n) = to_node {
            if let Some(list) = self.string_list(n, "email.to") {
                for (i, (addr, pos)) in list.iter().enumerate() {
                    if !looks_like_address(addr) {
                        self.err(
                            &format!("email.to[{i}]"),
                            *pos,
                            format!("\"{addr}\" is not a mail address"),
                        );
                    }
                }
                e.to = list.into_iter().map(|(s, _)| s).collect();
            }
        }
        if let Some(n) = o.get("min_severity") {
            if let Some(s) = self.severity(n, "email.min_severity") {
                e.min_severity = s;
            }
        }
        if let Some(n) = o.get("digest_interval") {
            if let Some(d) = self.duration(n, "email.digest_interval", 0) {
                e.digest_interval = d;
            }
        }
        if let Some(n) = o.get("max_per_hour") {
            if let Some(x) = self.uint(n, "email.max_per_hour", 1, 10_000) {
                e.max_per_hour = x as u32;
            }
        }
        if let Some(n) = o.get("accept_invalid_certs") {
            if let Some(b) = self.bool(n, "email.accept_invalid_certs") {
                e.accept_invalid_certs = b;
            }
        }
        if let Some((p, pos)) = opt(self, &mut o, "ca_file") {
            if p.starts_with('/') {
                e.ca_file = Some(PathBuf::from(p));
            } else {
                self.err(
                    "email.ca_file",
                    pos,
                    "must be an absolute path to a PEM file, such as /etc/security-monitor/smtp-ca.pem",
                );
            }
        }
        if e.enabled {
            if e.smtp_host.is_empty() {
                self.err(
                    "email.smtp_host",
                    node.pos,
                    "email is enabled but smtp_host is empty",
                );
            }
            if e.to.is_empty() {
                self.err(
                    "email.to",
                    to_node.map(|n| n.pos).unwrap_or(node.pos),
                    "email is enabled but there is no recipient in \"to\"",
                );
            }
            if e.password.is_some() && e.username.is_none() {
                self.err(
                    "email.username",
                    node.pos,
                    "a password is given but no username",
                );
            }
        }
        self.finish(o);
    }
}

impl Validator {
    fn webhooks(&mut self, node: &Node) -> Vec<WebhookSettings> {
        let mut out = Vec::new();
        let Value::Array(items) = &node.value else {
            self.err(
                "webhooks",
                node.pos,
                format!(
                    "expected a list of webhooks such as [{{\"url\": \"https://…\", \"format\": \"slack\"}}], found {}",
                    node.value.kind()
                ),
            );
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("webhooks[{i}]");
            let Some(mut o) = self.object(item, &path) else {
                continue;
            };
            let mut w = WebhookSettings::new("", WebhookFormat::Generic);
            match o.get("url") {
                Some(n) => {
                    if let Some(u) = self.string(n, &format!("{path}.url")) {
                        match check_webhook_url(u) {
                            Ok(()) => w.url = u.to_string(),
                            Err(e) => self.err(&format!("{path}.url"), n.pos, e),
                        }
                    }
                }
                None => self.err(&path, item.pos, "a webhook needs a \"url\""),
            }
            if let Some(n) = o.get("format") {
                if let Some(f) = self.string(n, &format!("{path}.format")) {
                    match f {
                        "generic" => w.format = WebhookFormat::Generic,
                        "slack" => w.format = WebhookFormat::Slack,
                        "discord" => w.format = WebhookFormat::Discord,
                        other => {
                            let hint = did_you_mean(other, &["generic", "slack", "discord"])
                                .map(|k| format!("; did you mean \"{k}\"?"))
                                .unwrap_or_default();
                            self.err(
                                &format!("{path}.format"),
                                n.pos,
                                format!(
                                    "unknown format \"{other}\"{hint} (generic, slack or discord)"
                                ),
                            )
                        }
                    }
                }
            }
            if let Some(n) = o.get("min_severity") {
                if let Some(s) = self.severity(n, &format!("{path}.min_severity")) {
                    w.min_severity = s;
                }
            }
            if let Some(n) = o.get("digest_interval") {
                if let Some(d) = self.duration(n, &format!("{path}.digest_interval"), 0) {
                    w.digest_interval = d;
                }
            }
            if let Some(n) = o.get("max_per_hour") {
                if let Some(x) = self.uint(n, &format!("{path}.max_per_hour"), 1, 10_000) {
                    w.max_per_hour = x as u32;
                }
            }
            if let Some(n) = o.get("headers") {
                let hpath = format!("{path}.headers");
                if let Some(h) = self.object(n, &hpath) {
                    for m in h.members {
                        let kpath = format!("{hpath}.{}", m.key);
                        let Some(v) = self.string(&m.node, &kpath) else {
                            continue;
                        };
                        if m.key.is_empty()
                            || !m.key.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            })
                        {
                            self.err(&kpath, m.key_pos, "not a valid HTTP header name (letters, digits and -, such as Authorization or X-Token)");
                        } else if v.chars().any(|c| c.is_control()) {
                            self.err(
                                &kpath,
                                m.node.pos,
                                "a header value cannot hold control characters (line breaks, tabs)",
                            );
                        } else {
                            w.headers.insert(m.key.clone(), v.to_string());
                        }
                    }
                }
            }
            if let Some(n) = o.get("ca_file") {
                let cpath = format!("{path}.ca_file");
                if let Some(f) = self.string(n, &cpath) {
                    if f.starts_with('/') {
                        w.ca_file = Some(PathBuf::from(f));
                    } else {
                        self.err(
                            &cpath,
                            n.pos,
                            "must be an absolute path to a PEM file, such as /etc/security-monitor/webhook-ca.pem",
                        );
                    }
                }
            }
            self.finish(o);
            out.push(w);
        }
        out
    }
}

/// A webhook URL must be http:// or https:// with a host.
pub fn check_webhook_url(u: &str) -> Result<(), String> {
    match reqwest::Url::parse(u) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Err(format!(
            "\"{}\" URLs are not supported: use an http:// or https:// URL",
            url.scheme()
        )),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => {
            Err("the URL has no host, e.g. https://hooks.slack.com/services/…".into())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "not a URL ({e}); expected something like https://hooks.slack.com/services/…"
        )),
    }
}

/// Whether `docker.socket` names something the daemon can connect to: an absolute socket
/// path, or a `unix://`, `tcp://` or `http://` URL ("" means: use the default).
pub fn check_docker_socket(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if let Some(path) = s.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(())
        } else {
            Err(format!(
                "\"{s}\": a unix:// URL needs an absolute path, e.g. unix:///var/run/docker.sock"
            ))
        };
    }
    if let Some(rest) = s
        .strip_prefix("tcp://")
        .or_else(|| s.strip_prefix("http://"))
    {
        return if rest.is_empty() || rest.starts_with('/') {
            Err(format!(
                "\"{s}\" names no host: write e.g. tcp://127.0.0.1:2375"
            ))
        } else {
            Ok(())
        };
    }
    if s.starts_with('/') {
        return Ok(());
    }
    Err(format!(
        "\"{s}\" is not a Docker address: give a socket path such as /var/run/docker.sock, or a unix://, tcp:// or http:// URL (TLS and ssh:// are not supported)"
    ))
}

fn looks_like_address(s: &str) -> bool {
    let addr = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    match addr.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && !domain.is_empty()
                && !addr.contains(char::is_whitespace)
                && !addr.contains(['\r', '\n'])
        }
        None => false,
    }
}

/// Says that a duration is beyond [`MAX_DURATION_SECS`] (or not a finite number).
fn too_long(shown: &str) -> String {
    DurationError::TooLong(shown.to_string()).to_string()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("\"{s}\""),
        other => other.kind().to_string(),
    }
}

/// The known key closest to `key`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a, S: AsRef<str>>(key: &str, known: &'a [S]) -> Option<&'a str> {
    let key_l = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| {
            (
                k.as_ref(),
                edit_distance(&key_l, &k.as_ref().to_ascii_lowercase()),
            )
        })
        .filter(|(k, d)| *d <= (k.len().max(key.len()) / 3).max(2))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_works_as_written() {
        // The seed's README shows these keys with `//` comments.
        let text = r#"{
            "patterns": {
                "binary_injection": "\\x[0-9a-fA-F]{2}",  // Detects binary data in requests
                "sql_injection": "(?i)(SELECT|INSERT|UPDATE|DELETE|DROP|UNION|ALTER|EXEC)",
                "xss": "(?i)(<script|javascript:|onerror=|onload=)",
                "path_traversal": "\\.\\./|\\.\\.\\\\",
                "command_injection": "(?i)(;|&&|\\|\\||`|\\$)"
            },
            "thresholds": {
                "max_failed_auth": 5,        // Number of failed login attempts
                "max_pattern_matches": 3,    // Number of pattern matches
                "max_requests_per_minute": 100  // Rate limiting
            },
            "docker_containers": ["container-name-1", "container-name-2"]
        }"#;
        let cfg = parse_str(text).unwrap();
        assert_eq!(cfg.patterns.len(), 5);
        assert_eq!(cfg.patterns[0].name, "binary_injection");
        assert_eq!(cfg.patterns[0].regex, r"\x[0-9a-fA-F]{2}");
        assert_eq!(cfg.thresholds.max_requests_per_minute, 100);
        assert_eq!(
            cfg.docker_containers,
            vec!["container-name-1", "container-name-2"]
        );
        assert_eq!(cfg.ban.duration, 86400);
    }

    #[test]
    fn every_error_is_reported_at_once_with_path_and_position() {
        let text = "{\n  \"thresholds\": {\"max_faild_auth\": 5, \"max_pattern_matches\": -1},\n  \"allowlist\": [\"10.0.0.0/8\", \"not-an-ip\"],\n  \"ban\": {\"duration\": \"forever\"},\n  \"firewal\": {}\n}";
        let errs = parse_str(text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 5, "{shown:#?}");
        assert!(
            shown[0].starts_with("2:18: thresholds.max_faild_auth: unknown key")
                && shown[0].contains("did you mean \"max_failed_auth\""),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("2:62: thresholds.max_pattern_matches:"),
            "{shown:#?}"
        );
        assert!(shown[2].starts_with("3:31: allowlist[1]:"), "{shown:#?}");
        assert!(shown[3].starts_with("4:23: ban.duration:"), "{shown:#?}");
        assert!(
            shown[4].contains("firewal") && shown[4].contains("did you mean \"firewall\""),
            "{shown:#?}"
        );
    }

    #[test]
    fn an_invalid_regex_names_the_pattern_and_says_why() {
        let errs =
            parse_str(r#"{"patterns": {"repeat": "(a)\\1", "look": "foo(?=bar)", "ok": "x"}}"#)
                .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].to_string().contains("pattern \"repeat\"")
                && errs[0].to_string().contains("backreference"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].to_string().contains("pattern \"look\"")
                && errs[1].to_string().contains("look-around"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn trusted_proxies_take_named_containers() {
        let cfg =
            parse_str(r#"{"trusted_proxies": ["container:traefik", "container:/npm"]}"#).unwrap();
        assert_eq!(cfg.trusted_proxies.containers, ["traefik", "npm"]);
        assert!(!cfg.trusted_proxies.docker);
        let errs = parse_str(r#"{"trusted_proxies": ["container:"]}"#).unwrap_err();
        assert!(
            errs[0].to_string().contains("needs a container name"),
            "{errs:?}"
        );
    }

    #[test]
    fn trusted_proxies_take_docker_and_cidrs() {
        let cfg = parse_str(r#"{"trusted_proxies": ["docker", "10.0.0.5", "192.168.0.0/16"], "docker": {"ban_internal_addresses": true}}"#).unwrap();
        assert!(cfg.trusted_proxies.docker);
        assert_eq!(cfg.trusted_proxies.nets.len(), 2);
        assert!(cfg.docker.ban_internal_addresses);
        let errs = parse_str(r#"{"trusted_proxies": ["dokcer"]}"#).unwrap_err();
        assert!(
            errs[0].to_string().contains("trusted_proxies[0]"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_takes_addresses_only() {
        assert_eq!(parse_listen(""), Ok(None));
        let lo: std::net::SocketAddr = "127.0.0.1:9184".parse().unwrap();
        assert_eq!(parse_listen("9184"), Ok(Some(lo)));
        assert_eq!(parse_listen(":9184"), Ok(Some(lo)));
        assert_eq!(
            parse_listen("[::1]:9184"),
            Ok(Some("[::1]:9184".parse().unwrap()))
        );
        assert!(parse_listen("localhost:9184")
            .unwrap_err()
            .contains("IP:PORT"));
        assert!(parse_listen("0").is_err());
        let cfg = parse_str(
            r#"{"metrics": {"listen": "0.0.0.0:9100"}, "alerts": {"cooldown": "2m", "keep": 50}}"#,
        )
        .unwrap();
        assert_eq!(cfg.metrics.listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!((cfg.alerts.cooldown, cfg.alerts.keep), (120, 50));
        let e = parse_str(r#"{"metrics": {"listn": "9100"}}"#).unwrap_err();
        assert!(e[0].message.contains("did you mean \"listen\""), "{e:?}");
    }

    #[test]
    fn huge_and_non_finite_durations_are_refused_with_key_and_position() {
        for (value, says) in [
            ("1e20", "too long"),
            ("1e400", "too long"),
            ("\"1e20s\"", "not a duration"),
            ("\"99999999999999999999999s\"", "too long"),
            ("\"99999999999999w\"", "too long"),
            ("\"3651d\"", "too long"),
        ] {
            let text =
                format!("{{\n  \"ban\": {{\"duration\": {value}, \"max_duration\": {value}}}\n}}");
            let errs = parse_str(&text).expect_err(&text);
            let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            assert!(
                shown[0].starts_with("2:23: ban.duration:") && shown[0].contains(says),
                "{value}: {shown:#?}"
            );
            assert!(
                shown.iter().any(|e| e.starts_with("2:")
                    && e.contains("ban.max_duration:")
                    && e.contains(says)),
                "{value}: {shown:#?}"
            );
        }
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION_SECS));
        assert!(parse_duration("18446744073709551615").is_err());
    }

    #[test]
    fn ipv6_prefix_and_total_ceiling_are_read_and_checked() {
        let cfg =
            parse_str("{\"ban\": {\"ipv6_prefix\": 64, \"burst_max_bans_total\": 5000}}").unwrap();
        assert_eq!(
            (cfg.ban.ipv6_prefix, cfg.ban.burst_max_bans_total),
            (64, 5000)
        );
        let d = parse_str("{}").unwrap();
        assert_eq!((d.ban.ipv6_prefix, d.ban.burst_max_bans_total), (128, 0));
        let errs = parse_str("{\"ban\": {\"ipv6_prefix\": 48}}").unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("ban.ipv6_prefix: 48 is not supported"),
            "{errs:?}"
        );
    }

    #[test]
    fn escalation_never_overflows() {
        let b = BanPolicy {
            max_duration: u64::MAX,
            ..BanPolicy::default()
        };
        assert_eq!(b.duration_for(40), MAX_DURATION_SECS, "2^40 days is capped");
        assert_eq!(b.duration_for(u32::MAX), MAX_DURATION_SECS);
        let steep = BanPolicy {
            repeat_multiplier: 100.0,
            max_duration: MAX_DURATION_SECS,
            ..BanPolicy::default()
        };
        assert_eq!(steep.duration_for(u32::MAX), MAX_DURATION_SECS);
        assert_eq!(BanPolicy::default().clamp_ban(u64::MAX), 30 * 86400);
        assert_eq!(BanPolicy::default().clamp_ban(0), 1);
    }

    #[test]
    fn alert_log_sizes_take_units_and_are_bounded() {
        assert_eq!(parse_size("50M"), Ok(50 << 20));
        assert_eq!(parse_size("50MB"), parse_size("50 MiB"));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999T").is_err(), "overflow is an error");
        let cfg = parse_str(r#"{"alerts": {"max_log_size": "200M"}}"#).unwrap();
        assert_eq!(cfg.alerts.max_log_size, 200 << 20);
        assert_eq!(
            parse_str("{}").unwrap().alerts.max_log_size,
            crate::alerts::log::DEFAULT_MAX_TOTAL_BYTES
        );
        for bad in [r#""10K""#, "1e20", r#""2000T""#, "true"] {
            let errs =
                parse_str(&format!(r#"{{"alerts": {{"max_log_size": {bad}}}}}"#)).unwrap_err();
            assert!(
                errs[0].to_string().contains("alerts.max_log_size"),
                "{bad}: {}",
                errs[0]
            );
        }
    }

    #[test]
    fn escalation_is_capped() {
        let b = BanPolicy::default();
        assert_eq!(b.duration_for(0), 86400);
        assert_eq!(b.duration_for(1), 2 * 86400);
        assert_eq!(b.duration_for(50), 30 * 86400);
    }

    #[test]
    fn a_password_without_encryption_is_warned_about() {
        let mail = |extra: &str| {
            format!(
                r#"{{"email": {{"enabled": true, "smtp_host": "mail.example.net", "smtp_port": 25, "from": "m@example.net", "to": ["ops@example.net"]{extra}}}}}"#
            )
        };
        let cfg = parse_str(&mail(
            r#", "security": "none", "username": "u", "password": "p""#,
        ))
        .expect("valid");
        let w = cfg.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("clear text") && w[0].contains("mail.example.net:25"),
            "{w:?}"
        );
        let from_file = parse_str(&mail(
            r#", "security": "none", "username": "u", "password_file": "/etc/security-monitor/smtp-password""#,
        ))
        .expect("valid");
        assert_eq!(from_file.warnings().len(), 1);
        // Encrypted, or without a password, or mail off: nothing to warn about.
        for quiet in [
            mail(r#", "security": "starttls", "username": "u", "password": "p""#),
            mail(r#", "security": "none""#),
            r#"{"email": {"enabled": false, "security": "none", "username": "u", "password": "p"}}"#
                .to_string(),
        ] {
            let cfg = parse_str(&quiet).expect("valid");
            assert!(cfg.warnings().is_empty(), "{quiet}: {:?}", cfg.warnings());
        }
    }

    #[test]
    fn email_is_checked_when_enabled() {
        let errs = parse_str(r#"{"email": {"enabled": true, "from": "nobody", "to": [], "password": "x", "password_file": "/p"}}"#).unwrap_err();
        let all = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("email.from"), "{all}");
        assert!(all.contains("no recipient"), "{all}");
        assert!(all.contains("not both"), "{all}");
        assert!(all.contains("no username"), "{all}");
    }

    #[test]
    fn webhooks_are_checked() {
        let ok = parse_str(r#"{"webhooks": [{"url": "https://hooks.slack.com/services/T/B/x", "format": "slack", "min_severity": "critical", "digest_interval": "30s", "max_per_hour": 10, "headers": {"X-Token": "abc"}, "ca_file": "/etc/hook-ca.pem"}], "email": {"ca_file": "/etc/ca.pem"}}"#).unwrap();
        let w = &ok.webhooks[0];
        assert_eq!(w.format, WebhookFormat::Slack);
        assert_eq!(w.min_severity, Severity::Critical);
        assert_eq!((w.digest_interval, w.max_per_hour), (30, 10));
        assert_eq!(w.headers.get("X-Token").map(String::as_str), Some("abc"));
        assert_eq!(ok.email.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(w.ca_file, Some(PathBuf::from("/etc/hook-ca.pem")));
        let errs = parse_str(r#"{"webhooks": [{"url": "ftp://x/y", "format": "slak", "ca_file": "ca.pem"}, {"format": "generic", "headers": {"Bad Name": "v", "X": "a\nb"}}, {"url": "not a url", "bogus": 1}], "email": {"ca_file": "ca.pem"}}"#).unwrap_err();
        let all = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        for want in [
            "webhooks[0].url: \"ftp\" URLs are not supported",
            "webhooks[0].format: unknown format \"slak\"; did you mean \"slack\"?",
            "webhooks[1]: a webhook needs a \"url\"",
            "webhooks[1].headers.Bad Name: not a valid HTTP header name",
            "webhooks[1].headers.X: a header value cannot hold control characters",
            "webhooks[2].url: not a URL",
            "webhooks[2].bogus: unknown key",
            "email.ca_file: must be an absolute path",
            "webhooks[0].ca_file: must be an absolute path",
        ] {
            assert!(all.contains(want), "{want:?} not in\n{all}");
        }
    }

    #[test]
    fn formats_and_containers_refer_to_known_formats() {
        let ok = parse_str(r#"{"formats": {"app": {"regex": "from (?P<ip>\\S+)"}}, "containers": {"web": {"log_format": "app"}}}"#).unwrap();
        assert!(matches!(
            ok.format_for_container("web"),
            LogFormat::Custom { .. }
        ));
        let errs =
            parse_str(r#"{"formats": {"app": {"regex": "from (\\S+)"}}, "log_format": "combind"}"#)
                .unwrap_err();
        let all = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("named group `ip`"), "{all}");
        assert!(all.contains("did you mean \"combined\""), "{all}");
    }

    #[test]
    fn vhost_combined_is_a_builtin_format() {
        let ok = parse_str(
            r#"{"log_format": "vhost_combined", "containers": {"proxy": {"log_format": "vhost_combined"}, "web": {"log_format": "combined"}}}"#,
        )
        .unwrap();
        assert_eq!(ok.format_for_container("proxy"), LogFormat::VhostCombined);
        assert_eq!(ok.format_for_container("other"), LogFormat::VhostCombined);
        assert_eq!(ok.format_for_container("web").name(), "combined");
        let all = parse_str(
            r#"{"containers": {"proxy": {"log_format": "vhost_combind"}}, "formats": {"vhost_combined": {"regex": "(?P<ip>x)"}}}"#,
        )
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
        assert!(all.contains("did you mean \"vhost_combined\""), "{all}");
        assert!(all.contains("this name is a built-in format"), "{all}");
    }

    #[test]
    fn docker_section_defaults_and_values() {
        let d = Config::default().docker;
        assert_eq!(d.socket, None);
        assert!(!d.all_containers);
        assert_eq!(d.label.as_deref(), Some("security-monitor.enable=true"));
        assert_eq!(d.max_backlog, 600);
        assert_eq!(d.max_lines_per_second, 20_000);
        let cfg = parse_str(
            r#"{"docker": {"socket": "unix:///run/x/docker.sock", "all_containers": true,
                "name_pattern": "^web-", "label": "", "max_backlog": "1h", "max_lines_per_second": 500}}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.docker.socket.as_deref(),
            Some("unix:///run/x/docker.sock")
        );
        assert!(cfg.docker.all_containers);
        assert_eq!(cfg.docker.name_pattern.as_deref(), Some("^web-"));
        assert_eq!(cfg.docker.label, None);
        assert_eq!(cfg.docker.max_backlog, 3600);
        assert_eq!(cfg.docker.max_lines_per_second, 500);
        for ok in [
            "/var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "http://docker:2375",
            "",
        ] {
            assert!(check_docker_socket(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn docker_section_errors_name_the_key_and_position() {
        let text = "{\"docker\": {\n \"socket\": \"docker.sock\",\n \"name_pattern\": \"(web\",\n \"label\": \"=x\",\n \"max_lines_per_second\": 0,\n \"max_backlog\": \"soon\",\n \"all_containers\": \"yes\",\n \"sockt\": 1}}";
        let errs = parse_str(text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 7, "{shown:#?}");
        assert!(
            shown[0].starts_with("2:12: docker.socket:") && shown[0].contains("socket path"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("3:18: docker.name_pattern:"),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("4:11: docker.label:") && shown[2].contains("key=value"),
            "{shown:#?}"
        );
        assert!(
            shown[3].starts_with("5:26: docker.max_lines_per_second:"),
            "{shown:#?}"
        );
        assert!(
            shown[4].starts_with("6:17: docker.max_backlog:"),
            "{shown:#?}"
        );
        assert!(
            shown[5].starts_with("7:20: docker.all_containers:"),
            "{shown:#?}"
        );
        assert!(shown[6].contains("did you mean \"socket\""), "{shown:#?}");
        assert!(check_docker_socket("ssh://host").is_err());
        assert!(check_docker_socket("unix://docker.sock").is_err());
        assert!(check_docker_socket("tcp://").is_err());
    }

    #[test]
    fn the_shipped_default_config_is_valid() {
        let text = include_str!("../../config/monitor_config.json");
        let cfg = parse_str(text).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(cfg.ban.duration, 86400);
    }
}
