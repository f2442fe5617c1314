//! The risk summary (`security-monitor insights`, and `GET /insights` on the metrics
//! listener), like the seed's `/ai-insights`: a score from 0 to 100 and a band, built
//! from a few signals an operator can check by hand. No model, no weights learned from
//! data: each signal has a fixed number of points it can add, and says in words why it
//! added what it did.
//!
//! | signal | points | from |
//! | --- | --- | --- |
//! | severity mix | up to 40 | alerts of the last hour other than anomalies: critical 10, high 5, medium 2, low 0.5 each |
//! | active bans | up to 20 | 2 per IP banned now |
//! | repeat offenders | up to 20 | 5 per banned IP that was banned before |
//! | trend | up to 10 | alerts of the last hour against the hour before |
//! | anomalies | up to 10 | 1 per distinct IP (or folded network) with an `anomaly` alert in the last hour |
//!
//! The maxima add up to 100: the anomaly signal's 10 points came from the trend, the
//! weakest signal (a rising count already shows in the severity mix). Anomaly alerts
//! (unusual requests against the endpoint baselines, low or medium) are left out of the
//! severity mix so that a flood of them adds 10 points at most, not 40: on their own they
//! are hints, not attacks.
//!
//! `mode` says what the score is made of: `rules` (fixed points over alerts and bans),
//! or `rules+baselines` when the daemon also runs the endpoint baselines whose anomaly
//! alerts the anomaly signal counts. Both are fixed rules; neither is a learned score.
//!
//! Band: low below 30, medium below 60, high from 60.

use serde::{Deserialize, Serialize};

use super::AlertBook;
use crate::ban::state_file::BanRecord;
use crate::detect::Severity;

const HOUR: i64 = 3600;

/// The kind of the alerts the endpoint baselines raise.
pub const ANOMALY_KIND: &str = "anomaly";
/// The anomaly signal's points per distinct IP, and its cap.
const ANOMALY_POINTS: f64 = 1.0;
const ANOMALY_MAX: f64 = 10.0;
/// The trend's cap.
const TREND_MAX: f64 = 10.0;

/// `mode` when the endpoint baselines run, and when they do not.
pub const MODE_BASELINES: &str = "rules+baselines";
pub const MODE_RULES: &str = "rules";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signal {
    pub name: String,
    /// The measured value (a count).
    pub value: f64,
    pub points: f64,
    pub max_points: f64,
    /// Why, in words.
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Insights {
    /// What the score is made of: `rules`, or `rules+baselines` when the endpoint
    /// baselines run and their anomaly alerts count (see the module doc).
    #[serde(default)]
    pub mode: String,
    /// 0 to 100.
    pub risk_score: u32,
    /// low, medium or high.
    pub risk_level: String,
    /// Alerts of the last hour (repeats folded), by severity.
    pub severity_breakdown: std::collections::BTreeMap<String, u64>,
    pub alerts_last_hour: u64,
    pub alerts_previous_hour: u64,
    pub active_bans: usize,
    /// Banned IPs that were banned before (times_banned > 1).
    pub repeat_offenders: Vec<String>,
    /// The IPs with the most alerts in the last hour, most first.
    pub top_ips: Vec<(String, u64)>,
    pub signals: Vec<Signal>,
    pub summary: String,
}

pub fn band(score: u32) -> &'static str {
    match score {
        0..30 => "low",
        30..60 => "medium",
        _ => "high",
    }
}

