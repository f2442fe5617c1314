//! Turning a log line into a [`Request`]: who (the client IP, from the format's address
//! field only), when, and what they asked for.
//!
//! The client address is taken from where the format puts it, never by searching the line
//! for something that looks like an address: a request path or user agent that contains
//! an address must not get that address banned (fail2ban's CVE-2006-6302, CVE-2007-4321
//! and CVE-2013-2178 were that mistake).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use regex::bytes::Regex;
use serde::Serialize;

use super::blocks::{expand, UnknownBlock};
use super::json;
use super::profile::Profile;
use super::rules::{explain_regex_error, RegexError};
use crate::netaddr::parse_client_ip;
use crate::time::{epoch_number, parse_syslog_time, parse_time};

/// The log formats every config knows, as `log_format` and containers name them.
pub const BUILTIN_FORMATS: [&str; 5] = ["auto", "combined", "common", "vhost_combined", "json"];

/// How a source's lines are read.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// Recognise combined/common/JSON per source.
    Auto,
    /// nginx/Apache combined (and common, which lacks referer and user agent).
    Combined,
    Common,
    /// Apache's `vhost_combined` and nginx-proxy's format: combined with the virtual host
    /// (`name`, `name:port`, or an address) in front of the client address.
    VhostCombined,
    /// One JSON object per line.
    Json(Box<JsonFields>),
    /// A regex with named groups; `ip` is required.
    Custom {
        name: String,
        regex: String,
    },
    /// An application profile: its shapes, tried in order.
    Profile(Arc<Profile>),
}

impl LogFormat {
    /// The built-in format of that name (one of [`BUILTIN_FORMATS`]).
    pub fn builtin(name: &str) -> Option<LogFormat> {
        match name {
            "auto" => Some(LogFormat::Auto),
            "combined" => Some(LogFormat::Combined),
            "common" => Some(LogFormat::Common),
            "vhost_combined" => Some(LogFormat::VhostCombined),
            "json" => Some(LogFormat::Json(Box::default())),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Combined => "combined",
            LogFormat::Common => "common",
            LogFormat::VhostCombined => "vhost_combined",
            LogFormat::Json(_) => "json",
            LogFormat::Custom { name, .. } => name,
            LogFormat::Profile(p) => &p.name,
        }
    }
}

/// Which JSON keys (dotted paths for nested objects) hold which field; the defaults cover
/// nginx `escape=json` logs, Traefik and Caddy.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonFields {
    pub ip: Vec<String>,
    pub request: Vec<String>,
    pub method: Vec<String>,
    pub uri: Vec<String>,
    /// The protocol (`HTTP/1.1`), which JSON logs keep apart from method and URI. Without
    /// it there is no request line to judge, only its parts.
    pub protocol: Vec<String>,
    pub status: Vec<String>,
    pub user_agent: Vec<String>,
    pub referer: Vec<String>,
    pub time: Vec<String>,
    pub forwarded_for: Vec<String>,
    pub message: Vec<String>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for JsonFields {
    fn default() -> Self {
        JsonFields {
            ip: strings(&[
                "remote_addr",
                "client_ip",
                "clientip",
                "remote_ip",
                "ClientHost",
                // Caddy's client_ip is the visitor behind its trusted proxies (and equals
                // remote_ip without them): it comes first.
                "request.client_ip",
                "request.remote_ip",
                "ip",
                "client",
            ]),
            request: strings(&["request", "request_line"]),
            method: strings(&[
                "method",
                "request_method",
                "RequestMethod",
                "request.method",
            ]),
            uri: strings(&[
                "request_uri",
                "uri",
                "url",
                "path",
                "RequestPath",
                "request.uri",
            ]),
            protocol: strings(&[
                "protocol",
                "server_protocol",
                "proto",
                "RequestProtocol",
                "request.proto",
                "request.protocol",
            ]),
            status: strings(&[
                "status",
                "status_code",
                "DownstreamStatus",
                "response_status",
                "code",
            ]),
            user_agent: strings(&[
                "http_user_agent",
                "user_agent",
                "userAgent",
                "ua",
                "agent",
                "request_User-Agent",
                "request.headers.User-Agent",
            ]),
            referer: strings(&[
                "http_referer",
                "referer",
                "referrer",
                "request_Referer",
                "request.headers.Referer",
            ]),
            time: strings(&[
                "time_iso8601",
                "time_local",
                "time",
                "timestamp",
                "@timestamp",
                "ts",
                "StartUTC",
            ]),
            forwarded_for: strings(&[
                "http_x_forwarded_for",
                "x_forwarded_for",
                "forwarded_for",
                "request_X-Forwarded-For",
                "request.headers.X-Forwarded-For",
                "http_x_real_ip",
                "x_real_ip",
                "request_X-Real-Ip",
            ]),
            message: strings(&["message", "msg"]),
        }
    }
}

/// One parsed line. Fields are raw as logged (escapes and percent-encoding intact); the
/// rules decode what they look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    pub ip: IpAddr,
    /// Unix seconds, from the line's own timestamp when it has one.
    pub time: Option<i64>,
    pub method: Cow<'a, [u8]>,
    /// The request target (path and query) as logged.
    pub target: Cow<'a, [u8]>,
    /// The whole request line as logged (`GET /x HTTP/1.1`, or garbage).
    pub request: Cow<'a, [u8]>,
    pub status: Option<u16>,
    pub referer: Cow<'a, [u8]>,
    pub user_agent: Cow<'a, [u8]>,
    /// An `X-Forwarded-For`-style field, when the format carries one.
    pub forwarded_for: Cow<'a, [u8]>,
    /// Free text of an application log line (custom and JSON formats).
    pub message: Cow<'a, [u8]>,
}

impl<'a> Request<'a> {
    fn new(ip: IpAddr) -> Self {
        Request {
            ip,
            time: None,
            method: Cow::Borrowed(b""),
            target: Cow::Borrowed(b""),
            request: Cow::Borrowed(b""),
            status: None,
            referer: Cow::Borrowed(b""),
            user_agent: Cow::Borrowed(b""),
            forwarded_for: Cow::Borrowed(b""),
            message: Cow::Borrowed(b""),
        }
    }
}

/// Reads lines of one source in one format. For `auto` it remembers which format the
/// source has been writing.
pub struct LineParser {
    kind: Kind,
    json: JsonReader,
    /// For `auto`: the last format that parsed a line of this source.
    auto_last: Option<AutoKind>,
    /// For `auto`: set once a line of this source had the unmistakable virtual-host shape;
    /// from then on every access line is read that way, so a crafted `Host:` header can
    /// never make a later line look like plain combined.
    auto_vhost: bool,
    times: TimeCache,
    /// The reader's clock (Unix seconds), for times that carry no year (syslog's).
    reference: Option<i64>,
}

enum Kind {
    Auto,
    Access(Layout),
    Json,
    Custom(CustomFormat),
    /// A profile's shapes.
    Shapes(Shapes),
}

/// A profile's shapes: each tried in order, the one that read the last line first (a
/// stream mostly keeps to one shape).
struct Shapes {
    parsers: Vec<ShapeParser>,
    names: Vec<String>,
    counts: Vec<u64>,
    last: usize,
    /// The profile's hints, and whether one has been given.
    hints: Vec<(Regex, String)>,
    hinted: bool,
}

enum ShapeParser {
    Access(Layout),
    Json(Box<JsonReader>),
    Custom(CustomFormat),
}

