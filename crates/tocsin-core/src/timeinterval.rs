//! Time intervals for `mute_time_intervals` / `active_time_intervals` (§2.7).

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

use crate::config::raw::RawTimeInterval;

/// One interval spec: every present field must match.
#[derive(Clone, Debug)]
pub struct TimeInterval {
    /// Minute-of-day ranges `[start, end)`.
    pub times: Vec<(u32, u32)>,
    /// Weekday ranges (Sunday = 0), inclusive.
    pub weekdays: Vec<(i32, i32)>,
    /// Day-of-month ranges, inclusive; negative counts from the month's end.
    pub days_of_month: Vec<(i32, i32)>,
    /// Month ranges 1..12, inclusive.
    pub months: Vec<(i32, i32)>,
    /// Year ranges, inclusive.
    pub years: Vec<(i32, i32)>,
    /// Zone the fields are evaluated in.
    pub location: TimeZone,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn parse_range(s: &str, names: Option<&[&str]>, base: i32, what: &str) -> Result<(i32, i32), String> {
    let one = |p: &str| -> Result<i32, String> {
        let p = p.trim();
        if let Some(names) = names
            && let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(p))
        {
            return Ok(i as i32 + base);
        }
        p.parse::<i32>().map_err(|_| format!("{p:?} is not a valid {what}"))
    };
    match s.split_once(':') {
        Some((a, b)) => Ok((one(a)?, one(b)?)),
        None => {
            let v = one(s)?;
            Ok((v, v))
        }
    }
}

fn parse_minute(s: &str) -> Result<u32, String> {
    let bad = || format!("couldn't parse timestamp {s}, invalid format");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("timestamp {s} out of range"));
    }
    Ok(h * 60 + m)
}

