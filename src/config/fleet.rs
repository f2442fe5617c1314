//! The `fleet` section, read into `crate::fleet::Settings`.

use std::path::PathBuf;

use super::jsonc::{Node, Pos, Value};
use super::validate::{Obj, Validator};
use crate::fleet::settings::{is_token, Settings};

impl Validator {
    pub(super) fn fleet(&mut self, node: &Node, f: &mut Settings) {
        let Some(mut o) = self.object(node, "fleet") else {
            return;
        };
        if let Some(n) = o.get("enabled") {
            if let Some(b) = self.bool(n, "fleet.enabled") {
                f.enabled = b;
            }
        }
        if let Some(n) = o.get("url") {
            let urls = match &n.value {
                Value::String(s) => Some(vec![(s.clone(), n.pos)]),
                Value::Array(_) => self.string_list(n, "fleet.url"),
                other => {
                    self.err(
                        "fleet.url",
                        n.pos,
                        format!(
                            "expected a URL such as \"nats://10.0.0.5:4222\" or a list of them, found {}",
                            other.kind()
                        ),
                    );
                    None
                }
            };
            if let Some(urls) = urls {
                if urls.is_empty() {
                    self.err(
                        "fleet.url",
                        n.pos,
                        "no server given: name at least one, such as \"nats://10.0.0.5:4222\"",
                    );
                }
                let mut ok = Vec::new();
                for (i, (u, pos)) in urls.into_iter().enumerate() {
                    let path = if matches!(n.value, Value::Array(_)) {
                        format!("fleet.url[{i}]")
                    } else {
                        "fleet.url".into()
                    };
                    match check_url(&u) {
                        Ok(()) => ok.push(u),
                        Err(e) => self.err(&path, pos, e),
                    }
                }
                f.urls = ok;
            }
        }
        let text = |v: &mut Self, o: &mut Obj, key: &'static str| -> Option<(String, Pos)> {
            let n = o.get(key)?;
            let s = v.string(n, &format!("fleet.{key}"))?;
            (!s.is_empty()).then(|| (s.to_string(), n.pos))
        };
        let user = text(self, &mut o, "user");
        let password = text(self, &mut o, "password");
        let nkey = text(self, &mut o, "nkey");
        let creds = text(self, &mut o, "creds_file");
        if let Some((_, pos)) = &password {
            if user.is_none() {
                self.err(
                    "fleet.password",
                    *pos,
                    "a password is given but no \"user\"",
                );
            }
        }
        let ways = [user.is_some(), nkey.is_some(), creds.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if ways > 1 {
            self.err(
                "fleet",
                node.pos,
                "give one way to log in: \"user\" and \"password\", \"nkey\" or \"creds_file\", not several",
            );
        }
        if let Some((k, pos)) = &nkey {
            if !k.starts_with("SU") || k.len() < 50 {
                self.err(
                    "fleet.nkey",
                    *pos,
                    "expected a user nkey seed (it starts with \"SU\"; `nk -gen user` makes one)",
                );
            }
        }
        f.user = user.map(|(s, _)| s);
        f.password = password.map(|(s, _)| s);
        f.nkey = nkey.map(|(s, _)| s);
        if let Some((p, pos)) = creds {
            match absolute(&p) {
                Some(p) => f.creds_file = Some(p),
                None => self.err(
                    "fleet.creds_file",
                    pos,
                    "must be an absolute path, such as /etc/security-monitor/fleet.creds",
                ),
            }
        }
        if let Some(n) = o.get("tls") {
            if let Some(mut t) = self.object(n, "fleet.tls") {
                if let Some(c) = t.get("ca_file") {
                    if let Some(s) = self.string(c, "fleet.tls.ca_file") {
                        match absolute(s) {
                            Some(p) => f.tls_ca_file = Some(p),
                            None => self.err(
                                "fleet.tls.ca_file",
                                c.pos,
                                "must be an absolute path to a PEM file, such as /etc/security-monitor/nats-ca.pem",
                            ),
                        }
                    }
                }
                self.finish(t);
            }
        }
        if let Some(n) = o.get("bucket") {
            if let Some(s) = self.string(n, "fleet.bucket") {
                if is_token(s) {
                    f.bucket = s.to_string();
                } else {
                    self.err("fleet.bucket", n.pos, format!("\"{s}\" cannot name a KV bucket: use 1-64 letters, digits, '_' or '-', such as \"security-monitor-bans\""));
                }
            }
        }
        if let Some(n) = o.get("host_id") {
            if let Some(s) = self.string(n, "fleet.host_id") {
                if is_token(s) {
                    f.host_id = Some(s.to_string());
                } else {
                    self.err("fleet.host_id", n.pos, format!("\"{s}\" cannot be a host id: use 1-64 letters, digits, '_' or '-' (no dots: it is the first token of this host's keys), such as \"web-1\""));
                }
            }
        }
        if let Some(n) = o.get("max_remote_bans") {
            if let Some(x) = self.uint(n, "fleet.max_remote_bans", 1, 10_000_000) {
                f.max_remote_bans = x as usize;
            }
        }
        if let Some(n) = o.get("remote_burst") {
            if let Some(x) = self.uint(n, "fleet.remote_burst", 1, 10_000_000) {
                f.remote_burst = x as u32;
            }
        }
        if let Some(n) = o.get("remote_burst_window") {
            if let Some(x) = self.duration(n, "fleet.remote_burst_window", 1) {
                f.remote_burst_window = x;
            }
        }
        if f.enabled && f.urls.is_empty() {
            self.err(
                "fleet.url",
                node.pos,
                "the fleet is enabled but no server is given: set \"url\", such as \"nats://10.0.0.5:4222\"",
            );
        }
        self.finish(o);
    }
}

