//! `security-monitor check`'s replay: the detector run over log lines the way the daemon
//! would have run it live, with each line's own timestamp as the clock. Sans I/O like
//! the rest of `detect`: the command line reads the files and hands the lines in.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use super::parse::{LineParser, LogFormat, ParseHealth, Request};
use super::{Detector, Scope};
use crate::time::format_time;

/// Why a replay cannot start (the words are the detector's or the format's).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Rules(#[from] super::rules::RuleError),
    #[error("{0}")]
    Format(#[from] super::parse::FormatError),
}

/// One IP that would be banned (or would have been, were it not allowlisted).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BanEntry {
    pub ip: IpAddr,
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub hits: u64,
    pub first_seen: String,
    pub last_seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip)]
    last_seen_unix: i64,
}

/// What `check` found; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub lines: u64,
    pub parsed: u64,
    pub unparsed: u64,
    /// Lines longer than `limits.max_line_bytes`, examined only up to that length.
    pub truncated: u64,
    pub rule_hits: BTreeMap<String, u64>,
    pub bans: Vec<BanEntry>,
    pub allowlisted: Vec<BanEntry>,
    pub elapsed_s: f64,
    /// Client IPs the detector held at the end, and how many it let go (memory bound).
    pub tracked_ips: usize,
    pub evicted_ips: u64,
    /// Inputs most of whose lines did not parse, in words (also printed to stderr).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// With a profile: its name, and how many lines each of its shapes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shapes: Vec<ShapeCount>,
    /// With the endpoint baselines on (`check --learn`, `--anomalies`): the unusual
    /// requests (at most [`MAX_ANOMALIES`] listed, all counted) and what the model holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly_model: Option<super::anomaly::Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomalies_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomalies: Option<Vec<AnomalyEntry>>,
}

/// Unusual requests listed in a report at most.
pub const MAX_ANOMALIES: usize = 20_000;

/// One unusual request in a report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyEntry {
    pub ip: IpAddr,
    pub score: f64,
    pub reason: String,
    pub endpoint: String,
    /// The line's time (Unix seconds), when it has one; written as the report's other
    /// times are (formatted only when the report is written).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "formatted_time"
    )]
    pub time: Option<i64>,
}

fn formatted_time<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

/// How many lines one shape of a profile read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShapeCount {
    pub shape: String,
    pub lines: u64,
}

/// Runs the detector over the inputs in order, as one host would have seen them.
pub struct Replay {
    detector: Detector,
    format: LogFormat,
    /// The rules and thresholds of the format's profile, if it is one.
    scope: Scope,
    /// The reader's clock, for times without a year.
    reference: Option<i64>,
    max_line: usize,
    report: Report,
    /// Looked up for every line with the baselines on: a fast hasher.
    bans: HashMap<IpAddr, usize, foldhash::fast::RandomState>,
    allowlisted: HashMap<IpAddr, usize, foldhash::fast::RandomState>,
    /// The last timestamp seen, for lines that carry none.
    clock: i64,
    /// The endpoint baselines, when on, and the per-client behaviour beside them.
    anomaly: Option<super::anomaly::Model>,
    behaviour: Option<super::behaviour::Behaviour>,
}

/// A line through the rules, waiting for the baselines.
struct Judged<'a> {
    req: Request<'a>,
    now: i64,
    /// A rule matched it, or its client is banned: it is not learned.
    rule_hit: bool,
}

/// Lines kept to be judged together (see [`Replay::lines`]).
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Each line's end in `bytes`, and whether it was cut at the bound.
    ends: Vec<(usize, bool)>,
}

impl Batch {
    /// Lines a batch holds before it is judged.
    pub const LINES: usize = 128;

    pub fn push(&mut self, line: &[u8], truncated: bool) {
        self.bytes.extend_from_slice(line);
        self.ends.push((self.bytes.len(), truncated));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.ends.len() >= Self::LINES
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The lines, in order, and whether each was cut.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> {
        let mut start = 0;
        self.ends.iter().map(move |&(end, cut)| {
            let line = &self.bytes[start..end];
            start = end;
            (line, cut)
        })
    }
}

/// One input being replayed: its own format recognition and parse health.
pub struct Source {
    parser: LineParser,
    health: ParseHealth,
    /// The profile's hint, once a line showed it (see `LineParser::hint`).
    hint: Option<String>,
    /// Its own format and scope (a container's, see [`Replay::source_as`]); None: the
    /// replay's.
    own: Option<(String, Scope)>,
}

impl Replay {
    /// A replay with detect's `settings`, reading lines in `format`, each examined up to
    /// `max_line` bytes (`limits.max_line_bytes`).
    pub fn new(
        settings: &super::Settings,
        format: LogFormat,
        max_line: usize,
    ) -> Result<Replay, ReplayError> {
        let profile = match &format {
            LogFormat::Profile(p) => Some(p.clone()),
            _ => None,
        };
        let report = Report {
            profile: profile.as_ref().map(|p| p.name.clone()),
            shapes: profile
                .iter()
                .flat_map(|p| p.shapes.iter())
                .map(|s| ShapeCount {
                    shape: s.name.clone(),
                    lines: 0,
                })
                .collect(),
            ..Report::default()
        };
        Ok(Replay {
            detector: Detector::new(settings).map_err(ReplayError::Rules)?,
            format,
            scope: Scope {
                categories: None,
                profile,
            },
            reference: None,
            max_line,
            report,
            bans: HashMap::default(),
            allowlisted: HashMap::default(),
            clock: 0,
            anomaly: None,
            behaviour: None,
        })
    }