/// The summary at `now` from the alert ring and the active bans; `baselines`: whether
/// the daemon runs the endpoint baselines (it only sets `mode`: anomaly alerts in the
/// ring are counted either way, e.g. those of the hour before they were turned off).
pub fn compute(book: &AlertBook, bans: &[BanRecord], now: i64, baselines: bool) -> Insights {
    let mut breakdown: std::collections::BTreeMap<Severity, u64> =
        Severity::ALL.iter().map(|s| (*s, 0)).collect();
    // The severity mix leaves anomaly alerts to their own signal.
    let mut mix_counts: std::collections::BTreeMap<Severity, u64> =
        Severity::ALL.iter().map(|s| (*s, 0)).collect();
    let (mut last, mut previous) = (0u64, 0u64);
    let mut by_ip: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    // Distinct IPs (or folded networks) with an anomaly alert in the last hour.
    let mut anomalous: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut anomaly_alerts = 0u64;
    for a in book.iter() {
        if a.last_seen > now - HOUR && a.time <= now {
            last += 1;
            *breakdown.entry(a.severity).or_default() += 1;
            if let Some(ip) = a.ip {
                *by_ip.entry(ip.to_string()).or_default() += a.count;
            }
            if a.kind == ANOMALY_KIND {
                anomaly_alerts += 1;
                if let Some(who) = a
                    .prefix
                    .map(|n| n.to_string())
                    .or(a.ip.map(|i| i.to_string()))
                {
                    anomalous.insert(who);
                }
            } else {
                *mix_counts.entry(a.severity).or_default() += 1;
            }
        } else if a.time > now - 2 * HOUR && a.time <= now - HOUR {
            previous += 1;
        }
    }
    let mut top_ips: Vec<(String, u64)> = by_ip.into_iter().collect();
    top_ips.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_ips.truncate(5);

    let mut signals = Vec::new();
    let weights = [
        (Severity::Critical, 10.0),
        (Severity::High, 5.0),
        (Severity::Medium, 2.0),
        (Severity::Low, 0.5),
    ];
    let raw: f64 = weights
        .iter()
        .map(|(s, w)| mix_counts.get(s).copied().unwrap_or(0) as f64 * w)
        .sum();
    let mix = weights
        .iter()
        .map(|(s, _)| format!("{} {s}", mix_counts.get(s).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    let mixed = last - anomaly_alerts;
    signals.push(Signal {
        name: "severity_mix".into(),
        value: mixed as f64,
        points: raw.min(40.0),
        max_points: 40.0,
        explanation: if mixed == 0 {
            "no alerts in the last hour (anomaly alerts aside)".into()
        } else {
            format!("{mixed} alert(s) in the last hour ({mix}); critical counts 10, high 5, medium 2, low 0.5; anomaly alerts are counted by their own signal")
        },
    });

    let active = bans.len();
    signals.push(Signal {
        name: "active_bans".into(),
        value: active as f64,
        points: (active as f64 * 2.0).min(20.0),
        max_points: 20.0,
        explanation: format!("{active} IP(s) banned now; 2 points each"),
    });

    let repeat: Vec<&BanRecord> = bans.iter().filter(|b| b.times_banned > 1).collect();
    signals.push(Signal {
        name: "repeat_offenders".into(),
        value: repeat.len() as f64,
        points: (repeat.len() as f64 * 5.0).min(20.0),
        max_points: 20.0,
        explanation: if repeat.is_empty() {
            "no banned IP has been banned before".into()
        } else {
            format!(
                "{} banned IP(s) came back after an earlier ban ({}); 5 points each",
                repeat.len(),
                repeat
                    .iter()
                    .take(5)
                    .map(|b| format!("{} ×{}", b.ip, b.times_banned))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    });

    let (trend_points, trend_text) = if last <= previous {
        (
            0.0,
            format!("{last} alert(s) in the last hour, {previous} in the hour before: not rising"),
        )
    } else {
        // Rising: 2 points per extra alert, but at least doubling to score in full.
        let extra = (last - previous) as f64;
        let points = (extra * 2.0)
            .min(TREND_MAX * extra / previous.max(1) as f64)
            .min(TREND_MAX);
        (
            points,
            format!(
                "{last} alert(s) in the last hour against {previous} in the hour before: rising by {}",
                last - previous
            ),
        )
    };
    signals.push(Signal {
        name: "trend".into(),
        value: last as f64 - previous as f64,
        points: trend_points,
        max_points: TREND_MAX,
        explanation: trend_text,
    });

    let n = anomalous.len();
    let anomaly_text = if n == 0 {
        if baselines {
            "no anomaly alerts in the last hour: requests look like each endpoint's usual ones"
                .to_string()
        } else {
            "no anomaly alerts in the last hour (the endpoint baselines are not running)"
                .to_string()
        }
    } else {
        let shown: Vec<&str> = anomalous.iter().take(5).map(String::as_str).collect();
        format!(
            "{n} IP(s) sent requests unlike their endpoint's usual ones in the last hour ({}{}; {anomaly_alerts} anomaly alert(s)); 1 point each",
            shown.join(", "),
            if n > shown.len() { ", …" } else { "" }
        )
    };
    signals.push(Signal {
        name: "anomalies".into(),
        value: n as f64,
        points: (n as f64 * ANOMALY_POINTS).min(ANOMALY_MAX),
        max_points: ANOMALY_MAX,
        explanation: anomaly_text,
    });

    let score = signals
        .iter()
        .map(|s| s.points)
        .sum::<f64>()
        .round()
        .clamp(0.0, 100.0) as u32;
    let level = band(score);
    let mut reasons: Vec<&Signal> = signals.iter().filter(|s| s.points > 0.0).collect();
    reasons.sort_by(|a, b| b.points.total_cmp(&a.points));
    let summary = if reasons.is_empty() {
        format!("risk {score}/100 ({level}): nothing noteworthy in the last hour")
    } else {
        format!(
            "risk {score}/100 ({level}), mostly from {}",
            reasons
                .iter()
                .take(2)
                .map(|s| s.name.replace('_', " "))
                .collect::<Vec<_>>()
                .join(" and ")
        )
    };
    Insights {
        mode: if baselines {
            MODE_BASELINES
        } else {
            MODE_RULES
        }
        .to_string(),
        risk_score: score,
        risk_level: level.to_string(),
        severity_breakdown: breakdown
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect(),
        alerts_last_hour: last,
        alerts_previous_hour: previous,
        active_bans: active,
        repeat_offenders: repeat.iter().map(|b| b.ip.to_string()).collect(),
        top_ips,
        signals,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Alert;
    use super::*;

    fn ban(ip: &str, times: u32) -> BanRecord {
        BanRecord {
            ip: ip.parse().unwrap(),
            rule: "sqli-union".into(),
            category: "sqli".into(),
            severity: Severity::Critical,
            container: "web".into(),
            first_offence: 0,
            last_offence: 0,
            banned_at: 0,
            expires_at: 100,
            times_banned: times,
            evidence: vec![],
            source: "detector".into(),
            prefix: None,
        }
    }

    fn alert(t: i64, sev: &str, ip: &str) -> Alert {
        Alert {
            ip: Some(ip.parse().unwrap()),
            ..Alert::new(t, sev.parse().unwrap(), "rule_hit", "sqli")
        }
    }

    #[test]
    fn a_quiet_host_is_low_risk() {
        let book = AlertBook::new(300, 100);
        let i = compute(&book, &[], 10_000, false);
        assert_eq!((i.risk_score, i.risk_level.as_str()), (0, "low"));
        assert!(i.summary.contains("nothing noteworthy"), "{}", i.summary);
        assert_eq!(i.signals.len(), 5);
        assert_eq!(i.mode, "rules");
        assert!(
            i.signals[4].explanation.contains("not running"),
            "{}",
            i.signals[4].explanation
        );
    }

    #[test]
    fn the_score_adds_up_from_explained_signals() {
        let now = 100_000;
        let mut book = AlertBook::new(0, 100);
        // The hour before: one alert. The last hour: 2 critical, 3 high, 1 low.
        book.record(alert(now - 5000, "high", "203.0.113.9"));
        for (i, sev) in ["critical", "critical", "high", "high", "high", "low"]
            .iter()
            .enumerate()
        {
            book.record(alert(now - 100 - i as i64, sev, &format!("203.0.113.{i}")));
        }
        let bans = [ban("203.0.113.0", 1), ban("203.0.113.1", 3)];
        let i = compute(&book, &bans, now, true);
        // severity 2*10 + 3*5 + 0.5 = 35.5; bans 4; repeat 5; trend min(5*2, 20*5/1) = 10.
        let points: Vec<f64> = i.signals.iter().map(|s| s.points).collect();
        assert_eq!(points, vec![35.5, 4.0, 5.0, 10.0, 0.0]);
        assert_eq!(i.mode, "rules+baselines");
        assert_eq!(i.risk_score, 55);
        assert_eq!(i.risk_level, "medium");
        assert_eq!(i.alerts_last_hour, 6);
        assert_eq!(i.alerts_previous_hour, 1);
        assert_eq!(i.severity_breakdown["critical"], 2);
        assert_eq!(i.repeat_offenders, vec!["203.0.113.1".to_string()]);
        assert!(i.signals[2].explanation.contains("203.0.113.1 ×3"));
        assert!(i.summary.contains("severity mix"), "{}", i.summary);
    }

    #[test]
    fn every_signal_is_capped_so_the_score_stays_within_100() {
        let now = 100_000;
        let mut book = AlertBook::new(0, 1000);
        for i in 0..200 {
            book.record(alert(
                now - 10,
                "critical",
                &format!("198.51.100.{}", i % 250),
            ));
        }
        let bans: Vec<BanRecord> = (0..50).map(|i| ban(&format!("192.0.2.{i}"), 2)).collect();
        // Every signal but the anomalies at its cap: 90.
        let i = compute(&book, &bans, now, true);
        assert_eq!((i.risk_score, i.risk_level.as_str()), (90, "high"));
        for k in 0..30 {
            book.record(anomaly(now - 5, "medium", &format!("2001:db8::{k:x}")));
        }
        let i = compute(&book, &bans, now, true);
        assert_eq!((i.risk_score, i.risk_level.as_str()), (100, "high"));
    }

    fn anomaly(t: i64, sev: &str, ip: &str) -> Alert {
        Alert {
            rule: "GET /item".into(),
            ..Alert::new(t, sev.parse().unwrap(), ANOMALY_KIND, "anomaly")
        }
        .with_ip(ip)
    }

    impl Alert {
        fn with_ip(self, ip: &str) -> Alert {
            Alert {
                ip: Some(ip.parse().unwrap()),
                ..self
            }
        }
    }

    #[test]
    fn anomaly_alerts_score_one_point_per_distinct_ip_up_to_ten_and_stay_out_of_the_mix() {
        let now = 100_000;
        let mut book = AlertBook::new(0, 1000);
        // Three IPs, one of them twice (another endpoint); one anomaly from before the
        // hour; one rule hit.
        book.record(anomaly(now - 100, "medium", "198.51.100.1"));
        book.record(Alert {
            rule: "POST /login".into(),
            ..anomaly(now - 90, "low", "198.51.100.1")
        });
        book.record(anomaly(now - 80, "low", "198.51.100.2"));
        book.record(anomaly(now - 70, "medium", "2001:db8::7"));
        book.record(anomaly(now - 2 * HOUR + 10, "medium", "198.51.100.99"));
        book.record(alert(now - 60, "high", "203.0.113.5"));
        let i = compute(&book, &[], now, true);
        let sig = |name: &str| i.signals.iter().find(|s| s.name == name).unwrap().clone();
        let a = sig("anomalies");
        assert_eq!((a.value, a.points, a.max_points), (3.0, 3.0, 10.0));
        assert!(
            a.explanation
                .contains("198.51.100.1, 198.51.100.2, 2001:db8::7")
                && a.explanation.contains("4 anomaly alert(s)")
                && !a.explanation.contains("198.51.100.99"),
            "{}",
            a.explanation
        );
        // The mix sees only the rule hit: high, 5 points; the breakdown sees all five.
        let mix = sig("severity_mix");
        assert_eq!((mix.value, mix.points), (1.0, 5.0));
        assert_eq!(i.alerts_last_hour, 5);
        assert_eq!(i.severity_breakdown["medium"], 2);
        assert_eq!(i.mode, MODE_BASELINES);

        // Twelve anomalous IPs: capped at ten points.
        for k in 0..12 {
            book.record(anomaly(now - 50, "low", &format!("192.0.2.{k}")));
        }
        let i = compute(&book, &[], now, true);
        let a = i.signals.iter().find(|s| s.name == "anomalies").unwrap();
        assert_eq!((a.value, a.points), (15.0, 10.0));
        assert!(
            a.explanation
                .ends_with("…; 16 anomaly alert(s)); 1 point each"),
            "{}",
            a.explanation
        );
    }

    #[test]
    fn the_signals_maxima_add_up_to_100() {
        let i = compute(&AlertBook::new(0, 10), &[], 0, true);
        let total: f64 = i.signals.iter().map(|s| s.max_points).sum();
        assert_eq!(total, 100.0);
    }
}
