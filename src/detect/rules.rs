//! Rules: the built-in set (`default_rules.toml`, compiled into the binary) and the
//! operator's own `patterns`, matched against the decoded fields of a request.
//!
//! All rules that look at one field are compiled into one multi-pattern regex, so a line
//! costs one pass per field whatever the number of rules; lines that match nothing (nearly
//! all of them) never go further than that pass. A line that does match is then tried
//! against each rule of that field on its own, to learn which ones: one small automaton
//! per rule stays fast where one pass finding every match of a hundred patterns at once
//! builds a new automaton state for nearly every byte of a crafted line.
//!
//! Cost and memory are bounded: matching is linear (no backtracking engine), each
//! automaton's cache has a fixed size ([`SET_CACHE`], [`RULE_CACHE`]), and at most the
//! first and last [`HTTP_WINDOW`] bytes of a field are read ([`TEXT_WINDOW`] for free
//! text). A field too long to be read whole is itself a finding (`oversized-field`), so
//! padding cannot hide a payload in the unread middle.

use std::ops::Range;
use std::sync::OnceLock;

use std::hash::BuildHasher;

use regex_automata::meta;
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};
use serde::Deserialize;

use super::decode::{unescape_log, Scratch};
use super::parse::Request;
use super::structure::{url_values, Analyzer, Values};
use super::Severity;

/// A user's own pattern from `patterns`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPattern {
    pub name: String,
    pub regex: String,
    /// None: the whole raw line and the decoded request target (the seed's meaning).
    pub fields: Option<Vec<String>>,
    pub severity: Severity,
    pub category: String,
}

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
    /// Not a pattern: fires when one of `fields` is too long to be read whole (see
    /// [`window`]); `pattern` is empty.
    pub oversized: bool,
    /// Not a pattern: fires when a value of one of `fields` tokenizes as an injection
    /// (see [`super::structure`]); `pattern` is empty.
    pub analyzer: Option<Analyzer>,
    /// The application profile this rule belongs to: it judges that profile's sources
    /// only. None: every source.
    pub profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleEntry>,
}

/// One rule as a rule file (the built-in one, or a profile's `[[rule]]`) writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleEntry {
    pub(crate) id: String,
    category: String,
    severity: String,
    fields: Vec<String>,
    #[serde(default)]
    pattern: String,
    description: String,
    status: Option<Vec<u16>>,
    methods: Option<Vec<String>>,
    /// The rule is the engine's length check rather than a pattern.
    #[serde(default)]
    oversized: bool,
    /// The rule is a structural analyzer (`sqli`, `xss`, `shell`) rather than a pattern.
    analyzer: Option<String>,
}

const DEFAULT_RULES: &str = include_str!("default_rules.toml");

/// Why a rule file, a rule or a set of rules cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The file is not TOML of the expected shape.
    #[error("{0}")]
    File(String),
    #[error("rule {id}: unknown severity {severity}")]
    UnknownSeverity { id: String, severity: String },
    #[error("rule {id}: unknown field {field}")]
    UnknownField { id: String, field: String },
    #[error("rule id {0} is used twice")]
    DuplicateId(String),
    #[error("rule {0}: a rule has exactly one of a pattern, `oversized = true` or an `analyzer`")]
    PatternOrOversized(String),
    #[error("rule {id}: unknown analyzer {name} (sqli, xss or shell)")]
    UnknownAnalyzer { id: String, name: String },
    /// One rule's pattern does not compile.
    #[error("rule {id}: {why}")]
    Pattern { id: String, why: String },
    #[error("the rules on field {field} compile to more than {limit} bytes together; disable some (`disabled_rules`) or shorten the operator's patterns")]
    SetTooBig { field: &'static str, limit: usize },
    #[error("the rules on field {field} do not compile together: {detail}")]
    Set { field: &'static str, detail: String },
}

/// Why the regex engine refuses a pattern, in an operator's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    #[error("it uses look-around ((?=…), (?!…), (?<=…) or (?<!…)), which the regex engine does not run: it guarantees linear-time matching so a log line can never stall the monitor. Rewrite it without look-around")]
    LookAround,
    #[error("it uses a backreference (\\1, \\k<name>), which the regex engine does not run: it guarantees linear-time matching so a log line can never stall the monitor. Rewrite it without the backreference")]
    Backreference,
    #[error("it compiles to more than {0} bytes; make it smaller (fewer or shorter repetitions)")]
    TooBig(usize),
    #[error("it is not a valid regex: {0}")]
    Invalid(String),
}

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

