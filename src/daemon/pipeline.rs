//! A line in, verdicts out: how the main loop reads each container's lines, judges them
//! and hands verdicts to the enforcement thread.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Daemon, Inbox};
use crate::alerts::errors as error_rate;
use crate::ban::worker::Msg;
use crate::ban::DockerNetwork;
use crate::config::Config;
use crate::detect::parse::{LineParser, ParseHealth, UnparsedNotice};
use crate::detect::Detector;
use crate::docker::{container_profile, LogLine, Watcher};
use crate::events::Event;

/// How one container's lines are read.
pub(super) struct Source {
    parser: LineParser,
    categories: Option<Vec<String>>,
    /// The container's name and format name, for the unparsed-lines notice.
    pub container: String,
    pub format: String,
    /// Lines that did not parse; says once when most of them fail.
    pub health: ParseHealth,
}

/// How long one turn of the main loop may spend on queued lines before signals, control
/// calls and the watchdog tick get their turn again. A line costs microseconds, so this is
/// thousands of lines; a turn is bounded by time because a count of crafted lines is not.
pub(super) const LINE_TURN: Duration = Duration::from_millis(50);

impl Daemon {
    /// A line arrived: it and what is already queued behind it, for up to `LINE_TURN`.
    pub(super) fn lines_turn(&mut self, first: LogLine, inbox: &mut Inbox) {
        // Networks before lines: a line is never judged before the networks the watcher
        // reported ahead of it (see spawn_reporting_networks).
        while let Ok(nets) = inbox.networks.try_recv() {
            self.apply_networks(nets);
        }
        self.handle_line(first);
        for_up_to(LINE_TURN, Instant::now, || {
            while let Ok(nets) = inbox.networks.try_recv() {
                self.apply_networks(nets);
            }
            match inbox.lines.try_recv() {
                Ok(line) => {
                    self.handle_line(line);
                    true
                }
                Err(_) => false,
            }
        });
    }

    /// Docker's networks changed: the detector (trusted proxies) and the never-ban list
    /// follow, in that order before any later line.
    pub(super) fn apply_networks(&mut self, nets: Vec<DockerNetwork>) {
        tracing::info!(
            "Docker networks: {}",
            nets.iter()
                .map(|n| format!("{} {}", n.name, n.subnet))
                .collect::<Vec<_>>()
                .join(", ")
        );
        set_detector_networks(&mut self.detector, &nets);
        self.docker_networks = nets.clone();
        self.enforce.send(Msg::DockerNetworks(nets));
    }

    /// Parses and judges one line; its verdict goes to the enforcement thread. The line's
    /// cursor moves once it is judged.
    pub(super) fn handle_line(&mut self, line: LogLine) {
        self.judge(&line);
        line.mark.judged();
    }

    fn judge(&mut self, line: &LogLine) {
        self.counts.lines += 1;
        match self.metrics.lines_read.get_mut(&line.container) {
            Some(n) => *n += 1,
            None => {
                self.metrics.lines_read.insert(line.container.clone(), 1);
            }
        }
        if !self.sources.contains_key(&line.container_id) {
            let source = new_source(&self.cfg, self.watcher.as_ref(), line);
            self.sources.insert(line.container_id.clone(), source);
        }
        let Some(source) = self.sources.get_mut(&line.container_id) else {
            return;
        };
        // Docker's receive time is the clock: it cannot be forged by what a line says.
        let now = line.docker_ts_ns.div_euclid(1_000_000_000);
        let parsed = source.parser.parse(&line.bytes);
        if let Some(notice) = source.health.record(&line.bytes, parsed.is_some()) {
            let (notice, format) = (notice.clone(), source.format.clone());
            self.unparsed_notice(line, &format, notice, now);
        }
        let Some(req) = parsed else {
            *self
                .metrics
                .parse_failures
                .entry(line.container.clone())
                .or_default() += 1;
            if error_rate::is_error(None, false, &line.bytes) {
                self.error_line(line, now);
            }
            return;
        };
        self.counts.parsed += 1;
        if error_rate::is_error(req.status, true, &line.bytes) {
            self.error_line(line, now);
        }
        let Some(source) = self.sources.get(&line.container_id) else {
            return;
        };
        let obs = self
            .detector
            .observe_in(&req, &line.bytes, now, source.categories.as_deref());
        for &i in &obs.hits {
            let r = self.detector.rules().rule(i);
            let key = (r.id.clone(), r.category.clone());
            *self.metrics.rule_hits.entry(key).or_default() += 1;
        }
        if let Some(v) = obs.verdict {
            self.enforce
                .verdict(v, line.container.clone(), line.docker_ts_ns);
            return;
        }
        let rules = self.detector.rules();
        let worst = obs
            .hits
            .iter()
            .map(|&i| rules.rule(i))
            .max_by_key(|r| r.severity);
        if let Some(w) = worst {
            // The main loop's own events go straight to its alerts and metrics, not
            // round the lossy bus.
            let hit = Event::RuleHit {
                at: now,
                ip: req.ip,
                rules: obs.hits.iter().map(|&i| rules.rule(i).id.clone()).collect(),
                category: w.category.clone(),
                severity: w.severity.to_string(),
                container: line.container.clone(),
                line: crate::detect::decode::escape_excerpt(&line.bytes, 300),
            };
            self.on_event(hit);
        }
    }

