//! Which containers are followed, and with which settings.
//!
//! A container is followed when any of these holds: its name is in `docker_containers`,
//! `docker.all_containers` is on, its name matches `docker.name_pattern`, or it carries
//! `docker.label`. Its own labels `security-monitor.log_format` and
//! `security-monitor.categories` override the `containers` section's settings for it, so
//! whoever starts a container can say how its logs read without editing the config.

use std::collections::HashMap;

use regex::Regex;

use crate::config::Config;
use crate::detect::parse::LogFormat;
pub use crate::detect::profile::LABEL_PROFILE;
use crate::detect::profile::{profile, profile_for_image, profile_names};
use crate::detect::Scope;

pub const LABEL_LOG_FORMAT: &str = "security-monitor.log_format";
pub const LABEL_CATEGORIES: &str = "security-monitor.categories";

#[derive(Debug, Clone)]
pub struct Selection {
    names: Vec<String>,
    all: bool,
    pattern: Option<Regex>,
    /// (key, value); value None: any value.
    label: Option<(String, Option<String>)>,
}

impl Selection {
    pub fn from_config(cfg: &Config) -> Result<Selection, super::DockerError> {
        let pattern = match &cfg.docker.name_pattern {
            Some(p) => Some(
                Regex::new(p).map_err(|error| super::DockerError::NamePattern {
                    pattern: p.clone(),
                    error,
                })?,
            ),
            None => None,
        };
        let label = cfg
            .docker
            .label
            .as_deref()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (l.to_string(), None),
            });
        Ok(Selection {
            names: cfg.docker_containers.clone(),
            all: cfg.docker.all_containers,
            pattern,
            label,
        })
    }

    /// Whether the container `name` (without the leading `/`) with `labels` is followed.
    pub fn selects(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        self.all
            || self.names.iter().any(|n| n == name)
            || self.pattern.as_ref().is_some_and(|p| p.is_match(name))
            || self
                .label
                .as_ref()
                .is_some_and(|(k, v)| match (labels.get(k), v) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
    }

    /// In the operator's words, for the log and the `watch` banner.
    pub fn describe(&self) -> String {
        if self.all {
            return "all containers".into();
        }
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            parts.push(format!("named {}", self.names.join(", ")));
        }
        if let Some(p) = &self.pattern {
            parts.push(format!("with a name matching /{}/", p.as_str()));
        }
        if let Some((k, v)) = &self.label {
            match v {
                Some(v) => parts.push(format!("labelled {k}={v}")),
                None => parts.push(format!("labelled {k}")),
            }
        }
        if parts.is_empty() {
            "no containers (set docker_containers, docker.all_containers, docker.name_pattern or docker.label)".into()
        } else {
            format!("containers {}", parts.join(", or "))
        }
    }
}

/// How one container's lines are read: its log format (an application profile, a
/// built-in format or one of `formats`), the rule categories that apply (None: all), and
/// why, in words for `status` and the log.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerProfile {
    pub format: LogFormat,
    pub categories: Option<Vec<String>>,
    pub reason: String,
}

impl ContainerProfile {
    /// What the detector applies to this container's lines.
    pub fn scope(&self) -> Scope {
        Scope {
            categories: self.categories.clone(),
            profile: match &self.format {
                LogFormat::Profile(p) => Some(p.clone()),
                _ => None,
            },
        }
    }
}

/// The log files inside a container that its profile names, whatever chose the profile
/// ([`container_profile`]: a label, the config's `containers` section or a global
/// `log_format` naming a profile, or the image). A container read in a format that is
/// not a profile has none (the label `security-monitor.logfile` still adds files).
pub fn profile_files(cfg: &Config) -> super::files::ProfileFiles {
    let cfg = cfg.clone();
    super::files::ProfileFiles::new(move |name, image, labels| {
        match container_profile(&cfg, name, image, labels).0.format {
            LogFormat::Profile(p) => p.files.clone(),
            _ => Vec::new(),
        }
    })
}

