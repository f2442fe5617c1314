//! The `monitor_config.json` model: defaults, reading, and validation.
//!
//! Reading never stops at the first problem: every bad key, value and pattern is
//! collected with its key path and line:column, so an operator fixes a config in one pass
//! (as `nginx -t` would tell them, but all at once). Each section's type belongs to the
//! module that uses it; the files here map JSON onto those types: `validate.rs` (the
//! core and did-you-mean), then one file per section.

mod alerts;
mod anomaly;
mod ban;
mod control;
mod detect;
mod docker;
mod errors;
mod firewall;
mod fleet;
pub mod jsonc;
mod notify;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonc::{Node, Pos, Value};

pub use alerts::{parse_listen, parse_size, ValueError, MAX_LOG_SIZE, MIN_LOG_SIZE};
pub use docker::{check_docker_socket, DockerSocketError};
pub use errors::{ConfigError, ConfigErrors};
pub use notify::{check_webhook_url, WebhookUrlError};
use validate::Validator;

use crate::alerts::Settings as AlertsSettings;
use crate::api::Settings as ControlSettings;
use crate::ban::{Policy as BanPolicy, StateSettings};
use crate::detect::anomaly::DaemonSettings as AnomalySettings;
use crate::detect::parse::{LogFormat, BUILTIN_FORMATS};
use crate::detect::proxy::TrustedProxies;
use crate::detect::rules::UserPattern;
use crate::detect::{Settings as DetectSettings, Thresholds};
use crate::docker::{ContainerSettings, Limits, Settings as DockerSettings};
use crate::firewall::Settings as FirewallSettings;
use crate::fleet::Settings as FleetSettings;
use crate::metrics::Settings as MetricsSettings;
use crate::netaddr::IpNet;
use crate::notify::{EmailSettings, SmtpSecurity, WebhookSettings};

/// Where operators keep the config; `install.sh` puts the default there.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/security-monitor/monitor_config.json";

/// The whole config file. Each section is the owning module's own settings type.
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
    pub fleet: FleetSettings,
    pub anomaly: AnomalySettings,
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
            fleet: FleetSettings::default(),
            anomaly: AnomalySettings::default(),
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

    /// What the detector is told, out of `thresholds`, `rules`, `patterns`, `allowlist`,
    /// `trusted_proxies`, `ban.duration` and `limits.max_tracked_ips`.
    pub fn detect_settings(&self) -> DetectSettings {
        DetectSettings {
            thresholds: self.thresholds.clone(),
            builtin_rules: self.builtin_rules,
            disabled_rules: self.disabled_rules.clone(),
            patterns: self.patterns.clone(),
            allowlist: self.allowlist.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            quiet_seconds: self.ban.duration,
            max_tracked_ips: self.limits.max_tracked_ips,
        }
    }

    /// The format named `name`: a built-in one, one from `formats`, or an application
    /// profile.
    pub fn format(&self, name: &str) -> Option<LogFormat> {
        LogFormat::builtin(name)
            .or_else(|| self.formats.get(name).cloned())
            .or_else(|| crate::detect::profile::profile(name).map(LogFormat::Profile))
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

impl Validator {
    /// The whole file: each section read by its own file beside this one.
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
            self.docker_containers(n, &mut cfg.docker_containers);
        }
        if let Some(n) = o.get("docker") {
            self.docker(n, &mut cfg.docker);
        }
        if let Some(n) = o.get("ban") {
            self.ban(n, &mut cfg.ban);
        }
        if let Some(n) = o.get("trusted_proxies") {
            self.trusted_proxies(n, &mut cfg.trusted_proxies);
        }
        if let Some(n) = o.get("allowlist") {
            self.allowlist(n, &mut cfg.allowlist);
        }
        if let Some(n) = o.get("formats") {
            cfg.formats = self.formats(n);
        }
        let format_names: Vec<String> = BUILTIN_FORMATS
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.formats.keys().cloned())
            .chain(
                crate::detect::profile::profile_names()
                    .into_iter()
                    .map(str::to_string),
            )
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
            self.rules(n, &mut cfg.builtin_rules, &mut cfg.disabled_rules);
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
            self.state(n, &mut cfg.state);
        }
        if let Some(n) = o.get("email") {
            self.email(n, &mut cfg.email);
        }
        if let Some(n) = o.get("webhooks") {
            cfg.webhooks = self.webhooks(n);
        }
        if let Some(n) = o.get("control") {
            self.control(n, &mut cfg.control);
        }
        if let Some(n) = o.get("alerts") {
            self.alerts(n, &mut cfg.alerts);
        }
        if let Some(n) = o.get("metrics") {
            self.metrics(n, &mut cfg.metrics);
        }
        if let Some(n) = o.get("limits") {
            self.limits(n, &mut cfg.limits);
        }
        if let Some(n) = o.get("fleet") {
            self.fleet(n, &mut cfg.fleet);
        }
        if let Some(n) = o.get("anomaly") {
            self.anomaly(n, &mut cfg.anomaly);
        }
        self.finish(o);
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;
    use crate::notify::WebhookFormat;
    use crate::time::{parse_duration, MAX_DURATION_SECS};

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
            .to_string()
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
    fn the_detectors_defaults_are_the_files() {
        assert_eq!(
            Config::default().detect_settings(),
            crate::detect::Settings::default()
        );
    }

    #[test]
    fn the_shipped_default_config_is_valid() {
        let text = include_str!("../../config/monitor_config.json");
        let cfg = parse_str(text).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(cfg.ban.duration, 86400);
        assert_eq!(
            cfg.anomaly,
            crate::detect::anomaly::DaemonSettings::default()
        );
    }
}
