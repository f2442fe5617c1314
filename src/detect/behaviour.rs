//! Per-client behaviour: how each client of a source uses it (how many of its requests
//! end in 404 or another 4xx, how many distinct paths it asks for, how many of its requests
//! write, how many user agents it shows, how many of its requests the endpoint
//! baselines found unusual), measured against the source's other clients with robust
//! statistics (median and MAD), not global constants: a client's 404 ratio of 0.3 is
//! ordinary for one application and a probe for another.
//!
//! A client is judged at checkpoints (its 20th request, then each doubling), so the
//! work is a few judgements per client whatever its number of requests, and each of its
//! measures is reported at most once. What the population learns cannot be steered: a
//! client enters it only at a checkpoint, only while it has no rule hit and nothing
//! unusual reported, so a scanner that probes without tripping a rule still does not
//! teach the source that probing is normal; and median and MAD move only when more than
//! half of the population changes. Nothing is judged until a source has
//! [`Settings::min_population`] clients in its population.
//!
//! Sans-IO and clock-free: times come with the requests. Memory is bounded by
//! [`Settings::max_clients`] (the least recently seen half is let go when it is full)
//! and per source by [`Settings::population`].
//!
//! The populations are written into the model file with the endpoint baselines
//! ([`Behaviour::populations`], [`Behaviour::restore`]), so a restart does not wait for
//! [`Settings::min_population`] clients again before judging; the clients followed are
//! not (they come back within minutes).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use super::anomaly::{Anomaly, PopulationFile};
use super::parse::Request;

/// The knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A client's first checkpoint (requests); later ones double it.
    pub min_requests: u32,
    /// Clients' measures kept per source to judge others by.
    pub population: usize,
    /// Measures a source needs before any client of it is judged.
    pub min_population: usize,
    /// Clients followed at most, all sources together.
    pub max_clients: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_requests: 20,
            population: 512,
            min_population: 30,
            max_clients: 100_000,
        }
    }
}

/// What is measured of a client. Each is a share or a count that a prober, a
/// credential stuffer or a scraper pushes far above its source's other clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    NotFound,
    ClientErrors,
    Paths,
    Writes,
    UserAgents,
    Flagged,
    Regularity,
}

const NMEASURES: usize = 7;

const MEASURES: [Measure; NMEASURES] = [
    Measure::NotFound,
    Measure::ClientErrors,
    Measure::Paths,
    Measure::Writes,
    Measure::UserAgents,
    Measure::Flagged,
    Measure::Regularity,
];

impl Measure {
    /// Its name in the model file.
    fn key(self) -> &'static str {
        match self {
            Measure::NotFound => "not_found",
            Measure::ClientErrors => "client_errors",
            Measure::Paths => "paths",
            Measure::Writes => "writes",
            Measure::UserAgents => "user_agents",
            Measure::Flagged => "flagged",
            Measure::Regularity => "regularity",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Measure::NotFound => "404 ratio",
            Measure::ClientErrors => "ratio of other 4xx answers",
            Measure::Paths => "distinct paths per request",
            Measure::Writes => "share of requests other than GET/HEAD",
            Measure::UserAgents => "distinct user agents",
            Measure::Flagged => "share of requests the endpoint baselines found unusual",
            Measure::Regularity => {
                "timing regularity (1 / (1 + the spread of its gaps over their mean))"
            }
        }
    }

    /// The smallest spread a measure is judged with: a population whose clients all
    /// have a 404 ratio of 0 has a MAD of 0, and a client with one 404 in 20 must not
    /// stand out infinitely.
    fn min_spread(self) -> f64 {
        match self {
            Measure::UserAgents => 1.0,
            _ => 0.05,
        }
    }

    /// How far above the median a value must be, at least, to be worth a word.
    fn min_excess(self) -> f64 {
        match self {
            Measure::UserAgents => 3.0,
            _ => 0.3,
        }
    }

    fn score(self) -> f64 {
        match self {
            Measure::Flagged => 0.7,
            // A clock-like client (a poller, a monitor, a bot) is worth a look, never
            // an alert or a ban point on its own.
            Measure::Regularity => 0.4,
            Measure::NotFound | Measure::ClientErrors => 0.6,
            Measure::Paths | Measure::Writes | Measure::UserAgents => 0.5,
        }
    }
}

