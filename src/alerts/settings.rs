//! The `alerts` section.

/// How alerts are kept (see `crate::alerts`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Repeats of the same rule by the same IP (or the same kind of trouble in the same
    /// container) within this many seconds fold into one alert with a count.
    pub cooldown: u64,
    /// Alerts kept in memory for `security-monitor alerts` (the log keeps more).
    pub keep: usize,
    /// Bytes `alerts.jsonl` and its rotated files may take together; the oldest rotated
    /// files are deleted to stay within it.
    pub max_log_size: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cooldown: 300,
            keep: 10_000,
            max_log_size: crate::alerts::log::DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}