/// The effective settings of container `name` running `image`, first of: its label
/// `security-monitor.profile`, its label `security-monitor.log_format`, the `containers`
/// section (`profile`, then `log_format`), a global `log_format` other than `auto`, the
/// profile its image selects, and `auto`. A label naming an unknown profile or format is
/// reported in the returned warnings and ignored.
pub fn container_profile(
    cfg: &Config,
    name: &str,
    image: &str,
    labels: &HashMap<String, String>,
) -> (ContainerProfile, Vec<String>) {
    let mut warnings = Vec::new();
    let section = cfg.containers.get(name);
    let mut chosen: Option<(LogFormat, String)> = None;
    if let Some(p) = labels.get(LABEL_PROFILE) {
        match profile(p.trim()) {
            Some(pr) => chosen = Some((LogFormat::Profile(pr), format!("label {LABEL_PROFILE}={}", p.trim()))),
            None => warnings.push(format!(
                "container {name}: label {LABEL_PROFILE}={p} names no profile (`security-monitor profiles` lists them: {})",
                profile_names().join(", ")
            )),
        }
    }
    if chosen.is_none() {
        if let Some(f) = labels.get(LABEL_LOG_FORMAT) {
            match cfg.format(f.trim()) {
                Some(lf) => chosen = Some((lf, format!("label {LABEL_LOG_FORMAT}={}", f.trim()))),
                None => warnings.push(format!(
                    "container {name}: label {LABEL_LOG_FORMAT}={f} names no known log format ({}, a profile, or one under \"formats\"); ignored",
                    crate::detect::parse::BUILTIN_FORMATS.join(", "),
                )),
            }
        }
    }
    if chosen.is_none() {
        if let Some(s) = section {
            let named = s
                .profile
                .as_deref()
                .map(|p| (p, "profile"))
                .or(s.log_format.as_deref().map(|f| (f, "log_format")));
            if let Some((n, key)) = named {
                if let Some(lf) = cfg.format(n) {
                    chosen = Some((lf, format!("containers.{name}.{key} in the config")));
                }
            }
        }
    }
    if chosen.is_none() && cfg.log_format != "auto" {
        if let Some(lf) = cfg.format(&cfg.log_format) {
            chosen = Some((
                lf,
                format!("log_format \"{}\" in the config", cfg.log_format),
            ));
        }
    }
    if chosen.is_none() {
        if let Some(p) = profile_for_image(image) {
            chosen = Some((LogFormat::Profile(p), format!("image {image}")));
        }
    }
    let (format, reason) = chosen.unwrap_or_else(|| {
        let why = if image.is_empty() {
            "no profile chosen".to_string()
        } else {
            format!("no profile for image {image}")
        };
        (LogFormat::Auto, why)
    });
    let mut categories = section.and_then(|s| s.categories.clone());
    if let Some(c) = labels.get(LABEL_CATEGORIES) {
        let list: Vec<String> = c
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            warnings.push(format!(
                "container {name}: label {LABEL_CATEGORIES} is empty; write e.g. sqli,xss"
            ));
        } else {
            categories = Some(list);
        }
    }
    (
        ContainerProfile {
            format,
            categories,
            reason,
        },
        warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selection_by_name_pattern_and_label() {
        let cfg = parse_str(
            r#"{"docker_containers": ["web"], "docker": {"name_pattern": "^api-\\d+$", "label": "watch=yes"}}"#,
        )
        .unwrap();
        let s = Selection::from_config(&cfg).unwrap();
        let none = labels(&[]);
        assert!(s.selects("web", &none));
        assert!(s.selects("api-12", &none));
        assert!(!s.selects("api-x", &none));
        assert!(s.selects("db", &labels(&[("watch", "yes")])));
        assert!(!s.selects("db", &labels(&[("watch", "no")])));
        // The default label.
        let s = Selection::from_config(&Config::default()).unwrap();
        assert!(s.selects("x", &labels(&[("security-monitor.enable", "true")])));
        assert!(!s.selects("x", &none));
        let all =
            Selection::from_config(&parse_str(r#"{"docker": {"all_containers": true}}"#).unwrap())
                .unwrap();
        assert!(all.selects("anything", &none));
        assert_eq!(all.describe(), "all containers");
    }

    #[test]
    fn labels_override_the_containers_section() {
        let cfg = parse_str(
            r#"{"formats": {"app": {"regex": "from (?P<ip>\\S+)"}},
                "containers": {"web": {"log_format": "combined", "categories": ["sqli"]}}}"#,
        )
        .unwrap();
        let (p, w) = container_profile(&cfg, "web", "", &labels(&[]));
        assert_eq!(
            (p.format, p.categories),
            (LogFormat::Combined, Some(vec!["sqli".to_string()]))
        );
        assert!(w.is_empty());
        let (p, w) = container_profile(
            &cfg,
            "web",
            "",
            &labels(&[(LABEL_LOG_FORMAT, "app"), (LABEL_CATEGORIES, "xss, sqli")]),
        );
        assert!(matches!(p.format, LogFormat::Custom { .. }));
        assert_eq!(
            p.categories,
            Some(vec!["xss".to_string(), "sqli".to_string()])
        );
        assert!(w.is_empty());
        let (p, w) = container_profile(&cfg, "other", "", &labels(&[(LABEL_LOG_FORMAT, "nope")]));
        assert_eq!(p.format, LogFormat::Auto);
        assert_eq!(p.categories, None);
        assert!(w[0].contains("nope"), "{w:?}");
    }

    #[test]
    fn a_profile_brings_its_files_whatever_chose_it() {
        let cfg = parse_str(
            r#"{"containers": {"proxy": {"profile": "nginx-proxy-manager"},
                               "cloud": {"log_format": "combined"}}}"#,
        )
        .unwrap();
        let files = profile_files(&cfg);
        let npm = vec![
            "/data/logs/*_access.log".to_string(),
            "/data/logs/*_error.log".to_string(),
        ];
        // The containers section, with an image that names nothing.
        assert_eq!(
            files.of("proxy", "example/custom-proxy:1", &labels(&[])),
            npm
        );
        // The image alone.
        assert_eq!(
            files.of("cloud2", "nextcloud:29-apache", &labels(&[])),
            vec!["/var/www/html/data/nextcloud.log".to_string()]
        );
        // A format that is not a profile, from the section, beats the image: no files.
        assert!(files.of("cloud", "nextcloud:29", &labels(&[])).is_empty());
        // The label beats the section.
        assert!(files
            .of("proxy", "x", &labels(&[(LABEL_LOG_FORMAT, "combined")]))
            .is_empty());
        assert_eq!(
            files.of(
                "any",
                "x",
                &labels(&[(LABEL_PROFILE, "nginx-proxy-manager")])
            ),
            npm
        );
    }
}