    /// Most of a container's lines do not parse: said once, in the journal and as an
    /// alert (`status` lists it from the source).
    fn unparsed_notice(&mut self, line: &LogLine, format: &str, n: UnparsedNotice, now: i64) {
        tracing::warn!(CONTAINER = %line.container, ACTION = "unparsed", "{}", n.describe(&format!("container {}", line.container), format));
        self.on_event(Event::Unparsed {
            at: now,
            container: line.container.clone(),
            format: format.to_string(),
            lines: n.lines,
            unparsed: n.unparsed,
            sample: n.sample,
        });
    }

    /// Counts an error line (5xx, traceback) and raises an error-rate alert on a jump.
    fn error_line(&mut self, line: &LogLine, now: i64) {
        *self
            .metrics
            .error_lines
            .entry(line.container.clone())
            .or_default() += 1;
        if let Some(jump) = self.error_rates.error(&line.container, now) {
            tracing::warn!(CONTAINER = %line.container, ACTION = "error-rate", "{}: {} error lines this minute against a usual {:.1}/min", line.container, jump.errors, jump.baseline);
            self.on_event(Event::ErrorRate {
                at: now,
                container: line.container.clone(),
                errors: jump.errors,
                baseline: jump.baseline,
                sample: crate::detect::decode::escape_excerpt(&line.bytes, 200),
            });
        }
    }

    /// Forgets what is kept per container for containers the watcher no longer follows
    /// (destroyed, or no longer selected): containers that come and go must not grow
    /// these maps without bound. A container that comes back starts afresh.
    pub(super) fn prune_sources(&mut self) {
        let Some(w) = self.watcher.as_ref() else {
            return;
        };
        let followed = w.status().containers;
        let ids: HashSet<&str> = followed.iter().map(|c| c.id.as_str()).collect();
        let names: HashSet<&str> = followed.iter().map(|c| c.name.as_str()).collect();
        self.sources.retain(|id, _| ids.contains(id.as_str()));
        let keep = |name: &String| names.contains(name.as_str());
        prune_by_name(&mut self.metrics.lines_read, keep);
        prune_by_name(&mut self.metrics.parse_failures, keep);
        prune_by_name(&mut self.metrics.error_lines, keep);
        self.error_rates.retain(|c| names.contains(c));
    }
}

fn prune_by_name(
    map: &mut std::collections::BTreeMap<String, u64>,
    keep: impl Fn(&String) -> bool,
) {
    map.retain(|k, _| keep(k));
}

pub(super) fn set_detector_networks(detector: &mut Detector, nets: &[DockerNetwork]) {
    let attached: Vec<(String, std::net::IpAddr)> = nets
        .iter()
        .flat_map(|n| n.containers.iter().cloned())
        .collect();
    detector.set_docker_networks(
        nets.iter().map(|n| n.subnet).collect(),
        nets.iter().filter_map(|n| n.gateway).collect(),
        &attached,
    );
}

/// Runs `step` while it finds work and less than `budget` has passed on `clock` since the
/// call; returns how many steps did work.
pub(super) fn for_up_to(
    budget: Duration,
    mut clock: impl FnMut() -> Instant,
    mut step: impl FnMut() -> bool,
) -> usize {
    let start = clock();
    let mut done = 0;
    while step() {
        done += 1;
        if clock().saturating_duration_since(start) >= budget {
            break;
        }
    }
    done
}

/// How a newly seen container's lines are read: its labels (from the watcher), then the
/// `containers` section, then the global `log_format`.
fn new_source(cfg: &Config, watcher: Option<&Watcher>, line: &LogLine) -> Source {
    let labels: HashMap<String, String> = watcher
        .and_then(|w| {
            w.status()
                .containers
                .into_iter()
                .find(|c| c.id == line.container_id)
        })
        .map(|c| c.labels.into_iter().collect())
        .unwrap_or_default();
    let (profile, warnings) = container_profile(cfg, &line.container, &labels);
    for w in warnings {
        tracing::warn!(CONTAINER = %line.container, "{w}");
    }
    let parser = match LineParser::new(&profile.format) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(CONTAINER = %line.container, "container {}: log format {}: {e}; reading it as auto", line.container, profile.format.name());
            LineParser::auto()
        }
    };
    tracing::info!(CONTAINER = %line.container, "reading {} as {}{}", line.container, profile.format.name(), profile.categories.as_ref().map(|c| format!(" (rules: {})", c.join(", "))).unwrap_or_default());
    Source {
        parser,
        categories: profile.categories,
        container: line.container.clone(),
        format: profile.format.name().to_string(),
        health: ParseHealth::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_of_the_main_loop_ends_when_its_time_is_up() {
        // Every step finds work and takes 10 ms on a made-up clock: the turn stops at the
        // budget, not after a count of steps.
        let t0 = Instant::now();
        let now = std::cell::Cell::new(t0);
        let steps = for_up_to(
            LINE_TURN,
            || now.get(),
            || {
                now.set(now.get() + Duration::from_millis(10));
                true
            },
        );
        assert_eq!(steps, (LINE_TURN.as_millis() / 10) as usize);
        // And it stops at once when there is no more work.
        assert_eq!(for_up_to(LINE_TURN, || t0, || false), 0);
    }
}
