//! Event time: microseconds since the Unix epoch (UTC), RFC 3339 text, and durations.
//!
//! No date crate is used: civil dates are converted with the days-from-civil algorithm
//! (proleptic Gregorian calendar), which is exact for every representable day.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::EventError;

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// Current wall-clock time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (`m` 1..=12, `d` 1..=31).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fractional digits,
/// e.g. `2026-11-26T16:00:00.123456Z`.
pub fn format_rfc3339_micros(micros: i64) -> String {
    Timestamp(micros).to_string()
}

/// Parses an RFC 3339 date-time (`Z` or `±hh:mm` offset, any number of fractional digits;
/// digits past microseconds are truncated) into microseconds since the epoch.
/// Returns `None` for anything malformed or out of range; never panics.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(range)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let year = i64::from(num(0..4)?);
    let month = num(5..7)?;
    let day = num(8..10)?;
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        let mut scale = 100_000;
        while i < b.len() && b[i].is_ascii_digit() {
            frac += i64::from(b[i] - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec) - offset_secs;
    Some(secs * MICROS_PER_SEC + frac)
}

/// Parses a duration such as `90s`, `15m`, `1h`, `2d`, `1h30m`, `500ms` or `250us` into
/// microseconds. Units: `d`, `h`, `m`, `s`, `ms`, `us`. Returns `None` if malformed or if
/// the value overflows.
pub fn parse_duration(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let mut n: i64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            n = n.checked_mul(10)?.checked_add(i64::from(b[i] - b'0'))?;
            i += 1;
        }
        if i == start {
            return None;
        }
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit: i64 = match &b[unit_start..i] {
            b"d" => MICROS_PER_DAY,
            b"h" => 3600 * MICROS_PER_SEC,
            b"m" => 60 * MICROS_PER_SEC,
            b"s" => MICROS_PER_SEC,
            b"ms" => 1000,
            b"us" => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

/// A point in time: microseconds since the Unix epoch, UTC. Serialized as RFC 3339 text
/// with microseconds (`2026-11-26T16:00:00.123456Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Timestamp(now_micros())
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 text; see [`parse_rfc3339`].
    pub fn parse(s: &str) -> Option<Self> {
        parse_rfc3339(s).map(Timestamp)
    }
}

impl Timestamp {
    /// The RFC 3339 text written into `buf`, for years 0 to 9999 (every real event);
    /// `None` for other years, which [`fmt::Display`] writes the slow way.
    fn fixed_width_text(self, buf: &mut [u8; 27]) -> Option<&str> {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let rem = self.0.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return None;
        }
        let secs = rem / MICROS_PER_SEC;
        let frac = rem % MICROS_PER_SEC;
        *buf = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, i64::from(m));
        put(8, 2, i64::from(d));
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        put(20, 6, frac);
        std::str::from_utf8(buf).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fast path (every event is formatted): fixed-width digits into a stack buffer.
        if let Some(text) = self.fixed_width_text(&mut [0; 27]) {
            return f.write_str(text);
        }
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let rem = self.0.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let secs = rem / MICROS_PER_SEC;
        let frac = rem % MICROS_PER_SEC;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl FromStr for Timestamp {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s).ok_or_else(|| EventError::InvalidTime(s.chars().take(64).collect()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // As a plain string when it fits the fixed width: no formatting machinery.
        match self.fixed_width_text(&mut [0; 27]) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).ok_or_else(|| E::custom("invalid RFC 3339 time"))
            }
        }
        deserializer.deserialize_str(TimeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_many_centuries() {
        // Every day from 1600-01-01 to 2400-12-31, plus the day before/after each.
        let start = days_from_civil(1600, 1, 1);
        let end = days_from_civil(2400, 12, 31);
        let (mut y, mut m, mut d) = (1600, 1, 1);
        for days in start..=end {
            assert_eq!(civil_from_days(days), (y, m, d));
            assert_eq!(days_from_civil(y, m, d), days);
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000_000)
        );
        assert_eq!(parse_rfc3339("1900-02-29T00:00:00Z"), None); // not a leap year
        assert_eq!(parse_rfc3339("2100-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(format_rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn rfc3339_round_trip_including_leap_days() {
        for s in [
            "2026-11-26T16:00:00.123456Z",
            "2000-02-29T23:59:59.999999Z",
            "2024-02-29T00:00:00.000001Z",
            "1970-01-01T00:00:00.000000Z",
            "1969-07-20T20:17:40.000000Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let us = parse_rfc3339(s).unwrap();
            assert_eq!(format_rfc3339_micros(us), s);
        }
        let mut us = -5_000_000_000_000_000i64;
        while us < 5_000_000_000_000_000 {
            assert_eq!(parse_rfc3339(&format_rfc3339_micros(us)), Some(us));
            us += 7_777_777_777_777;
        }
    }

    #[test]
    fn offsets_and_fractions() {
        let z = parse_rfc3339("2026-11-26T16:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-11-26T17:30:00+01:30"), Some(z));
        assert_eq!(parse_rfc3339("2026-11-26T11:00:00-05:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-11-27T00:00:00+08:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-11-26t16:00:00z"), Some(z));
        assert_eq!(parse_rfc3339("2026-11-26T16:00:00.5Z"), Some(z + 500_000));
        assert_eq!(parse_rfc3339("2026-11-26T16:00:00.123Z"), Some(z + 123_000));
        assert_eq!(
            parse_rfc3339("2026-11-26T16:00:00.123456789Z"),
            Some(z + 123_456)
        );
        for bad in [
            "",
            "2026-11-26",
            "2026-11-26T16:00:00",
            "2026-11-26T16:00:00.Z",
            "2026-13-26T16:00:00Z",
            "2026-11-31T16:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T16:00:00+0100",
            "2026-11-26T16:00:00Zjunk",
            "2026-11-26T16:00:00+1:00",
            "２026-11-26T16:00:00Z",
            "2026-11-26T16:00:00é+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000_000));
        assert_eq!(parse_duration("15m"), Some(900_000_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000_000));
        assert_eq!(parse_duration("2d"), Some(172_800_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000));
        assert_eq!(parse_duration("1m30s500ms"), Some(90_500_000));
        assert_eq!(parse_duration("0s"), Some(0));
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "-1s",
            "1 h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamp_serde() {
        let t = Timestamp(1_700_000_000_123_456);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123456Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(now_micros() > 1_700_000_000_000_000);
    }
}