/// A value this many robust standard deviations (1.4826 MAD) above the median, and
/// above the 99th percentile, is unusual.
const Z_LIMIT: f64 = 6.0;

/// One client of one source.
#[derive(Debug, Default)]
struct Client {
    requests: u32,
    not_found: u32,
    client_errors: u32,
    writes: u32,
    flagged: u32,
    /// Paths and user agents seen, as bits of their hashes (linear counting).
    paths: u64,
    agents: u32,
    /// A rule hit this client, or something unusual was reported: it never enters the
    /// population.
    tainted: bool,
    /// Measures already reported (bit per [`Measure`]).
    reported: u8,
    last_seen: i64,
    /// Gaps between its requests (seconds): how many, their sum and sum of squares.
    gaps: u32,
    gap_sum: f32,
    gap_squares: f32,
}

impl Client {
    fn values(&self) -> [f64; NMEASURES] {
        let n = f64::from(self.requests.max(1));
        [
            f64::from(self.not_found) / n,
            f64::from(self.client_errors) / n,
            (linear_count(self.paths, 64) / n).min(1.0),
            f64::from(self.writes) / n,
            linear_count(u64::from(self.agents), 32),
            f64::from(self.flagged) / n,
            self.regularity(),
        ]
    }

    /// 1 / (1 + the coefficient of variation of its gaps): 1 for a client on a clock,
    /// near 0 for a person's bursts and pauses. Not measured (NaN) while its requests
    /// come less than a second apart on average: log times have whole seconds.
    fn regularity(&self) -> f64 {
        let k = f64::from(self.gaps);
        if k < 2.0 {
            return f64::NAN;
        }
        let mean = f64::from(self.gap_sum) / k;
        if mean < 1.0 {
            return f64::NAN;
        }
        let var = (f64::from(self.gap_squares) / k - mean * mean).max(0.0);
        1.0 / (1.0 + var.sqrt() / mean)
    }
}

/// How many distinct items set `bits` of `m` (linear counting).
fn linear_count(bits: u64, m: u32) -> f64 {
    let set = bits.count_ones();
    let m = f64::from(m);
    if set >= m as u32 {
        return m * m.ln();
    }
    -m * (1.0 - f64::from(set) / m).ln()
}

/// Median, MAD and 99th percentile of one measure over a population.
#[derive(Debug, Clone, Copy, Default)]
struct Spread {
    /// Clients it was taken of.
    count: usize,
    median: f64,
    mad: f64,
    p99: f64,
}

#[derive(Debug, Default)]
struct Population {
    /// The source's name (for the model file).
    source: String,
    /// Measures of recent clients at their checkpoints (a ring).
    values: Vec<[f64; NMEASURES]>,
    next: usize,
    /// Entries since the spreads were last computed.
    fresh: usize,
    spreads: Option<[Spread; NMEASURES]>,
}

impl Population {
    fn add(&mut self, v: [f64; NMEASURES], cap: usize) {
        if self.values.len() < cap {
            self.values.push(v);
        } else {
            self.values[self.next] = v;
            self.next = (self.next + 1) % cap.max(1);
        }
        self.fresh += 1;
    }

    /// Its clients' measures, oldest first.
    fn oldest_first(&self) -> impl Iterator<Item = &[f64; NMEASURES]> {
        let (newer, older) = self.values.split_at(self.next.min(self.values.len()));
        older.iter().chain(newer)
    }