impl Shapes {
    fn new(profile: &Profile) -> Result<Shapes, FormatError> {
        let parsers = profile
            .shapes
            .iter()
            .map(|s| {
                Ok(match &s.format {
                    LogFormat::Combined | LogFormat::Common => ShapeParser::Access(Layout::Plain),
                    LogFormat::VhostCombined => ShapeParser::Access(Layout::VHost),
                    LogFormat::Json(f) => ShapeParser::Json(Box::new(JsonReader::new(f))),
                    LogFormat::Custom { regex, .. } => ShapeParser::Custom(compile_custom(regex)?),
                    LogFormat::Auto | LogFormat::Profile(_) => ShapeParser::Access(Layout::Guess),
                })
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        let hints = profile
            .hints
            .iter()
            .filter_map(|h| {
                let re = expand(&h.pattern).ok()?;
                Some((Regex::new(&re).ok()?, h.text.clone()))
            })
            .collect();
        Ok(Shapes {
            hints,
            hinted: false,
            counts: vec![0; parsers.len()],
            names: profile.shapes.iter().map(|s| s.name.clone()).collect(),
            parsers,
            last: 0,
        })
    }

    fn parse<'a>(
        &mut self,
        line: &'a [u8],
        times: &mut TimeCache,
        reference: Option<i64>,
    ) -> Option<Request<'a>> {
        let n = self.parsers.len();
        let first = self.last.min(n.saturating_sub(1));
        let order = std::iter::once(first).chain((0..n).filter(|&i| i != first));
        for i in order {
            let parsed = match &mut self.parsers[i] {
                ShapeParser::Access(layout) => parse_access_cached(line, times, *layout).0,
                ShapeParser::Json(reader) => reader.parse(line),
                ShapeParser::Custom(c) => parse_custom(c, line, reference),
            };
            if parsed.is_some() {
                self.last = i;
                self.counts[i] += 1;
                return parsed;
            }
        }
        None
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AutoKind {
    Access,
    Json,
}

/// What comes before the access log's ident field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    /// `combined`/`common`: the client address is the first token.
    Plain,
    /// `vhost_combined` (Apache) and nginx-proxy: a virtual host (`name`, `name:port`,
    /// or an address: it comes from the client's `Host:` header) and then the client.
    VHost,
    /// `auto`: `VHost` when the line says so (see [`access_layout`]), else `Plain`.
    Guess,
}

struct CustomFormat {
    regex: Regex,
    ip: usize,
    method: Option<usize>,
    path: Option<usize>,
    query: Option<usize>,
    request: Option<usize>,
    status: Option<usize>,
    ua: Option<usize>,
    referer: Option<usize>,
    time: Option<usize>,
    forwarded_for: Option<usize>,
    message: Option<usize>,
}

/// Why a custom format's regex cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Regex(#[from] RegexError),
    #[error("the regex has no named group `ip` (write %{{IP}} where the client address is, or (?P<ip>...) around it)")]
    NoIpGroup,
    #[error(transparent)]
    Block(#[from] UnknownBlock),
}

/// Checks a custom format's regex: it must compile and have a named group `ip`.
pub fn check_custom_regex(pattern: &str) -> Result<(), FormatError> {
    compile_custom(pattern).map(|_| ())
}

fn compile_custom(pattern: &str) -> Result<CustomFormat, FormatError> {
    let pattern = expand(pattern)?;
    let regex = Regex::new(&pattern).map_err(|e| explain_regex_error(&e))?;
    let group = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| regex.capture_names().position(|c| c == Some(n)))
    };
    let ip = group(&["ip"]).ok_or(FormatError::NoIpGroup)?;
    Ok(CustomFormat {
        ip,
        method: group(&["method"]),
        path: group(&["path", "uri", "target"]),
        query: group(&["query"]),
        request: group(&["request"]),
        status: group(&["status"]),
        ua: group(&["ua", "user_agent"]),
        referer: group(&["referer"]),
        time: group(&["time"]),
        forwarded_for: group(&["forwarded_for", "xff", "real_ip"]),
        message: group(&["message", "msg"]),
        regex,
    })
}

impl LineParser {
    pub fn new(format: &LogFormat) -> Result<Self, FormatError> {
        let (kind, json_fields) = match format {
            LogFormat::Auto => (Kind::Auto, JsonFields::default()),
            LogFormat::Combined | LogFormat::Common => {
                (Kind::Access(Layout::Plain), JsonFields::default())
            }
            LogFormat::VhostCombined => (Kind::Access(Layout::VHost), JsonFields::default()),
            LogFormat::Json(f) => (Kind::Json, (**f).clone()),
            LogFormat::Custom { regex, .. } => {
                (Kind::Custom(compile_custom(regex)?), JsonFields::default())
            }
            LogFormat::Profile(p) => (Kind::Shapes(Shapes::new(p)?), JsonFields::default()),
        };
        Ok(LineParser {
            kind,
            json: JsonReader::new(&json_fields),
            auto_last: None,
            auto_vhost: false,
            times: TimeCache::default(),
            reference: None,
        })
    }

    /// Sets the reader's clock (Unix seconds): a time without a year (syslog's) is read
    /// as the latest such time not after it.
    pub fn set_reference(&mut self, now: i64) {
        self.reference = Some(now);
    }

    /// For a profile, once per parser: the hint a line that did not parse matches (the
    /// application logs no client address as it is set up, and what to change).
    pub fn hint(&mut self, line: &[u8]) -> Option<String> {
        let Kind::Shapes(s) = &mut self.kind else {
            return None;
        };
        if s.hinted {
            return None;
        }
        let text = s.hints.iter().find(|(re, _)| re.is_match(line))?.1.clone();
        s.hinted = true;
        Some(text)
    }

    /// For a profile: each shape's name and how many lines it read.
    pub fn shape_counts(&self) -> Vec<(String, u64)> {
        match &self.kind {
            Kind::Shapes(s) => s
                .names
                .iter()
                .cloned()
                .zip(s.counts.iter().copied())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A parser for `auto`, which needs nothing that can fail.
    pub fn auto() -> Self {
        LineParser {
            kind: Kind::Auto,
            json: JsonReader::new(&JsonFields::default()),
            auto_last: None,
            auto_vhost: false,
            times: TimeCache::default(),
            reference: None,
        }
    }

    /// Parses one line (without its newline). `None`: the line is not in this format or
    /// carries no usable client address.
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Option<Request<'a>> {
        let line = trim_end(line);
        match &mut self.kind {
            Kind::Access(layout) => parse_access_cached(line, &mut self.times, *layout).0,
            Kind::Json => self.json.parse(line),
            Kind::Custom(c) => parse_custom(c, line, self.reference),
            Kind::Shapes(s) => s.parse(line, &mut self.times, self.reference),
            Kind::Auto => {
                let looks_json = line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                let order = match (looks_json, self.auto_last) {
                    (true, _) => [AutoKind::Json, AutoKind::Access],
                    (false, _) => [AutoKind::Access, AutoKind::Json],
                };
                for k in order {
                    if k == AutoKind::Json && !looks_json {
                        continue;
                    }
                    let parsed = match k {
                        AutoKind::Access => {
                            let layout = if self.auto_vhost {
                                Layout::VHost
                            } else {
                                Layout::Guess
                            };
                            let (parsed, used) = parse_access_cached(line, &mut self.times, layout);
                            self.auto_vhost |= parsed.is_some() && used == Layout::VHost;
                            parsed
                        }
                        AutoKind::Json => self.json.parse(line),
                    };
                    if parsed.is_some() {
                        self.auto_last = Some(k);
                        return parsed;
                    }
                }
                None
            }
        }
    }
}

fn trim_end(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// Splits off the next space-separated token.
#[inline]
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', s) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, b""),
    }
}

/// Reads a `"quoted"` field at the start of `s`, honouring `\"` escapes (Apache) and
/// `\xHH` (nginx, which needs nothing special). Returns the inside and the rest after the
/// closing quote.
#[inline]
fn quoted(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = s.strip_prefix(b"\"")?;
    let mut from = 0;
    loop {
        let i = from + memchr::memchr(b'"', &s[from..])?;
        // A quote preceded by an odd number of backslashes is escaped.
        let backslashes = s[..i].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some((&s[..i], &s[i + 1..]));
        }
        from = i + 1;
    }
}

/// nginx/Apache `combined` and `common`, with or without extra trailing fields:
/// `IP ident user [time] "request" status bytes ["referer" "user agent" ...]`.
pub fn parse_access(line: &[u8]) -> Option<Request<'_>> {
    parse_access_cached(line, &mut TimeCache::default(), Layout::Plain).0
}

/// Apache's `vhost_combined` and nginx-proxy's default:
/// `host[:port] IP ident user [time] "request" status bytes ["referer" "user agent" ...]`.
pub fn parse_vhost_access(line: &[u8]) -> Option<Request<'_>> {
    parse_access_cached(line, &mut TimeCache::default(), Layout::VHost).0
}

