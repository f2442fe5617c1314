//! Prometheus metrics: counters the daemon keeps as it goes, rendered in the text
//! exposition format (version 0.0.4) for `security-monitor metrics` and for the optional
//! HTTP listener ([`http`], `metrics.listen`).
//!
//! Counters count since the daemon started (Prometheus handles the reset on restart);
//! gauges (active bans, stream states) are read when asked.

pub mod http;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ban::worker::Summary;
use crate::detect::Severity;
use crate::docker::WatcherStatus;
use crate::events::Event;

/// The Prometheus listener.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Where to serve `GET /metrics`; None: no listener (the default).
    pub listen: Option<std::net::SocketAddr>,
}

/// Time-to-ban buckets, seconds: a ban normally lands within tens of milliseconds.
pub const TIME_TO_BAN_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Cumulative counts per bucket of [`TIME_TO_BAN_BUCKETS`].
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        if self.buckets.len() != TIME_TO_BAN_BUCKETS.len() {
            self.buckets = vec![0; TIME_TO_BAN_BUCKETS.len()];
        }
        for (i, le) in TIME_TO_BAN_BUCKETS.iter().enumerate() {
            if v <= *le {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

/// What the main loop counts.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Lines read, by container name.
    pub lines_read: BTreeMap<String, u64>,
    /// Lines that were not a request in the container's log format.
    pub parse_failures: BTreeMap<String, u64>,
    /// Lines counted as errors (5xx, tracebacks), by container.
    pub error_lines: BTreeMap<String, u64>,
    /// Rule hits by (rule, category), whether or not they led to a ban.
    pub rule_hits: BTreeMap<(String, String), u64>,
    /// Anomalies of the endpoint baselines, by container.
    pub anomalies: BTreeMap<String, u64>,
    /// What the endpoint baselines hold, by container (read at render time).
    pub anomaly_model: Vec<(String, crate::detect::anomaly::Stats)>,
    /// Bans by category (extensions of a ban included).
    pub bans: BTreeMap<String, u64>,
    /// Unbans by (category, reason: expired | unbanned).
    pub unbans: BTreeMap<(String, String), u64>,
    pub held: u64,
    pub never_ban: u64,
    pub firewall_errors: u64,
    /// Alerts recorded (new, not folded repeats), by severity.
    pub alerts: BTreeMap<Severity, u64>,
    pub time_to_ban: Histogram,
    /// Events the metrics missed because the main loop fell behind the event bus.
    pub events_lost: u64,
    /// Notices (mail, webhooks) that could not be sent. Nothing sends notices in this
    /// build yet: it stays 0 until notifications count into it.
    pub notification_failures: u64,
}

impl Metrics {
    /// Counts what an event says.
    pub fn on_event(&mut self, e: &Event) {
        match e {
            Event::Ban {
                record,
                time_to_ban_ms,
                ..
            } => {
                *self.bans.entry(record.category.clone()).or_default() += 1;
                if let Some(ms) = time_to_ban_ms {
                    self.time_to_ban.observe(ms.max(0.0) / 1000.0);
                }
            }
            Event::Unban { record, reason, .. } => {
                *self
                    .unbans
                    .entry((record.category.clone(), reason.clone()))
                    .or_default() += 1;
            }
            Event::Held(_) => self.held += 1,
            Event::NeverBan(_) => self.never_ban += 1,
            Event::FirewallError { .. } => self.firewall_errors += 1,
            _ => {}
        }
    }
}

/// What is read at render time besides the counters.
pub struct Snapshot<'a> {
    pub summary: &'a Summary,
    pub docker: Option<&'a WatcherStatus>,
    pub uptime_s: u64,
    pub alerts_kept: usize,
    pub risk_score: u32,
    /// None: the fleet is not enabled.
    pub fleet: Option<&'a crate::fleet::FleetStatus>,
}

