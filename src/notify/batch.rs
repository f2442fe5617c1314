//! When a channel sends: bans are collected into one digest for `digest_interval`, no
//! more than `max_per_hour` notices go out in any hour, and a failed send is retried with
//! a capped backoff while newer bans are folded into the same digest. Sans-IO: every
//! method takes `now`, so the schedule is tested without sleeping.
//!
//! Memory is bounded whatever happens: there is at most one digest waiting and one in
//! flight per channel, and a digest lists at most `MAX_LISTED` bans (the rest are counts).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::message::{BanNotice, Digest, HeldNotice};
use crate::detect::Severity;

const HOUR: Duration = Duration::from_secs(3600);
/// First retry after a failed send; doubled each time up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Batcher {
    pub interval: Duration,
    pub max_per_hour: u32,
    pub min_severity: Severity,
    host: String,
    waiting: Digest,
    /// When the oldest waiting item arrived: the digest is due `interval` after it.
    since: Option<Instant>,
    /// Successful sends within the last hour.
    sent: VecDeque<Instant>,
    in_flight: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Batcher {
    pub fn new(host: &str, interval: Duration, max_per_hour: u32, min_severity: Severity) -> Self {
        Batcher {
            interval,
            max_per_hour: max_per_hour.max(1),
            min_severity,
            host: host.to_string(),
            waiting: Digest::new(host),
            since: None,
            sent: VecDeque::new(),
            in_flight: false,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Takes a ban if its severity is at least `min_severity`. Returns whether it was
    /// taken.
    pub fn offer_ban(&mut self, n: BanNotice, now: Instant) -> bool {
        let taken = self.admit(n.severity, now);
        if taken {
            self.waiting.add_ban(n);
        }
        taken
    }

    pub fn offer_held(&mut self, n: HeldNotice, now: Instant) -> bool {
        let taken = self.admit(n.severity, now);
        if taken {
            self.waiting.add_held(n);
        }
        taken
    }

    /// Whether an item of `severity` goes into the waiting digest (which then starts
    /// its interval, if it had not).
    fn admit(&mut self, severity: Severity, now: Instant) -> bool {
        if !self.wants(severity) {
            return false;
        }
        self.since.get_or_insert(now);
        true
    }

    /// Events lost before they reached the notifier: said in the next notice.
    pub fn missed(&mut self, n: u64, now: Instant) {
        self.waiting.missed_events += n;
        self.since.get_or_insert(now);
    }

    fn wants(&self, severity: Severity) -> bool {
        severity >= self.min_severity
    }

    /// Bans and held verdicts not yet delivered (waiting or in flight is not counted here:
    /// see `in_flight`).
    pub fn waiting(&self) -> u64 {
        self.waiting.len()
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// When the waiting digest may be sent: `interval` after its oldest item, not before
    /// a retry is due, and not while the hourly cap is reached. None: nothing to send, or
    /// a send is under way.
    pub fn due(&self) -> Option<Instant> {
        if self.in_flight || self.waiting.is_empty() {
            return None;
        }
        let mut at = self.since? + self.interval;
        if let Some(r) = self.retry_at {
            at = at.max(r);
        }
        if self.sent.len() >= self.max_per_hour as usize {
            if let Some(&oldest) = self.sent.front() {
                at = at.max(oldest + HOUR);
            }
        }
        Some(at)
    }

    /// The digest to send now, if one is due. The channel is then busy until
    /// `delivered` or `failed` is called.
    pub fn take(&mut self, now: Instant) -> Option<Digest> {
        self.forget_old(now);
        if self.due()? > now {
            return None;
        }
        Some(self.take_waiting())
    }

    /// Everything waiting, at once: the last digest before the daemon stops, sent
    /// whatever the interval and the hourly cap say, so no ban goes unreported.
    pub fn take_final(&mut self) -> Option<Digest> {
        if self.in_flight || self.waiting() == 0 {
            return None;
        }
        Some(self.take_waiting())
    }

    fn take_waiting(&mut self) -> Digest {
        self.in_flight = true;
        self.since = None;
        std::mem::replace(&mut self.waiting, Digest::new(&self.host))
    }

    pub fn delivered(&mut self, now: Instant) {
        self.in_flight = false;
        self.retry_at = None;
        self.backoff = FIRST_BACKOFF;
        self.sent.push_back(now);
        self.forget_old(now);
    }

    /// A send failed: its digest goes back in front of what arrived since, and the next
    /// try waits for the backoff. Returns that wait.
    pub fn failed(&mut self, digest: Digest, now: Instant) -> Duration {
        self.in_flight = false;
        let newer = std::mem::replace(&mut self.waiting, digest);
        self.waiting.absorb(newer);
        self.since = Some(self.since.map_or(now, |s| s.min(now)));
        let wait = self.backoff;
        self.retry_at = Some(now + wait);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// Carries a channel's waiting notices and hourly count over to new settings (a
    /// reload).
    pub fn reconfigure(&mut self, interval: Duration, max_per_hour: u32, min_severity: Severity) {
        self.interval = interval;
        self.max_per_hour = max_per_hour.max(1);
        self.min_severity = min_severity;
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= HOUR)
        {
            self.sent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::state_file::BanRecord;

    fn ban(i: u32, severity: Severity) -> BanNotice {
        BanNotice::new(
            &BanRecord {
                ip: format!("198.51.{}.{}", i / 256, i % 256).parse().unwrap(),
                rule: "r".into(),
                category: "sqli".into(),
                severity,
                container: "web".into(),
                first_offence: 0,
                last_offence: 0,
                banned_at: 0,
                expires_at: 60,
                times_banned: 1,
                evidence: vec![],
                source: "detector".into(),
                prefix: None,
            },
            60,
            false,
        )
    }

    #[test]
    fn severity_below_the_minimum_is_ignored() {
        let now = Instant::now();
        let mut b = Batcher::new("h", Duration::ZERO, 10, Severity::High);
        assert!(!b.offer_ban(ban(1, Severity::Medium), now));
        assert!(b.offer_ban(ban(2, Severity::Critical), now));
        assert!(b.offer_ban(ban(3, Severity::High), now));
        assert_eq!(b.waiting(), 2);
    }

    #[test]
    fn a_thousand_bans_make_a_bounded_number_of_notices() {
        let start = Instant::now();
        let mut b = Batcher::new("h", Duration::from_secs(60), 5, Severity::Low);
        let mut notices = Vec::new();
        // 1,000 bans over 10 minutes, one every 600 ms, checked every 100 ms.
        for step in 0..6000u32 {
            let now = start + Duration::from_millis(step as u64 * 100);
            if step % 6 == 0 {
                b.offer_ban(ban(step / 6, Severity::High), now);
            }
            if let Some(d) = b.take(now) {
                b.delivered(now);
                notices.push(d);
            }
        }
        assert_eq!(notices.len(), 5, "the hourly cap");
        let told: u64 = notices.iter().map(|d| d.total_bans()).sum();
        assert_eq!(told + b.waiting(), 1000, "every ban is counted somewhere");
        // An hour after the first notice, the rest goes out in one.
        let later = start + Duration::from_secs(3600 + 61);
        let d = b.take(later).expect("due after the hour");
        assert_eq!(told + d.total_bans(), 1000);
    }

    #[test]
    fn a_failed_send_is_retried_with_backoff_and_keeps_its_bans() {
        let t0 = Instant::now();
        let mut b = Batcher::new("h", Duration::ZERO, 100, Severity::Low);
        b.offer_ban(ban(1, Severity::High), t0);
        let d = b.take(t0).unwrap();
        assert!(b.take(t0).is_none(), "one send at a time");
        b.offer_ban(ban(2, Severity::High), t0);
        assert_eq!(b.failed(d, t0), Duration::from_secs(1));
        assert_eq!(b.waiting(), 2);
        assert!(b.take(t0 + Duration::from_millis(500)).is_none());
        let d = b.take(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(d.bans[0].ip.to_string(), "198.51.0.1", "oldest first");
        assert_eq!(
            b.failed(d, t0 + Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        let mut wait = Duration::ZERO;
        for _ in 0..20 {
            let now = b.due().unwrap();
            let d = b.take(now).unwrap();
            wait = b.failed(d, now);
        }
        assert_eq!(wait, MAX_BACKOFF);
        let now = b.due().unwrap();
        let d = b.take(now).unwrap();
        assert_eq!(d.total_bans(), 2);
        b.delivered(now);
        b.offer_ban(ban(3, Severity::High), now);
        assert_eq!(b.due(), Some(now), "backoff is reset after a success");
    }
}