    /// Turns the endpoint baselines on, with `model` (fresh, or learned by another
    /// replay: see [`take_model`](Self::take_model)).
    pub fn set_model(&mut self, model: super::anomaly::Model) {
        self.anomaly = Some(model);
        self.behaviour = Some(super::behaviour::Behaviour::new(Default::default()));
        self.report.anomalies_total = Some(0);
        self.report.anomalies = Some(Vec::new());
    }

    /// The endpoint baselines, taken out (to carry what one replay learned into another).
    pub fn take_model(&mut self) -> Option<super::anomaly::Model> {
        self.anomaly.take()
    }

    /// Lines are examined up to this many bytes (`limits.max_line_bytes`).
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Sets the reader's clock (Unix seconds), for times that carry no year (syslog's).
    pub fn set_reference(&mut self, now: i64) {
        self.reference = Some(now);
    }

    /// Starts the next input.
    pub fn source(&self) -> Result<Source, ReplayError> {
        let mut parser = LineParser::new(&self.format).map_err(ReplayError::Format)?;
        if let Some(r) = self.reference {
            parser.set_reference(r);
        }
        Ok(Source {
            parser,
            health: ParseHealth::for_format(&self.format),
            hint: None,
            own: None,
        })
    }

    /// Starts the next input, read in its own `format` and judged by only the rule
    /// `categories` given (None: all), as the daemon reads a container whose profile
    /// differs from the others'.
    pub fn source_as(
        &self,
        format: &LogFormat,
        categories: Option<Vec<String>>,
    ) -> Result<Source, ReplayError> {
        let mut parser = LineParser::new(format).map_err(ReplayError::Format)?;
        if let Some(r) = self.reference {
            parser.set_reference(r);
        }
        let scope = Scope {
            categories,
            profile: match format {
                LogFormat::Profile(p) => Some(p.clone()),
                _ => None,
            },
        };
        Ok(Source {
            parser,
            health: ParseHealth::for_format(format),
            hint: None,
            own: Some((format.name().to_string(), scope)),
        })
    }

    /// Ends an input called `name` in notices: when most of its lines did not parse, a
    /// notice saying so is added to [`Report::notices`] and returned.
    pub fn end(&mut self, source: Source, name: &str) -> Vec<String> {
        for (shape, n) in source.parser.shape_counts() {
            match self.report.shapes.iter_mut().find(|c| c.shape == shape) {
                Some(c) => c.lines += n,
                None => self.report.shapes.push(ShapeCount { shape, lines: n }),
            }
        }
        let format = match &source.own {
            Some((f, _)) => f.as_str(),
            None => self.format.name(),
        };
        let notice = source.health.notice().map(|n| n.describe(name, format));
        let hint = source.hint.map(|h| format!("{name}: {h}"));
        let notices: Vec<String> = notice.into_iter().chain(hint).collect();
        self.report.notices.extend(notices.iter().cloned());
        notices
    }

    /// One line of `source` (without its newline; `truncated`: cut at the bound).
    pub fn line(&mut self, source: &mut Source, line: &[u8], truncated: bool) {
        self.judge(source, line, truncated, None);
    }

    /// [`line`](Self::line) for a line received at `received` (Unix seconds, Docker's
    /// timestamp): the clock for a line whose own time does not parse, and the
    /// reference for times without a year.
    pub fn line_at(&mut self, source: &mut Source, line: &[u8], truncated: bool, received: i64) {
        source.parser.set_reference(received);
        self.judge(source, line, truncated, Some(received));
    }

    /// The lines of `batch`, in order, as [`line`](Self::line) would judge them one by
    /// one (the same report): with the baselines on, every line goes through the rules
    /// first and then every line through the baselines, so each part's code stays hot in
    /// the processor's cache (interleaved, the baselines cost a third more time than
    /// their instructions).
    pub fn lines(&mut self, source: &mut Source, batch: &Batch) {
        // Without the baselines `rules` keeps nothing back, and this is `line` in turn.
        let mut judged = Vec::new();
        for (line, truncated) in batch.iter() {
            judged.extend(self.rules(source, line, truncated, None));
        }
        for j in &judged {
            self.baselines(j);
        }
    }