/// Escapes a label value: backslash, double quote and newline.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// The exposition text.
pub fn render(m: &Metrics, s: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let p = "security_monitor";

    head(
        &mut out,
        &format!("{p}_up"),
        "gauge",
        "1 while the daemon runs.",
    );
    let _ = writeln!(out, "{p}_up 1");
    head(
        &mut out,
        &format!("{p}_uptime_seconds"),
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(out, "{p}_uptime_seconds {}", s.uptime_s);

    let per_container = |out: &mut String, name: &str, help: &str, map: &BTreeMap<String, u64>| {
        head(out, &format!("{p}_{name}"), "counter", help);
        for (c, n) in map {
            let _ = writeln!(out, "{p}_{name}{{container=\"{}\"}} {n}", label(c));
        }
    };
    per_container(
        &mut out,
        "lines_read_total",
        "Log lines read, by container.",
        &m.lines_read,
    );
    per_container(
        &mut out,
        "parse_failures_total",
        "Lines that were not a request in the container's log format (application output, tracebacks, a wrong log_format).",
        &m.parse_failures,
    );
    per_container(
        &mut out,
        "error_lines_total",
        "Lines counted as errors by the error-rate detector (5xx responses, tracebacks, panics).",
        &m.error_lines,
    );

    head(
        &mut out,
        &format!("{p}_rule_hits_total"),
        "counter",
        "Lines that matched a rule, by rule and category (whether or not a ban followed).",
    );
    for ((rule, cat), n) in &m.rule_hits {
        let _ = writeln!(
            out,
            "{p}_rule_hits_total{{rule=\"{}\",category=\"{}\"}} {n}",
            label(rule),
            label(cat)
        );
    }
    per_container(
        &mut out,
        "anomalies_total",
        "Requests that strayed from their endpoint's baseline (anomaly.mode alert or ban), by container.",
        &m.anomalies,
    );
    for (name, help, value) in [
        (
            "anomaly_endpoints",
            "Endpoints the baselines hold, by container (anomaly.max_endpoints at most).",
            (|s: &crate::detect::anomaly::Stats| s.endpoints as u64) as fn(&_) -> u64,
        ),
        (
            "anomaly_learned",
            "Clean requests the baselines learned from, by container (kept across restarts in anomaly_model.json).",
            |s| s.learned,
        ),
        (
            "anomaly_model_bytes",
            "An estimate of the memory the baselines hold, by container.",
            |s| s.bytes as u64,
        ),
    ] {
        head(&mut out, &format!("{p}_{name}"), "gauge", help);
        for (c, st) in &m.anomaly_model {
            let _ = writeln!(out, "{p}_{name}{{container=\"{}\"}} {}", label(c), value(st));
        }
    }
    head(
        &mut out,
        &format!("{p}_bans_total"),
        "counter",
        "Bans applied in the firewall (and extended), by category.",
    );
    for (cat, n) in &m.bans {
        let _ = writeln!(out, "{p}_bans_total{{category=\"{}\"}} {n}", label(cat));
    }
    head(
        &mut out,
        &format!("{p}_unbans_total"),
        "counter",
        "Bans lifted, by category and reason (expired or unbanned).",
    );
    for ((cat, reason), n) in &m.unbans {
        let _ = writeln!(
            out,
            "{p}_unbans_total{{category=\"{}\",reason=\"{}\"}} {n}",
            label(cat),
            label(reason)
        );
    }
    head(
        &mut out,
        &format!("{p}_active_bans"),
        "gauge",
        "IPs banned now.",
    );
    let _ = writeln!(out, "{p}_active_bans {}", s.summary.active_bans);

    for (name, help, v) in [
        (
            "held_bans_total",
            "Bans held back by the burst safety valve (ban.burst_max_bans).",
            m.held,
        ),
        (
            "never_ban_verdicts_total",
            "Verdicts against addresses that are never banned (allowlist, host, gateways).",
            m.never_ban,
        ),
        (
            "firewall_errors_total",
            "Firewall or state-file changes that failed.",
            m.firewall_errors,
        ),
        (
            "dropped_verdicts_total",
            "Verdicts dropped because the firewall queue was full.",
            s.summary.dropped_verdicts,
        ),
        (
            "events_lost_total",
            "Events the alerts and metrics missed because the main loop fell behind.",
            m.events_lost,
        ),
        (
            "notification_failures_total",
            "Notices (mail, webhooks) that could not be sent.",
            m.notification_failures,
        ),
    ] {
        head(&mut out, &format!("{p}_{name}"), "counter", help);
        let _ = writeln!(out, "{p}_{name} {v}");
    }

    head(
        &mut out,
        &format!("{p}_time_to_ban_seconds"),
        "histogram",
        "From the offending line's Docker timestamp to the ban applied in the firewall.",
    );
    let h = &m.time_to_ban;
    for (i, le) in TIME_TO_BAN_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "{p}_time_to_ban_seconds_bucket{{le=\"{}\"}} {}",
            number(*le),
            h.buckets.get(i).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "{p}_time_to_ban_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(out, "{p}_time_to_ban_seconds_sum {}", number(h.sum));
    let _ = writeln!(out, "{p}_time_to_ban_seconds_count {}", h.count);

    head(
        &mut out,
        &format!("{p}_alerts_total"),
        "counter",
        "Alerts recorded, by severity (folded repeats are one alert).",
    );
    for sev in Severity::ALL {
        let _ = writeln!(
            out,
            "{p}_alerts_total{{severity=\"{sev}\"}} {}",
            m.alerts.get(&sev).copied().unwrap_or(0)
        );
    }
    head(
        &mut out,
        &format!("{p}_alerts_kept"),
        "gauge",
        "Alerts kept in memory for `security-monitor alerts` (alerts.keep at most).",
    );
    let _ = writeln!(out, "{p}_alerts_kept {}", s.alerts_kept);
    head(
        &mut out,
        &format!("{p}_risk_score"),
        "gauge",
        "The risk score of `security-monitor insights`, 0 to 100.",
    );
    let _ = writeln!(out, "{p}_risk_score {}", s.risk_score);

    head(
        &mut out,
        &format!("{p}_docker_connected"),
        "gauge",
        "1 when the daemon is connected to dockerd.",
    );
    let connected = s.docker.is_some_and(|d| d.connected);
    let _ = writeln!(out, "{p}_docker_connected {}", u8::from(connected));
    head(
        &mut out,
        &format!("{p}_docker_streams"),
        "gauge",
        "Container log streams by state.",
    );
    let mut states: BTreeMap<&str, u64> = ["following", "reconnecting", "stopped", "unreadable"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    if let Some(d) = s.docker {
        for c in &d.containers {
            *states.entry(c.state.name()).or_default() += 1;
        }
    }
    for (state, n) in states {
        let _ = writeln!(out, "{p}_docker_streams{{state=\"{state}\"}} {n}");
    }
    head(
        &mut out,
        &format!("{p}_docker_lines_dropped_total"),
        "counter",
        "Lines dropped by the per-container rate limit (docker.max_lines_per_second), since the watcher started.",
    );
    if let Some(d) = s.docker {
        for c in &d.containers {
            let _ = writeln!(
                out,
                "{p}_docker_lines_dropped_total{{container=\"{}\"}} {}",
                label(&c.name),
                c.lines_dropped
            );
        }
    }
    if let Some(f) = s.fleet {
        fleet(&mut out, p, f);
    }
    out
}

/// The fleet's connection, remote bans and propagation latency.
fn fleet(out: &mut String, p: &str, f: &crate::fleet::FleetStatus) {
    head(
        out,
        &format!("{p}_fleet_connected"),
        "gauge",
        "1 while connected to the fleet's NATS server.",
    );
    let _ = writeln!(out, "{p}_fleet_connected {}", u8::from(f.connected));
    head(
        out,
        &format!("{p}_fleet_published_total"),
        "counter",
        "This host's records written to the fleet's bucket.",
    );
    let _ = writeln!(out, "{p}_fleet_published_total {}", f.published);
    head(
        out,
        &format!("{p}_fleet_remote_bans_total"),
        "counter",
        "Other hosts' bans, by what this host made of them.",
    );
    for (outcome, n) in [
        ("applied", f.remote_applied),
        ("refused", f.remote_refused),
        ("held", f.remote_held),
    ] {
        let _ = writeln!(
            out,
            "{p}_fleet_remote_bans_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    head(
        out,
        &format!("{p}_fleet_remote_bans_active"),
        "gauge",
        "Other hosts' bans in force here.",
    );
    let _ = writeln!(out, "{p}_fleet_remote_bans_active {}", f.remote_in_force);
    let name = format!("{p}_fleet_propagation_seconds");
    head(
        out,
        &name,
        "histogram",
        "From the origin's firewall taking a ban to this host's.",
    );
    let mut cum = 0u64;
    for (i, le) in crate::fleet::node::LATENCY_BUCKETS_MS.iter().enumerate() {
        cum += f.latency_histogram.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", le / 1000.0);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", f.latency_count);
    let _ = writeln!(out, "{name}_sum {}", f.latency_sum_ms / 1000.0);
    let _ = writeln!(out, "{name}_count {}", f.latency_count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_labels_are_escaped() {
        let mut m = Metrics::default();
        m.time_to_ban.observe(0.02);
        m.time_to_ban.observe(3.0);
        m.lines_read.insert("we\"b\\1\n".into(), 5);
        m.anomalies.insert("shop".into(), 4);
        m.anomaly_model.push((
            "shop".into(),
            crate::detect::anomaly::Stats {
                endpoints: 12,
                learned: 3400,
                evicted_endpoints: 0,
                bytes: 56_000,
            },
        ));
        let s = Summary::default();
        let text = render(
            &m,
            &Snapshot {
                summary: &s,
                docker: None,
                uptime_s: 1,
                alerts_kept: 0,
                risk_score: 0,
                fleet: None,
            },
        );
        assert!(text.contains("security_monitor_time_to_ban_seconds_bucket{le=\"0.01\"} 0\n"));
        assert!(text.contains("security_monitor_time_to_ban_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("security_monitor_time_to_ban_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("security_monitor_time_to_ban_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("security_monitor_time_to_ban_seconds_count 2\n"));
        assert!(text.contains(r#"security_monitor_lines_read_total{container="we\"b\\1\n"} 5"#));
        assert!(text.contains("security_monitor_notification_failures_total 0\n"));
        assert!(text.contains("# TYPE security_monitor_anomalies_total counter\n"));
        assert!(text.contains("security_monitor_anomalies_total{container=\"shop\"} 4\n"));
        assert!(text.contains("# TYPE security_monitor_anomaly_endpoints gauge\n"));
        assert!(text.contains("security_monitor_anomaly_endpoints{container=\"shop\"} 12\n"));
        assert!(text.contains("security_monitor_anomaly_learned{container=\"shop\"} 3400\n"));
        assert!(text.contains("security_monitor_anomaly_model_bytes{container=\"shop\"} 56000\n"));
        // Every line is a comment or `name{labels} value`.
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("security_monitor_"),
                "{line}"
            );
        }
    }

    /// The shipped Grafana dashboard asks only for metrics the daemon exports.
    #[test]
    fn the_fleet_metrics_are_a_histogram_and_counters() {
        let s = Summary::default();
        let mut f = crate::fleet::FleetStatus {
            connected: true,
            remote_applied: 7,
            remote_held: 3,
            latency_histogram: vec![0; crate::fleet::node::LATENCY_BUCKETS_MS.len() + 1],
            ..Default::default()
        };
        // 0.5 ms, 15 ms and 7 s.
        f.latency_histogram[0] = 1;
        f.latency_histogram[4] = 1;
        f.latency_histogram[10] = 1;
        f.latency_count = 3;
        f.latency_sum_ms = 7015.5;
        let text = render(
            &Metrics::default(),
            &Snapshot {
                summary: &s,
                docker: None,
                uptime_s: 0,
                alerts_kept: 0,
                risk_score: 0,
                fleet: Some(&f),
            },
        );
        for want in [
            "security_monitor_fleet_connected 1",
            "security_monitor_fleet_remote_bans_total{outcome=\"applied\"} 7",
            "security_monitor_fleet_remote_bans_total{outcome=\"held\"} 3",
            "security_monitor_fleet_propagation_seconds_bucket{le=\"0.001\"} 1",
            "security_monitor_fleet_propagation_seconds_bucket{le=\"0.01\"} 1",
            "security_monitor_fleet_propagation_seconds_bucket{le=\"0.02\"} 2",
            "security_monitor_fleet_propagation_seconds_bucket{le=\"5\"} 2",
            "security_monitor_fleet_propagation_seconds_bucket{le=\"+Inf\"} 3",
            "security_monitor_fleet_propagation_seconds_count 3",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }

    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/grafana/security-monitor.json"
        );
        let dashboard = std::fs::read_to_string(path).expect("the dashboard");
        let _: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
        let s = Summary::default();
        let text = render(
            &Metrics::default(),
            &Snapshot {
                summary: &s,
                docker: None,
                uptime_s: 0,
                alerts_kept: 0,
                risk_score: 0,
                fleet: None,
            },
        );
        let re = regex::Regex::new(r"security_monitor_[a-z_]+").unwrap();
        let mut used = 0;
        for m in re.find_iter(&dashboard) {
            let name = m.as_str().trim_end_matches("_bucket");
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "the dashboard uses {name}, which is not exported"
            );
            used += 1;
        }
        assert!(used > 10, "{used}");
    }
}
