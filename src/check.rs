//! `security-monitor check`: runs the detector over log files the way the daemon would
//! have run it live, using each line's own timestamp as the clock.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;

use crate::config::{Config, LogFormat};
use crate::detect::parse::{format_time, LineParser, ParseHealth};
use crate::detect::Detector;

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
}

/// Reads lines from any reader in large chunks. A line longer than `max` is cut: its
/// first `max` bytes are returned and the rest is skipped without being buffered, so
/// neither a 1 GiB line nor a file without newlines can exhaust memory.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// The kept head of an over-long line.
    long: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    eof: bool,
}

const CHUNK: usize = 1 << 20;

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK.max(max + 1)],
            long: Vec::new(),
            start: 0,
            end: 0,
            max,
            eof: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < self.buf.len() && !self.eof {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.end += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next line without its newline, and whether it was cut; None at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(&[u8], bool)>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_start = self.start;
                let len = i.min(self.max);
                self.start += i + 1;
                return Ok(Some((
                    &self.buf[line_start..line_start + len],
                    i > self.max,
                )));
            }
            let pending = self.end - self.start;
            if pending >= self.max {
                // Over-long line: keep its head, then discard up to the newline.
                self.long.clear();
                self.long
                    .extend_from_slice(&self.buf[self.start..self.start + self.max]);
                self.start = self.end;
                self.skip_rest_of_line()?;
                return Ok(Some((&self.long, true)));
            }
            if self.eof {
                if pending == 0 {
                    return Ok(None);
                }
                let line_start = self.start;
                self.start = self.end;
                return Ok(Some((&self.buf[line_start..self.end], false)));
            }
            self.fill()?;
        }
    }

    fn skip_rest_of_line(&mut self) -> io::Result<()> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                self.start += i + 1;
                return Ok(());
            }
            self.start = self.end;
            if self.eof {
                return Ok(());
            }
            self.fill()?;
        }
    }
}

/// Runs the detector over the inputs in order, as one host would have seen them.
pub struct Checker {
    detector: Detector,
    format: LogFormat,
    max_line: usize,
    report: Report,
    bans: HashMap<IpAddr, usize>,
    allowlisted: HashMap<IpAddr, usize>,
    /// The last timestamp seen, for lines that carry none.
    clock: i64,
    started: Instant,
}

impl Checker {
    pub fn new(cfg: &Config, format: LogFormat) -> Result<Checker, String> {
        Ok(Checker {
            detector: Detector::new(cfg)?,
            format,
            max_line: cfg.limits.max_line_bytes,
            report: Report::default(),
            bans: HashMap::new(),
            allowlisted: HashMap::new(),
            clock: 0,
            started: Instant::now(),
        })
    }

    /// Reads one source to its end. Each source gets its own format recognition.
    pub fn read<R: Read>(&mut self, input: R) -> io::Result<()> {
        self.read_named(input, "the input").map(|_| ())
    }

    /// [`read`](Self::read) for a source called `name` in notices: when most of its lines
    /// do not parse, a notice saying so is added to [`Report::notices`] and returned.
    pub fn read_named<R: Read>(&mut self, input: R, name: &str) -> io::Result<Option<String>> {
        let mut parser = LineParser::new(&self.format).map_err(io::Error::other)?;
        let mut reader = LineReader::new(input, self.max_line);
        let mut health = ParseHealth::default();
        while let Some((line, truncated)) = reader.next_line()? {
            self.report.lines += 1;
            if truncated {
                self.report.truncated += 1;
            }
            let parsed = parser.parse(line);
            health.record(line, parsed.is_some());
            let Some(req) = parsed else {
                self.report.unparsed += 1;
                continue;
            };
            self.report.parsed += 1;
            if let Some(t) = req.time {
                self.clock = t;
            }
            let now = self.clock;
            let obs = self.detector.observe(&req, line, now);
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
                let (map, list) = if v.allowlisted.is_some() {
                    (&mut self.allowlisted, &mut self.report.allowlisted)
                } else {
                    (&mut self.bans, &mut self.report.bans)
                };
                if let Some(&i) = map.get(&v.ip) {
                    // Banned again after the first ban would have expired.
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
        }
        let notice = health
            .notice()
            .map(|n| n.describe(name, self.format.name()));
        self.report.notices.extend(notice.clone());
        Ok(notice)
    }

    /// The report so far, with the elapsed time and memory figures filled in.
    pub fn finish(&mut self) -> Report {
        self.report.elapsed_s = self.started.elapsed().as_secs_f64();
        self.report.tracked_ips = self.detector.tracked_ips();
        self.report.evicted_ips = self.detector.evicted_ips();
        self.report.clone()
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some((l, cut)) = r.next_line().unwrap() {
            out.push((l.to_vec(), cut));
        }
        out
    }

    #[test]
    fn line_reader_splits_and_cuts() {
        let got = lines_of(b"a\nbb\n\nccc", 1024);
        assert_eq!(
            got.iter().map(|(l, _)| l.as_slice()).collect::<Vec<_>>(),
            vec![b"a".as_slice(), b"bb", b"", b"ccc"]
        );
        let mut big = vec![b'x'; 3 * CHUNK + 17];
        big.extend_from_slice(b"\nnext\n");
        let got = lines_of(&big, 2048);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), 2048);
        assert!(got[0].1);
        assert_eq!(got[1], (b"next".to_vec(), false));
    }

    #[test]
    fn line_reader_handles_lines_across_chunks() {
        let mut data = Vec::new();
        for i in 0..200_000 {
            data.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let got = lines_of(&data, 1024);
        assert_eq!(got.len(), 200_000);
        assert_eq!(got[199_999].0, b"line 199999");
    }
}
