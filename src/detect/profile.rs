//! Application profiles: how the log of one application reads and what in it is an
//! attack or a failed login, so that a container is protected by what it runs, with no
//! configuration. A profile is data (`src/detect/profiles/NAME.toml`, embedded at build
//! time): the images that select it, its line shapes tried in order, its own rules and,
//! where the defaults do not fit, its thresholds.
//!
//! Sans-IO like the rest of `detect`: choosing a profile for a container takes its image
//! reference and labels as arguments.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::parse::{check_custom_regex, JsonFields, LogFormat};
use super::rules::{rules_from_entries, Rule, RuleEntry};
use super::Thresholds;
use crate::time::parse_duration;

/// The label that names a container's profile, overriding what its image would choose.
pub const LABEL_PROFILE: &str = "security-monitor.profile";

/// One built-in application profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// What its users call the application.
    pub app: String,
    /// Image repositories that choose it (see [`image_matches`]).
    pub images: Vec<String>,
    /// Whether (nearly) every line is a request with a client address: then a source
    /// most of whose lines do not parse is reported.
    pub access_log: bool,
    /// Paths inside the container read besides its output.
    pub files: Vec<String>,
    /// What counts as a failure or an attack, in words.
    pub failures: String,
    /// What the profile cannot see, in words.
    pub limits: String,
    /// Built-in rules that do not apply to this application's lines.
    pub disabled_rules: Vec<String>,
    pub thresholds: ThresholdOverrides,
    pub shapes: Vec<Shape>,
    /// Its own rules (ids start with its name); they judge its sources only.
    pub rules: Vec<Rule>,
    /// Lines that show the application is set up so that it logs no client address,
    /// and what to change: said once per source.
    pub hints: Vec<Hint>,
}

/// A line that parses in no shape but shows what to set so that it would (PostgreSQL's
/// failures without `%h` in `log_line_prefix`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    /// A regex (building blocks allowed) on the raw line.
    pub pattern: String,
    pub text: String,
}

/// One shape of line an application writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub name: String,
    pub format: LogFormat,
}

/// The `thresholds` a profile sets; the rest come from the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdOverrides {
    pub max_failed_auth: Option<u32>,
    pub failed_auth_window: Option<u64>,
    pub max_pattern_matches: Option<u32>,
    pub pattern_window: Option<u64>,
    pub max_requests_per_minute: Option<u32>,
    pub max_not_found: Option<u32>,
    pub not_found_window: Option<u64>,
    pub max_not_found_burst: Option<u32>,
    pub not_found_burst_window: Option<u64>,
}

impl ThresholdOverrides {
    pub fn is_empty(&self) -> bool {
        *self == ThresholdOverrides::default()
    }

    /// The config's thresholds with this profile's settings in place.
    pub fn apply(&self, base: &Thresholds) -> Thresholds {
        Thresholds {
            max_failed_auth: self.max_failed_auth.unwrap_or(base.max_failed_auth),
            failed_auth_window: self.failed_auth_window.unwrap_or(base.failed_auth_window),
            max_pattern_matches: self.max_pattern_matches.unwrap_or(base.max_pattern_matches),
            pattern_window: self.pattern_window.unwrap_or(base.pattern_window),
            max_requests_per_minute: self
                .max_requests_per_minute
                .unwrap_or(base.max_requests_per_minute),
            max_not_found: self.max_not_found.unwrap_or(base.max_not_found),
            not_found_window: self.not_found_window.unwrap_or(base.not_found_window),
            max_not_found_burst: self.max_not_found_burst.unwrap_or(base.max_not_found_burst),
            not_found_burst_window: self
                .not_found_burst_window
                .unwrap_or(base.not_found_burst_window),
            ban_on_critical: base.ban_on_critical,
        }
    }