/// The last timestamp text parsed and its value: consecutive lines of a busy log mostly
/// share their second.
#[derive(Default)]
pub struct TimeCache {
    text: Vec<u8>,
    value: Option<i64>,
}

impl TimeCache {
    fn parse(&mut self, text: &[u8]) -> Option<i64> {
        if self.text != text {
            self.text.clear();
            self.text.extend_from_slice(text);
            self.value = parse_time(text);
        }
        self.value
    }
}

/// Which layout an access line has, and its client token and the rest after it.
///
/// `Plain` and `VHost` are what the operator said. `Guess` (for `auto`) reads the line as
/// virtual-host when its first token is no address but the second is (`example.com
/// 198.51.100.7 - - [...]`), or when both are (`8.8.8.8 198.51.100.7 ...`: the first is the
/// visitor's `Host:` header, which must never be taken for the client). In plain combined
/// the second token is the ident field, `-` in practice.
///
/// Two addresses in front are never read as plain combined: with `Plain` such a line is
/// refused rather than blamed on the first one.
fn access_layout(line: &[u8], layout: Layout) -> Option<(Layout, IpAddr, &[u8])> {
    let (first, rest) = token(line);
    let (second, after) = token(rest);
    let first_ip = parse_client_ip(first);
    let second_ip = parse_client_ip(second);
    match (layout, first_ip, second_ip) {
        (Layout::Plain, Some(_), Some(_)) => None,
        (Layout::Plain, Some(ip), None) => Some((Layout::Plain, ip, rest)),
        (Layout::VHost | Layout::Guess, _, Some(ip)) if !first.is_empty() => {
            Some((Layout::VHost, ip, after))
        }
        (Layout::Guess, Some(ip), None) => Some((Layout::Plain, ip, rest)),
        _ => None,
    }
}

/// The first `"` that is not escaped by a backslash (Apache writes `\"` inside fields).
fn first_unescaped_quote(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + memchr::memchr(b'"', &s[from..])?;
        let backslashes = s[..i].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(i);
        }
        from = i + 1;
    }
}

/// Splits `ident user [time] "request"...` into the time text and the rest from the
/// request's opening quote. The ident and user fields are never read: the user field is
/// the visitor's (nginx logs a Basic-auth name as sent, brackets, spaces and all), so the
/// time is the LAST `[...]` before the first unescaped quote, which must follow it at
/// once. Nothing the user field holds can move the time or the request.
fn time_and_request(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let q = first_unescaped_quote(rest)?;
    let head = rest[..q].strip_suffix(b"] ")?;
    let open = memchr::memrchr(b'[', head)?;
    Some((&head[open + 1..], &rest[q..]))
}

/// Parses one access line; also says which layout it was read with (for `auto`).
fn parse_access_cached<'a>(
    line: &'a [u8],
    times: &mut TimeCache,
    layout: Layout,
) -> (Option<Request<'a>>, Layout) {
    let Some((used, ip, rest)) = access_layout(line, layout) else {
        return (None, layout);
    };
    (parse_access_fields(ip, rest, times, used), used)
}

fn parse_access_fields<'a>(
    ip: IpAddr,
    rest: &'a [u8],
    times: &mut TimeCache,
    layout: Layout,
) -> Option<Request<'a>> {
    let (time_text, rest) = time_and_request(rest)?;
    let time = times.parse(time_text);
    let (request, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let (status, rest) = token(rest);
    let status = parse_status(status);
    status?;
    let (_bytes, rest) = token(rest);
    let mut req = Request::new(ip);
    req.time = time;
    req.status = status;
    req.request = Cow::Borrowed(request);
    split_request_line(request, &mut req);
    if let Some((referer, rest)) = quoted(rest) {
        req.referer = Cow::Borrowed(dash_empty(referer));
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        if let Some((ua, rest)) = quoted(rest) {
            req.user_agent = Cow::Borrowed(dash_empty(ua));
            // nginx setups often append "$http_x_forwarded_for" as the next quoted field.
            // nginx-proxy's virtual-host format appends "$upstream_addr" there instead: a
            // backend's address, never a client, so it is not read as one.
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if let (Layout::Plain, Some((xff, _))) = (layout, quoted(rest)) {
                req.forwarded_for = Cow::Borrowed(dash_empty(xff));
            }
        }
    }
    Some(req)
}

fn dash_empty(s: &[u8]) -> &[u8] {
    if s == b"-" {
        b""
    } else {
        s
    }
}

/// A three-digit HTTP status, 100 to 999: `003` or `043` is no status (the fuzzer found
/// those read as 3 and 43).
fn parse_status(s: &[u8]) -> Option<u16> {
    if s.len() == 3 && s.iter().all(u8::is_ascii_digit) && s[0] != b'0' {
        Some(s.iter().fold(0u16, |a, &d| a * 10 + (d - b'0') as u16))
    } else {
        None
    }
}

/// `GET /path?q HTTP/1.1` → method and target. A request line that is not of that shape
/// (binary garbage, a TLS handshake sent to an HTTP port) leaves both empty; rules that look
/// at the raw `request` still see it.
fn split_request_line<'a>(request: &'a [u8], req: &mut Request<'a>) {
    let Some(sp) = memchr::memchr(b' ', request) else {
        return;
    };
    let method = &request[..sp];
    if method.is_empty()
        || method.len() > 20
        || !method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
    {
        return;
    }
    let rest = &request[sp + 1..];
    let target = match memchr::memrchr(b' ', rest) {
        Some(i) if rest[i + 1..].starts_with(b"HTTP/") => &rest[..i],
        _ => rest,
    };
    req.method = Cow::Borrowed(method);
    req.target = Cow::Borrowed(target);
}

fn parse_custom<'a>(
    c: &CustomFormat,
    line: &'a [u8],
    reference: Option<i64>,
) -> Option<Request<'a>> {
    let caps = c.regex.captures(line)?;
    let get = |i: Option<usize>| i.and_then(|i| caps.get(i)).map(|m| m.as_bytes());
    let ip = parse_client_ip(caps.get(c.ip)?.as_bytes())?;
    let mut req = Request::new(ip);
    req.time = get(c.time)
        .and_then(|t| parse_time(t).or_else(|| reference.and_then(|r| parse_syslog_time(t, r))));
    req.status = get(c.status).and_then(parse_status);
    if let Some(r) = get(c.request) {
        req.request = Cow::Borrowed(r);
        split_request_line(r, &mut req);
    }
    if let Some(m) = get(c.method) {
        req.method = Cow::Borrowed(m);
    }
    match (get(c.path), get(c.query)) {
        (Some(p), Some(q)) if !q.is_empty() => {
            let mut t = p.to_vec();
            t.push(b'?');
            t.extend_from_slice(q);
            req.target = Cow::Owned(t);
        }
        (Some(p), _) => req.target = Cow::Borrowed(p),
        (None, Some(q)) => {
            let mut t = b"?".to_vec();
            t.extend_from_slice(q);
            req.target = Cow::Owned(t);
        }
        (None, None) => {}
    }
    req.user_agent = Cow::Borrowed(get(c.ua).map(dash_empty).unwrap_or(b""));
    req.referer = Cow::Borrowed(get(c.referer).map(dash_empty).unwrap_or(b""));
    req.forwarded_for = Cow::Borrowed(get(c.forwarded_for).map(dash_empty).unwrap_or(b""));
    // An application log line is free text: without a message group, all of it.
    req.message = Cow::Borrowed(get(c.message).unwrap_or(line));
    Some(req)
}

/// The JSON format's reader: a [`json::Scanner`] for the configured keys, and per field
/// the slots of its keys in the order they are tried. A dotted key (`request.client_ip`)
/// is tried as written first, then as a path into nested objects. A field takes the
/// first key of its list that is present, whatever its value: a `"request"` that holds
/// an object (Caddy) is no request line, and `request_line` is not tried after it.
struct JsonReader {
    scanner: json::Scanner,
    fields: JsonSlots,
    times: TimeCache,
}

