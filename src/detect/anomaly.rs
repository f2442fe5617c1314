//! Per-endpoint baselines: what each endpoint of an application takes, learned from its
//! own ordinary traffic, and how far a request strays from it (the seeds' anomaly
//! detection, done per endpoint instead of with one global model).
//!
//! An endpoint is a source (a container, or `check`'s input), a method and a route
//! template: the path with numeric, hexadecimal, UUID and overlong segments folded, so
//! `/item/123` and `/item/456` are one endpoint and their number stays bounded. Per
//! endpoint the model keeps the parameters seen and, per parameter, the character
//! classes of its values (letters, digits and each punctuation character apart), the
//! longest value and, while there are few, the values themselves.
//!
//! A request is judged against the endpoint as it was before the request; then, when the
//! caller says the request is clean (a 2xx/3xx answer to a client with no rule hits), it
//! may be learned. So nothing is judged until an endpoint has
//! `min_samples` requests, and what it learns cannot be steered:
//! - no client supplies more than `max_client_share` of an endpoint's samples (beyond a
//!   first few), tracked over the endpoint's heaviest contributors;
//! - counts halve every `decay_every` samples, so what the application stopped sending
//!   is forgotten and new habits are learned from fresh traffic;
//! - an unusual request is learned only from a client that made ordinary ones before, so
//!   the application's own users teach it new habits and strangers teach it nothing;
//! - an endpoint never seen is reported with a low score only: on its own it is a reason
//!   to look, never to ban.
//!
//! Sans-IO and clock-free: time is counted in samples. Memory is bounded per source by
//! `max_endpoints` (the coldest of a few sampled endpoints goes first) and per endpoint
//! by [`MAX_PARAMS`] and [`MAX_VALUES`].

use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use super::decode::percent_decode;
use super::parse::Request;

/// Parameters kept per endpoint; more names are judged as never seen.
pub const MAX_PARAMS: usize = 32;
/// Parameters kept per source, all its endpoints together: past it, the coldest
/// endpoints go to make room, so a source's model stays within a few MB (see
/// [`Stats::bytes`]) whatever its endpoints take.
pub const MAX_SOURCE_PARAMS: usize = 8_192;
/// Longest parameter name kept (bytes); a longer one is judged as never seen.
pub const MAX_NAME: usize = 128;
/// Longest endpoint label kept (bytes; the route is still told apart in full).
const MAX_LABEL: usize = 256;
/// Distinct values kept per parameter; a parameter with more is free text.
pub const MAX_VALUES: usize = 8;
/// Clients tracked per endpoint for the share cap.
const CONTRIBUTORS: usize = 8;
/// Samples any one client may give an endpoint before the share cap applies.
const FREE_SAMPLES: u32 = 3;
/// Ordinary clean requests after which a client's unusual clean requests are learned.
pub const TRUST_AFTER: u32 = 5;
/// Clients whose trust is tracked per source (about 16 bytes each).
const MAX_TRUST: usize = 25_000;

/// The model's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Samples an endpoint (and a parameter) needs before it is judged.
    pub min_samples: u32,
    /// Endpoints kept per source.
    pub max_endpoints: usize,
    /// The largest share of an endpoint's samples one client may supply.
    pub max_client_share: f64,
    /// Counts halve when an endpoint has this many samples.
    pub decay_every: u32,
    /// An unknown endpoint is reported once its source has learned this many requests.
    pub unknown_after: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_samples: 50,
            max_endpoints: 1000,
            max_client_share: 0.1,
            decay_every: 20_000,
            unknown_after: 2_000,
        }
    }
}

/// What the daemon does with the baselines (`anomaly.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No model: nothing learned, nothing judged.
    Off,
    /// Unusual requests become alerts of kind `anomaly`.
    #[default]
    Alert,
    /// Alerts, and unusual requests add points toward a ban (see
    /// `Detector::anomaly`).
    Ban,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Alert => "alert",
            Mode::Ban => "ban",
        }
    }
}

/// The `anomaly` section: the mode, the model's knobs, and how often the daemon saves
/// the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DaemonSettings {
    pub mode: Mode,
    pub model: Settings,
    /// Seconds between saves of `anomaly_model.json` (it is also saved at a stop).
    pub save_interval: u64,
    /// How far back a container's own log is read to warm its baselines when the daemon
    /// first sees it with nothing learned (seconds; 0: never), and at most how many lines.
    pub warmup: u64,
    pub warmup_lines: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            mode: Mode::Alert,
            model: Settings::default(),
            save_interval: 300,
            warmup: 24 * 3600,
            warmup_lines: 100_000,
        }
    }
}