    /// `max_failed_auth=3, failed_auth_window=1h`, for `profiles` and the README.
    pub fn describe(&self) -> String {
        let d = |v: Option<u64>| v.map(crate::time::format_duration);
        let parts = [
            (
                "max_failed_auth",
                self.max_failed_auth.map(|v| v.to_string()),
            ),
            ("failed_auth_window", d(self.failed_auth_window)),
            (
                "max_pattern_matches",
                self.max_pattern_matches.map(|v| v.to_string()),
            ),
            ("pattern_window", d(self.pattern_window)),
            (
                "max_requests_per_minute",
                self.max_requests_per_minute.map(|v| v.to_string()),
            ),
            ("max_not_found", self.max_not_found.map(|v| v.to_string())),
            ("not_found_window", d(self.not_found_window)),
            (
                "max_not_found_burst",
                self.max_not_found_burst.map(|v| v.to_string()),
            ),
            ("not_found_burst_window", d(self.not_found_burst_window)),
        ];
        parts
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a profile file cannot be used (a build defect for the built-in ones: a unit test
/// reads them all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {file}: {why}")]
    File { file: String, why: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    app: String,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    access_log: bool,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    failures: String,
    #[serde(default)]
    limits: String,
    #[serde(default)]
    disabled_rules: Vec<String>,
    #[serde(default)]
    thresholds: ThresholdFile,
    shape: Vec<ShapeFile>,
    #[serde(default)]
    rule: Vec<RuleEntry>,
    #[serde(default)]
    hint: Vec<HintFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HintFile {
    pattern: String,
    text: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ThresholdFile {
    max_failed_auth: Option<u32>,
    failed_auth_window: Option<String>,
    max_pattern_matches: Option<u32>,
    pattern_window: Option<String>,
    max_requests_per_minute: Option<u32>,
    max_not_found: Option<u32>,
    not_found_window: Option<String>,
    max_not_found_burst: Option<u32>,
    not_found_burst_window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShapeFile {
    name: String,
    format: Option<String>,
    regex: Option<String>,
    json: Option<BTreeMap<String, Vec<String>>>,
}

/// Reads one profile file called `file` (for messages).
pub fn parse_profile(file: &str, text: &str) -> Result<Profile, ProfileError> {
    let err = |why: String| ProfileError::File {
        file: file.to_string(),
        why,
    };
    let f: ProfileFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    if f.name != file {
        return Err(err(format!(
            "its name is {:?}; it must be the file's name",
            f.name
        )));
    }
    if f.shape.is_empty() {
        return Err(err("a profile needs at least one [[shape]]".into()));
    }
    let shapes = f
        .shape
        .into_iter()
        .map(|s| shape(&f.name, s).map_err(err))
        .collect::<Result<Vec<_>, _>>()?;
    let prefix = format!("{}-", f.name);
    if let Some(r) = f.rule.iter().find(|r| !r.id.starts_with(&prefix)) {
        return Err(err(format!("rule {} must start with {prefix}", r.id)));
    }
    let rules = rules_from_entries(f.rule, Some(&f.name)).map_err(|e| err(e.to_string()))?;
    let hints = f
        .hint
        .into_iter()
        .map(|h| {
            let expanded = super::blocks::expand(&h.pattern).map_err(|e| err(e.to_string()))?;
            regex::bytes::Regex::new(&expanded)
                .map_err(|e| err(format!("hint {:?}: {e}", h.pattern)))?;
            Ok(Hint {
                pattern: h.pattern,
                text: h.text,
            })
        })
        .collect::<Result<Vec<_>, ProfileError>>()?;
    Ok(Profile {
        thresholds: thresholds(f.thresholds).map_err(err)?,
        name: f.name,
        app: f.app,
        images: f.images,
        access_log: f.access_log,
        files: f.files,
        failures: f.failures,
        limits: f.limits,
        disabled_rules: f.disabled_rules,
        shapes,
        rules,
        hints,
    })
}

fn shape(profile: &str, s: ShapeFile) -> Result<Shape, String> {
    let format = match (s.format.as_deref(), s.regex) {
        (Some(name), None) => {
            let mut format = LogFormat::builtin(name)
                .filter(|f| *f != LogFormat::Auto)
                .ok_or_else(|| {
                    format!(
                        "shape {}: format {name:?} is not combined, common, vhost_combined or json",
                        s.name
                    )
                })?;
            if let Some(keys) = s.json {
                let LogFormat::Json(fields) = &mut format else {
                    return Err(format!(
                        "shape {}: `json` keys need format = \"json\"",
                        s.name
                    ));
                };
                for (key, list) in keys {
                    let slot = json_slot(fields, &key)
                        .ok_or_else(|| format!("shape {}: unknown json field {key:?}", s.name))?;
                    *slot = list;
                }
            }
            format
        }
        (None, Some(regex)) => {
            check_custom_regex(&regex).map_err(|e| format!("shape {}: {e}", s.name))?;
            LogFormat::Custom {
                name: format!("{profile}/{}", s.name),
                regex,
            }
        }
        _ => {
            return Err(format!(
                "shape {}: give exactly one of `format` or `regex`",
                s.name
            ))
        }
    };
    Ok(Shape {
        name: s.name,
        format,
    })
}

fn json_slot<'a>(f: &'a mut JsonFields, key: &str) -> Option<&'a mut Vec<String>> {
    Some(match key {
        "ip" => &mut f.ip,
        "request" => &mut f.request,
        "method" => &mut f.method,
        "uri" => &mut f.uri,
        "protocol" => &mut f.protocol,
        "status" => &mut f.status,
        "user_agent" => &mut f.user_agent,
        "referer" => &mut f.referer,
        "time" => &mut f.time,
        "forwarded_for" => &mut f.forwarded_for,
        "message" => &mut f.message,
        _ => return None,
    })
}

fn thresholds(t: ThresholdFile) -> Result<ThresholdOverrides, String> {
    let d = |key: &str, v: Option<String>| {
        v.map(|s| parse_duration(&s).map_err(|e| format!("thresholds.{key}: {e}")))
            .transpose()
    };
    Ok(ThresholdOverrides {
        max_failed_auth: t.max_failed_auth,
        failed_auth_window: d("failed_auth_window", t.failed_auth_window)?,
        max_pattern_matches: t.max_pattern_matches,
        pattern_window: d("pattern_window", t.pattern_window)?,
        max_requests_per_minute: t.max_requests_per_minute,
        max_not_found: t.max_not_found,
        not_found_window: d("not_found_window", t.not_found_window)?,
        max_not_found_burst: t.max_not_found_burst,
        not_found_burst_window: d("not_found_burst_window", t.not_found_burst_window)?,
    })
}

// `BUILTIN_PROFILES: &[(&str, &str)]`, (name, file text), written by build.rs from
// src/detect/profiles/.
include!(concat!(env!("OUT_DIR"), "/profiles.rs"));

/// The built-in profiles, by name. Their validity is a unit test, so a failure here is a
/// build defect, reported as such.
pub fn builtin_profiles() -> &'static [Arc<Profile>] {
    static PROFILES: OnceLock<Vec<Arc<Profile>>> = OnceLock::new();
    PROFILES.get_or_init(|| {
        BUILTIN_PROFILES
            .iter()
            .map(|(name, text)| match parse_profile(name, text) {
                Ok(p) => Arc::new(p),
                Err(e) => panic!("a built-in profile is invalid (a build defect): {e}"),
            })
            .collect()
    })
}

/// The built-in profile called `name`.
pub fn profile(name: &str) -> Option<Arc<Profile>> {
    builtin_profiles().iter().find(|p| p.name == name).cloned()
}

/// The names of the built-in profiles, for messages.
pub fn profile_names() -> Vec<&'static str> {
    builtin_profiles().iter().map(|p| p.name.as_str()).collect()
}

/// The repository part of an image reference, as profiles name it: without registry
/// host, `library/`, tag and digest, lowercase. `lscr.io/linuxserver/sshd:9.3@sha256:..`
/// → `linuxserver/sshd`; `nginx:1.25` → `nginx`.
pub fn image_repository(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let mut parts: Vec<&str> = image.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            parts.remove(0);
        }
    }
    if parts.len() > 1 && parts[0] == "library" {
        parts.remove(0);
    }
    let mut repo = parts.join("/");
    let last = repo.rfind('/').map_or(0, |i| i + 1);
    if let Some(colon) = repo[last..].find(':') {
        repo.truncate(last + colon);
    }
    repo.to_ascii_lowercase()
}

