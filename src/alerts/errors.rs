//! The error-rate detector: notices when a container starts failing (a burst of 5xx
//! responses, tracebacks, panics), the seeds' "error monitoring".
//!
//! Deliberately simple, so an operator can tell why it fired: per container, error lines
//! are counted per minute. The container's baseline is its average errors per minute
//! over the [`BASELINE_MINUTES`] minutes before the current one. An alert is raised once
//! per minute when the current minute reaches [`MIN_ERRORS`] errors **and** at least
//! [`JUMP_FACTOR`] times the baseline: a service that always logs a few errors stays
//! quiet, one that goes from calm to failing does not.
//!
//! An error line is a parsed request with status 500–599, or a line that is not a request
//! and contains one of [`ERROR_MARKERS`] (Python's `Traceback (most recent call last)`,
//! Java's and others' `Exception`, Rust's `panicked at`, …).

use std::collections::{HashMap, VecDeque};

/// Error lines a minute below which nothing is raised, whatever the baseline.
pub const MIN_ERRORS: u64 = 20;
/// How far above its baseline a container's errors must jump.
pub const JUMP_FACTOR: f64 = 4.0;
/// The minutes the baseline is averaged over.
pub const BASELINE_MINUTES: i64 = 10;
/// What marks an unparsed line as an error (case-sensitive, as programs print them).
pub const ERROR_MARKERS: [&str; 5] = [
    "Traceback (most recent call last)",
    "Exception",
    "panicked at",
    "Fatal error",
    "FATAL",
];

/// Whether a line counts as an error: `status` is the parsed request's status, or None
/// when the line was not a request.
pub fn is_error(status: Option<u16>, parsed: bool, line: &[u8]) -> bool {
    if parsed {
        return status.is_some_and(|s| (500..600).contains(&s));
    }
    ERROR_MARKERS
        .iter()
        .any(|m| memchr::memmem::find(line, m.as_bytes()).is_some())
}

/// A jump the detector saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Jump {
    pub errors: u64,
    /// Average errors per minute over the minutes before.
    pub baseline: f64,
}

#[derive(Debug, Default)]
struct Counts {
    /// (minute, errors in it), oldest first; only minutes with errors.
    minutes: VecDeque<(i64, u64)>,
    alerted_minute: Option<i64>,
}

/// Per-container error counts. Containers are few; each keeps at most
/// `BASELINE_MINUTES + 1` numbers.
#[derive(Debug, Default)]
pub struct ErrorRates {
    by_container: HashMap<String, Counts>,
}

impl ErrorRates {
    pub fn new() -> ErrorRates {
        ErrorRates::default()
    }

    /// Counts one error line of `container` at `now` (Unix seconds); returns a jump the
    /// first time the current minute crosses the threshold.
    pub fn error(&mut self, container: &str, now: i64) -> Option<Jump> {
        let minute = now.div_euclid(60);
        let c = self.by_container.entry(container.to_string()).or_default();
        match c.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            // A line older than the current minute (out of order) counts in the current one.
            Some((m, n)) if *m > minute => *n += 1,
            _ => c.minutes.push_back((minute, 1)),
        }
        let current_minute = c.minutes.back().map(|(m, _)| *m).unwrap_or(minute);
        while c
            .minutes
            .front()
            .is_some_and(|(m, _)| *m < current_minute - BASELINE_MINUTES)
        {
            c.minutes.pop_front();
        }
        let current = c.minutes.back().map(|(_, n)| *n).unwrap_or(0);
        let before: u64 = c
            .minutes
            .iter()
            .filter(|(m, _)| *m < current_minute)
            .map(|(_, n)| n)
            .sum();
        let baseline = before as f64 / BASELINE_MINUTES as f64;
        if current >= MIN_ERRORS
            && current as f64 >= JUMP_FACTOR * baseline
            && c.alerted_minute != Some(current_minute)
        {
            c.alerted_minute = Some(current_minute);
            return Some(Jump {
                errors: current,
                baseline,
            });
        }
        None
    }

    /// Forgets containers that are gone (their names are no longer followed).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_container.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_an_error() {
        assert!(is_error(Some(502), true, b""));
        assert!(!is_error(Some(404), true, b"Exception"));
        assert!(!is_error(None, true, b""));
        assert!(is_error(None, false, b"Traceback (most recent call last):"));
        assert!(is_error(
            None,
            false,
            b"thread 'main' panicked at src/main.rs:3:5"
        ));
        assert!(!is_error(None, false, b"GET /exception-handling-guide"));
    }

    #[test]
    fn a_calm_container_that_starts_failing_raises_one_alert_a_minute() {
        let mut r = ErrorRates::new();
        let t0 = 60 * 1000;
        // 19 errors in a minute: below the floor.
        for i in 0..19 {
            assert_eq!(r.error("web", t0 + i), None);
        }
        // The 20th: a jump (baseline 0).
        let j = r.error("web", t0 + 30).expect("a jump");
        assert_eq!(j.errors, 20);
        assert_eq!(j.baseline, 0.0);
        // Not again in the same minute.
        for i in 0..50 {
            assert_eq!(r.error("web", t0 + 31 + i % 29), None);
        }
        // Another container is counted on its own.
        assert_eq!(r.error("db", t0), None);
    }

    #[test]
    fn a_container_that_always_fails_a_lot_is_quiet_until_it_jumps_above_its_baseline() {
        let mut r = ErrorRates::new();
        // 30 errors a minute for ten minutes: the baseline counts the quiet minutes before
        // too, so the first three minutes fire (thresholds 20, 20, 24), then it is the norm.
        let mut fired = 0;
        for m in 0..10 {
            for i in 0..30 {
                if r.error("api", m * 60 + i).is_some() {
                    fired += 1;
                }
            }
        }
        assert_eq!(fired, 3);
        // Minute 10, baseline 30/min (300 over the 10 minutes before): 100 errors are not 4x...
        let mut jump = None;
        for i in 0..200 {
            if let Some(j) = r.error("api", 600 + i % 60) {
                jump = Some((i, j));
                break;
            }
        }
        // ...but 4 x 30 = 120 are.
        let (i, j) = jump.expect("a jump above the baseline");
        assert_eq!(j.errors, 120);
        assert_eq!(i, 119);
        assert!((j.baseline - 30.0).abs() < 0.01, "{j:?}");
    }
}
