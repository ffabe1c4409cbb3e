//! Timestamps as Alertmanager uses them: Go's zero time means "unset", and two JSON formats.

use jiff::Timestamp;

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`), used for "unset" start and end times.
pub const ZERO: Timestamp = Timestamp::constant(-62_135_596_800, 0);

/// Returns whether `t` is Go's zero time.
pub fn is_zero(t: Timestamp) -> bool {
    t == ZERO
}

/// Formats like Go's `time.RFC3339Nano` in UTC (fraction without trailing zeros), as webhook payloads use.
pub fn format_rfc3339_nano(t: Timestamp) -> String {
    Nanos(t).to_string()
}

/// `YYYY-MM-DDTHH:MM:SS` of `t` in UTC and its nanoseconds, for years 0 to 9999.
fn date_time_digits(t: Timestamp) -> Option<([u8; 19], u32)> {
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    let year = u32::try_from(dt.year()).ok()?;
    let mut b = *b"0000-00-00T00:00:00";
    put_digits(&mut b, 0, 4, year);
    put_digits(&mut b, 5, 2, u32::from(dt.month().unsigned_abs()));
    put_digits(&mut b, 8, 2, u32::from(dt.day().unsigned_abs()));
    put_digits(&mut b, 11, 2, u32::from(dt.hour().unsigned_abs()));
    put_digits(&mut b, 14, 2, u32::from(dt.minute().unsigned_abs()));
    put_digits(&mut b, 17, 2, u32::from(dt.second().unsigned_abs()));
    Some((b, dt.subsec_nanosecond().unsigned_abs()))
}

/// Writes `v` as `width` decimal digits ending at `at + width`.
fn put_digits(b: &mut [u8], at: usize, width: usize, mut v: u32) {
    for i in (at..at + width).rev() {
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// A timestamp that displays and serialises like Go's `time.RFC3339Nano` in UTC without
/// allocating: webhook payloads carry two per alert, and `strftime` showed in the profile of a
/// burst of notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nanos(pub Timestamp);

impl Nanos {
    /// Up to 30 bytes of `YYYY-MM-DDTHH:MM:SS[.fraction]Z` and how many are used, for years
    /// 0 to 9999.
    pub fn bytes(self) -> Option<([u8; 30], usize)> {
        let (dt, nanos) = date_time_digits(self.0)?;
        let mut b = [0u8; 30];
        b[..19].copy_from_slice(&dt);
        let mut len = 19;
        if nanos != 0 {
            b[19] = b'.';
            put_digits(&mut b, 20, 9, nanos);
            len = 29;
            while b[len - 1] == b'0' {
                len -= 1;
            }
        }
        b[len] = b'Z';
        Some((b, len + 1))
    }
}

impl std::fmt::Display for Nanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bytes() {
            // Only ASCII digits and separators were written.
            Some((b, n)) => f.write_str(std::str::from_utf8(&b[..n]).map_err(|_| std::fmt::Error)?),
            None => {
                let dt = jiff::tz::Offset::UTC.to_datetime(self.0);
                write!(f, "{}", dt.strftime("%Y-%m-%dT%H:%M:%S"))?;
                let nanos = dt.subsec_nanosecond();
                if nanos != 0 {
                    write!(f, ".{}", format!("{nanos:09}").trim_end_matches('0'))?;
                }
                f.write_str("Z")
            }
        }
    }
}

impl serde::Serialize for Nanos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.bytes() {
            Some((b, n)) => s.serialize_str(std::str::from_utf8(&b[..n]).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

/// Formats with millisecond precision (`2026-11-23T18:33:30.712Z`), as API v2 JSON uses.
pub fn format_millis(t: Timestamp) -> String {
    Millis(t).to_string()
}

/// A timestamp that displays and serialises in the API's millisecond form without allocating:
/// GET /api/v2/alerts writes three per alert, and `strftime` showed in its profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis(pub Timestamp);

impl Millis {
    /// The 24 bytes of `YYYY-MM-DDTHH:MM:SS.mmmZ`, for years 0 to 9999.
    pub fn bytes(self) -> Option<[u8; 24]> {
        let (dt, nanos) = date_time_digits(self.0)?;
        let mut b = *b"0000-00-00T00:00:00.000Z";
        b[..19].copy_from_slice(&dt);
        put_digits(&mut b, 20, 3, nanos / 1_000_000);
        Some(b)
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bytes() {
            // Only ASCII digits and separators were written.
            Some(b) => f.write_str(std::str::from_utf8(&b).map_err(|_| std::fmt::Error)?),
            None => write!(f, "{}", self.0.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")),
        }
    }
}

impl serde::Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.bytes() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

/// Parses an RFC 3339 timestamp with any offset.
pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    match parse_utc(s) {
        Some(t) => Ok(t),
        None => s.parse::<Timestamp>().map_err(|e| e.to_string()),
    }
}

/// Parses the form Prometheus sends, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, without jiff's general
/// parser, which was a tenth of decoding a posted alert (two timestamps each). `None` for
/// anything else, valid or not: jiff parses it then, and words the error.
fn parse_utc(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let (head, rest) = b.split_at_checked(19)?;
    let fraction = rest.strip_suffix(b"Z")?;
    if [head[4], head[7], head[10], head[13], head[16]] != *b"--T::" {
        return None;
    }
    let number = |digits: &[u8]| -> Option<i64> {
        digits
            .iter()
            .try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (number(&head[0..4])?, number(&head[5..7])?, number(&head[8..10])?);
    let (hour, minute, second) = (number(&head[11..13])?, number(&head[14..16])?, number(&head[17..19])?);
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => number(digits)? * 10i64.pow(9 - digits.len() as u32),
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    // A leap second (:60) is left to jiff.
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 in the proleptic Gregorian calendar, counting years from March so
    // that the leap day ends a year; 400-year eras of 146,097 days.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Timestamp::new(seconds, i32::try_from(nanos).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The short path parses exactly what jiff parses to the same instant, and takes every
        /// valid UTC timestamp of the form Prometheus sends.
        #[test]
        fn utc_timestamps_parse_as_jiff_parses_them(
            year in 0i64..=9999, month in 0i64..=13, day in 0i64..=32,
            hour in 0i64..=24, minute in 0i64..=60, second in 0i64..=60,
            fraction in "|\\.[0-9]{1,10}",
            suffix in proptest::sample::select(&["Z", "z", "+00:00", "-01:30", ""][..]),
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{suffix}");
            let jiff = text.parse::<Timestamp>();
            match parse_utc(&text) {
                Some(t) => proptest::prop_assert_eq!(Some(t), jiff.ok(), "{}", text),
                None => {
                    let ours = suffix == "Z" && second < 60 && fraction.len() <= 10;
                    proptest::prop_assert!(!ours || jiff.is_err(), "{} left to jiff", text);
                }
            }
        }
    }

    #[test]
    fn short_path_refusals_keep_jiffs_messages() {
        assert_eq!(
            parse_rfc3339("2026-02-03T04:05:06.5Z").unwrap().to_string(),
            "2026-02-03T04:05:06.5Z"
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59Z").unwrap().as_second(),
            1_709_251_199
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.000000001Z").unwrap().as_nanosecond(),
            -999_999_999
        );
        // Year 0 and the days before 1970 go through the era arithmetic's negative side.
        for early in ["0000-12-01T00:00:00Z", "0000-02-29T12:00:00Z", "1600-03-01T00:00:00Z"] {
            assert_eq!(parse_utc(early), early.parse::<Timestamp>().ok(), "{early}");
            assert!(parse_utc(early).is_some(), "{early}");
        }
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-02-03T04:05:06.Z",
        ] {
            let want = bad.parse::<Timestamp>().unwrap_err().to_string();
            assert_eq!(parse_rfc3339(bad), Err(want));
        }
    }

    #[test]
    fn go_formats() {
        assert_eq!(format_rfc3339_nano(ZERO), "0001-01-01T00:00:00Z");
        let t: Timestamp = "2026-11-23T18:33:30.712000Z".parse().unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30.712Z");
        assert_eq!(format_millis(t), "2026-11-23T18:33:30.712Z");
        let t: Timestamp = "2026-11-23T18:33:30Z".parse().unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30Z");
        assert_eq!(format_millis(t), "2026-11-23T18:33:30.000Z");
        assert_eq!(format_millis(ZERO), "0001-01-01T00:00:00.000Z");
        // Milliseconds are truncated, as Go's strfmt.DateTime formats them.
        let t: Timestamp = "2026-02-03T04:05:06.999999999Z".parse().unwrap();
        assert_eq!(format_millis(t), "2026-02-03T04:05:06.999Z");
        assert_eq!(
            serde_json::to_string(&Millis(t)).unwrap(),
            "\"2026-02-03T04:05:06.999Z\""
        );
        let before_epoch: Timestamp = "1969-12-31T23:59:59.5Z".parse().unwrap();
        assert_eq!(format_millis(before_epoch), "1969-12-31T23:59:59.500Z");
        let negative_year: Timestamp = "-000001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            format_millis(negative_year),
            negative_year.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        );
        let t = parse_rfc3339("2026-11-23T20:33:30.000000001+02:00").unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30.000000001Z");
        let t: Timestamp = "2026-11-23T18:33:30.10203Z".parse().unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30.10203Z");
        assert_eq!(
            serde_json::to_string(&Nanos(t)).unwrap(),
            "\"2026-11-23T18:33:30.10203Z\""
        );
        assert_eq!(format_rfc3339_nano(before_epoch), "1969-12-31T23:59:59.5Z");
        // Years before 0 fall back to jiff's formatting, with Go's fraction.
        let t: Timestamp = "-000001-01-01T00:00:00.25Z".parse().unwrap();
        assert_eq!(format_rfc3339_nano(t), "-001-01-01T00:00:00.25Z");
        assert_eq!(serde_json::to_string(&Nanos(t)).unwrap(), "\"-001-01-01T00:00:00.25Z\"");
    }
}
