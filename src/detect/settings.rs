//! What the detector is told: its rules, its limits, who is never banned, which proxies
//! are believed. Filled from the config by `crate::config`; detect never reads a file.

use std::fmt;
use std::str::FromStr;

use super::proxy::TrustedProxies;
use super::rules::UserPattern;
use crate::netaddr::IpNet;

/// How serious a rule hit, a ban or an alert is, least to most. Files and the control
/// protocol carry it as its lowercase word (`"critical"`), as they always have.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A word that is not one of the four severities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of low, medium, high, critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Severity, UnknownSeverity> {
        Severity::parse(s).ok_or_else(|| UnknownSeverity(s.to_string()))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-IP limits. The first three keys are the seed's, with its meanings.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Failed logins within `failed_auth_window` that ban.
    pub max_failed_auth: u32,
    pub failed_auth_window: u64,
    /// Rule-hit points within `pattern_window` that ban (critical rules ban at once;
    /// high hits count 2, medium 1, low 0).
    pub max_pattern_matches: u32,
    pub pattern_window: u64,
    /// Requests within any 60 seconds that ban (a flood).
    pub max_requests_per_minute: u32,
    /// Distinct paths answered 404/410 within `not_found_window` that ban (probing).
    pub max_not_found: u32,
    pub not_found_window: u64,
    /// Distinct paths answered 404/410 within `not_found_burst_window` that ban when
    /// each came without a referer and is not a static asset (a scanner's burst);
    /// 0: off.
    pub max_not_found_burst: u32,
    pub not_found_burst_window: u64,
    /// Whether one hit of a critical rule bans by itself.
    pub ban_on_critical: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_failed_auth: 5,
            failed_auth_window: 600,
            max_pattern_matches: 3,
            pattern_window: 600,
            max_requests_per_minute: 300,
            max_not_found: 10,
            not_found_window: 300,
            max_not_found_burst: 5,
            not_found_burst_window: 60,
            ban_on_critical: true,
        }
    }
}

/// Everything the detector is told: built by `crate::config` from the file (see
/// `Config::detect_settings`), or in code by tests, fuzzers and benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub thresholds: Thresholds,
    /// Whether the built-in rules apply (`rules.builtin`).
    pub builtin_rules: bool,
    /// Built-in rule ids switched off (`rules.disabled`).
    pub disabled_rules: Vec<String>,
    /// The operator's own `patterns`.
    pub patterns: Vec<UserPattern>,
    /// Networks never banned (`allowlist`); their verdicts are marked, not dropped.
    pub allowlist: Vec<IpNet>,
    pub trusted_proxies: TrustedProxies,
    /// How long the detector stays quiet about an IP after a verdict (`ban.duration`).
    pub quiet_seconds: u64,
    /// Client IPs whose windows are held in memory (`limits.max_tracked_ips`).
    pub max_tracked_ips: usize,
}

/// The config file's defaults (`config` checks that they agree).
impl Default for Settings {
    fn default() -> Self {
        Settings {
            thresholds: Thresholds::default(),
            builtin_rules: true,
            disabled_rules: Vec::new(),
            patterns: Vec::new(),
            allowlist: Vec::new(),
            trusted_proxies: TrustedProxies::default(),
            quiet_seconds: 24 * 3600,
            max_tracked_ips: 100_000,
        }
    }
}