/// One unusual request: how unusual (0 to 1), why in words, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub score: f64,
    pub reason: String,
    /// `METHOD /route/{n}`.
    pub endpoint: String,
}

/// Scores of the kinds of finding. An endpoint never seen (or seen fewer than
/// `min_samples` times) is below every ban threshold.
pub const SCORE_UNKNOWN_ENDPOINT: f64 = 0.2;
const SCORE_NEW_CHARS: f64 = 0.8;
const SCORE_NEW_LETTERS: f64 = 0.6;
const SCORE_UNKNOWN_PARAM: f64 = 0.6;
const SCORE_OVERLONG: f64 = 0.7;
const SCORE_MISSING_PARAM: f64 = 0.5;
const SCORE_NEW_VALUE: f64 = 0.5;
/// A 5xx from an endpoint that rarely answers so, on its own: worth counting, never an
/// alert or a ban point (an outage answers every client so).
const SCORE_RARE_ERROR: f64 = 0.4;
/// What a 5xx the endpoint rarely gives adds to another finding of the same request
/// (an odd parameter that broke the application).
const RARE_ERROR_BONUS: f64 = 0.1;

/// Character classes: lower-case letters, upper-case, digits, space, non-ASCII, control
/// characters, then each ASCII punctuation character on its own (where attacks are).
const NCLASS: usize = 6 + 32;

const PUNCT: &[u8; 32] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The class of every byte.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'a'..=b'z' => 0,
            b'A'..=b'Z' => 1,
            b'0'..=b'9' => 2,
            b' ' => 3,
            0x80..=0xFF => 4,
            0..=0x1F | 0x7F => 5,
            _ => {
                let mut k = 0;
                while PUNCT[k] != b as u8 {
                    k += 1;
                }
                6 + k as u8
            }
        };
        b += 1;
    }
    t
};

/// The classes a value holds, a bit each.
fn class_mask(value: &[u8]) -> u64 {
    value
        .iter()
        .fold(0u64, |m, &b| m | 1 << CLASS[usize::from(b)])
}

fn class_name(c: usize) -> String {
    match c {
        0 => "lower-case letters".into(),
        1 => "upper-case letters".into(),
        2 => "digits".into(),
        3 => "spaces".into(),
        4 => "non-ASCII bytes".into(),
        5 => "control characters".into(),
        _ => format!("`{}`", PUNCT[c - 6] as char),
    }
}

#[derive(Debug, Clone)]
struct Param {
    name: Box<[u8]>,
    count: u32,
    max_len: u32,
    /// The classes with a count (a bit each).
    seen: u64,
    /// Per class, the values that held it (saturating; counts halve long before).
    classes: [u16; NCLASS],
    /// Distinct values (by hash) and their counts, while there are at most
    /// [`MAX_VALUES`].
    values: Values,
}

/// A parameter's few values, kept in place.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Values {
    /// How many are kept, or [`Values::MANY`] once there were more (free text).
    len: u8,
    items: [(u32, u32); MAX_VALUES],
}

impl Values {
    const MANY: u8 = u8::MAX;

    fn new() -> Values {
        Values {
            len: 0,
            items: [(0, 0); MAX_VALUES],
        }
    }

    /// The values kept, or None for free text.
    fn kept(&self) -> Option<&[(u32, u32)]> {
        (self.len != Self::MANY).then(|| &self.items[..usize::from(self.len)])
    }

    /// Counts one more of value `h`.
    fn add(&mut self, h: u32) {
        let Some(kept) = self.kept() else {
            return;
        };
        match kept.iter().position(|&(v, _)| v == h) {
            Some(j) => self.items[j].1 += 1,
            None if kept.len() < MAX_VALUES => {
                self.items[kept.len()] = (h, 1);
                self.len += 1;
            }
            None => self.len = Self::MANY,
        }
    }