    /// The spreads, recomputed once enough has changed (a tenth of the population).
    fn spreads(&mut self) -> [Spread; NMEASURES] {
        let stale = self.fresh * 10 >= self.values.len().max(10);
        if let (Some(s), false) = (self.spreads, stale) {
            return s;
        }
        let mut out = [Spread::default(); NMEASURES];
        let mut column: Vec<f64> = Vec::with_capacity(self.values.len());
        for (m, spread) in out.iter_mut().enumerate() {
            column.clear();
            // A measure not taken of a client (NaN) is no part of its spread.
            column.extend(self.values.iter().map(|v| v[m]).filter(|x| !x.is_nan()));
            column.sort_by(f64::total_cmp);
            let median = quantile(&column, 0.5);
            let p99 = quantile(&column, 0.99);
            for x in column.iter_mut() {
                *x = (*x - median).abs();
            }
            column.sort_by(f64::total_cmp);
            *spread = Spread {
                count: column.len(),
                median,
                mad: quantile(&column, 0.5),
                p99,
            };
        }
        self.spreads = Some(out);
        self.fresh = 0;
        out
    }
}

/// The value at quantile `q` of sorted `xs` (nearest rank).
fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let i = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[i.min(xs.len() - 1)]
}

/// Keyed by hashes already.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The behaviour of every client of every source.
#[derive(Debug)]
pub struct Behaviour {
    settings: Settings,
    clients: Map<u64, Client>,
    populations: Map<u64, Population>,
    /// Fixed, so the same log is judged the same in every run (`check` is repeatable).
    hasher: foldhash::fast::FixedState,
    /// Moves on whenever a population changes: the daemon saves only when it moved.
    generation: u64,
}

/// What one request of a client was, as far as behaviour goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// A rule matched the request (or its client was banned for it).
    pub rule_hit: bool,
    /// The endpoint baselines found it unusual (a score of 0.5 or more).
    pub unusual: bool,
}

impl Behaviour {
    pub fn new(settings: Settings) -> Behaviour {
        Behaviour {
            settings,
            clients: Map::default(),
            populations: Map::default(),
            hasher: foldhash::fast::FixedState::with_seed(0xbe4a_710c),
            generation: 0,
        }
    }

