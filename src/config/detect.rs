//! The detection sections: `patterns`, `thresholds`, `rules`, `formats`, `log_format`
//! and `trusted_proxies`, read into `crate::detect`'s types.

use std::collections::BTreeMap;

use super::jsonc::{Node, Pos, Value};
use super::validate::{did_you_mean, Obj, Validator};
use crate::detect::parse::{JsonFields, LogFormat, BUILTIN_FORMATS};
use crate::detect::proxy::TrustedProxies;
use crate::detect::rules::UserPattern;
use crate::detect::{Severity, Thresholds};
use crate::netaddr::IpNet;

impl Validator {
    pub(super) fn patterns(&mut self, node: &Node) -> Vec<UserPattern> {
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

    pub(super) fn thresholds(&mut self, node: &Node, t: &mut Thresholds) {
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

    pub(super) fn rules(&mut self, n: &Node, builtin: &mut bool, disabled: &mut Vec<String>) {
        if let Some(mut r) = self.object(n, "rules") {
            if let Some(b) = r.get("builtin") {
                if let Some(v) = self.bool(b, "rules.builtin") {
                    *builtin = v;
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
                    *disabled = list.into_iter().map(|(s, _)| s).collect();
                }
            }
            self.finish(r);
        }
    }

    pub(super) fn trusted_proxies(&mut self, n: &Node, t: &mut TrustedProxies) {
        if let Some(list) = self.string_list(n, "trusted_proxies") {
            for (i, (s, pos)) in list.iter().enumerate() {
                if s == "docker" {
                    t.docker = true;
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
                        t.containers.push(name.to_string());
                    }
                    continue;
                }
                match s.parse::<IpNet>() {
                    Ok(net) => t.nets.push(net),
                    Err(e) => self.err(
                        &format!("trusted_proxies[{i}]"),
                        *pos,
                        format!("{e} (expected \"docker\" for the containers of Docker's networks, \"container:NAME\" for one proxy container, an IP address, or a CIDR range such as 172.18.0.0/16)"),
                    ),
                }
            }
        }
    }

    pub(super) fn formats(&mut self, node: &Node) -> BTreeMap<String, LogFormat> {
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
                        out.insert(m.key.clone(), LogFormat::Json(Box::new(fields)));
                    }
                }
                (Some(_), Some(_)) => self.err(&path, m.node.pos, "give either \"regex\" or \"json_fields\", not both"),
                (None, None) => self.err(&path, m.node.pos, "a format needs \"regex\" (with named groups, `ip` required) or \"json_fields\""),
            }
            self.finish(f);
        }
        out
    }

    pub(super) fn json_fields(&mut self, node: &Node, path: &str) -> Option<JsonFields> {
        let mut o = self.object(node, path)?;
        let mut f = JsonFields::default();
        let slots: [(&'static str, &mut Vec<String>); 11] = [
            ("ip", &mut f.ip),
            ("request", &mut f.request),
            ("method", &mut f.method),
            ("uri", &mut f.uri),
            ("protocol", &mut f.protocol),
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

    pub(super) fn check_format_name(
        &mut self,
        name: &str,
        known: &[String],
        path: &str,
        pos: Pos,
    ) -> bool {
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
                "unknown log format \"{name}\"{hint} ({}, a profile from `security-monitor profiles`, or a name defined under \"formats\")",
                BUILTIN_FORMATS.join(", ")
            ),
        );
        false
    }
}