fn absolute(p: &str) -> Option<PathBuf> {
    p.starts_with('/').then(|| PathBuf::from(p))
}

/// Whether `u` names a NATS server: `nats://`, `tls://` (or no scheme), a host and a port.
fn check_url(u: &str) -> Result<(), String> {
    let rest = match u.split_once("://") {
        Some(("nats" | "tls", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "\"{scheme}\" is not a NATS scheme: use nats:// (or tls:// for TLS), such as \"nats://10.0.0.5:4222\""
            ))
        }
        None => u,
    };
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if rest.contains('@') {
        return Err(
            "put credentials in \"user\" and \"password\" (or nkey, creds_file), not in the URL"
                .into(),
        );
    }
    let host = match hostport.rsplit_once(':') {
        Some((h, port)) => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!(
                    "\"{port}\" is not a port number (NATS listens on 4222 by default)"
                ));
            }
            h
        }
        None => hostport,
    };
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!(
            "\"{u}\" is not a server address: expected nats://HOST:PORT, such as \"nats://10.0.0.5:4222\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    #[test]
    fn fleet_defaults_are_off_and_keys_are_read() {
        let d = parse_str("{}").unwrap().fleet;
        assert!(!d.enabled);
        assert_eq!(d.bucket, "security-monitor-bans");
        let cfg = parse_str(r#"{"fleet": {"enabled": true, "url": ["nats://10.0.0.5:4222", "tls://nats2.example.net:4222"], "user": "web-1", "password": "p", "tls": {"ca_file": "/etc/ca.pem"}, "bucket": "bans", "host_id": "web-1", "max_remote_bans": 500, "remote_burst": 20, "remote_burst_window": "30s"}}"#).unwrap().fleet;
        assert!(cfg.enabled);
        assert_eq!(cfg.urls.len(), 2);
        assert_eq!(cfg.user.as_deref(), Some("web-1"));
        assert_eq!(cfg.host_id.as_deref(), Some("web-1"));
        assert_eq!(
            (
                cfg.max_remote_bans,
                cfg.remote_burst,
                cfg.remote_burst_window
            ),
            (500, 20, 30)
        );
        let one = parse_str(r#"{"fleet": {"url": "nats://127.0.0.1:4222"}}"#).unwrap();
        assert_eq!(one.fleet.urls, ["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn bad_fleet_values_say_where_and_what_to_do() {
        let errs = parse_str(
            "{\"fleet\": {\"enabled\": true,\n \"url\": [\"http://x:4222\", \"nats://u:p@h:4222\", \"nats://h:99999\"],\n \"password\": \"p\", \"nkey\": \"abc\", \"creds_file\": \"x.creds\",\n \"host_id\": \"web.1\", \"bucket\": \"a b\", \"remote_burst\": 0, \"tls\": {\"ca_file\": \"ca.pem\", \"cert\": 1}}}",
        )
        .unwrap_err();
        let all = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        for want in [
            "2:10: fleet.url[0]: \"http\" is not a NATS scheme",
            "fleet.url[1]: put credentials in \"user\"",
            "fleet.url[2]: \"99999\" is not a port number",
            "fleet.password: a password is given but no \"user\"",
            "fleet: give one way to log in",
            "fleet.nkey: expected a user nkey seed",
            "fleet.creds_file: must be an absolute path",
            "fleet.host_id: \"web.1\" cannot be a host id",
            "fleet.bucket: \"a b\" cannot name a KV bucket",
            "fleet.remote_burst:",
            "fleet.tls.ca_file: must be an absolute path",
            "fleet.tls.cert: unknown key",
        ] {
            assert!(all.contains(want), "{want:?} not in\n{all}");
        }
        let none = parse_str(r#"{"fleet": {"enabled": true, "url": []}}"#).unwrap_err();
        assert!(
            none.iter().any(|e| e.message.contains("no server given")),
            "{none:?}"
        );
    }
}