    /// Halves the counts; values counted once are forgotten.
    fn halve(&mut self) {
        if self.len == Self::MANY {
            return;
        }
        let mut n = 0;
        for j in 0..usize::from(self.len) {
            let (h, c) = self.items[j];
            if c / 2 > 0 {
                self.items[n] = (h, c / 2);
                n += 1;
            }
        }
        self.len = n as u8;
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    key: u64,
    label: String,
    samples: u32,
    params: Vec<Param>,
    /// The heaviest contributors, space-saving style: (client hash, samples counted,
    /// of which inherited). A new client takes the lightest slot and inherits its count
    /// (so any client with more than 1/CONTRIBUTORS of the samples is in the table);
    /// the cap is applied to what it surely gave, the count less the inherited part.
    contributors: [(u64, u32, u32); CONTRIBUTORS],
    /// Its status mix: requests it answered 2xx, 3xx, 4xx and 5xx, of those counted
    /// (learned ones, and any answer to a trusted client with no rule hit).
    answers: [u32; 4],
}

/// The class of a status in [`Endpoint::answers`].
fn answer_class(status: Option<u16>) -> Option<usize> {
    match status? {
        200..=299 => Some(0),
        300..=399 => Some(1),
        400..=499 => Some(2),
        500..=599 => Some(3),
        _ => None,
    }
}

/// An endpoint answers 5xx this rarely (at most one in this many) for a 5xx to be
/// unusual.
const RARE_ERROR: u32 = 100;

#[derive(Debug, Default)]
struct Source {
    endpoints: Vec<Endpoint>,
    index: Map<u64, usize>,
    learned: u64,
    evicted: u64,
    tick: usize,
    /// Parameters kept over all its endpoints (at most [`MAX_SOURCE_PARAMS`]).
    params: usize,
    /// Ordinary clean requests per client (hash), up to [`TRUST_AFTER`].
    trust: Map<u64, u32>,
}

/// The model's maps: keyed by hashes already, or by a source's name.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The baselines of every source.
#[derive(Debug)]
pub struct Model {
    settings: Settings,
    sources: Map<String, Source>,
    hasher: foldhash::fast::FixedState,
    /// Decoded parameters and the route template of the request being looked at
    /// (reused).
    scratch: Vec<(Vec<u8>, Vec<u8>)>,
    /// Per decoded parameter, its value's classes and hash (reused).
    facts: Vec<Fact>,
    route: Vec<u8>,
    /// Every clean request is learned, unusual or not (traffic the operator vouches
    /// for: `check --learn FILE`).
    teaching: bool,
    /// Moves on whenever what is held changes (a sample learned, a source dropped): the
    /// daemon saves the model only when it moved.
    generation: u64,
    /// The client behaviour's populations read from the model file, until taken.
    populations: Vec<PopulationFile>,
}

/// What the model holds, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub endpoints: usize,
    pub learned: u64,
    pub evicted_endpoints: u64,
    /// An estimate of the memory held (bytes).
    pub bytes: usize,
}

