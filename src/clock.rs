//! The wall clock, read at the edges only: the detection core and the ban book take
//! `now` as an argument (DESIGN.md, principle 1); the daemon, the notifier and the
//! command line read it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now (0 if the system clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix nanoseconds now (0 if the system clock is before 1970).
pub fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