    /// Whether the baselines are on (then [`lines`](Self::lines) is worth batching for).
    pub fn has_model(&self) -> bool {
        self.anomaly.is_some()
    }

    fn judge(&mut self, source: &mut Source, line: &[u8], truncated: bool, received: Option<i64>) {
        if let Some(j) = self.rules(source, line, truncated, received) {
            self.baselines(&j);
        }
    }

    /// A line through the rules; with the baselines on, what they need of it.
    fn rules<'a>(
        &mut self,
        source: &mut Source,
        line: &'a [u8],
        truncated: bool,
        received: Option<i64>,
    ) -> Option<Judged<'a>> {
        self.report.lines += 1;
        if truncated {
            self.report.truncated += 1;
        }
        let parsed = source.parser.parse(line);
        source.health.record(line, parsed.is_some());
        let Some(req) = parsed else {
            self.report.unparsed += 1;
            if let Some(hint) = source.parser.hint(line) {
                source.hint = Some(hint);
            }
            return None;
        };
        self.report.parsed += 1;
        if let Some(t) = req.time.or(received) {
            self.clock = t;
        }
        let now = self.clock;
        let scope = source.own.as_ref().map_or(&self.scope, |(_, s)| s);
        let obs = self.detector.observe_in(&req, line, now, scope);
        // The baselines learn from only what is surely ordinary: a client with no rule
        // hit and no ban (and, they see to it, answered 2xx/3xx).
        let judged = self.anomaly.is_some().then(|| {
            let banned = self.bans.contains_key(&req.ip);
            !obs.hits.is_empty() || obs.verdict.is_some() || banned
        });
        for &i in &obs.hits {
            let id = &self.detector.rules().rule(i).id;
            match self.report.rule_hits.get_mut(id) {
                Some(n) => *n += 1,
                None => {
                    self.report.rule_hits.insert(id.clone(), 1);
                }
            }
        }
        if let Some(v) = obs.verdict {
            self.verdict(v);
        } else if !obs.hits.is_empty() {
            // Further offences of an IP that is already banned.
            if let Some(&i) = self.bans.get(&req.ip) {
                let e = &mut self.report.bans[i];
                e.hits += 1;
                if now > e.last_seen_unix {
                    e.last_seen_unix = now;
                    e.last_seen = format_time(now);
                }
            }
        }
        judged.map(|rule_hit| Judged { req, now, rule_hit })
    }

    /// A line through the baselines, after the rules.
    fn baselines(&mut self, j: &Judged<'_>) {
        let (Some(model), Some(behaviour)) = (&mut self.anomaly, &mut self.behaviour) else {
            return;
        };
        let req = &j.req;
        let found = model.observe("check", req, !j.rule_hit);
        let seen = super::behaviour::Seen {
            rule_hit: j.rule_hit,
            unusual: found.as_ref().is_some_and(|a| a.score >= 0.5),
        };
        let client = behaviour.observe("check", req.ip, req, j.now, seen);
        for a in found.into_iter().chain(client) {
            if let Some(n) = &mut self.report.anomalies_total {
                *n += 1;
            }
            if let Some(list) = &mut self.report.anomalies {
                if list.len() < MAX_ANOMALIES {
                    list.push(AnomalyEntry {
                        ip: req.ip,
                        score: a.score,
                        reason: a.reason,
                        endpoint: a.endpoint,
                        time: req.time,
                    });
                }
            }
        }
    }

    /// A ban (or an allowlisted offender): a new entry, or more hits on an IP banned
    /// again after its first ban would have expired.
    fn verdict(&mut self, v: super::Verdict) {
        let (map, list) = if v.allowlisted.is_some() {
            (&mut self.allowlisted, &mut self.report.allowlisted)
        } else {
            (&mut self.bans, &mut self.report.bans)
        };
        if let Some(&i) = map.get(&v.ip) {
            let e = &mut list[i];
            e.hits += v.hits as u64;
            e.last_seen = format_time(v.last_seen);
            e.last_seen_unix = v.last_seen;
        } else {
            map.insert(v.ip, list.len());
            list.push(BanEntry {
                ip: v.ip,
                rule: v.rule,
                category: v.category,
                severity: v.severity.to_string(),
                hits: v.hits as u64,
                first_seen: format_time(v.first_seen),
                last_seen: format_time(v.last_seen),
                reason: v.allowlisted,
                last_seen_unix: v.last_seen,
            });
        }
    }

    /// The report so far, with the memory figures filled in; `elapsed_s` is how long
    /// the caller took (the replay has no clock).
    pub fn finish(&mut self, elapsed_s: f64) -> Report {
        self.report.elapsed_s = elapsed_s;
        self.report.tracked_ips = self.detector.tracked_ips();
        self.report.evicted_ips = self.detector.evicted_ips();
        self.report.anomaly_model = self.anomaly.as_ref().map(|m| m.stats());
        self.report.clone()
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQLI: &[u8] = br#"{"remote_addr":"198.51.100.66","request":"GET /?q=1%27%20union%20select%20null-- HTTP/1.1","status":200}"#;

    fn replay() -> Replay {
        let json = LogFormat::builtin("json").expect("the json format");
        Replay::new(&super::super::Settings::default(), json, 64 * 1024).expect("a replay")
    }

    #[test]
    fn a_line_without_a_time_takes_the_time_it_was_received() {
        let mut r = replay();
        let mut s = r.source().unwrap();
        r.line_at(&mut s, SQLI, false, 1_795_000_000);
        r.end(s, "container web");
        let report = r.finish(0.0);
        assert_eq!(report.bans.len(), 1, "{report:?}");
        assert_eq!(report.bans[0].first_seen, format_time(1_795_000_000));
        // Without a received time, the last time seen (none yet: the epoch).
        let mut r = replay();
        let mut s = r.source().unwrap();
        r.line(&mut s, SQLI, false);
        assert_eq!(r.finish(0.0).bans[0].first_seen, format_time(0));
    }

    #[test]
    fn lines_judged_in_batches_give_the_report_of_lines_judged_one_by_one() {
        let combined = LogFormat::builtin("combined").unwrap();
        let lines: Vec<String> = (0..3000u32)
            .map(|i| {
                let (ip, target, status) = match i % 50 {
                    // A prober, an injection, and many ordinary visitors.
                    7 => ("198.51.100.7".to_string(), format!("/x{i}.php"), 404),
                    13 => ("198.51.100.13".to_string(), "/item?id=1%27--".to_string(), 500),
                    _ => (
                        format!("10.0.{}.{}", i % 7, i % 97),
                        format!("/item?id={}&page={}", i % 13, i % 3),
                        200,
                    ),
                };
                format!(
                    "{ip} - - [21/Nov/2026:10:{:02}:{:02} +0000] \"GET {target} HTTP/1.1\" {status} 5 \"-\" \"agent {}\"",
                    (i / 60) % 60,
                    i % 60,
                    i % 3
                )
            })
            .collect();
        let run = |batched: bool| {
            let mut r = Replay::new(
                &super::super::Settings::default(),
                combined.clone(),
                64 * 1024,
            )
            .unwrap();
            r.set_model(super::super::anomaly::Model::new(Default::default()));
            let mut s = r.source().unwrap();
            let mut batch = Batch::default();
            for l in &lines {
                if batched {
                    batch.push(l.as_bytes(), false);
                    if batch.is_full() {
                        r.lines(&mut s, &batch);
                        batch.clear();
                    }
                } else {
                    r.line(&mut s, l.as_bytes(), false);
                }
            }
            r.lines(&mut s, &batch);
            r.end(s, "test");
            serde_json::to_string(&r.finish(0.0)).unwrap()
        };
        let one_by_one = run(false);
        assert!(
            one_by_one.contains("198.51.100.13"),
            "the injection is banned"
        );
        assert!(one_by_one.contains(r#""anomalies_total":"#));
        assert_eq!(run(true), one_by_one);
    }

    #[test]
    fn a_source_of_its_own_is_judged_by_its_own_categories_and_format() {
        let mut r = replay();
        let json = LogFormat::builtin("json").unwrap();
        let mut xss_only = r.source_as(&json, Some(vec!["xss".into()])).unwrap();
        r.line_at(&mut xss_only, SQLI, false, 100);
        r.end(xss_only, "container xss-only");
        assert!(r.finish(0.0).bans.is_empty(), "sqli is not among its rules");
        let mut all = r.source_as(&json, None).unwrap();
        r.line_at(&mut all, SQLI, false, 101);
        assert_eq!(r.finish(0.0).bans.len(), 1);
        // A notice names the source's own format: combined lines read as json.
        let combined = LogFormat::builtin("combined").unwrap();
        let mut c = r.source_as(&combined, None).unwrap();
        for _ in 0..200 {
            r.line_at(&mut c, b"not a log line at all", false, 102);
        }
        let notices = r.end(c, "container odd");
        assert!(
            notices
                .iter()
                .any(|n| n.contains("container odd") && n.contains("combined")),
            "{notices:?}"
        );
    }
}