/// Whether `pattern` (a profile's `images` entry) names the repository of `image`: the
/// same repository, or a prefix of it when the pattern ends in `*`.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    let repo = image_repository(image);
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_suffix('*') {
        Some(prefix) => repo.starts_with(prefix),
        None => repo == pattern,
    }
}

/// The built-in profile an image selects, if any.
pub fn profile_for_image(image: &str) -> Option<Arc<Profile>> {
    if image.is_empty() {
        return None;
    }
    builtin_profiles()
        .iter()
        .find(|p| p.images.iter().any(|i| image_matches(i, image)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_reads_and_its_rules_compile() {
        let profiles = builtin_profiles();
        for p in profiles {
            assert!(!p.app.is_empty(), "{}", p.name);
            for r in &p.rules {
                assert_eq!(r.profile.as_deref(), Some(p.name.as_str()));
            }
        }
        // Built-in rules and every profile's rules compile together, ids unique.
        let set = super::super::rules::RuleSet::new(true, &[], &[]).expect("compiles");
        let mut ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "rule ids are unique");
        for p in profiles {
            for d in &p.disabled_rules {
                assert!(
                    set.rules().iter().any(|r| &r.id == d),
                    "profile {} disables unknown rule {d}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn image_references_name_their_repository() {
        assert_eq!(image_repository("nginx"), "nginx");
        assert_eq!(image_repository("nginx:1.25-alpine"), "nginx");
        assert_eq!(image_repository("docker.io/library/nginx:1.25"), "nginx");
        assert_eq!(
            image_repository("lscr.io/linuxserver/openssh-server:9.3@sha256:abc"),
            "linuxserver/openssh-server"
        );
        assert_eq!(
            image_repository("registry.local:5000/team/Gitea:1"),
            "team/gitea"
        );
        assert_eq!(image_repository("localhost/caddy"), "caddy");
        assert!(image_matches(
            "vaultwarden/server",
            "vaultwarden/server:1.30.1"
        ));
        assert!(!image_matches(
            "vaultwarden/server",
            "vaultwarden/server-extra"
        ));
        assert!(image_matches(
            "bitnami/postgresql*",
            "bitnami/postgresql-repmgr:16"
        ));
        assert!(!image_matches("nginx", "nginxproxy/nginx-proxy"));
    }

    #[test]
    fn a_hint_is_given_once_for_a_line_that_names_no_client() {
        let p = parse_profile(
            "db",
            "name = \"db\"\napp = \"DB\"\n[[shape]]\nname = \"a\"\nregex = '^%{IP} failed$'\n[[hint]]\npattern = 'FATAL: +password authentication failed'\ntext = \"set log_line_prefix\"",
        )
        .expect("valid");
        let mut parser =
            super::super::parse::LineParser::new(&LogFormat::Profile(Arc::new(p))).expect("ok");
        let line = b"2024-01-15 FATAL:  password authentication failed for user \"x\"";
        assert!(parser.parse(line).is_none());
        assert_eq!(parser.hint(line).as_deref(), Some("set log_line_prefix"));
        assert_eq!(parser.hint(line), None, "once");
        assert!(parser.parse(b"192.0.2.7 failed").is_some());
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let e = |t: &str| parse_profile("x", t).unwrap_err().to_string();
        assert!(
            e("name = \"y\"\napp = \"Y\"\n[[shape]]\nname = \"a\"\nformat = \"combined\"")
                .contains("must be the file's name")
        );
        assert!(e("name = \"x\"\napp = \"X\"\nshape = []").contains("at least one"));
        assert!(
            e("name = \"x\"\napp = \"X\"\n[[shape]]\nname = \"a\"\nformat = \"clf\"")
                .contains("not combined")
        );
        assert!(
            e("name = \"x\"\napp = \"X\"\n[[shape]]\nname = \"a\"\nregex = \"no ip (here)\"")
                .contains("ip")
        );
        assert!(e("name = \"x\"\napp = \"X\"\n[[shape]]\nname = \"a\"\nregex = \"%{IP}\"\n[[rule]]\nid = \"other\"\ncategory = \"failed_auth\"\nseverity = \"medium\"\nfields = [\"message\"]\npattern = \"x\"\ndescription = \"d\"")
            .contains("must start with x-"));
        assert!(e("name = \"x\"\napp = \"X\"\n[thresholds]\nfailed_auth_window = \"soon\"\n[[shape]]\nname = \"a\"\nregex = \"%{IP}\"")
            .contains("failed_auth_window"));
    }
}
