//! The `docker`, `docker_containers`, `containers` and `limits` sections, read into
//! `crate::docker`'s types.

use std::collections::BTreeMap;

use super::jsonc::Node;
use super::validate::Validator;
use crate::docker::{ContainerSettings, Limits, Settings, DEFAULT_SELECT_LABEL};

impl Validator {
    pub(super) fn docker(&mut self, node: &Node, d: &mut Settings) {
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

    pub(super) fn docker_containers(&mut self, n: &Node, names: &mut Vec<String>) {
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
            *names = list
                .into_iter()
                .map(|(s, _)| s.trim_start_matches('/').to_string())
                .collect();
        }
    }

    pub(super) fn containers(
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
            if let Some(n) = c.get("profile") {
                let p = format!("{path}.profile");
                if let Some(s) = self.string(n, &p) {
                    if crate::detect::profile::profile(s).is_some() {
                        settings.profile = Some(s.to_string());
                    } else {
                        let names = crate::detect::profile::profile_names();
                        let hint = super::validate::did_you_mean(s, &names)
                            .map(|k| format!("; did you mean \"{k}\"?"))
                            .unwrap_or_default();
                        self.err(
                            &p,
                            n.pos,
                            format!("unknown profile \"{s}\"{hint} (`security-monitor profiles` lists them)"),
                        );
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

    pub(super) fn limits(&mut self, n: &Node, limits: &mut Limits) {
        if let Some(mut l) = self.object(n, "limits") {
            if let Some(v) = l.get("max_tracked_ips") {
                if let Some(x) = self.uint(v, "limits.max_tracked_ips", 100, 100_000_000) {
                    limits.max_tracked_ips = x as usize;
                }
            }
            if let Some(v) = l.get("max_line_bytes") {
                if let Some(x) = self.uint(v, "limits.max_line_bytes", 1024, 64 * 1024 * 1024) {
                    limits.max_line_bytes = x as usize;
                }
            }
            self.finish(l);
        }
    }
}

/// A `docker.socket` the daemon cannot connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerSocketError {
    #[error("\"{0}\": a unix:// URL needs an absolute path, e.g. unix:///var/run/docker.sock")]
    RelativeUnixPath(String),
    #[error("\"{0}\" names no host: write e.g. tcp://127.0.0.1:2375")]
    NoHost(String),
    #[error("\"{0}\" is not a Docker address: give a socket path such as /var/run/docker.sock, or a unix://, tcp:// or http:// URL (TLS and ssh:// are not supported)")]
    Unsupported(String),
}

/// Whether `docker.socket` names something the daemon can connect to: an absolute socket
/// path, or a `unix://`, `tcp://` or `http://` URL ("" means: use the default).
pub fn check_docker_socket(s: &str) -> Result<(), DockerSocketError> {
    if s.is_empty() {
        return Ok(());
    }
    if let Some(path) = s.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(())
        } else {
            Err(DockerSocketError::RelativeUnixPath(s.to_string()))
        };
    }
    if let Some(rest) = s
        .strip_prefix("tcp://")
        .or_else(|| s.strip_prefix("http://"))
    {
        return if rest.is_empty() || rest.starts_with('/') {
            Err(DockerSocketError::NoHost(s.to_string()))
        } else {
            Ok(())
        };
    }
    if s.starts_with('/') {
        return Ok(());
    }
    Err(DockerSocketError::Unsupported(s.to_string()))
}