/// Per field of [`JsonFields`], the scanner slots of its keys in order.
struct JsonSlots {
    ip: Vec<usize>,
    request: Vec<usize>,
    method: Vec<usize>,
    uri: Vec<usize>,
    protocol: Vec<usize>,
    status: Vec<usize>,
    user_agent: Vec<usize>,
    referer: Vec<usize>,
    time: Vec<usize>,
    forwarded_for: Vec<usize>,
    message: Vec<usize>,
}

impl JsonReader {
    fn new(f: &JsonFields) -> JsonReader {
        let lists = [
            &f.ip,
            &f.request,
            &f.method,
            &f.uri,
            &f.protocol,
            &f.status,
            &f.user_agent,
            &f.referer,
            &f.time,
            &f.forwarded_for,
            &f.message,
        ];
        let mut paths: Vec<Vec<&str>> = Vec::new();
        let mut owner = Vec::new();
        for (field, keys) in lists.iter().enumerate() {
            for k in keys.iter() {
                paths.push(vec![k.as_str()]);
                owner.push(field);
                if k.contains('.') {
                    paths.push(k.split('.').collect());
                    owner.push(field);
                }
            }
        }
        let (scanner, slot_of) = json::Scanner::new(&paths);
        let mut per: [Vec<usize>; 11] = Default::default();
        for (field, slot) in owner.into_iter().zip(slot_of) {
            per[field].push(slot);
        }
        let [ip, request, method, uri, protocol, status, user_agent, referer, time, forwarded_for, message] =
            per;
        JsonReader {
            scanner,
            fields: JsonSlots {
                ip,
                request,
                method,
                uri,
                protocol,
                status,
                user_agent,
                referer,
                time,
                forwarded_for,
                message,
            },
            times: TimeCache::default(),
        }
    }

    /// The value of the first of `slots` present in the last scan.
    fn found(&self, slots: &[usize]) -> Option<json::Found> {
        slots.iter().find_map(|&s| self.scanner.get(s))
    }

    /// A field as text: a string (borrowed from the line unless it has escapes), a
    /// number as serde_json writes it, an array's first element; None for the rest.
    fn text<'a>(&self, json: &'a [u8], slots: &[usize]) -> Option<Cow<'a, [u8]>> {
        let f = self.found(slots)?;
        let raw = &json[f.start..f.end];
        match f.kind {
            json::Kind::Str => Some(Cow::Borrowed(raw)),
            json::Kind::EscStr => Some(Cow::Owned(json::unescape(raw))),
            json::Kind::Num => number_text(raw).map(Cow::Owned),
            json::Kind::Other => None,
        }
    }

    /// Parses one JSON line (leading whitespace allowed). None: not valid JSON, not an
    /// object, or no client address.
    fn parse<'a>(&mut self, line: &'a [u8]) -> Option<Request<'a>> {
        let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
        let json = &line[start..];
        if !self.scanner.scan(json) {
            return None;
        }
        let f = &self.fields;
        let ip = parse_client_ip(&self.text(json, &f.ip)?)?;
        let mut req = Request::new(ip);
        match self.text(json, &f.request) {
            Some(Cow::Borrowed(r)) => {
                req.request = Cow::Borrowed(r);
                split_request_line(r, &mut req);
            }
            Some(Cow::Owned(r)) => {
                let mut parts = Request::new(ip);
                split_request_line(&r, &mut parts);
                req.method = Cow::Owned(parts.method.into_owned());
                req.target = Cow::Owned(parts.target.into_owned());
                req.request = Cow::Owned(r);
            }
            None => {}
        }
        if let Some(m) = self.text(json, &f.method) {
            req.method = m;
        }
        if let Some(u) = self.text(json, &f.uri) {
            req.target = u;
        }
        if req.request.is_empty() {
            let proto = self.text(json, &f.protocol);
            if let Some(r) = json_request_line(&req.method, &req.target, proto.as_deref()) {
                req.request = Cow::Owned(r);
            }
        }
        req.status = self.found(&f.status).and_then(|v| json_status(json, v));
        req.user_agent = dash_empty_cow(self.text(json, &f.user_agent));
        req.referer = dash_empty_cow(self.text(json, &f.referer));
        req.forwarded_for = dash_empty_cow(self.text(json, &f.forwarded_for));
        req.message = self.text(json, &f.message).unwrap_or_default();
        let time = self.found(&f.time);
        req.time = time.and_then(|v| json_time(json, v, &mut self.times));
        Some(req)
    }
}

/// A JSON number's text as serde_json writes it: an integer as written (the common
/// case), anything else through serde_json itself (`1e3` is `1000.0`).
fn number_text(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() <= 19 && raw.iter().all(u8::is_ascii_digit) {
        return Some(raw.to_vec());
    }
    let n: serde_json::Number = serde_json::from_slice(raw).ok()?;
    Some(n.to_string().into_bytes())
}

/// A status from a number (an integer from 100 to 999: as valid JSON has no leading
/// zeros, exactly three digits) or a string of three digits; arrays and the rest: none.
fn json_status(json: &[u8], v: json::Found) -> Option<u16> {
    let raw = &json[v.start..v.end];
    match (v.in_array, v.kind) {
        (false, json::Kind::Num | json::Kind::Str) => parse_status(raw),
        (false, json::Kind::EscStr) => parse_status(&json::unescape(raw)),
        _ => None,
    }
}

/// A time from a number (epoch seconds, ms, µs or ns) or a string in a format
/// [`parse_time`] reads; arrays and the rest: none.
fn json_time(json: &[u8], v: json::Found, times: &mut TimeCache) -> Option<i64> {
    let raw = &json[v.start..v.end];
    match (v.in_array, v.kind) {
        (false, json::Kind::Num) => {
            let n: serde_json::Number = serde_json::from_slice(raw).ok()?;
            n.as_f64().and_then(epoch_number)
        }
        (false, json::Kind::Str) => times.parse(raw),
        (false, json::Kind::EscStr) => parse_time(&json::unescape(raw)),
        _ => None,
    }
}

/// The request line of a JSON access log that logs method, URI and protocol apart: only
/// what the log holds. A log that keeps no protocol field (Envoy, Authelia and GitLab
/// have none) has no request line, and rules about request lines do not judge it (a
/// made-up "GET /uri" would look like a request that is not HTTP); `-` is no protocol
/// either. A protocol field that is there but empty says the request was not HTTP/x
/// (a service probe, binary bytes): what came is the method and any URI, and the
/// request-line rules judge that.
fn json_request_line(method: &[u8], target: &[u8], proto: Option<&[u8]>) -> Option<Vec<u8>> {
    let proto = proto?;
    if proto == b"-" {
        return None;
    }
    let mut r = Vec::with_capacity(method.len() + target.len() + proto.len() + 2);
    if proto.is_empty() {
        if method.is_empty() {
            return None;
        }
        r.extend_from_slice(method);
        if !target.is_empty() {
            r.push(b' ');
            r.extend_from_slice(target);
        }
        return Some(r);
    }
    if target.is_empty() {
        return None;
    }
    r.extend_from_slice(method);
    r.push(b' ');
    r.extend_from_slice(target);
    r.push(b' ');
    r.extend_from_slice(proto);
    Some(r)
}

/// `-` or nothing is an empty field.
fn dash_empty_cow(v: Option<Cow<'_, [u8]>>) -> Cow<'_, [u8]> {
    match v {
        Some(Cow::Borrowed(b)) => Cow::Borrowed(dash_empty(b)),
        Some(Cow::Owned(b)) if b == b"-" => Cow::Borrowed(b""),
        Some(owned) => owned,
        None => Cow::Borrowed(b""),
    }
}

/// Lines a source must have written before the share that failed to parse is judged.
pub const UNPARSED_MIN_LINES: u64 = 100;
/// How much of the first unparsed line is kept as the notice's sample.
const UNPARSED_SAMPLE_BYTES: usize = 200;

/// Counts one source's lines and those that did not parse, and says once when most of
/// them fail: a wrong `log_format`, or a format this tool does not read, must not leave
/// a container silently unwatched. Sans-IO: the caller reports the notice.
#[derive(Debug, Default)]
pub struct ParseHealth {
    lines: u64,
    unparsed: u64,
    /// The first unparsed line, cut (copied raw; escaped only for the notice): the one
    /// that shows where a wrong format starts going wrong.
    sample: Vec<u8>,
    notice: Option<UnparsedNotice>,
    /// Never notices: the source is an application's log, only some lines of which name
    /// a client (see [`ParseHealth::for_format`]).
    quiet: bool,
}

/// Most of a source's lines did not parse (more than three in four, after at least
/// [`UNPARSED_MIN_LINES`]). A quarter is left for what every container writes besides
/// its access log: start-up banners, error-log lines (nginx logs one per 404).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnparsedNotice {
    pub lines: u64,
    pub unparsed: u64,
    /// The first line that did not parse, escaped and truncated.
    pub sample: String,
}