    /// Moves on whenever what the populations hold changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every source's population, for the model file (sorted by source).
    pub fn populations(&self) -> Vec<PopulationFile> {
        let mut out: Vec<PopulationFile> = self
            .populations
            .values()
            .filter(|p| !p.values.is_empty())
            .map(|p| PopulationFile {
                source: p.source.clone(),
                measures: MEASURES.iter().map(|m| m.key().to_string()).collect(),
                clients: p
                    .oldest_first()
                    .map(|v| v.iter().map(|&x| (!x.is_nan()).then_some(x)).collect())
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    /// Takes back populations written by [`Behaviour::populations`] (a restart). A
    /// measure the file does not name, or a value that is not a finite share or count,
    /// is not taken of that client; a source keeps its newest clients up to
    /// [`Settings::population`]. Returns how many clients' measures were taken.
    pub fn restore(&mut self, files: Vec<PopulationFile>) -> usize {
        let mut restored = 0;
        let cap = self.settings.population.max(1);
        for f in files {
            let columns: Vec<Option<usize>> = f
                .measures
                .iter()
                .map(|name| MEASURES.iter().position(|m| m.key() == name))
                .collect();
            let key = self.hasher.hash_one(f.source.as_str());
            let population = self.populations.entry(key).or_default();
            population.source = f.source;
            let skip = f.clients.len().saturating_sub(cap);
            for client in f.clients.into_iter().skip(skip) {
                let mut v = [f64::NAN; NMEASURES];
                for (x, col) in client.into_iter().zip(&columns) {
                    if let (Some(x), Some(i)) = (x, col) {
                        if x.is_finite() && x >= 0.0 {
                            v[*i] = x;
                        }
                    }
                }
                population.add(v, cap);
                restored += 1;
            }
        }
        self.generation = self.generation.wrapping_add(1);
        restored
    }

    /// Clients followed now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Counts `req` (at `now`, Unix seconds) for `client` of `source` (the logged peer,
    /// or the real client behind a trusted proxy); at a checkpoint, judges the client
    /// against the source's other clients and returns the most unusual measure not
    /// reported before, if any.
    pub fn observe(
        &mut self,
        source: &str,
        client: IpAddr,
        req: &Request<'_>,
        now: i64,
        seen: Seen,
    ) -> Option<Anomaly> {
        let source_key = self.hasher.hash_one(source);
        let key = self.hasher.hash_one((source_key, client));
        if self.clients.len() >= self.settings.max_clients && !self.clients.contains_key(&key) {
            self.shed();
        }
        let target = &req.target[..];
        let path = memchr::memchr(b'?', target).map_or(target, |i| &target[..i]);
        let path_bit = 1u64 << (self.hasher.hash_one(path) % 64);
        let agent_bit = 1u32 << (self.hasher.hash_one(&req.user_agent[..]) % 32);
        let c = self.clients.entry(key).or_default();
        if c.requests > 0 {
            let gap = (now - c.last_seen).clamp(0, 86_400) as f32;
            c.gaps += 1;
            c.gap_sum += gap;
            c.gap_squares += gap * gap;
        }
        c.requests = c.requests.saturating_add(1);
        c.last_seen = now;
        match req.status {
            Some(404 | 410) => c.not_found += 1,
            Some(400..=499) => c.client_errors += 1,
            _ => {}
        }
        let method = &req.method[..];
        if !method.is_empty() && method != b"GET" && method != b"HEAD" {
            c.writes += 1;
        }
        if seen.unusual {
            c.flagged += 1;
        }
        c.tainted |= seen.rule_hit;
        c.paths |= path_bit;
        c.agents |= agent_bit;
        let n = c.requests;
        let min = self.settings.min_requests.max(1);
        if n < min || n % min != 0 || !(n / min).is_power_of_two() {
            return None;
        }
        let values = c.values();
        let population = self
            .populations
            .entry(source_key)
            .or_insert_with(|| Population {
                source: source.to_string(),
                ..Population::default()
            });
        let mut found: Option<(Measure, f64, Spread, usize)> = None;
        if population.values.len() >= self.settings.min_population {
            let spreads = population.spreads();
            for (i, &m) in MEASURES.iter().enumerate() {
                if c.reported & (1 << i) != 0 {
                    continue;
                }
                let (x, s) = (values[i], spreads[i]);
                if s.count < self.settings.min_population {
                    continue;
                }
                let scale = (1.4826 * s.mad).max(m.min_spread());
                let z = (x - s.median) / scale;
                if z >= Z_LIMIT && x > s.p99 && x - s.median >= m.min_excess() {
                    c.reported |= 1 << i;
                    if found.is_none_or(|(f, ..)| m.score() > f.score()) {
                        found = Some((m, x, s, s.count));
                    }
                }
            }
        }
        if found.is_some() {
            c.tainted = true;
        }
        if !c.tainted {
            population.add(values, self.settings.population);
            self.generation = self.generation.wrapping_add(1);
        }
        found.map(|(m, x, s, clients)| Anomaly {
            score: m.score(),
            reason: format!(
                "{} {} after {n} requests, against a p99 of {} (median {}) over {clients} of this source's clients",
                m.name(),
                shown(m, x),
                shown(m, s.p99),
                shown(m, s.median),
            ),
            endpoint: "(client)".into(),
        })
    }

    /// Lets go of the least recently seen half of the clients.
    fn shed(&mut self) {
        let mut seen: Vec<i64> = self.clients.values().map(|c| c.last_seen).collect();
        let mid = seen.len() / 2;
        let (_, &mut cut, _) = seen.select_nth_unstable(mid);
        let mut dropped = 0;
        self.clients.retain(|_, c| {
            let keep = c.last_seen > cut || dropped >= mid;
            if !keep {
                dropped += 1;
            }
            keep
        });
    }
}

fn shown(m: Measure, x: f64) -> String {
    match m {
        Measure::UserAgents => format!("{x:.0}"),
        _ => format!("{x:.2}"),
    }
}

#[cfg(test)]
mod tests;
