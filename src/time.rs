//! Time as operators and logs write it: RFC 3339 and the timestamp shapes of logs in,
//! RFC 3339 out, and durations ("90s", "1h30m"). Pure arithmetic: the clock itself is in
//! `crate::clock`.

/// The longest duration any config key, command-line option or control call accepts:
/// ten years. Longer is "for ever" in practice, and every larger figure is a typo or an
/// attack on the arithmetic (nftables would keep a u32::MAX-second element 136 years).
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 86400;

/// A duration that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("\"{0}\" is not a duration: use a whole number with a unit, such as \"90s\", \"10m\", \"24h\", \"7d\" or \"1h30m\"")]
    NotADuration(String),
    /// Beyond [`MAX_DURATION_SECS`]; holds the duration as the operator wrote it.
    #[error("{0} is too long: durations are at most {max} (ten years); for a ban, that is for ever in practice", max = format_duration(MAX_DURATION_SECS))]
    TooLong(String),
}

/// Parses "90", "90s", "10m", "24h", "7d", "2w" and sums such as "1h30m" into seconds.
///
/// At most [`MAX_DURATION_SECS`]: a longer duration (or one too long to count) is an
/// error, not a wrapped or saturated number. Exponents ("1e20s") are not durations.
pub fn parse_duration(s: &str) -> Result<u64, DurationError> {
    let t = s.trim();
    let bad = || DurationError::NotADuration(s.to_string());
    let huge = || DurationError::TooLong(format!("\"{s}\""));
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    let mut saw_unit = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let mult = match unit.as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            "w" | "week" | "weeks" => 7 * 86400,
            _ => return Err(bad()),
        };
        let n = whole_number(&num).ok_or_else(bad)?.ok_or_else(huge)?;
        num.clear();
        saw_unit = true;
        total = total
            .checked_add(n.checked_mul(mult).ok_or_else(huge)?)
            .ok_or_else(huge)?;
    }
    if !num.is_empty() {
        if saw_unit {
            return Err(bad());
        }
        total = whole_number(&num).ok_or_else(bad)?.ok_or_else(huge)?;
    }
    if total > MAX_DURATION_SECS {
        return Err(huge());
    }
    Ok(total)
}

/// A run of ASCII digits as a number: None when empty, Some(None) when too large to count.
fn whole_number(digits: &str) -> Option<Option<u64>> {
    if digits.is_empty() {
        return None;
    }
    Some(digits.parse().ok())
}

/// Formats seconds the way operators write them: "24h", "1h30m", "45s".
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// The years a log line's time may fall in. Others are nobody's log line; rejecting them
/// keeps every later sum in range.
const YEARS: std::ops::RangeInclusive<i64> = 1970..=9999;
/// Seconds up to this (the year 5138), else milliseconds, microseconds or nanoseconds.
const EPOCH_SECONDS_MAX: f64 = 1e11;

/// Epoch seconds, or milliseconds/microseconds/nanoseconds when the number is that large.
/// None for what is no time: negative, not finite (`inf` from 309 digits), or too large
/// to be nanoseconds. No loop: the scale is one of four.
pub fn epoch_number(n: f64) -> Option<i64> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let v = [1.0, 1e3, 1e6, 1e9]
        .iter()
        .map(|scale| n / scale)
        .find(|v| *v <= EPOCH_SECONDS_MAX)?;
    // In range by the test above, so the cast neither saturates nor wraps.
    Some(v as i64)
}