impl ParseHealth {
    /// The parse health of a source read in `format`: an application profile that is no
    /// access log (`access_log = false`) never notices, since most of its lines name no
    /// client.
    pub fn for_format(format: &LogFormat) -> ParseHealth {
        ParseHealth {
            quiet: matches!(format, LogFormat::Profile(p) if !p.access_log),
            ..ParseHealth::default()
        }
    }

    /// Counts one line. Returns the notice the first time (only) that most lines failed.
    pub fn record(&mut self, line: &[u8], parsed: bool) -> Option<&UnparsedNotice> {
        self.lines += 1;
        if !parsed {
            self.unparsed += 1;
        }
        if !parsed && self.unparsed == 1 {
            self.sample
                .extend_from_slice(&line[..line.len().min(UNPARSED_SAMPLE_BYTES)]);
        }
        if self.quiet
            || self.notice.is_some()
            || self.lines < UNPARSED_MIN_LINES
            || self.unparsed.saturating_mul(4) <= self.lines.saturating_mul(3)
        {
            return None;
        }
        self.notice = Some(UnparsedNotice {
            lines: self.lines,
            unparsed: self.unparsed,
            sample: crate::detect::decode::escape_excerpt(&self.sample, UNPARSED_SAMPLE_BYTES),
        });
        self.notice.as_ref()
    }

    /// The notice, once it has been given.
    pub fn notice(&self) -> Option<&UnparsedNotice> {
        self.notice.as_ref()
    }
}

