//! The `email` and `webhooks` sections, read into `crate::notify`'s types.

use std::path::PathBuf;

use super::jsonc::{Node, Pos, Value};
use super::validate::{did_you_mean, Obj, Validator};
use crate::notify::{EmailSettings, SmtpSecurity, WebhookFormat, WebhookSettings};

impl Validator {
    pub(super) fn email(&mut self, node: &Node, e: &mut EmailSettings) {
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

    pub(super) fn webhooks(&mut self, node: &Node) -> Vec<WebhookSettings> {
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

/// A webhook URL that cannot be posted to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("\"{0}\" URLs are not supported: use an http:// or https:// URL")]
    Scheme(String),
    #[error("the URL has no host, e.g. https://hooks.slack.com/services/…")]
    NoHost,
    #[error("not a URL ({0}); expected something like https://hooks.slack.com/services/…")]
    NotAUrl(String),
}

/// A webhook URL must be http:// or https:// with a host.
pub fn check_webhook_url(u: &str) -> Result<(), WebhookUrlError> {
    match reqwest::Url::parse(u) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Err(WebhookUrlError::Scheme(url.scheme().to_string()))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Err(WebhookUrlError::NoHost),
        Ok(_) => Ok(()),
        Err(e) => Err(WebhookUrlError::NotAUrl(e.to_string())),
    }
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
