//! Rules: the built-in set (`default_rules.toml`, compiled into the binary) and the
//! operator's own `patterns`, matched against the decoded fields of a request.
//!
//! All rules that look at one field are compiled into one `RegexSet`, so a line costs one
//! pass per field whatever the number of rules; lines that match nothing (nearly all of
//! them) never go further than that pass.

use std::sync::OnceLock;

use std::hash::BuildHasher;

use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::decode::{unescape_log, Scratch};
use super::parse::Request;
use crate::config::{Severity, UserPattern};

/// A part of a request a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Decoded path and query (`/a/b?x=1`).
    Target,
    /// Decoded path only.
    Path,
    /// Decoded query only.
    Query,
    UserAgent,
    Referer,
    /// The raw request line as logged: not decoded, not lowercased.
    Request,
    /// The free text of an application log line (custom and JSON formats).
    Message,
    /// The whole raw log line (only for the operator's own patterns).
    Line,
}

impl Field {
    /// The names rules use, in the order they are documented.
    pub const NAMES: [&'static str; 7] = [
        "target", "path", "query", "ua", "referer", "request", "message",
    ];

    pub fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "target" => Field::Target,
            "path" => Field::Path,
            "query" => Field::Query,
            "ua" | "user_agent" => Field::UserAgent,
            "referer" => Field::Referer,
            "request" => Field::Request,
            "message" => Field::Message,
            "line" => Field::Line,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Target => "target",
            Field::Path => "path",
            Field::Query => "query",
            Field::UserAgent => "ua",
            Field::Referer => "referer",
            Field::Request => "request",
            Field::Message => "message",
            Field::Line => "line",
        }
    }
}

/// One detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub category: String,
    pub severity: Severity,
    pub fields: Vec<Field>,
    pub pattern: String,
    pub description: String,
    /// Only fires when the response status is one of these.
    pub status: Option<Vec<u16>>,
    /// Only fires for these request methods.
    pub methods: Option<Vec<String>>,
    /// Built-in rules see lowercased text; the operator's patterns see the original case.
    pub builtin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    id: String,
    category: String,
    severity: String,
    fields: Vec<String>,
    pattern: String,
    description: String,
    status: Option<Vec<u16>>,
    methods: Option<Vec<String>>,
}

const DEFAULT_RULES: &str = include_str!("default_rules.toml");

/// The built-in rules, parsed once. The file is part of the binary and its validity is a
/// unit test, so a failure here is a build defect, reported as such.
pub fn builtin_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| match parse_rule_file(DEFAULT_RULES) {
        Ok(r) => r,
        Err(e) => panic!("the built-in rule file is invalid (a build defect): {e}"),
    })
}

pub fn builtin_rule_ids() -> Vec<&'static str> {
    builtin_rules().iter().map(|r| r.id.as_str()).collect()
}