fn parse_rule_file(text: &str) -> Result<Vec<Rule>, RuleError> {
    let file: RuleFile = toml::from_str(text).map_err(|e| RuleError::File(e.to_string()))?;
    rules_from_entries(file.rule, None)
}

/// Checks and converts rule entries; `profile`: the profile they belong to.
pub(crate) fn rules_from_entries(
    entries: Vec<RuleEntry>,
    profile: Option<&str>,
) -> Result<Vec<Rule>, RuleError> {
    let mut out: Vec<Rule> = Vec::with_capacity(entries.len());
    for e in entries {
        let severity = Severity::parse(&e.severity).ok_or_else(|| RuleError::UnknownSeverity {
            id: e.id.clone(),
            severity: e.severity.clone(),
        })?;
        let fields = e
            .fields
            .iter()
            .map(|f| {
                Field::parse(f)
                    .filter(|f| *f != Field::Line)
                    .ok_or_else(|| RuleError::UnknownField {
                        id: e.id.clone(),
                        field: f.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if out.iter().any(|r| r.id == e.id) {
            return Err(RuleError::DuplicateId(e.id));
        }
        let analyzer = match &e.analyzer {
            None => None,
            Some(name) => {
                Some(
                    Analyzer::parse(name).ok_or_else(|| RuleError::UnknownAnalyzer {
                        id: e.id.clone(),
                        name: name.clone(),
                    })?,
                )
            }
        };
        let kinds = [!e.pattern.is_empty(), e.oversized, analyzer.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(RuleError::PatternOrOversized(e.id));
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
            oversized: e.oversized,
            analyzer,
            profile: profile.map(str::to_string),
        });
    }
    Ok(out)
}

/// Explains why the regex engine refused a pattern, in an operator's words.
pub fn explain_regex_error(e: &regex::Error) -> RegexError {
    let text = e.to_string();
    if text.contains("look-around") {
        RegexError::LookAround
    } else if text.contains("backreference") {
        RegexError::Backreference
    } else if let regex::Error::CompiledTooBig(limit) = e {
        RegexError::TooBig(*limit)
    } else {
        let detail = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        RegexError::Invalid(detail)
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
pub fn check_user_regex(pattern: &str) -> Result<(), RegexError> {
    regex::bytes::RegexBuilder::new(&user_regex(pattern))
        .size_limit(RULE_SIZE_LIMIT)
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
    /// The target's and the referer's values for the structural rules, collected once
    /// per line (bit 0: target, bit 1: referer).
    values: [Values; 2],
    values_ready: u8,
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
        self.values_ready = 0;
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

    /// Whether a value of `field` tokenizes as what `a` looks for: each path segment and
    /// parameter of the target (or the referer's URL), the user agent or message whole.
    fn analyze(&mut self, a: Analyzer, field: Field, req: &Request<'_>) -> bool {
        let which = match field {
            Field::Target | Field::Path | Field::Query => 0,
            Field::Referer => 1,
            Field::UserAgent => return a.judges(unescaped(&req.user_agent, &mut self.unescaped)),
            Field::Message => return a.judges(unescaped(&req.message, &mut self.unescaped)),
            Field::Request | Field::Line => return false,
        };
        if self.values_ready & (1 << which) == 0 {
            self.values_ready |= 1 << which;
            let raw = if which == 0 {
                &req.target
            } else {
                &req.referer
            };
            let raw = unescaped(raw, &mut self.unescaped);
            url_values(
                raw,
                &mut self.scratch,
                &mut self.part,
                &mut self.values[which],
            );
        }
        self.values[which].iter().any(|(v, in_query)| {
            let wanted = match field {
                Field::Path => !in_query,
                Field::Query => in_query,
                _ => true,
            };
            wanted && a.judges(v)
        })
    }

    /// Whether part of `field` goes unread because it is longer than two windows.
    /// Decoding never lengthens a field, so a short raw field is not decoded for this. A
    /// plain request line is not read at all (its target is), so it is not judged either.
    fn unread(&mut self, field: Field, req: &Request<'_>, line: &[u8]) -> bool {
        if field == Field::Request && is_plain_request(req) {
            return false;
        }
        let raw: &[u8] = match field {
            Field::Target | Field::Path | Field::Query => &req.target,
            Field::UserAgent => &req.user_agent,
            Field::Referer => &req.referer,
            Field::Message => &req.message,
            Field::Request => &req.request,
            Field::Line => line,
        };
        let limit = 2 * window(field);
        raw.len() > limit && self.field(field, false, req, line).len() > limit
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

/// Bytes read at each end of a decoded HTTP field (target, path, query, user agent,
/// referer, request line). nginx and Apache refuse request lines and headers over 8 KiB
/// by default, so a field of up to twice this is read whole.
pub const HTTP_WINDOW: usize = 8 << 10;
/// Bytes read at each end of free text (an application log's message, the whole line for
/// operator patterns): at the default `limits.max_line_bytes` (64 KiB) all of it.
pub const TEXT_WINDOW: usize = 32 << 10;

/// Bytes read at each end of `field`.
pub fn window(field: Field) -> usize {
    match field {
        Field::Message | Field::Line => TEXT_WINDOW,
        _ => HTTP_WINDOW,
    }
}

/// The spans of a field of `len` bytes that are read: all of it, or its first and last
/// `window` bytes.
fn spans(len: usize, window: usize) -> [Range<usize>; 2] {
    if len <= 2 * window {
        [0..len, len..len]
    } else {
        [0..window, len - window..len]
    }
}

/// Cache of the lazy DFA behind one field's multi-pattern regex. The regex crate's
/// default (2 MiB) is cleared over and over by ordinary traffic on the target field's
/// 120 rules, which then runs six times slower; 16 MiB holds it. Crafted lines fill it
/// too, but no further: the cache is cleared and refilled, never grown.
pub const SET_CACHE: usize = 16 << 20;
/// Cache of each rule's own lazy DFA, used only on lines its field's set matched.
pub const RULE_CACHE: usize = 256 << 10;
/// Compiled size allowed for one rule (an operator's pattern is checked against the same).
const RULE_SIZE_LIMIT: usize = 16 << 20;
/// Compiled size allowed for one field's rules together: the built-in target rules take
/// under 2 MiB; the rest is room for the operator's patterns.
const SET_SIZE_LIMIT: usize = 64 << 20;

/// The engine settings of the bytes API (`regex::bytes`): any byte may match, an empty
/// match may split a UTF-8 sequence, no capture groups are tracked.
fn engine(kind: MatchKind, size: usize, cache: usize) -> meta::Config {
    meta::Config::new()
        .match_kind(kind)
        .utf8_empty(false)
        .which_captures(WhichCaptures::None)
        .nfa_size_limit(Some(size))
        .hybrid_cache_capacity(cache)
}

/// Compiles `patterns` for matching bytes; `unicode` for the operator's patterns. A set
/// reports every pattern that matches; a single rule only whether it does.
fn compile(
    patterns: &[&str],
    unicode: bool,
    set: bool,
) -> Result<meta::Regex, Box<meta::BuildError>> {
    let config = if set {
        engine(MatchKind::All, SET_SIZE_LIMIT, SET_CACHE)
    } else {
        engine(MatchKind::LeftmostFirst, RULE_SIZE_LIMIT, RULE_CACHE)
    };
    meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().unicode(unicode).utf8(false))
        .build_many(patterns)
        .map_err(Box::new)
}

/// Why one rule's pattern does not compile, in an operator's words.
fn explain_rule_error(rule: &Rule, e: &meta::BuildError) -> RuleError {
    let why = match regex::bytes::RegexBuilder::new(&rule.pattern)
        .unicode(!rule.builtin)
        .size_limit(RULE_SIZE_LIMIT)
        .build()
    {
        Err(re) => explain_regex_error(&re).to_string(),
        Ok(_) => e.to_string(),
    };
    RuleError::Pattern {
        id: rule.id.clone(),
        why,
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
    set: meta::Regex,
    /// Index into `RuleSet::rules` of each pattern in `set`.
    members: Vec<usize>,
}

/// The compiled rules of one configuration.
pub struct RuleSet {
    rules: Vec<Rule>,
    sets: Vec<FieldSet>,
    /// Each rule's own regex (None for the oversized-field rule).
    single: Vec<Option<meta::Regex>>,
    /// The rules that fire on a field too long to be read whole.
    oversized: Vec<usize>,
    /// The structural rules (a value that tokenizes as an injection).
    analyzed: Vec<usize>,
}

impl RuleSet {
    /// Compiles the built-in rules (unless `builtin` is false, minus `disabled`) and the
    /// operator's patterns.
    pub fn new(
        builtin: bool,
        disabled: &[String],
        patterns: &[UserPattern],
    ) -> Result<RuleSet, RuleError> {
        let mut rules: Vec<Rule> = Vec::new();
        if builtin {
            rules.extend(
                builtin_rules()
                    .iter()
                    .chain(
                        super::profile::builtin_profiles()
                            .iter()
                            .flat_map(|p| p.rules.iter()),
                    )
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
                oversized: false,
                analyzer: None,
                profile: None,
            });
        }
        let single = rules
            .iter()
            .map(|r| {
                if r.pattern.is_empty() {
                    return Ok(None);
                }
                compile(&[&r.pattern], !r.builtin, false)
                    .map(Some)
                    .map_err(|e| explain_rule_error(r, &e))
            })
            .collect::<Result<Vec<_>, RuleError>>()?;
        let sets = compile_sets(&rules)?;
        let oversized = (0..rules.len()).filter(|&i| rules[i].oversized).collect();
        let analyzed = (0..rules.len())
            .filter(|&i| rules[i].analyzer.is_some())
            .collect();
        Ok(RuleSet {
            rules,
            sets,
            single,
            oversized,
            analyzed,
        })
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
            self.scan(s, hay, &mut members);
            if let Some(slot) = slot {
                view.caches[si].slots[slot] = Some((raw.into(), members.as_slice().into()));
            }
            self.accept(s, &members, req, out);
        }
        view.members = members;
        for &i in &self.oversized {
            let rule = &self.rules[i];
            if applies(rule, req) && rule.fields.iter().any(|&f| view.unread(f, req, line)) {
                out.push(i);
            }
        }
        for &i in &self.analyzed {
            let rule = &self.rules[i];
            if let Some(a) = rule.analyzer {
                if applies(rule, req) && rule.fields.iter().any(|&f| view.analyze(a, f, req)) {
                    out.push(i);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// The members of `s` (positions in `s.members`) that match the read spans of `hay`:
    /// one pass of the set says whether any does, then each rule on its own says which.
    fn scan(&self, s: &FieldSet, hay: &[u8], members: &mut Vec<usize>) {
        for span in spans(hay.len(), window(s.field)) {
            if span.is_empty() || !s.set.is_match(Input::new(hay).range(span.clone())) {
                continue;
            }
            for (m, &rule) in s.members.iter().enumerate() {
                if let Some(re) = &self.single[rule] {
                    if re.is_match(Input::new(hay).range(span.clone())) {
                        members.push(m);
                    }
                }
            }
        }
        members.sort_unstable();
        members.dedup();
    }

    /// Adds the rules behind matched set members whose status and method conditions hold.
    fn accept(&self, s: &FieldSet, members: &[usize], req: &Request<'_>, out: &mut Vec<usize>) {
        for &m in members {
            let idx = s.members[m];
            if applies(&self.rules[idx], req) {
                out.push(idx);
            }
        }
    }
}

/// Rules sharing a field, case and status condition: (field, cased, status, rule indexes).
type Group = (Field, bool, Option<Vec<u16>>, Vec<usize>);

/// Groups the pattern rules by field, case and status condition, one regex per group.
fn compile_sets(rules: &[Rule]) -> Result<Vec<FieldSet>, RuleError> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, rule) in rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.pattern.is_empty())
    {
        for &field in &rule.fields {
            let cased = !rule.builtin;
            match groups
                .iter_mut()
                .find(|g| g.0 == field && g.1 == cased && g.2 == rule.status)
            {
                Some(g) => g.3.push(i),
                None => groups.push((field, cased, rule.status.clone(), vec![i])),
            }
        }
    }
    groups
        .into_iter()
        .map(|(field, cased, status, members)| {
            let patterns: Vec<&str> = members.iter().map(|&i| rules[i].pattern.as_str()).collect();
            // Built-in rules are ASCII-lowercase patterns over bytes; no Unicode keeps
            // their automata small and fast. Operator patterns keep Unicode classes.
            let set = compile(&patterns, cased, true).map_err(|e| match e.size_limit() {
                Some(limit) => RuleError::SetTooBig {
                    field: field.name(),
                    limit,
                },
                None => RuleError::Set {
                    field: field.name(),
                    detail: e.to_string(),
                },
            })?;
            Ok(FieldSet {
                field,
                cased,
                status,
                set,
                members,
            })
        })
        .collect()
}

/// Whether a matched rule's status and method conditions hold for `req`.
fn applies(rule: &Rule, req: &Request<'_>) -> bool {
    if let Some(statuses) = &rule.status {
        if !req.status.is_some_and(|st| statuses.contains(&st)) {
            return false;
        }
    }
    if let Some(methods) = &rule.methods {
        if !methods.iter().any(|m| m.as_bytes() == &*req.method) {
            return false;
        }
    }
    true
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
                (r.oversized || r.analyzer.is_some() || !r.pattern.is_empty())
                    && !r.description.is_empty(),
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn unsupported_regex_features_are_explained() {
        assert!(check_user_regex(r"(a)\1")
            .unwrap_err()
            .to_string()
            .contains("backreference"));
        assert!(check_user_regex(r"a(?=b)")
            .unwrap_err()
            .to_string()
            .contains("look-around"));
        assert!(check_user_regex(r"a(?<!b)")
            .unwrap_err()
            .to_string()
            .contains("look-around"));
        assert!(check_user_regex(r"(unclosed")
            .unwrap_err()
            .to_string()
            .contains("not a valid regex"));
        assert!(check_user_regex(r"(?i)union\s+select").is_ok());
        assert_eq!(user_regex(r"\x[0-9a-fA-F]{2}"), r"\\x[0-9a-fA-F]{2}");
        assert_eq!(user_regex(r"\x41\\x"), r"\x41\\x");
    }

    fn ids<'a>(set: &'a RuleSet, target: &str, ua: &str) -> Vec<&'a str> {
        let line = format!("203.0.113.9 - - [21/Nov/2026:00:00:00 +0000] \"GET {target} HTTP/1.1\" 200 10 \"-\" \"{ua}\"");
        let req = super::super::parse::parse_access(line.as_bytes()).expect("a combined line");
        let mut out = Vec::new();
        set.matches(&mut View::default(), &req, line.as_bytes(), &mut out);
        out.iter().map(|&i| set.rule(i).id.as_str()).collect()
    }

    #[test]
    fn a_payload_behind_padding_is_still_a_finding() {
        let set = RuleSet::new(true, &[], &[]).unwrap();
        let pad = "a".repeat(100_000);
        let payload = "%27%20union%20select%20password%20from%20users--";
        // At the end (read by the tail window): the payload's own rule, and the length.
        let hits = ids(&set, &format!("/item?pad={pad}&id=1{payload}"), "curl/8");
        assert!(hits.contains(&"sqli-union-select"), "{hits:?}");
        assert!(hits.contains(&"oversized-field"), "{hits:?}");
        // In the unread middle: the length alone, which still scores.
        let hits = ids(&set, &format!("/item?a={pad}{payload}&b={pad}"), "curl/8");
        assert!(hits.contains(&"oversized-field"), "{hits:?}");
        // The same in a header.
        let hits = ids(&set, "/", &format!("{pad}<script>alert(1)</script>{pad}"));
        assert!(hits.contains(&"oversized-field"), "{hits:?}");
        // A field read whole is no finding for its length.
        let hits = ids(
            &set,
            &format!("/item?pad={}", "a".repeat(2 * HTTP_WINDOW - 20)),
            "curl/8",
        );
        assert!(!hits.contains(&"oversized-field"), "{hits:?}");
        // Disabled like any rule.
        let quiet = RuleSet::new(true, &["oversized-field".into()], &[]).unwrap();
        let hits = ids(&quiet, &format!("/item?a={pad}{payload}&b={pad}"), "curl/8");
        assert!(!hits.contains(&"oversized-field"), "{hits:?}");
    }

    #[test]
    fn a_read_window_ends_where_the_field_goes_on() {
        // The head window ends just after `.bak`; the field does not, so the backup-file
        // rule (`\.bak\z`) must not see an end there.
        let set = RuleSet::new(true, &[], &[]).unwrap();
        let path = format!(
            "/{}.bak{}",
            "a".repeat(HTTP_WINDOW - 5),
            "b".repeat(HTTP_WINDOW + 10)
        );
        let hits = ids(&set, &path, "curl/8");
        assert!(!hits.contains(&"sensitive-backup-extension"), "{hits:?}");
        assert!(hits.contains(&"oversized-field"), "{hits:?}");
        // Whereas at the real end it is found.
        let hits = ids(
            &set,
            &format!("/{}.bak", "b".repeat(3 * HTTP_WINDOW)),
            "curl/8",
        );
        assert!(hits.contains(&"sensitive-backup-extension"), "{hits:?}");
    }

    #[test]
    fn each_rule_is_found_as_the_whole_set_would_find_it() {
        // Which rules match comes from each rule's own regex; it must agree with one
        // overlapping pass of the field's set.
        let set = RuleSet::new(true, &[], &[]).unwrap();
        let hay = b"/x?q=' or 1=1-- &u=1 union select 1,2 from information_schema.tables;<script>alert(1)</script>../../etc/passwd";
        for s in &set.sets {
            let mut members = Vec::new();
            set.scan(s, hay, &mut members);
            let mut all = regex_automata::PatternSet::new(s.set.pattern_len());
            s.set
                .which_overlapping_matches(&Input::new(&hay[..]), &mut all);
            let want: Vec<usize> = all.iter().map(|p| p.as_usize()).collect();
            assert_eq!(members, want, "field {}", s.field.name());
        }
    }
}
