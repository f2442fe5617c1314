//! Sliding windows per client IP, bounded in memory.
//!
//! "N events within W seconds" only needs the times of the last N events: the condition
//! holds when the oldest of them is within W of now. So each threshold keeps at most
//! its own N timestamps, and an IP that has only ever made ordinary requests costs one
//! small fixed-size record.

use std::collections::VecDeque;

/// The last `cap` events, each with a weight (the points of a rule hit).
#[derive(Debug, Default, Clone)]
pub struct EventWindow {
    events: VecDeque<(i64, u32)>,
}

impl EventWindow {
    /// Records an event and returns the total weight within `window` seconds of `now`.
    pub fn push(&mut self, now: i64, weight: u32, window: u64, cap: usize) -> u32 {
        self.events.push_back((now, weight));
        while self.events.len() > cap.max(1) {
            self.events.pop_front();
        }
        self.total(now, window)
    }

    pub fn total(&self, now: i64, window: u64) -> u32 {
        let since = now - window as i64;
        self.events
            .iter()
            .filter(|(t, _)| *t > since)
            .map(|(_, w)| *w)
            .sum()
    }

    pub fn clear(&mut self) {
        self.events.clear();
    }
}

/// Requests per sliding minute, in 5-second buckets: 12 counters whatever the rate.
/// The count covers the current bucket and the 11 before it (55 to 60 seconds).
#[derive(Debug, Default, Clone, Copy)]
pub struct RateCounter {
    buckets: [u16; 12],
    /// Sum of `buckets`, kept as they change.
    total: u32,
    /// Index (time / 5 s) of the newest bucket.
    head: i64,
}

const BUCKET_SECS: i64 = 5;

impl RateCounter {
    /// Counts one request at `now` and returns the requests in the last minute.
    #[inline]
    pub fn hit(&mut self, now: i64) -> u32 {
        let idx = now.div_euclid(BUCKET_SECS);
        if idx > self.head {
            if idx - self.head >= 12 {
                self.buckets = [0; 12];
                self.total = 0;
            } else {
                for k in self.head + 1..=idx {
                    let b = &mut self.buckets[k.rem_euclid(12) as usize];
                    self.total -= *b as u32;
                    *b = 0;
                }
            }
            self.head = idx;
        }
        // A line older than the window (out-of-order input) is counted in the oldest bucket.
        let slot = if self.head - idx >= 12 {
            self.head - 11
        } else {
            idx
        };
        let b = &mut self.buckets[slot.rem_euclid(12) as usize];
        if *b < u16::MAX {
            *b += 1;
            self.total += 1;
        }
        self.total
    }

    pub fn clear(&mut self) {
        self.buckets = [0; 12];
        self.total = 0;
    }
}

/// Distinct paths that were answered "not found", with the last time each was seen.
#[derive(Debug, Default, Clone)]
pub struct DistinctWindow {
    items: VecDeque<(u64, i64)>,
}

impl DistinctWindow {
    /// Records `key` at `now`; returns how many distinct keys fall within `window`.
    pub fn push(&mut self, key: u64, now: i64, window: u64, cap: usize) -> u32 {
        if let Some(pos) = self.items.iter().position(|(k, _)| *k == key) {
            self.items.remove(pos);
        }
        self.items.push_back((key, now));
        while self.items.len() > cap.max(1) {
            self.items.pop_front();
        }
        let since = now - window as i64;
        self.items.iter().filter(|(_, t)| *t > since).count() as u32
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_window_slides() {
        let mut w = EventWindow::default();
        assert_eq!(w.push(0, 1, 60, 3), 1);
        assert_eq!(w.push(30, 1, 60, 3), 2);
        assert_eq!(
            w.push(70, 1, 60, 3),
            2,
            "the event at 0 fell out of the window"
        );
        assert_eq!(w.push(71, 2, 60, 3), 4);
    }

    #[test]
    fn rate_counter_counts_a_minute() {
        let mut r = RateCounter::default();
        for t in 0..50 {
            r.hit(1000 + t);
        }
        assert_eq!(r.hit(1050), 51);
        // Two minutes later everything has expired.
        assert_eq!(r.hit(1200), 1);
        // A burst within one second.
        let mut r = RateCounter::default();
        let mut n = 0;
        for _ in 0..300 {
            n = r.hit(5000);
        }
        assert_eq!(n, 300);
    }

    #[test]
    fn rate_counter_survives_out_of_order_time() {
        let mut r = RateCounter::default();
        r.hit(10_000);
        assert_eq!(r.hit(100), 2);
    }

    #[test]
    fn distinct_window_counts_each_key_once() {
        let mut d = DistinctWindow::default();
        assert_eq!(d.push(1, 0, 300, 10), 1);
        assert_eq!(d.push(1, 1, 300, 10), 1);
        assert_eq!(d.push(2, 2, 300, 10), 2);
        assert_eq!(d.push(3, 400, 300, 10), 1);
    }
}