fn parse_rule_file(text: &str) -> Result<Vec<Rule>, String> {
    let file: RuleFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out: Vec<Rule> = Vec::with_capacity(file.rule.len());
    for e in file.rule {
        let severity = Severity::parse(&e.severity)
            .ok_or_else(|| format!("rule {}: unknown severity {}", e.id, e.severity))?;
        let fields = e
            .fields
            .iter()
            .map(|f| {
                Field::parse(f)
                    .filter(|f| *f != Field::Line)
                    .ok_or_else(|| format!("rule {}: unknown field {f}", e.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if out.iter().any(|r| r.id == e.id) {
            return Err(format!("rule id {} is used twice", e.id));
        }
        out.push(Rule {
            id: e.id,
            category: e.category,
            severity,
            fields,
            pattern: e.pattern,
            description: e.description,
            status: e.status,
            methods: e
                .methods
                .map(|m| m.into_iter().map(|s| s.to_ascii_uppercase()).collect()),
            builtin: true,
        });
    }
    Ok(out)
}

/// Explains why the regex engine refused a pattern, in an operator's words.
pub fn explain_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    if text.contains("look-around") {
        "it uses look-around ((?=…), (?!…), (?<=…) or (?<!…)), which the regex engine does not run: it guarantees linear-time matching so a log line can never stall the monitor. Rewrite it without look-around".into()
    } else if text.contains("backreference") {
        "it uses a backreference (\\1, \\k<name>), which the regex engine does not run: it guarantees linear-time matching so a log line can never stall the monitor. Rewrite it without the backreference".into()
    } else if let regex::Error::CompiledTooBig(limit) = e {
        format!("it compiles to more than {limit} bytes; make it smaller (fewer or shorter repetitions)")
    } else {
        let detail = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        format!("it is not a valid regex: {detail}")
    }
}

/// An operator's pattern as the regex engine should see it. The one liberty taken: `\x`
/// not followed by hex digits means a literal `\x`, which is what the seed's own example
/// `"binary_injection": "\\x[0-9a-fA-F]{2}"` means (it looks for nginx's `\xHH` escapes)
/// but which neither Python's nor Rust's regex syntax accepts.
pub fn user_regex(pattern: &str) -> std::borrow::Cow<'_, str> {
    let b = pattern.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'x'
                && !b
                    .get(i + 2)
                    .is_some_and(|c| c.is_ascii_hexdigit() || *c == b'{')
            {
                let o = out.get_or_insert_with(String::new);
                o.push_str(&pattern[last..i]);
                o.push_str("\\\\x");
                last = i + 2;
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    match out {
        Some(mut o) => {
            o.push_str(&pattern[last..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(pattern),
    }
}

/// Checks that an operator's pattern compiles.
pub fn check_user_regex(pattern: &str) -> Result<(), String> {
    regex::bytes::RegexBuilder::new(&user_regex(pattern))
        .size_limit(16 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| explain_regex_error(&e))
}

/// The decoded text of one request's fields.
#[derive(Default)]
struct Decoded {
    /// Decoded `path?query`; `split` is where the path ends.
    target: Vec<u8>,
    split: usize,
    user_agent: Vec<u8>,
    referer: Vec<u8>,
    message: Vec<u8>,
}

/// The decoded views of one request that rules match against. Buffers are reused across
/// lines, so matching allocates nothing once they have grown. Each part is decoded only
/// when a rule needs it, and results for user agents and referers, which repeat from
/// line to line, are remembered.
#[derive(Default)]
pub struct View {
    scratch: Scratch,
    unescaped: Vec<u8>,
    part: Vec<u8>,
    /// Lowercased, for the built-in rules.
    folded: Decoded,
    /// Case preserved, for the operator's own patterns.
    cased: Decoded,
    /// Which parts are decoded for the current line (bit per part, cased or folded).
    ready: u8,
    caches: Vec<FieldCache>,
    members: Vec<usize>,
    hasher: foldhash::fast::RandomState,
}

/// Recent results of one field set, direct-mapped by a hash of the raw field text.
struct FieldCache {
    slots: Vec<Option<CacheEntry>>,
}

/// The raw field text and the set members it matched.
type CacheEntry = (Box<[u8]>, Box<[usize]>);

const CACHE_SLOTS: usize = 4096;
/// Longer values are rare and not worth keeping.
const CACHE_MAX_KEY: usize = 512;

#[derive(Clone, Copy)]
enum Part {
    Target = 0,
    UserAgent = 1,
    Referer = 2,
    Message = 3,
}

/// `raw` with nginx/Apache escapes undone (in `buf` when there were any).
fn unescaped<'a>(raw: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    if memchr::memchr(b'\\', raw).is_none() {
        return raw;
    }
    buf.clear();
    unescape_log(raw, buf);
    buf
}

impl View {
    fn new_line(&mut self, sets: usize) {
        self.ready = 0;
        if self.caches.len() != sets {
            self.caches = (0..sets)
                .map(|_| FieldCache {
                    slots: vec![None; CACHE_SLOTS],
                })
                .collect();
        }
    }

    fn ensure(&mut self, part: Part, cased: bool, req: &Request<'_>) {
        let bit = 1u8 << (part as u8 + if cased { 4 } else { 0 });
        if self.ready & bit != 0 {
            return;
        }
        self.ready |= bit;
        let d = if cased {
            &mut self.cased
        } else {
            &mut self.folded
        };
        let (scratch, unesc) = (&mut self.scratch, &mut self.unescaped);
        match part {
            Part::Target => {
                let raw = unescaped(&req.target, unesc);
                let (path, query) = match memchr::memchr(b'?', raw) {
                    Some(i) => (&raw[..i], Some(&raw[i + 1..])),
                    None => (raw, None),
                };
                scratch.url(path, false, cased, &mut d.target);
                d.split = d.target.len();
                if let Some(q) = query {
                    scratch.url(q, true, cased, &mut self.part);
                    d.target.push(b'?');
                    d.target.extend_from_slice(&self.part);
                }
            }
            Part::UserAgent => scratch.url(
                unescaped(&req.user_agent, unesc),
                false,
                cased,
                &mut d.user_agent,
            ),
            Part::Referer => {
                scratch.url(unescaped(&req.referer, unesc), true, cased, &mut d.referer)
            }
            Part::Message => {
                scratch.url(unescaped(&req.message, unesc), false, cased, &mut d.message)
            }
        }
    }

    fn field<'a>(
        &'a mut self,
        field: Field,
        cased: bool,
        req: &'a Request<'_>,
        line: &'a [u8],
    ) -> &'a [u8] {
        match field {
            Field::Target | Field::Path | Field::Query => self.ensure(Part::Target, cased, req),
            Field::UserAgent => self.ensure(Part::UserAgent, cased, req),
            Field::Referer => self.ensure(Part::Referer, cased, req),
            Field::Message => self.ensure(Part::Message, cased, req),
            Field::Request | Field::Line => {}
        }
        let d = if cased { &self.cased } else { &self.folded };
        match field {
            Field::Target => &d.target,
            Field::Path => &d.target[..d.split],
            Field::Query => d.target.get(d.split + 1..).unwrap_or(b""),
            Field::UserAgent => &d.user_agent,
            Field::Referer => &d.referer,
            Field::Message => &d.message,
            Field::Request => &req.request,
            Field::Line => line,
        }
    }
}

/// Rules of one field, compiled together.
struct FieldSet {
    field: Field,
    /// Matches the case-preserved view (operator patterns) rather than the lowercased one.
    cased: bool,
    /// The status condition all its rules share: the set is not run for other statuses
    /// (most lines are 200s; rules about 404s and 401s need not look at them).
    status: Option<Vec<u16>>,
    set: RegexSet,
    /// Index into `RuleSet::rules` of each pattern in `set`.
    members: Vec<usize>,
}

/// The compiled rules of one configuration.
pub struct RuleSet {
    rules: Vec<Rule>,
    sets: Vec<FieldSet>,
}

impl RuleSet {
    /// Compiles the built-in rules (unless `builtin` is false, minus `disabled`) and the
    /// operator's patterns.
    pub fn new(
        builtin: bool,
        disabled: &[String],
        patterns: &[UserPattern],
    ) -> Result<RuleSet, String> {
        let mut rules: Vec<Rule> = Vec::new();
        if builtin {
            rules.extend(
                builtin_rules()
                    .iter()
                    .filter(|r| !disabled.contains(&r.id))
                    .cloned(),
            );
        }
        for p in patterns {
            let fields = match &p.fields {
                Some(names) => names.iter().filter_map(|n| Field::parse(n)).collect(),
                // The seed's patterns were matched against whole log lines; the decoded
                // target is added so that `union select` also finds `union%20select`.
                None => vec![Field::Line, Field::Target],
            };
            rules.push(Rule {
                id: p.name.clone(),
                category: p.category.clone(),
                severity: p.severity,
                fields,
                pattern: user_regex(&p.regex).into_owned(),
                description: format!("operator pattern {}", p.name),
                status: None,
                methods: None,
                builtin: false,
            });
        }
        let mut sets: Vec<FieldSet> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for &field in &rule.fields {
                let cased = !rule.builtin;
                match sets
                    .iter_mut()
                    .find(|s| s.field == field && s.cased == cased && s.status == rule.status)
                {
                    Some(s) => s.members.push(i),
                    None => sets.push(FieldSet {
                        field,
                        cased,
                        status: rule.status.clone(),
                        set: RegexSet::empty(),
                        members: vec![i],
                    }),
                }
            }
        }
        for s in &mut sets {
            let patterns: Vec<&str> = s
                .members
                .iter()
                .map(|&i| rules[i].pattern.as_str())
                .collect();
            // Built-in rules are ASCII-lowercase patterns over bytes; `unicode(false)`
            // keeps their automata small and fast. Operator patterns keep the defaults.
            s.set = RegexSetBuilder::new(&patterns)
                .unicode(s.cased)
                .size_limit(256 << 20)
                .dfa_size_limit(512 << 20)
                .build()
                .map_err(|e| {
                    // Find the culprit for a precise message.
                    for &i in &s.members {
                        if let Err(e) = regex::bytes::RegexBuilder::new(&rules[i].pattern)
                            .unicode(s.cased)
                            .build()
                        {
                            return format!("rule {}: {}", rules[i].id, explain_regex_error(&e));
                        }
                    }
                    explain_regex_error(&e)
                })?;
        }
        Ok(RuleSet { rules, sets })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    /// The indexes of the rules this request matches, in rule order, without repeats.
    pub fn matches(&self, view: &mut View, req: &Request<'_>, line: &[u8], out: &mut Vec<usize>) {
        out.clear();
        view.new_line(self.sets.len());
        let mut members = std::mem::take(&mut view.members);
        let plain_request = is_plain_request(req);
        for (si, s) in self.sets.iter().enumerate() {
            if let Some(statuses) = &s.status {
                if !req.status.is_some_and(|st| statuses.contains(&st)) {
                    continue;
                }
            }
            // Built-in `request` rules are about request lines that are not plain HTTP
            // (binary, other protocols, malformed); a plain one's target is seen by the
            // target rules.
            if s.field == Field::Request && !s.cased && plain_request {
                continue;
            }
            let raw: &[u8] = match s.field {
                Field::UserAgent => &req.user_agent,
                Field::Referer => &req.referer,
                _ => &[],
            };
            let cacheable = !raw.is_empty() && raw.len() <= CACHE_MAX_KEY;
            members.clear();
            let slot = if cacheable {
                let slot = (view.hasher.hash_one(raw) as usize) % CACHE_SLOTS;
                if let Some((key, hits)) = &view.caches[si].slots[slot] {
                    if **key == *raw {
                        members.extend_from_slice(hits);
                        self.accept(s, &members, req, out);
                        continue;
                    }
                }
                Some(slot)
            } else {
                None
            };
            let hay = view.field(s.field, s.cased, req, line);
            if !hay.is_empty() && s.set.is_match(hay) {
                members.extend(s.set.matches(hay).iter());
            }
            if let Some(slot) = slot {
                view.caches[si].slots[slot] = Some((raw.into(), members.as_slice().into()));
            }
            self.accept(s, &members, req, out);
        }
        view.members = members;
        out.sort_unstable();
        out.dedup();
    }

    /// Adds the rules behind matched set members whose status and method conditions hold.
    fn accept(&self, s: &FieldSet, members: &[usize], req: &Request<'_>, out: &mut Vec<usize>) {
        for &m in members {
            let idx = s.members[m];
            let rule = &self.rules[idx];
            if let Some(statuses) = &rule.status {
                if !req.status.is_some_and(|st| statuses.contains(&st)) {
                    continue;
                }
            }
            if let Some(methods) = &rule.methods {
                if !methods.iter().any(|m| m.as_bytes() == &*req.method) {
                    continue;
                }
            }
            out.push(idx);
        }
    }
}

/// Whether the request line is a plain printable `METHOD target HTTP/x.y` with no escapes.
fn is_plain_request(req: &Request<'_>) -> bool {
    let r: &[u8] = &req.request;
    !req.method.is_empty()
        && !req.target.is_empty()
        && r.len() > req.method.len() + req.target.len() + 1
        && r[req.method.len() + req.target.len() + 2..].starts_with(b"HTTP/")
        && r.iter().all(|&b| (0x21..0x7f).contains(&b) || b == b' ')
        && memchr::memchr(b'\\', r).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rules_load_and_compile() {
        let rules = builtin_rules();
        assert!(rules.len() > 20, "only {} built-in rules", rules.len());
        RuleSet::new(true, &[], &[]).unwrap();
        for r in rules {
            assert!(
                !r.pattern.is_empty() && !r.description.is_empty(),
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn unsupported_regex_features_are_explained() {
        assert!(check_user_regex(r"(a)\1")
            .unwrap_err()
            .contains("backreference"));
        assert!(check_user_regex(r"a(?=b)")
            .unwrap_err()
            .contains("look-around"));
        assert!(check_user_regex(r"a(?<!b)")
            .unwrap_err()
            .contains("look-around"));
        assert!(check_user_regex(r"(unclosed")
            .unwrap_err()
            .contains("not a valid regex"));
        assert!(check_user_regex(r"(?i)union\s+select").is_ok());
        assert_eq!(user_regex(r"\x[0-9a-fA-F]{2}"), r"\\x[0-9a-fA-F]{2}");
        assert_eq!(user_regex(r"\x41\\x"), r"\x41\\x");
    }
}