impl TimeInterval {
    /// Validates a raw spec; `local` is the zone `location: Local` stands for.
    ///
    /// # Errors
    /// Describes the first invalid field.
    pub fn from_raw(raw: &RawTimeInterval, local: &TimeZone) -> Result<Self, String> {
        let mut times = Vec::new();
        for t in raw.times.iter().flatten() {
            let (a, b) = (parse_minute(&t.start_time)?, parse_minute(&t.end_time)?);
            if b <= a {
                return Err("start time cannot be equal or greater than end time".into());
            }
            times.push((a, b));
        }
        let ranges = |list: &Option<Vec<String>>, names: Option<&[&str]>, base, what: &str, lo: i32, hi: i32| {
            list.iter()
                .flatten()
                .map(|s| {
                    let (a, b) = parse_range(s, names, base, what)?;
                    let ok = |v: i32| (lo..=hi).contains(&v) || (what == "day of month" && (-31..=-1).contains(&v));
                    if !ok(a) || !ok(b) {
                        return Err(format!("{s:?} is out of range for {what}"));
                    }
                    // Days of the month may mix a day and a count from the end (`1:-1`); a
                    // weekday range may not wrap (`monday:sunday` is 1:0, refused as by
                    // Alertmanager, where it would otherwise never match).
                    if a > b && (what != "day of month" || a.signum() == b.signum()) {
                        return Err(format!("start day cannot be after end day: {s}"));
                    }
                    Ok((a, b))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let location = match raw.location.as_deref() {
            None | Some("") | Some("UTC") => TimeZone::UTC,
            Some("Local") => local.clone(),
            Some(name) => TimeZone::get(name).map_err(|_| format!("unknown time zone: {name}"))?,
        };
        Ok(TimeInterval {
            times,
            weekdays: ranges(&raw.weekdays, Some(&WEEKDAYS), 0, "weekday", 0, 6)?,
            days_of_month: ranges(&raw.days_of_month, None, 1, "day of month", 1, 31)?,
            months: ranges(&raw.months, Some(&MONTHS), 1, "month", 1, 12)?,
            years: ranges(&raw.years, None, 0, "year", 0, 9999)?,
            location,
        })
    }

    /// Returns whether `t` lies in this interval.
    pub fn contains(&self, t: Timestamp) -> bool {
        let z = t.to_zoned_datetime(self.location.clone());
        if !self.times.is_empty() {
            let m = z.hour() as u32 * 60 + z.minute() as u32;
            if !self.times.iter().any(|&(a, b)| m >= a && m < b) {
                return false;
            }
        }
        if !self.weekdays.is_empty() {
            let wd = match z.weekday() {
                Weekday::Sunday => 0,
                w => w.to_monday_one_offset() as i32,
            };
            if !self.weekdays.iter().any(|&(a, b)| wd >= a && wd <= b) {
                return false;
            }
        }
        if !self.days_of_month.is_empty() {
            let dim = z.date().days_in_month() as i32;
            let day = z.day() as i32;
            let hit = self.days_of_month.iter().any(|&(a, b)| {
                let begin = if a < 0 { dim + a + 1 } else { a };
                let end = if b < 0 { dim + b + 1 } else { b };
                if begin > dim {
                    return false;
                }
                let (begin, end) = (begin.clamp(-dim, dim), end.clamp(-dim, dim));
                day >= begin && day <= end
            });
            if !hit {
                return false;
            }
        }
        if !self.months.is_empty() {
            let mo = z.month() as i32;
            if !self.months.iter().any(|&(a, b)| mo >= a && mo <= b) {
                return false;
            }
        }
        if !self.years.is_empty() {
            let y = z.year() as i32;
            if !self.years.iter().any(|&(a, b)| y >= a && y <= b) {
                return false;
            }
        }
        true
    }
}

/// Returns whether any interval of a named set contains `t`.
pub fn any_contains(intervals: &[TimeInterval], t: Timestamp) -> bool {
    intervals.iter().any(|i| i.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawTimeRange;

    fn raw() -> RawTimeInterval {
        RawTimeInterval {
            times: Some(vec![RawTimeRange {
                start_time: "09:00".into(),
                end_time: "17:00".into(),
            }]),
            weekdays: Some(vec!["monday:friday".into()]),
            days_of_month: Some(vec!["-3:-1".into(), "1:5".into()]),
            location: Some("Europe/Berlin".into()),
            ..Default::default()
        }
    }

    #[test]
    fn business_hours_in_berlin() {
        let ti = TimeInterval::from_raw(&raw(), &TimeZone::UTC).unwrap();
        // Mon 2026-11-02 10:00 Berlin = 09:00 UTC (CET, +1): day 2 is in 1:5.
        assert!(ti.contains("2026-11-02T09:00:00Z".parse().unwrap()));
        // 08:30 Berlin: outside times.
        assert!(!ti.contains("2026-11-02T07:30:00Z".parse().unwrap()));
        // Mon 2026-11-30 (last day) matches -3:-1.
        assert!(ti.contains("2026-11-30T10:00:00Z".parse().unwrap()));
        // Mon 2026-11-16: not in any day range.
        assert!(!ti.contains("2026-11-16T10:00:00Z".parse().unwrap()));
        // Sat 2026-11-28: weekend.
        assert!(!ti.contains("2026-11-28T10:00:00Z".parse().unwrap()));
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut r = raw();
        r.weekdays = Some(vec!["monday:sunday".into()]);
        assert!(
            TimeInterval::from_raw(&r, &TimeZone::UTC).is_err(),
            "a weekday range that wraps"
        );
        r.weekdays = Some(vec!["funday".into()]);
        assert!(TimeInterval::from_raw(&r, &TimeZone::UTC).is_err());
        let mut r = raw();
        r.times = Some(vec![RawTimeRange {
            start_time: "10:00".into(),
            end_time: "09:00".into(),
        }]);
        assert!(TimeInterval::from_raw(&r, &TimeZone::UTC).is_err());
        let mut r = raw();
        r.location = Some("Mars/Olympus".into());
        assert!(TimeInterval::from_raw(&r, &TimeZone::UTC).is_err());
    }
}