impl UnparsedNotice {
    /// The notice in words, for the journal, `check` and the alert.
    pub fn describe(&self, source: &str, format: &str) -> String {
        format!(
            "{source}: {} of its first {} lines are not in log format {format:?}, so their requests are not examined; set the right log_format for it (see \"Log formats\" in the README). A line that did not parse: {}",
            self.unparsed, self.lines, self.sample
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn unix(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
        crate::time::civil_to_unix(y, mo, d, h, mi, s).expect("a valid date")
    }

    #[test]
    fn combined_line() {
        let line = br#"198.51.100.4 - frank [21/Nov/2026:00:06:01 +0100] "GET /a?b=1 HTTP/1.1" 404 594 "http://x/" "curl/8" "203.0.113.9""#;
        let r = parse_access(line).unwrap();
        assert_eq!(r.ip, ip("198.51.100.4"));
        assert_eq!(r.time, Some(unix(2026, 11, 20, 23, 6, 1)));
        assert_eq!(&*r.method, b"GET");
        assert_eq!(&*r.target, b"/a?b=1");
        assert_eq!(r.status, Some(404));
        assert_eq!(&*r.referer, b"http://x/");
        assert_eq!(&*r.user_agent, b"curl/8");
        assert_eq!(&*r.forwarded_for, b"203.0.113.9");
    }

    #[test]
    fn common_line_and_ipv6() {
        let r = parse_access(
            br#"::ffff:10.1.2.3 - - [01/Jan/2026:00:00:00 +0000] "POST /login HTTP/1.0" 401 -"#,
        )
        .unwrap();
        assert_eq!(r.ip, ip("10.1.2.3"));
        assert_eq!(r.status, Some(401));
        assert!(r.user_agent.is_empty());
        let r = parse_access(
            br#"2001:db8::7 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/2.0" 200 5 "-" "-""#,
        )
        .unwrap();
        assert_eq!(r.ip, ip("2001:db8::7"));
    }

    #[test]
    fn escaped_quotes_and_binary_request_lines() {
        let r = parse_access(
            br#"1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "GET /a\"b HTTP/1.1" 200 1 "-" "x\"y""#,
        )
        .unwrap();
        assert_eq!(&*r.target, br#"/a\"b"#);
        assert_eq!(&*r.user_agent, br#"x\"y"#);
        let r = parse_access(
            br#"1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "\x16\x03\x01\x00" 400 0 "-" "-""#,
        )
        .unwrap();
        assert!(r.method.is_empty() && r.target.is_empty());
        assert_eq!(&*r.request, br#"\x16\x03\x01\x00"#);
    }

    #[test]
    fn the_ip_never_comes_from_the_request() {
        // The address field is a hostname: no IP, so no request, even though the path,
        // user agent and referer all carry addresses.
        let line = br#"host.example - - [01/Jan/2026:00:00:00 +0000] "GET /1.2.3.4 HTTP/1.1" 200 1 "http://5.6.7.8/" "9.9.9.9""#;
        assert!(parse_access(line).is_none());
    }

    #[test]
    fn json_lines() {
        let mut p = LineParser::new(&LogFormat::Json(Box::default())).unwrap();
        let r = p.parse(br#"{"remote_addr":"203.0.113.5","request":"GET /x?id=1 HTTP/1.1","status":"403","http_user_agent":"sqlmap","time_iso8601":"2026-11-21T10:00:00+00:00"}"#).unwrap();
        assert_eq!(r.ip, ip("203.0.113.5"));
        assert_eq!(&*r.target, b"/x?id=1");
        assert_eq!(r.status, Some(403));
        assert_eq!(r.time, Some(unix(2026, 11, 21, 10, 0, 0)));
        let r = p.parse(br#"{"request":{"remote_ip":"2001:db8::1","method":"GET","uri":"/y","headers":{"User-Agent":["nikto"]}},"status":404,"ts":1763719200.5}"#).unwrap();
        assert_eq!(r.ip, ip("2001:db8::1"));
        assert_eq!(&*r.target, b"/y");
        assert_eq!(&*r.user_agent, b"nikto");
        assert_eq!(r.time, Some(1763719200));
        assert!(p.parse(b"{not json").is_none());
    }

    #[test]
    fn custom_regex_with_named_groups() {
        let f = LogFormat::Custom {
            name: "app".into(),
            regex: r"^(?P<time>\S+) login failed for user \S+ from (?P<ip>\S+)".into(),
        };
        let mut p = LineParser::new(&f).unwrap();
        let r = p.parse(b"2026-11-21T10:00:00Z login failed for user root from 198.51.100.9 (path /1.2.3.4)").unwrap();
        assert_eq!(r.ip, ip("198.51.100.9"));
        assert!(r.message.starts_with(b"2026"));
        assert!(check_custom_regex(r"from (\S+)")
            .unwrap_err()
            .to_string()
            .contains("`ip`"));
    }

    #[test]
    fn auto_recognises_each_format() {
        let mut p = LineParser::new(&LogFormat::Auto).unwrap();
        assert!(p
            .parse(br#"1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1"#)
            .is_some());
        assert!(p.parse(br#"{"client_ip":"1.2.3.4","uri":"/"}"#).is_some());
        assert!(p.parse(b"plain text without structure 1.2.3.4").is_none());
    }

    #[test]
    fn a_status_is_three_digits_from_100() {
        assert_eq!(parse_status(b"404"), Some(404));
        assert_eq!(parse_status(b"100"), Some(100));
        for bad in [&b"043"[..], b"003", b"000", b"40", b"4040", b"4x4"] {
            assert_eq!(
                parse_status(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_json_time_of_400_digits_leaves_the_line_without_a_time() {
        let digits = "9".repeat(400);
        let mut p = LineParser::new(&LogFormat::Json(Box::default())).unwrap();
        let line = format!(r#"{{"remote_addr":"203.0.113.5","uri":"/","time":"{digits}"}}"#);
        let r = p.parse(line.as_bytes()).expect("the line parses");
        assert_eq!(r.time, None);
        let line = br#"{"remote_addr":"203.0.113.5","uri":"/","time":1e300}"#;
        assert_eq!(p.parse(line).expect("parses").time, None);
    }

    #[test]
    fn the_user_field_cannot_hide_or_shift_the_request() {
        let time = unix(2026, 11, 21, 0, 6, 1);
        for user in [
            "[x]",
            "[",
            "]",
            "a b c",
            "[21/Nov/2030:00:00:00 +0000]",
            "x] [y",
            r#"a\"b"#,
            "- - -",
            &format!("[{}]", "9".repeat(400)),
        ] {
            let line = format!(
                r#"203.0.113.10 - {user} [21/Nov/2026:00:06:01 +0000] "GET /item?id=1' UNION SELECT 1,2-- HTTP/1.1" 200 5 "-" "curl/8""#
            );
            let r = parse_access(line.as_bytes())
                .unwrap_or_else(|| panic!("user {user:?} hid the line"));
            assert_eq!(r.ip, ip("203.0.113.10"), "{user:?}");
            assert_eq!(r.time, Some(time), "{user:?}");
            assert_eq!(&*r.target, b"/item?id=1' UNION SELECT 1,2--", "{user:?}");
            assert_eq!(r.status, Some(200), "{user:?}");
            assert_eq!(&*r.user_agent, b"curl/8", "{user:?}");
        }
        // A request line with brackets of its own changes nothing either.
        let r = parse_access(
            br#"203.0.113.10 - - [21/Nov/2026:00:06:01 +0000] "GET /a[1]=] [x HTTP/1.1" 404 5"#,
        )
        .unwrap();
        assert_eq!(&*r.target, b"/a[1]=] [x");
        assert_eq!(r.time, Some(time));
    }

    #[test]
    fn a_virtual_host_in_front_is_never_the_client() {
        let rest = r#"- - [21/Nov/2026:00:06:01 +0000] "GET /?id=1' union select 1,2-- HTTP/1.1" 200 5 "-" "curl/8" "172.17.0.5:80""#;
        for (host, client) in [
            ("8.8.8.8", "198.51.100.66"),
            ("example.com", "198.51.100.67"),
            ("example.com:443", "198.51.100.68"),
            ("8.8.8.8:80", "2001:db8::9"),
            ("_", "198.51.100.69"),
        ] {
            let line = format!("{host} {client} {rest}");
            for format in [LogFormat::Auto, LogFormat::VhostCombined] {
                let mut p = LineParser::new(&format).unwrap();
                let r = p
                    .parse(line.as_bytes())
                    .unwrap_or_else(|| panic!("{} did not read {line}", format.name()));
                assert_eq!(r.ip, ip(client), "{} {line}", format.name());
                assert_eq!(&*r.target, b"/?id=1' union select 1,2--");
                // nginx-proxy's last field is the upstream, not a forwarded client.
                assert!(r.forwarded_for.is_empty());
            }
            // Told plain combined, such a line is refused rather than blamed on the host.
            assert!(parse_access(line.as_bytes()).is_none(), "{line}");
        }
        // Plain combined lines still read under `auto`, and vhost_combined refuses them.
        let plain = format!("198.51.100.70 {rest}");
        assert_eq!(
            LineParser::auto().parse(plain.as_bytes()).unwrap().ip,
            ip("198.51.100.70")
        );
        assert!(parse_vhost_access(plain.as_bytes()).is_none());
    }

    #[test]
    fn once_auto_has_seen_a_virtual_host_it_reads_every_line_that_way() {
        let tail = r#"[21/Nov/2026:00:06:01 +0000] "GET / HTTP/1.1" 200 5 "-" "-""#;
        let mut p = LineParser::auto();
        let first = format!("example.com 198.51.100.67 - - {tail}");
        assert_eq!(p.parse(first.as_bytes()).unwrap().ip, ip("198.51.100.67"));
        // A Host header of "8.8.8.8 -" (where a proxy lets spaces through) would make the
        // line look like plain combined with 8.8.8.8 as the client.
        let crafted = format!("8.8.8.8 - 198.51.100.67 - - {tail}");
        assert!(p.parse(crafted.as_bytes()).is_none());
    }

    #[test]
    fn parse_health_says_once_when_most_lines_fail() {
        let mut h = ParseHealth::default();
        let mut notices = 0;
        for i in 0..1000u32 {
            // One line in ten parses: well under the bar.
            let parsed = i % 10 == 0;
            let line = format!("\x1b[31mstartup line {i}");
            if let Some(n) = h.record(line.as_bytes(), parsed) {
                notices += 1;
                assert_eq!(n.lines, UNPARSED_MIN_LINES);
                assert!(n.unparsed * 4 > n.lines * 3);
                assert!(
                    n.sample.starts_with("\\x1b[31mstartup line"),
                    "{}",
                    n.sample
                );
            }
        }
        assert_eq!(notices, 1);
        assert!(h.notice().is_some());
        // Half the lines failing (nginx's error log beside its access log) is no notice.
        let mut h = ParseHealth::default();
        for i in 0..1000u32 {
            assert!(h
                .record(b"2026/11/21 [error] open() failed", i % 2 == 0)
                .is_none());
        }
        assert!(h.notice().is_none());
    }
}

/// The reader this module had before the scanner, kept as the oracle the scanner is
/// compared with: a whole `serde_json::Value` per line, every field copied out.
#[cfg(test)]
mod tests_oracle {
    use super::*;

    fn json_lookup<'v>(
        obj: &'v serde_json::Value,
        keys: &[String],
    ) -> Option<&'v serde_json::Value> {
        keys.iter().find_map(|k| {
            if let Some(v) = obj.get(k.as_str()) {
                return Some(v);
            }
            if !k.contains('.') {
                return None;
            }
            k.split('.').try_fold(obj, |v, part| v.get(part))
        })
    }

    fn json_text(v: &serde_json::Value) -> Option<Cow<'_, [u8]>> {
        match v {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_bytes())),
            serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string().into_bytes())),
            // Caddy logs headers as arrays of values.
            serde_json::Value::Array(a) => a.first().and_then(json_text),
            _ => None,
        }
    }

    pub fn parse_json<'a>(line: &'a [u8], f: &JsonFields) -> Option<Request<'a>> {
        let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
        let value: serde_json::Value = serde_json::from_slice(&line[start..]).ok()?;
        if !value.is_object() {
            return None;
        }
        let text = |keys: &[String]| {
            json_lookup(&value, keys)
                .and_then(json_text)
                .map(|c| c.into_owned())
        };
        let ip = parse_client_ip(&text(&f.ip)?)?;
        let mut req = Request::new(ip);
        if let Some(r) = text(&f.request) {
            req.request = Cow::Owned(r);
            let request = req.request.clone().into_owned();
            let mut tmp = Request::new(ip);
            split_request_line(&request, &mut tmp);
            req.method = Cow::Owned(tmp.method.into_owned());
            req.target = Cow::Owned(tmp.target.into_owned());
        }
        if let Some(m) = text(&f.method) {
            req.method = Cow::Owned(m);
        }
        if let Some(u) = text(&f.uri) {
            req.target = Cow::Owned(u);
        }
        if req.request.is_empty() {
            let proto = text(&f.protocol);
            if let Some(r) = json_request_line(&req.method, &req.target, proto.as_deref()) {
                req.request = Cow::Owned(r);
            }
        }
        req.status = json_lookup(&value, &f.status).and_then(|v| match v {
            serde_json::Value::Number(n) => n
                .as_u64()
                .filter(|s| (100..1000).contains(s))
                .map(|s| s as u16),
            serde_json::Value::String(s) => parse_status(s.as_bytes()),
            _ => None,
        });
        req.user_agent = Cow::Owned(
            text(&f.user_agent)
                .map(|v| dash_empty(&v).to_vec())
                .unwrap_or_default(),
        );
        req.referer = Cow::Owned(
            text(&f.referer)
                .map(|v| dash_empty(&v).to_vec())
                .unwrap_or_default(),
        );
        req.forwarded_for = Cow::Owned(
            text(&f.forwarded_for)
                .map(|v| dash_empty(&v).to_vec())
                .unwrap_or_default(),
        );
        req.message = Cow::Owned(text(&f.message).unwrap_or_default());
        req.time = json_lookup(&value, &f.time).and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_f64().and_then(epoch_number),
            serde_json::Value::String(s) => parse_time(s.as_bytes()),
            _ => None,
        });
        Some(req)
    }
}

/// The scanner-based JSON reader against the `Value`-based one it replaced, line by
/// line: the same `Request`, or None from both.
#[cfg(test)]
mod json_equivalence {
    use super::tests_oracle::parse_json as oracle;
    use super::*;

    fn fields_sets() -> Vec<JsonFields> {
        let custom = JsonFields {
            ip: strings(&["a.b", "a.b.c", "x..y", "", "deep.er.ip", "n"]),
            uri: strings(&["a.u", "u.", ".u"]),
            user_agent: strings(&["h.ua", "h"]),
            status: strings(&["s", "a.s"]),
            time: strings(&["t", "a.t"]),
            ..JsonFields::default()
        };
        vec![JsonFields::default(), custom]
    }

    #[track_caller]
    fn same(line: &[u8]) {
        for f in fields_sets() {
            let mut p = LineParser::new(&LogFormat::Json(Box::new(f.clone()))).unwrap();
            let new = p.parse(line);
            let old = oracle(trim_end(line), &f);
            assert_eq!(new, old, "line {:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn real_shapes_read_the_same() {
        let lines: &[&str] = &[
            // Caddy 2 (http.log.access), as scripts/measure_corpus.py writes it.
            r#"{"level":"info","ts":1763719200.123456,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"198.51.100.7","remote_port":"40123","client_ip":"203.0.113.9","proto":"HTTP/2.0","method":"GET","host":"www.example.com","uri":"/a?id=1%27%20or%201=1","headers":{"User-Agent":["sqlmap/1.7"],"Referer":["https://x/"],"Accept":["*/*"]}},"bytes_read":0,"user_id":"","duration":0.001234,"size":512,"status":404,"resp_headers":{"Server":["Caddy"]}}"#,
            r#"{"request":{"remote_ip":"2001:db8::1","method":"GET","uri":"/y","headers":{"User-Agent":["nikto"]}},"status":404,"ts":1763719200.5}"#,
            // Traefik JSON.
            r#"{"ClientAddr":"192.0.2.4:5000","ClientHost":"192.0.2.4","ClientPort":"5000","DownstreamContentSize":19,"DownstreamStatus":401,"Duration":1234567,"RequestMethod":"POST","RequestPath":"/login","RequestProtocol":"HTTP/1.1","StartUTC":"2026-11-21T10:00:00.000123456Z","request_User-Agent":"Mozilla/5.0","request_Referer":"-","level":"info","msg":"","time":"2026-11-21T10:00:00Z"}"#,
            // nginx escape=json.
            r#"{"time_iso8601":"2026-11-21T10:00:00+00:00","remote_addr":"203.0.113.5","remote_user":"","request":"GET /x?q=\u0022\u003cscript\u003e HTTP/1.1","status":"403","body_bytes_sent":"0","http_referer":"","http_user_agent":"curl/8 \"quoted\"","http_x_forwarded_for":"-"}"#,
            r#"{"remote_addr":"203.0.113.5","request":"\u0016\u0003\u0001\u0000","status":"400"}"#,
            // Envoy-like: method and path, no protocol.
            r#"{"start_time":"2026-11-21T10:00:00.123Z","method":"GET","path":"/admin","response_code":403,"status":403,"user_agent":"curl","x_forwarded_for":"10.0.0.1","client_ip":"198.51.100.20"}"#,
            // Application logs with a message.
            r#"{"level":"warn","msg":"Unsuccessful login attempt","remote_ip":"198.51.100.30","time":"2026-11-21T10:00:00+01:00"}"#,
            r#"  {"remote_addr":"1.2.3.4","message":"x"}  "#,
            "\x0c\t {\"remote_addr\":\"1.2.3.4\"}\r\n",
            r#"{"remote_addr":"1.2.3.4","uri":"/\ud83d\ude00/é","protocol":"HTTP/1.1","method":"GET"}"#,
            r#"{"remote_addr":"1.2.3.4","uri":"/x","protocol":"","method":"GET"}"#,
            r#"{"remote_addr":"1.2.3.4","uri":"","protocol":"HTTP/1.1"}"#,
            r#"{"remote_addr":"1.2.3.4","method":"G\u0045T","request":"GET /r HTTP/1.1"}"#,
        ];
        for l in lines {
            same(l.as_bytes());
        }
    }

    #[test]
    fn edge_values_read_the_same() {
        let values = [
            "1",
            "0",
            "-0",
            "404",
            "404.0",
            "4.04e2",
            "-404",
            "1e400",
            "-1e400",
            "1e-400",
            "0e99999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "1E3",
            "1e+3",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "1763719200",
            "1763719200123",
            "1763719200.999999",
            "null",
            "true",
            "false",
            "nul",
            "[]",
            "[[]]",
            "[\"x\"]",
            "[[\"y\"],1]",
            "[1]",
            "[{}]",
            "[null,\"z\"]",
            "{}",
            "{\"a\":1}",
            "\"\"",
            "\"-\"",
            "\"404\"",
            "\"40\\u0034\"",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\ud800\\udc00\"",
            "\"\\ud800x\"",
            "\"\\x41\"",
            "\"\\/\\b\\f\\n\\r\\t\"",
            "\"\t\"",
            "\"\u{7f}\"",
            "\"2026-11-21T10:00:00Z\"",
            "\"21/Nov/2026:00:06:01 +0100\"",
            "[1,]",
            "{,}",
            "\"1.2.3.4\"",
            "\"::ffff:1.2.3.4\"",
            "\"1.2.3.4:80\"",
            "\"[2001:db8::1]:443\"",
            "[\"1.2.3.4\"]",
            "3232235777",
        ];
        let keys = [
            "remote_addr",
            "status",
            "ts",
            "time",
            "uri",
            "method",
            "protocol",
            "request",
            "http_user_agent",
            "message",
            "request.client_ip",
            "a",
            "s",
            "t",
            "n",
            "h",
        ];
        for k in keys {
            for v in values {
                for line in [
                    format!(r#"{{"{k}":{v}}}"#),
                    format!(
                        r#"{{"remote_addr":"1.2.3.4","{k}":{v},"uri":"/p","protocol":"HTTP/1.0"}}"#
                    ),
                    format!(
                        r#"{{"request":{{"client_ip":{v},"{k}":{v},"remote_ip":"5.6.7.8"}},"a":{{"b":{v},"s":{v}}}}}"#
                    ),
                    format!(r#"{{"client":"9.9.9.9","{k}" : {v} , "h":{{"ua":{v}}}}}"#),
                ] {
                    same(line.as_bytes());
                }
            }
        }
    }

    #[test]
    fn duplicate_keys_take_the_last_value_whole() {
        for line in [
            r#"{"remote_addr":"1.1.1.1","remote_addr":"2.2.2.2"}"#,
            r#"{"request":{"client_ip":"1.1.1.1"},"request":{"remote_ip":"2.2.2.2"}}"#,
            r#"{"request":{"client_ip":"1.1.1.1"},"request":"GET / HTTP/1.1","client":"3.3.3.3"}"#,
            r#"{"request":{"client_ip":"1.1.1.1","headers":{"User-Agent":["a"]},"headers":{}}}"#,
            r#"{"request":{"client_ip":"1.1.1.1","client_ip":null},"ip":"4.4.4.4"}"#,
            r#"{"a":{"b":"1.1.1.1"},"a.b":"2.2.2.2","a":{"c":1}}"#,
            r#"{"remote_addr":null,"client_ip":"1.1.1.1"}"#,
        ] {
            same(line.as_bytes());
        }
        // What the rule is, spelt out: serde_json's `Value` keeps the last.
        let mut p = LineParser::new(&LogFormat::Json(Box::default())).unwrap();
        let r = p
            .parse(br#"{"request":{"client_ip":"1.1.1.1"},"request":{"remote_ip":"2.2.2.2"}}"#)
            .unwrap();
        assert_eq!(r.ip, "2.2.2.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [1, 2, 100, 125, 126, 127, 128, 129, 200] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let line = format!(
                    r#"{{"remote_addr":"1.2.3.4","x":{}1{}}}"#,
                    open.repeat(depth),
                    close.repeat(depth)
                );
                same(line.as_bytes());
                let line = format!(
                    r#"{{"request":{{"headers":{{"User-Agent":{}"ua"{}}}}},"ip":"1.2.3.4"}}"#,
                    "[".repeat(depth),
                    "]".repeat(depth)
                );
                same(line.as_bytes());
            }
        }
    }

    #[test]
    fn garbage_reads_the_same() {
        for line in [
            &b""[..],
            b" ",
            b"{",
            b"}",
            b"{}",
            b"[]",
            b"[{\"remote_addr\":\"1.2.3.4\"}]",
            b"\"1.2.3.4\"",
            b"null",
            b"{\"remote_addr\":\"1.2.3.4\"",
            b"{\"remote_addr\":\"1.2.3.4\"}}",
            b"{\"remote_addr\":\"1.2.3.4\"} x",
            b"{\"remote_addr\":\"1.2.3.4\",}",
            b"{\"remote_addr\" \"1.2.3.4\"}",
            b"{remote_addr:\"1.2.3.4\"}",
            b"{'remote_addr':'1.2.3.4'}",
            b"{\"remote_addr\":\"1.2.3.4\"}\x0c",
            b"{\"remote_addr\":\"1.2.\xff3.4\"}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":\"\xc3\"}",
            b"{\"remote_addr\":\"1.2.3.4\",\"\xe2\x82\":1}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":\"a\nb\"}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":\"\\q\"}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":\"\\u12\"}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":\"\\u12G4\"}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":\"\\",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":tru}",
            b"{\"remote_\\u0061ddr\":\"1.2.3.4\"}",
            b"{\"remote_addr\":\"1.2.3.4\"\x00}",
            b"\xef\xbb\xbf{\"remote_addr\":\"1.2.3.4\"}",
            b"{\"remote_addr\":\"1.2.3.4\"}\n\n",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":[1 2]}",
            b"{\"remote_addr\":\"1.2.3.4\",\"x\":[,1]}",
            b"{\"remote_addr\":\"1.2.3.4\" , \"x\" : { } }",
            b"not json at all 1.2.3.4",
        ] {
            same(line);
        }
    }

    /// A small deterministic generator (xorshift) of JSON-ish lines built from the
    /// wanted keys and others, nested, then cut and mutated.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
            from[(self.next() % from.len() as u64) as usize]
        }
        fn value(&mut self, depth: u32, out: &mut String) {
            let choice = if depth > 4 {
                self.next() % 6
            } else {
                self.next() % 9
            };
            match choice {
                0 | 1 => {
                    let s = self.pick(&[
                        "1.2.3.4",
                        "2001:db8::5",
                        "-",
                        "",
                        "GET /a?b=1 HTTP/1.1",
                        "/x\\u0022y",
                        "HTTP/1.1",
                        "404",
                        "2026-11-21T10:00:00Z",
                        "a\\\"b",
                        "\\ud83d\\ude00",
                        "é€",
                        "POST",
                        "1763719200",
                        "10.0.0.1, 1.2.3.4",
                        "\\u0031.2.3.4",
                    ]);
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
                2 => {
                    out.push_str(self.pick(&["404", "200", "1763719200.25", "-1", "1e3", "0", "7"]))
                }
                3 => out.push_str(self.pick(&["null", "true", "false"])),
                4 | 5 => {
                    out.push('[');
                    for i in 0..self.next() % 3 {
                        if i > 0 {
                            out.push(',');
                        }
                        self.value(depth + 1, out);
                    }
                    out.push(']');
                }
                _ => self.object(depth + 1, out),
            }
        }
        fn object(&mut self, depth: u32, out: &mut String) {
            const KEYS: [&str; 24] = [
                "remote_addr",
                "client_ip",
                "request",
                "method",
                "uri",
                "proto",
                "protocol",
                "status",
                "ts",
                "time",
                "headers",
                "User-Agent",
                "Referer",
                "msg",
                "ClientHost",
                "RequestPath",
                "DownstreamStatus",
                "request_User-Agent",
                "remote_ip",
                "ip",
                "a",
                "b",
                "a.b",
                "other",
            ];
            out.push('{');
            for i in 0..self.next() % 6 {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(self.pick(&KEYS));
                out.push_str("\":");
                self.value(depth, out);
            }
            out.push('}');
        }
    }

    #[test]
    fn generated_and_mutated_lines_read_the_same() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for _ in 0..3000 {
            // Half the lines carry an address under the last key tried for it, so that
            // the keys before it (and the rest of the line) decide what is read.
            let mut line = String::new();
            g.object(0, &mut line);
            if g.next() % 2 == 0 {
                line.insert_str(1, r#""client":"192.0.2.1","#);
                if line.ends_with(",}") {
                    line.replace_range(line.len() - 2.., "}");
                }
            }
            let mut bytes = line.into_bytes();
            same(&bytes);
            if LineParser::new(&LogFormat::Json(Box::default()))
                .unwrap()
                .parse(&bytes)
                .is_some()
            {
                parsed += 1;
            }
            // Mutations: cut, a byte changed, a byte inserted.
            let at = (g.next() % (bytes.len() as u64 + 1)) as usize;
            same(&bytes[..at]);
            let poke = [
                b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'0', 0xC3, 0x01,
            ];
            let b = poke[(g.next() % poke.len() as u64) as usize];
            if at < bytes.len() {
                let was = bytes[at];
                bytes[at] = b;
                same(&bytes);
                bytes[at] = was;
            }
            bytes.insert(at, b);
            same(&bytes);
        }
        // The generator must reach lines that parse, or the comparison says little.
        assert!(parsed > 700, "only {parsed} generated lines parsed");
    }

    #[test]
    fn hostile_lines_end_quickly_without_a_panic() {
        let mut p = LineParser::new(&LogFormat::Json(Box::default())).unwrap();
        let deep = "[".repeat(1_000_000);
        assert!(p.parse(deep.as_bytes()).is_none());
        let deep = format!(
            r#"{{"remote_addr":"1.2.3.4","x":{}"#,
            r#"{"a":"#.repeat(200_000)
        );
        assert!(p.parse(deep.as_bytes()).is_none());
        // 100,000 duplicates of a key with a subtree: each clears a fixed set of slots.
        let dup = format!(
            r#"{{{}"remote_addr":"1.2.3.4"}}"#,
            r#""request":{"client_ip":"9.9.9.9","headers":{"User-Agent":["x"]}},"#.repeat(100_000)
        );
        let started = std::time::Instant::now();
        let r = p.parse(dup.as_bytes()).expect("parses");
        assert_eq!(r.ip, "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(&*r.user_agent, b"x");
        let huge = format!(
            r#"{{"remote_addr":"1.2.3.4","uri":"/{}"}}"#,
            "\\\"a".repeat(2_000_000)
        );
        let r = p.parse(huge.as_bytes()).expect("parses");
        assert_eq!(r.target.len(), 1 + 4_000_000);
        let backslashes = format!(
            r#"{{"remote_addr":"1.2.3.4","x":"{}"}}"#,
            "\\\\".repeat(2_000_000)
        );
        assert!(p.parse(backslashes.as_bytes()).is_some());
        // Linear work: well under a second even in a debug build.
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    }

    #[test]
    fn unescaped_fields_borrow_from_the_line() {
        let mut p = LineParser::new(&LogFormat::Json(Box::default())).unwrap();
        let line = br#"{"request":{"client_ip":"1.2.3.4","method":"GET","uri":"/a","proto":"HTTP/1.1","headers":{"User-Agent":["curl/8"]}},"msg":"handled request","status":200}"#;
        let r = p.parse(line).unwrap();
        for f in [&r.method, &r.target, &r.user_agent, &r.message] {
            assert!(matches!(f, Cow::Borrowed(_)), "{f:?}");
        }
        assert_eq!(&*r.request, b"GET /a HTTP/1.1");
        let r = p
            .parse(br#"{"remote_addr":"1.2.3.4","http_user_agent":"a\"b"}"#)
            .unwrap();
        assert_eq!(&*r.user_agent, b"a\"b");
    }
}
