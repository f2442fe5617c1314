//! The validator's core: reading typed values out of the JSONC tree while collecting
//! every problem with its key path and position, and the did-you-mean hint for typos.
//! The sections (one file each beside this one) are built from these.

use std::fmt;

use super::alerts::parse_size;
use super::jsonc::{Member, Node, Pos, Value};
use super::ConfigError;
use crate::detect::Severity;
use crate::time::{parse_duration, DurationError, MAX_DURATION_SECS};

#[derive(Default)]
pub(super) struct Validator {
    pub(super) errors: Vec<ConfigError>,
}

/// The members of one object, with a record of which keys were read, so the unknown
/// ones can be reported with a suggestion.
pub(super) struct Obj<'a> {
    pub(super) path: String,
    pub(super) members: &'a [Member],
    pub(super) known: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        self.known.push(key);
        // The last occurrence wins, as in most JSON readers; duplicates are reported.
        self.members
            .iter()
            .rev()
            .find(|m| m.key == key)
            .map(|m| &m.node)
    }

    pub(super) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Validator {
    pub(super) fn err(&mut self, path: &str, pos: Pos, message: impl fmt::Display) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            pos,
            message: message.to_string(),
        });
    }

    pub(super) fn object<'a>(&mut self, node: &'a Node, path: &str) -> Option<Obj<'a>> {
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
    pub(super) fn finish(&mut self, obj: Obj<'_>) {
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

    pub(super) fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
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

    pub(super) fn uint(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
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

    pub(super) fn float(&mut self, node: &Node, path: &str, min: f64, max: f64) -> Option<f64> {
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

    pub(super) fn string<'a>(&mut self, node: &'a Node, path: &str) -> Option<&'a str> {
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
    pub(super) fn size(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
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

    pub(super) fn duration(&mut self, node: &Node, path: &str, min: u64) -> Option<u64> {
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

    pub(super) fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<(String, Pos)>> {
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

    pub(super) fn severity(&mut self, node: &Node, path: &str) -> Option<Severity> {
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
}

/// Says that a duration is beyond [`MAX_DURATION_SECS`] (or not a finite number).
pub(super) fn too_long(shown: &str) -> String {
    DurationError::TooLong(shown.to_string()).to_string()
}

pub(super) fn describe(v: &Value) -> String {
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