impl Model {
    pub fn new(settings: Settings) -> Model {
        Model {
            settings,
            sources: Map::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x5ec0_a0a1),
            scratch: Vec::new(),
            facts: Vec::new(),
            route: Vec::new(),
            teaching: false,
            generation: 0,
            populations: Vec::new(),
        }
    }

    /// The client behaviour's populations the model file held (once; empty after).
    pub fn take_populations(&mut self) -> Vec<PopulationFile> {
        std::mem::take(&mut self.populations)
    }

    /// The knobs in force.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// New knobs (a reload): what was learned is kept; a source over a lower
    /// `max_endpoints` loses its coldest endpoints at once.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        for s in self.sources.values_mut() {
            while s.endpoints.len() > settings.max_endpoints.max(1) {
                if !s.evict(None) {
                    break;
                }
            }
        }
        self.generation += 1;
    }

    /// Keeps only the sources `keep` says yes to (containers that are gone lose theirs).
    pub fn retain_sources(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.sources.len();
        self.sources.retain(|name, _| keep(name));
        if self.sources.len() != before {
            self.generation += 1;
        }
    }

    /// Requests learned from `source` (0: none, or not known).
    pub fn learned_in(&self, source: &str) -> u64 {
        self.sources.get(source).map_or(0, |s| s.learned)
    }

    /// The sources' names.
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// Moves on whenever what the model holds changes (the daemon saves it only then).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// While on, every clean request is learned, unusual or not: for traffic the
    /// operator vouches for as ordinary (`check --learn FILE`).
    pub fn set_teaching(&mut self, on: bool) {
        self.teaching = on;
    }

    /// Judges `req` from `source` against what was learned, then learns it when it is
    /// clean (`rule_free`, the caller's word: its client has no rule hit and no ban;
    /// and answered 2xx/3xx) and either it was not unusual itself or its client has
    /// earned trust (at least [`TRUST_AFTER`] ordinary clean requests to this source
    /// before): so a new habit of the application's users is learned, and a stranger's
    /// odd request is not. A known endpoint's status mix counts the learned requests
    /// and any answer to a trusted client with no rule hit. Returns the finding, if the
    /// request is unusual.
    pub fn observe(&mut self, source: &str, req: &Request<'_>, rule_free: bool) -> Option<Anomaly> {
        self.observe_from(source, req, req.ip, rule_free)
    }

    /// [`observe`](Self::observe) for a request whose client is `client` rather than
    /// the logged peer (the real client behind a trusted proxy): the share cap and
    /// trust are counted per client, so a proxy must not be taken for one client.
    pub fn observe_from(
        &mut self,
        source: &str,
        req: &Request<'_>,
        client: IpAddr,
        rule_free: bool,
    ) -> Option<Anomaly> {
        let answer = answer_class(req.status);
        let clean = rule_free && matches!(answer, Some(0 | 1));
        let method = if req.method.is_empty() {
            &b"GET"[..]
        } else {
            &req.method[..]
        };
        let (path, query) = split_target(&req.target);
        let (settings, hasher, teaching) = (self.settings, self.hasher, self.teaching);
        let s = match self.sources.get_mut(source) {
            Some(s) => s,
            // Nothing learned from this source yet: nothing to judge by.
            None if !clean => return None,
            None => self.sources.entry(source.to_string()).or_default(),
        };
        let mut route = std::mem::take(&mut self.route);
        route_template_into(path, &mut route);
        let key = hash_parts(&hasher, &[method, &route]);
        let at = s.index.get(&key).copied();
        let client = hasher.hash_one(client);
        let mut params = std::mem::take(&mut self.scratch);
        let n = decode_params(query, &mut params);
        let params_now = &params[..n];
        let mut facts = std::mem::take(&mut self.facts);
        facts.clear();
        facts.extend(params_now.iter().map(|(_, v)| Fact {
            classes: class_mask(v),
            hash: hash_parts(&hasher, &[v]) as u32,
        }));
        // An endpoint never seen that the application answered "not found" is no
        // endpoint: the 404 says it all (and the not-found windows count it).
        let missing = matches!(req.status, Some(404 | 410));
        let found = s
            .judge(&settings, at, req.status, params_now, &facts)
            .filter(|f| !(missing && matches!(f.1, Why::Unknown | Why::Rare)))
            .map(|f| s.describe(f, method, &route, params_now));
        if clean {
            let ordinary = found
                .as_ref()
                .is_none_or(|a| a.score <= SCORE_UNKNOWN_ENDPOINT);
            let trusted = s.trust(client, ordinary);
            if (ordinary || trusted || teaching)
                && s.learn(
                    &settings, at, key, method, &route, params_now, &facts, client, answer,
                )
            {
                self.generation += 1;
            }
        } else if let (true, Some(i), Some(class)) = (rule_free, at, answer) {
            // Not learned, but part of the endpoint's status mix when its client is
            // trusted: a stranger cannot make errors look ordinary.
            let trusted = s.trust.get(&client).is_some_and(|&n| n >= TRUST_AFTER);
            if trusted || teaching {
                let n = &mut s.endpoints[i].answers[class];
                *n = n.saturating_add(1);
                self.generation += 1;
            }
        }
        self.route = route;
        self.scratch = params;
        self.facts = facts;
        found
    }

    /// What the model holds.
    pub fn stats(&self) -> Stats {
        let mut st = Stats::default();
        for s in self.sources.values() {
            let one = s.stats();
            st.endpoints += one.endpoints;
            st.learned += one.learned;
            st.evicted_endpoints += one.evicted_endpoints;
            st.bytes += one.bytes;
        }
        st
    }

    /// What the model holds for each source, by name.
    pub fn source_stats(&self) -> Vec<(String, Stats)> {
        let mut out: Vec<(String, Stats)> = self
            .sources
            .iter()
            .map(|(name, s)| (name.clone(), s.stats()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Why a request is unusual, put into words only for the finding reported: indexes
/// `param` into the request's parameters, `known` into the endpoint's.
#[derive(Debug, Clone, Copy)]
enum Why {
    Unknown,
    Rare,
    UnknownParam {
        param: usize,
    },
    NewChars {
        param: usize,
        known: usize,
        new: u64,
    },
    Overlong {
        param: usize,
        known: usize,
    },
    NewValue {
        param: usize,
        known: usize,
    },
    Missing {
        known: usize,
    },
    /// Nothing odd but its answer: a 5xx the endpoint rarely gives.
    RareError,
}

/// What is worked out once of a request's parameter value: its classes (a bit each)
/// and its hash (as kept in [`Values`]).
#[derive(Debug, Clone, Copy)]
struct Fact {
    classes: u64,
    hash: u32,
}

/// A finding before it is put into words: its score, why, the endpoint (None: not
/// known), and the 5xx status it answered, when it rarely answers so.
type Finding = (f64, Why, Option<usize>, Option<u16>);

impl Source {
    /// Counts an ordinary clean request of `client`; returns whether it was trusted
    /// before this one.
    fn trust(&mut self, client: u64, ordinary: bool) -> bool {
        let before = self.trust.get(&client).copied().unwrap_or(0);
        if ordinary && before < TRUST_AFTER {
            if self.trust.len() >= MAX_TRUST && !self.trust.contains_key(&client) {
                // Bounded: start over rather than grow (trust is earned again quickly).
                self.trust.clear();
            }
            self.trust.insert(client, before + 1);
        }
        before >= TRUST_AFTER
    }

    /// `at`: the endpoint's place, if it is known.
    fn judge(
        &self,
        settings: &Settings,
        at: Option<usize>,
        status: Option<u16>,
        params: &[(Vec<u8>, Vec<u8>)],
        facts: &[Fact],
    ) -> Option<Finding> {
        let Some(i) = at else {
            return self.routes_stable(settings).then_some((
                SCORE_UNKNOWN_ENDPOINT,
                Why::Unknown,
                None,
                None,
            ));
        };
        let e = &self.endpoints[i];
        let min = settings.min_samples;
        if e.samples < min {
            return self.routes_stable(settings).then_some((
                SCORE_UNKNOWN_ENDPOINT,
                Why::Rare,
                Some(i),
                None,
            ));
        }
        let mut best: Option<(f64, Why)> = None;
        let mut offer = |score: f64, why: Why| {
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, why));
            }
        };
        for (param, ((name, value), fact)) in params.iter().zip(facts).enumerate() {
            let Some(known) = e.params.iter().position(|p| *p.name == name[..]) else {
                offer(SCORE_UNKNOWN_PARAM, Why::UnknownParam { param });
                continue;
            };
            let p = &e.params[known];
            if p.count < min {
                continue;
            }
            let new = fact.classes & !p.seen;
            if new != 0 {
                let letters_only = new & !0b1111 == 0;
                let score = if letters_only {
                    SCORE_NEW_LETTERS
                } else {
                    SCORE_NEW_CHARS
                };
                offer(score, Why::NewChars { param, known, new });
            }
            let len = value.len() as u32;
            if len > p.max_len + (p.max_len / 2).max(8) {
                offer(SCORE_OVERLONG, Why::Overlong { param, known });
            }
            if let Some(values) = p.values.kept() {
                if p.count >= 2 * min && !values.iter().any(|&(v, _)| v == fact.hash) {
                    offer(SCORE_NEW_VALUE, Why::NewValue { param, known });
                }
            }
        }
        for (known, p) in e.params.iter().enumerate() {
            // In all but a few of many requests, and missing here.
            if p.count >= min
                && u64::from(p.count) * 100 >= u64::from(e.samples) * 99
                && !params.iter().any(|(n, _)| *n == *p.name)
            {
                offer(SCORE_MISSING_PARAM, Why::Missing { known });
            }
        }
        // A 5xx from an endpoint that rarely answers so (fewer than one in RARE_ERROR
        // of enough counted answers).
        let total: u32 = e.answers.iter().sum();
        let rare_error = status.filter(|s| {
            (500..600).contains(s)
                && total >= min
                && u64::from(e.answers[3]) * u64::from(RARE_ERROR) < u64::from(total)
        });
        match (best, rare_error) {
            (Some((score, why)), _) => {
                let bonus = if rare_error.is_some() {
                    RARE_ERROR_BONUS
                } else {
                    0.0
                };
                Some(((score + bonus).min(0.9), why, Some(i), rare_error))
            }
            (None, Some(_)) => Some((SCORE_RARE_ERROR, Why::RareError, Some(i), rare_error)),
            (None, None) => None,
        }
    }

    /// A finding in words.
    fn describe(
        &self,
        (score, why, endpoint, rare_error): Finding,
        method: &[u8],
        route: &[u8],
        params: &[(Vec<u8>, Vec<u8>)],
    ) -> Anomaly {
        let e = endpoint.and_then(|i| self.endpoints.get(i));
        let label = match e {
            Some(e) => e.label.clone(),
            None => endpoint_label(method, route),
        };
        let samples = e.map_or(0, |e| e.samples);
        let known = |k: usize| e.and_then(|e| e.params.get(k));
        let name = |i: usize| params.get(i).map_or(String::new(), |(n, _)| shown(n));
        let errors = e.map_or((0, 0), |e| (e.answers[3], e.answers.iter().sum::<u32>()));
        let mut reason =
            match why {
                // The common findings, put together without the formatting machinery.
                Why::Unknown => {
                    let mut r = String::with_capacity(label.len() + 48);
                    r.push_str("endpoint ");
                    r.push_str(&label);
                    r.push_str(" never seen in ");
                    r.push_str(itoa::Buffer::new().format(self.learned));
                    r.push_str(" requests learned");
                    r
                }
                Why::Rare => {
                    let mut r = String::with_capacity(label.len() + 56);
                    r.push_str("endpoint ");
                    r.push_str(&label);
                    r.push_str(" seen ");
                    r.push_str(itoa::Buffer::new().format(samples));
                    r.push_str(" times in ");
                    r.push_str(itoa::Buffer::new().format(self.learned));
                    r.push_str(" requests learned");
                    r
                }
                Why::UnknownParam { param } => format!(
                    "parameter `{}` on {label}: never seen in {samples} requests",
                    name(param)
                ),
                Why::NewChars {
                    param,
                    known: k,
                    new,
                } => {
                    let what: Vec<String> = (0..NCLASS)
                        .filter(|&c| new & (1 << c) != 0)
                        .map(class_name)
                        .collect();
                    format!(
                        "parameter `{}` on {label}: {} never seen in {} requests",
                        name(param),
                        what.join(", "),
                        known(k).map_or(0, |p| p.count)
                    )
                }
                Why::Overlong { param, known: k } => format!(
                    "parameter `{}` on {label}: {} bytes, the longest of {} requests was {}",
                    name(param),
                    params.get(param).map_or(0, |(_, v)| v.len()),
                    known(k).map_or(0, |p| p.count),
                    known(k).map_or(0, |p| p.max_len)
                ),
                Why::NewValue { param, known: k } => format!(
                "parameter `{}` on {label}: a value never seen in {} requests (it took {} values)",
                name(param),
                known(k).map_or(0, |p| p.count),
                known(k).and_then(|p| p.values.kept()).map_or(0, |v| v.len())
            ),
                Why::Missing { known: k } => format!(
                    "parameter `{}` on {label}: missing, present in {} of {samples} requests",
                    known(k).map_or(String::new(), |p| shown(&p.name)),
                    known(k).map_or(0, |p| p.count),
                ),
                Why::RareError => format!("{label} answered {}", rare_error.unwrap_or(500)),
            };
        if let Some(status) = rare_error {
            if !matches!(why, Why::RareError) {
                reason.push_str(&format!("; it answered {status}"));
            }
            reason.push_str(&format!(
                ", a 5xx it gave {} times in {} answers counted",
                errors.0, errors.1
            ));
        }
        Anomaly {
            score,
            reason,
            endpoint: label,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn learn(
        &mut self,
        settings: &Settings,
        at: Option<usize>,
        key: u64,
        method: &[u8],
        route: &[u8],
        params: &[(Vec<u8>, Vec<u8>)],
        facts: &[Fact],
        client: u64,
        answer: Option<usize>,
    ) -> bool {
        let s = self;
        let i = match at {
            Some(i) => i,
            None => {
                if s.endpoints.len() >= settings.max_endpoints.max(1) {
                    s.evict(None);
                }
                s.endpoints.push(Endpoint {
                    key,
                    label: endpoint_label(method, route),
                    samples: 0,
                    params: Vec::new(),
                    contributors: [(0, 0, 0); CONTRIBUTORS],
                    answers: [0; 4],
                });
                let i = s.endpoints.len() - 1;
                s.index.insert(key, i);
                i
            }
        };
        let e = &mut s.endpoints[i];
        if !e.admit(client, settings.max_client_share) {
            return false;
        }
        s.learned += 1;
        e.samples += 1;
        if let Some(class) = answer {
            e.answers[class] = e.answers[class].saturating_add(1);
        }
        let before = e.params.len();
        for ((name, value), fact) in params.iter().zip(facts) {
            let p = match e.params.iter().position(|p| *p.name == name[..]) {
                Some(j) => &mut e.params[j],
                None if e.params.len() < MAX_PARAMS && name.len() <= MAX_NAME => {
                    e.params.push(Param {
                        name: name.clone().into_boxed_slice(),
                        count: 0,
                        max_len: 0,
                        seen: 0,
                        classes: [0; NCLASS],
                        values: Values::new(),
                    });
                    let last = e.params.len() - 1;
                    &mut e.params[last]
                }
                None => continue,
            };
            p.count += 1;
            let mut bits = fact.classes;
            while bits != 0 {
                let c = &mut p.classes[bits.trailing_zeros() as usize];
                *c = c.saturating_add(1);
                bits &= bits - 1;
            }
            p.seen |= fact.classes;
            p.max_len = p.max_len.max(value.len() as u32);
            p.values.add(fact.hash);
        }
        if e.samples >= settings.decay_every.max(2) {
            e.decay();
        }
        // This endpoint's parameters are part of the source's count.
        s.params = s.params.saturating_sub(before) + e.params.len();
        while s.params > MAX_SOURCE_PARAMS && s.evict(Some(key)) {}
        true
    }
}

impl Endpoint {
    /// Whether `client` may add a sample (its share stays under the cap); counts it.
    fn admit(&mut self, client: u64, share: f64) -> bool {
        let cap = FREE_SAMPLES.max((f64::from(self.samples) * share) as u32);
        // One pass: the client's slot, or the lightest (the first of equals).
        let (mut slot, mut lightest) = (None, 0);
        for (j, &(c, n, _)) in self.contributors.iter().enumerate() {
            if c == client {
                slot = Some(j);
                break;
            }
            if n < self.contributors[lightest].1 {
                lightest = j;
            }
        }
        let slot = slot.unwrap_or_else(|| {
            let floor = self.contributors[lightest].1;
            self.contributors[lightest] = (client, floor, floor);
            lightest
        });
        let (_, n, inherited) = &mut self.contributors[slot];
        if *n - *inherited >= cap {
            return false;
        }
        *n += 1;
        true
    }

    /// Halves every count: what was seen rarely is forgotten.
    fn decay(&mut self) {
        self.samples /= 2;
        for p in &mut self.params {
            p.count /= 2;
            p.seen = 0;
            for (k, c) in p.classes.iter_mut().enumerate() {
                *c /= 2;
                if *c > 0 {
                    p.seen |= 1 << k;
                }
            }
            p.values.halve();
        }
        self.params.retain(|p| p.count > 0);
        for (_, n, inherited) in &mut self.contributors {
            *n /= 2;
            *inherited /= 2;
        }
        for n in &mut self.answers {
            *n /= 2;
        }
    }
}

impl Source {
    fn stats(&self) -> Stats {
        let mut st = Stats {
            endpoints: self.endpoints.len(),
            learned: self.learned,
            evicted_endpoints: self.evicted,
            bytes: 0,
        };
        // The index: about 16 bytes and a control byte per endpoint. (The clients'
        // trust, at most MAX_TRUST entries of as much, is not counted: it is not saved.)
        st.bytes += self.index.len() * 17;
        for e in &self.endpoints {
            st.bytes += std::mem::size_of::<Endpoint>() + e.label.len() + 16;
            for p in &e.params {
                st.bytes += std::mem::size_of::<Param>() + p.name.len();
            }
        }
        st
    }

    /// Whether a route never (or rarely) seen is reported: once the source has learned
    /// `unknown_after` requests. (Not gated on how often new routes appear: that would
    /// let a client that makes new endpoints switch the report off.)
    fn routes_stable(&self, settings: &Settings) -> bool {
        self.learned >= settings.unknown_after
    }

    /// Drops the coldest of a few endpoints (sampled in turn, so a flood of new
    /// endpoints costs a bounded amount per insertion), never the one keyed `spare`.
    fn evict(&mut self, spare: Option<u64>) -> bool {
        let n = self.endpoints.len();
        let mut coldest: Option<usize> = None;
        for k in 0..9 {
            let j = (self.tick + k * 7919) % n.max(1);
            let Some(e) = self.endpoints.get(j) else {
                return false;
            };
            if Some(e.key) != spare && coldest.is_none_or(|c| e.samples < self.endpoints[c].samples)
            {
                coldest = Some(j);
            }
        }
        self.tick = self.tick.wrapping_add(1);
        let Some(coldest) = coldest else {
            return false;
        };
        let gone = self.endpoints.swap_remove(coldest);
        self.params -= gone.params.len().min(self.params);
        self.index.remove(&gone.key);
        if let Some(moved) = self.endpoints.get(coldest) {
            self.index.insert(moved.key, coldest);
        }
        self.evicted += 1;
        true
    }
}

/// `METHOD /route`, cut at [`MAX_LABEL`] bytes (with `…`).
fn endpoint_label(method: &[u8], route: &[u8]) -> String {
    let mut l = String::with_capacity((method.len() + 1 + route.len()).min(MAX_LABEL + 3));
    l.push_str(&String::from_utf8_lossy(method));
    l.push(' ');
    l.push_str(&String::from_utf8_lossy(route));
    if l.len() > MAX_LABEL {
        let mut cut = MAX_LABEL;
        while !l.is_char_boundary(cut) {
            cut -= 1;
        }
        l.truncate(cut);
        l.push('…');
    }
    l
}

fn hash_parts(hasher: &foldhash::fast::FixedState, parts: &[&[u8]]) -> u64 {
    let mut h = hasher.build_hasher();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// A parameter name or value as shown in a reason: printable ASCII, at most 40 bytes.
fn shown(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(40)
        .map(|&c| {
            if (0x20..0x7F).contains(&c) && c != b'`' {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    if b.len() > 40 {
        s.push('…');
    }
    s
}

fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let t = super::structure::strip_origin(target);
    let t = t.split(|&b| b == b'#').next().unwrap_or(b"");
    match memchr::memchr(b'?', t) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, &b""[..]),
    }
}

/// The route template of a path: numeric, hexadecimal (8 or more digits with at least
/// one number), UUID and overlong (over 40 bytes) segments are folded to `{n}`, `{hex}`,
/// `{uuid}` and `{s}`; the rest is kept as logged (shown as lossy UTF-8).
pub fn route_template(path: &[u8]) -> String {
    let mut out = Vec::with_capacity(path.len());
    route_template_into(path, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`route_template`] into `out` (cleared first).
fn route_template_into(path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for (k, seg) in path.split(|&b| b == b'/').enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        if seg.is_empty() {
            continue;
        }
        let shape = Shape::of(seg);
        let len = seg.len();
        let folded = if shape.all(DIGIT) {
            Some("{n}")
        } else if len == 36 && is_uuid(seg) {
            Some("{uuid}")
        } else if len >= 8 && shape.some(DIGIT) && shape.all(HEX) {
            Some("{hex}")
        } else if len > 40 {
            Some("{s}")
        } else if k >= 2 && shape.dashes >= 2 && shape.all(SLUG) {
            // A page's slug below the first level (`/blog/{n}/my-first-post`):
            // lower-case words and digits joined by at least two dashes, no
            // extension. Each is its own page, not its own endpoint.
            Some("{slug}")
        } else {
            None
        };
        match folded {
            Some(f) => out.extend_from_slice(f.as_bytes()),
            // Only a name with digits has parts to fold.
            None if shape.some(DOT) && shape.some(DIGIT) => push_file_name(seg, out),
            None => out.extend_from_slice(seg),
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
}

/// What a path segment is made of, found in one pass: which kinds of byte all of its
/// bytes are and which some of them are (a bit per kind), and its dashes.
struct Shape {
    all: u8,
    some: u8,
    dashes: usize,
}

const DIGIT: u8 = 1;
/// Digits and `a`–`f`, `A`–`F`.
const HEX: u8 = 2;
/// Lower-case letters, digits, `-` and `_` (what a slug is made of).
const SLUG: u8 = 4;
const DOT: u8 = 8;

/// The kinds of every byte.
const KIND: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'0'..=b'9' => DIGIT | HEX | SLUG,
            b'a'..=b'f' => HEX | SLUG,
            b'A'..=b'F' => HEX,
            b'g'..=b'z' | b'_' | b'-' => SLUG,
            b'.' => DOT,
            _ => 0,
        };
        b += 1;
    }
    t
};

impl Shape {
    fn of(seg: &[u8]) -> Shape {
        let mut s = Shape {
            all: u8::MAX,
            some: 0,
            dashes: 0,
        };
        for &b in seg {
            let k = KIND[usize::from(b)];
            s.all &= k;
            s.some |= k;
            s.dashes += usize::from(b == b'-');
        }
        s
    }

    fn all(&self, kind: u8) -> bool {
        self.all & kind != 0
    }

    fn some(&self, kind: u8) -> bool {
        self.some & kind != 0
    }
}

/// A file name with its numeric and fingerprint parts folded (`app.8ed189c4.js` is
/// `app.{hex}.js`, `113.webp` is `{n}.webp`): a build's assets are one endpoint whatever
/// the deploy.
fn push_file_name(seg: &[u8], out: &mut Vec<u8>) {
    for (i, part) in seg.split(|&b| b == b'.').enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let shape = Shape::of(part);
        if !part.is_empty() && shape.all(DIGIT) {
            out.extend_from_slice(b"{n}");
        } else if part.len() >= 8 && shape.all(HEX) && shape.some(DIGIT) {
            out.extend_from_slice(b"{hex}");
        } else {
            out.extend_from_slice(part);
        }
    }
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The query's parameters, names and values percent-decoded (`+` as a space), in
/// order, into the first entries of `out` (whose buffers are reused); a name without
/// `=` has an empty value. Returns how many.
fn decode_params(query: &[u8], out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> usize {
    let mut n = 0;
    for pair in query.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if out.len() <= n {
            out.push((Vec::new(), Vec::new()));
        }
        let (nb, vb) = &mut out[n];
        nb.clear();
        vb.clear();
        percent_decode(name, true, nb);
        percent_decode(value, true, vb);
        n += 1;
        if n >= 4 * MAX_PARAMS {
            break;
        }
    }
    n
}

mod persist;
pub use persist::{ModelFileError, PopulationFile, Snapshot, MODEL_VERSION};

#[cfg(test)]
mod tests;