/// Parses the timestamp formats logs use into Unix seconds: nginx/Apache
/// `21/Nov/2026:00:06:01 +0000`, ISO 8601 / RFC 3339 (`2026-11-21T00:06:01.5Z`,
/// `2026-11-21 00:06:01+01:00`; no offset means UTC), and epoch seconds (or ms, µs, ns).
/// Total: any input gives an answer at once, None for anything outside the years
/// 1970..=9999 or not a time at all.
pub fn parse_time(s: &[u8]) -> Option<i64> {
    let s = trim_ascii(s);
    if s.len() >= 20 && s[2] == b'/' && s[6] == b'/' && s[11] == b':' {
        let day = num(&s[0..2])?;
        let month = month_number(&s[3..6])?;
        let year = num(&s[7..11])?;
        let (h, m, sec) = (num(&s[12..14])?, num(&s[15..17])?, num(&s[18..20])?);
        let offset = parse_offset(trim_ascii(&s[20..])).unwrap_or(0);
        return in_time_range(civil_to_unix(year, month, day, h, m, sec)?.checked_sub(offset)?);
    }
    if s.len() >= 19
        && s[4] == b'-'
        && s[7] == b'-'
        && (s[10] == b'T' || s[10] == b' ')
        && s[13] == b':'
    {
        let (year, month, day) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
        let (h, m, sec) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
        let mut rest = &s[19..];
        if rest.first() == Some(&b'.') || rest.first() == Some(&b',') {
            let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            rest = &rest[1 + digits..];
        }
        let offset = parse_offset(trim_ascii(rest)).unwrap_or(0);
        return in_time_range(civil_to_unix(year, month, day, h, m, sec)?.checked_sub(offset)?);
    }
    // `2026/11/21 00:06:01`: nginx's error log, Gitea, Go's log package (local time,
    // read as UTC like every time without an offset).
    if s.len() >= 19 && s[4] == b'/' && s[7] == b'/' && s[10] == b' ' && s[13] == b':' {
        let (year, month, day) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
        let (h, m, sec) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
        return in_time_range(civil_to_unix(year, month, day, h, m, sec)?);
    }
    // `261121  0:06:01` or `261121 00:06:01`: MariaDB's and old MySQL's error log.
    if s.len() == 15 && s[6] == b' ' && s[12] == b':' && s[..6].iter().all(u8::is_ascii_digit) {
        let (year, month, day) = (2000 + num(&s[0..2])?, num(&s[2..4])?, num(&s[4..6])?);
        let hour = num(trim_ascii(&s[7..9]))?;
        let (m, sec) = (num(&s[10..12])?, num(&s[13..15])?);
        return in_time_range(civil_to_unix(year, month, day, hour, m, sec)?);
    }
    // Epoch numbers: nanoseconds of the year 9999 have 20 digits; a longer run of digits
    // is no time (and is not worth converting).
    if !s.is_empty() && s.len() <= 40 && s.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
        return epoch_number(v);
    }
    None
}

/// Parses a syslog time (`Nov 21 00:06:01`, `Nov  1 00:06:01`), which has no year: the
/// year is the one that puts the time closest before `reference` (Unix seconds; a time up
/// to a day after it counts as this year, for clocks a little apart). None for anything
/// else.
pub fn parse_syslog_time(s: &[u8], reference: i64) -> Option<i64> {
    let s = trim_ascii(s);
    if s.len() != 15 || s[3] != b' ' || s[6] != b' ' || s[9] != b':' || s[12] != b':' {
        return None;
    }
    let month = month_number(&s[0..3])?;
    let day = num(trim_ascii(&s[4..6]))?;
    let (h, m, sec) = (num(&s[7..9])?, num(&s[10..12])?, num(&s[13..15])?);
    let (year, _, _) = civil_from_days(reference.div_euclid(86_400));
    let this_year = civil_to_unix(year, month, day, h, m, sec)?;
    if this_year <= reference.saturating_add(86_400) {
        return Some(this_year);
    }
    civil_to_unix(year - 1, month, day, h, m, sec)
}

/// A time an offset moved outside the years we read (`31/Dec/9999:23:59:59 -2359`) is no
/// time either: every time read must format and read back as itself.
fn in_time_range(t: i64) -> Option<i64> {
    /// 9999-12-31T23:59:59Z.
    const LAST: i64 = 253_402_300_799;
    (0..=LAST).contains(&t).then_some(t)
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn num(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |a, &d| a * 10 + (d - b'0') as i64))
}

fn month_number(s: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = [
        s[0].to_ascii_lowercase(),
        s[1].to_ascii_lowercase(),
        s[2].to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|m| **m == lower)
        .map(|i| i as i64 + 1)
}

