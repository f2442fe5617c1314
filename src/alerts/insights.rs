//! The risk summary (`security-monitor insights`), like the seed's `/ai-insights`: a score
//! from 0 to 100 and a band, built from a few signals an operator can check by hand. No
//! model, no weights learned from data: each signal has a fixed number of points it can
//! add, and says in words why it added what it did.
//!
//! | signal | points | from |
//! | --- | --- | --- |
//! | severity mix | up to 40 | alerts of the last hour: critical 10, high 5, medium 2, low 0.5 each |
//! | active bans | up to 20 | 2 per IP banned now |
//! | repeat offenders | up to 20 | 5 per banned IP that was banned before |
//! | trend | up to 20 | alerts of the last hour against the hour before |
//!
//! Band: low below 30, medium below 60, high from 60.

use serde::{Deserialize, Serialize};

use super::AlertBook;
use crate::ban::state_file::BanRecord;
use crate::detect::Severity;

const HOUR: i64 = 3600;

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

/// The summary at `now` from the alert ring and the active bans.
pub fn compute(book: &AlertBook, bans: &[BanRecord], now: i64) -> Insights {
    let mut breakdown: std::collections::BTreeMap<Severity, u64> =
        Severity::ALL.iter().map(|s| (*s, 0)).collect();
    let (mut last, mut previous) = (0u64, 0u64);
    let mut by_ip: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for a in book.iter() {
        if a.last_seen > now - HOUR && a.time <= now {
            last += 1;
            *breakdown.entry(a.severity).or_default() += 1;
            if let Some(ip) = a.ip {
                *by_ip.entry(ip.to_string()).or_default() += a.count;
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
        .map(|(s, w)| breakdown.get(s).copied().unwrap_or(0) as f64 * w)
        .sum();
    let mix = weights
        .iter()
        .map(|(s, _)| format!("{} {s}", breakdown.get(s).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    signals.push(Signal {
        name: "severity_mix".into(),
        value: last as f64,
        points: raw.min(40.0),
        max_points: 40.0,
        explanation: if last == 0 {
            "no alerts in the last hour".into()
        } else {
            format!("{last} alert(s) in the last hour ({mix}); critical counts 10, high 5, medium 2, low 0.5")
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
            .min(20.0 * extra / previous.max(1) as f64)
            .min(20.0);
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
        max_points: 20.0,
        explanation: trend_text,
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
        let i = compute(&book, &[], 10_000);
        assert_eq!((i.risk_score, i.risk_level.as_str()), (0, "low"));
        assert!(i.summary.contains("nothing noteworthy"), "{}", i.summary);
        assert_eq!(i.signals.len(), 4);
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
        let i = compute(&book, &bans, now);
        // severity 2*10 + 3*5 + 0.5 = 35.5; bans 4; repeat 5; trend min(5*2, 20*5/1) = 10.
        let points: Vec<f64> = i.signals.iter().map(|s| s.points).collect();
        assert_eq!(points, vec![35.5, 4.0, 5.0, 10.0]);
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
        let i = compute(&book, &bans, now);
        assert_eq!((i.risk_score, i.risk_level.as_str()), (100, "high"));
    }
}
