//! How long bans last and how many may come at once (`ban`), and where they are kept
//! (`state`).

use std::path::PathBuf;

use crate::time::MAX_DURATION_SECS;

/// The `ban` section: durations, escalation for repeat offenders, the burst safety valve.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Seconds a first ban lasts.
    pub duration: u64,
    /// Each earlier ban of the same IP multiplies the duration by this.
    pub repeat_multiplier: f64,
    /// The longest a ban can last, however often the IP came back.
    pub max_duration: u64,
    /// Safety valve: more new bans than this from one source prefix (IPv4 /24, IPv6 /64)
    /// within `burst_window` are held back and alerted. Per prefix, so a flood from one
    /// network never stops the bans of an unrelated attacker.
    pub burst_max_bans: u32,
    pub burst_window: u64,
    /// An optional last-resort ceiling on new bans from all prefixes together within
    /// `burst_window`; 0 (the default) means none. See the README for why it is off.
    pub burst_max_bans_total: u32,
    /// How much of an IPv6 offender's address a ban covers: 128 (the address, the default)
    /// or 64 (its whole /64, which one host can hop around in at will).
    pub ipv6_prefix: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            duration: 24 * 3600,
            repeat_multiplier: 2.0,
            max_duration: 30 * 24 * 3600,
            burst_max_bans: 100,
            burst_window: 60,
            burst_max_bans_total: 0,
            ipv6_prefix: 128,
        }
    }
}

impl Policy {
    /// How long a ban lasts for an IP that has been banned `previous_bans` times before.
    ///
    /// Never more than `max_duration` and never less than a second, whatever the count
    /// and multiplier: the product is computed in floating point (2^40 does not overflow,
    /// it is capped) and a result that is not a finite number is taken as the cap.
    pub fn duration_for(&self, previous_bans: u32) -> u64 {
        let factor = self.repeat_multiplier.powi(previous_bans.min(64) as i32);
        let secs = self.duration as f64 * factor;
        let cap = self.max_ban();
        if !secs.is_finite() || secs >= cap as f64 {
            return cap;
        }
        (secs as u64).clamp(1, cap)
    }

    /// The longest ban this policy allows, in seconds (at least 1, at most
    /// [`MAX_DURATION_SECS`] even for a policy built in code rather than read from a file).
    pub fn max_ban(&self) -> u64 {
        self.max_duration.clamp(1, MAX_DURATION_SECS)
    }

    /// `seconds` brought into 1..=`max_ban()`: every ban length, whoever asked for it.
    pub fn clamp_ban(&self, seconds: u64) -> u64 {
        seconds.clamp(1, self.max_ban())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// Holds blocked_ips.json, the per-container log cursors and the alerts log.
    pub dir: PathBuf,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: PathBuf::from("/var/lib/security-monitor"),
        }
    }
}

impl StateSettings {
    pub fn blocked_ips_file(&self) -> PathBuf {
        self.dir.join("blocked_ips.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_never_overflows() {
        let b = Policy {
            max_duration: u64::MAX,
            ..Policy::default()
        };
        assert_eq!(b.duration_for(40), MAX_DURATION_SECS, "2^40 days is capped");
        assert_eq!(b.duration_for(u32::MAX), MAX_DURATION_SECS);
        let steep = Policy {
            repeat_multiplier: 100.0,
            max_duration: MAX_DURATION_SECS,
            ..Policy::default()
        };
        assert_eq!(steep.duration_for(u32::MAX), MAX_DURATION_SECS);
        assert_eq!(Policy::default().clamp_ban(u64::MAX), 30 * 86400);
        assert_eq!(Policy::default().clamp_ban(0), 1);
    }

    #[test]
    fn escalation_is_capped() {
        let b = Policy::default();
        assert_eq!(b.duration_for(0), 86400);
        assert_eq!(b.duration_for(1), 2 * 86400);
        assert_eq!(b.duration_for(50), 30 * 86400);
    }
}