/// `+0100`, `-05:00`, `Z` → seconds east of UTC.
fn parse_offset(s: &[u8]) -> Option<i64> {
    match s {
        b"Z" | b"z" | b"" => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let digits: Vec<u8> = rest.iter().copied().filter(|b| *b != b':').collect();
            if digits.len() != 4 {
                return None;
            }
            let secs = num(&digits[0..2])? * 3600 + num(&digits[2..4])? * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Unix seconds of a civil date and time, or None when a field is out of its range
/// (years 1970..=9999, 60 allowed for a leap second). The ranges keep the sums far from
/// overflow; the arithmetic is checked all the same.
pub(crate) fn civil_to_unix(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !YEARS.contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    days_from_civil(y, mo, d)
        .checked_mul(86_400)?
        .checked_add(h * 3600 + mi * 60 + s)
}

/// The (year, month, day) of a day number since 1970-01-01: the inverse of
/// [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds → `2026-11-21T00:06:01Z`.
pub fn format_time(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let secs = t.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Times are RFC 3339 in the file, for people; Unix seconds in memory.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_time(text.as_bytes())
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
        civil_to_unix(y, mo, d, h, mi, s).expect("a valid date")
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time(b"2026-11-21T00:06:01.250+01:00"),
            Some(unix(2026, 11, 20, 23, 6, 1))
        );
        assert_eq!(parse_time(b"1763683561"), Some(1763683561));
        assert_eq!(parse_time(b"1763683561123"), Some(1763683561));
        assert_eq!(
            format_time(unix(2026, 11, 21, 0, 6, 1)),
            "2026-11-21T00:06:01Z"
        );
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time(b"garbage"), None);
    }

    #[test]
    fn the_time_shapes_of_application_logs() {
        let t = unix(2026, 11, 21, 0, 6, 1);
        assert_eq!(parse_time(b"2026/11/21 00:06:01"), Some(t));
        assert_eq!(parse_time(b"261121  0:06:01"), Some(t));
        assert_eq!(parse_time(b"261121 00:06:01"), Some(t));
        assert_eq!(parse_time(b"2026-11-21 00:06:01,123"), Some(t));
        assert_eq!(parse_time(b"2026/13/21 00:06:01"), None);
        assert_eq!(parse_syslog_time(b"Nov 21 00:06:01", t + 60), Some(t));
        // Written just before the new year, read just after it: last year.
        let jan = unix(2027, 1, 1, 0, 0, 10);
        assert_eq!(
            parse_syslog_time(b"Dec 31 23:59:59", jan),
            Some(unix(2026, 12, 31, 23, 59, 59))
        );
        assert_eq!(
            parse_syslog_time(b"Jan  1 00:00:05", jan),
            Some(unix(2027, 1, 1, 0, 0, 5))
        );
        assert_eq!(parse_syslog_time(b"Foo 21 00:06:01", t), None);
    }

    #[test]
    fn huge_and_absurd_times_are_no_times_and_return_at_once() {
        let digits = "9".repeat(400);
        assert_eq!(parse_time(digits.as_bytes()), None);
        assert_eq!(parse_time(format!("{digits}.5").as_bytes()), None);
        assert_eq!(epoch_number(f64::INFINITY), None);
        assert_eq!(epoch_number(f64::NEG_INFINITY), None);
        assert_eq!(epoch_number(f64::NAN), None);
        assert_eq!(epoch_number(-5.0), None);
        assert_eq!(epoch_number(1e300), None);
        // Nanoseconds are the finest scale read.
        assert_eq!(
            epoch_number(1_763_683_561_123_456_789.0),
            Some(1_763_683_561)
        );
        assert_eq!(epoch_number(1e21), None);
        // Years outside 1970..=9999, and fields out of range, are no dates.
        assert_eq!(parse_time(b"0000-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(b"1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_time(b"21/Nov/0001:00:06:01 +0000"), None);
        assert_eq!(parse_time(b"2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time(b"2026-11-21T24:00:00Z"), None);
        assert_eq!(parse_time(b"2026-11-00T00:00:00Z"), None);
        assert_eq!(
            parse_time(b"9999-12-31T23:59:59Z"),
            Some(unix(9999, 12, 31, 23, 59, 59))
        );
        // An offset cannot carry a time past the years read, nor before 1970.
        assert_eq!(parse_time(b"31/Dec/9999:23:59:59 -2359"), None);
        assert_eq!(parse_time(b"1970-01-01T00:00:00+01:00"), None);
        assert_eq!(civil_to_unix(i64::MAX, 1, 1, 0, 0, 0), None);
        assert_eq!(civil_to_unix(i64::MIN, 1, 1, 0, 0, 0), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("7d"), Ok(604800));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("1h5").is_err());
        assert_eq!(format_duration(5400), "1h30m");
    }
}
