//! Go's time formatting: reference-time layouts (`Mon Jan 2 15:04:05 MST 2006`) and
//! `time.Duration.String`, as the `date` function and `.Format` need them.

use jiff::Timestamp;
use jiff::tz::TimeZone;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` in `tz` with a Go layout.
pub fn format(t: Timestamp, tz: &TimeZone, layout: &str) -> String {
    let z = tz.to_datetime(t);
    let info = tz.to_offset_info(t);
    let offset = info.offset().seconds();
    let (year, month, day) = (i64::from(z.year()), z.month() as usize, i64::from(z.day()));
    let (hour, min, sec) = (i64::from(z.hour()), i64::from(z.minute()), i64::from(z.second()));
    let nanos = i64::from(z.subsec_nanosecond());
    let weekday = z.weekday().to_sunday_zero_offset() as usize;
    let yday = i64::from(z.day_of_year());
    let mut out = String::new();
    let b = layout.as_bytes();
    let mut i = 0;
    let at = |i: usize, s: &str| layout[i..].starts_with(s);
    while i < b.len() {
        // Longest tokens first where they share a prefix.
        let (text, n): (String, usize) = if at(i, "January") {
            (MONTHS[month - 1].into(), 7)
        } else if at(i, "Jan") {
            (MONTHS[month - 1][..3].into(), 3)
        } else if at(i, "Monday") {
            (DAYS[weekday].into(), 6)
        } else if at(i, "Mon") {
            (DAYS[weekday][..3].into(), 3)
        } else if at(i, "MST") {
            let abbr = info.abbreviation();
            // Go prints the numeric offset when a zone has no abbreviation.
            let a = if abbr.is_empty() || abbr.starts_with(['+', '-']) {
                offset_text(offset, "-0700")
            } else {
                abbr.to_string()
            };
            (a, 3)
        } else if at(i, "2006") {
            (format!("{year:04}"), 4)
        } else if at(i, "002") {
            (format!("{yday:03}"), 3)
        } else if at(i, "01") {
            (format!("{month:02}"), 2)
        } else if at(i, "02") {
            (format!("{day:02}"), 2)
        } else if at(i, "03") {
            (format!("{:02}", hour12(hour)), 2)
        } else if at(i, "04") {
            (format!("{min:02}"), 2)
        } else if at(i, "05") {
            (format!("{sec:02}"), 2)
        } else if at(i, "06") {
            (format!("{:02}", year.rem_euclid(100)), 2)
        } else if at(i, "15") {
            (format!("{hour:02}"), 2)
        } else if at(i, "__2") {
            (format!("{yday:>3}"), 3)
        } else if at(i, "_2") {
            (format!("{day:>2}"), 2)
        } else if at(i, "1") {
            (month.to_string(), 1)
        } else if at(i, "2") {
            (day.to_string(), 1)
        } else if at(i, "3") {
            (hour12(hour).to_string(), 1)
        } else if at(i, "4") {
            (min.to_string(), 1)
        } else if at(i, "5") {
            (sec.to_string(), 1)
        } else if at(i, "PM") {
            ((if hour >= 12 { "PM" } else { "AM" }).into(), 2)
        } else if at(i, "pm") {
            ((if hour >= 12 { "pm" } else { "am" }).into(), 2)
        } else if let Some(tok) = ["-07:00:00", "-070000", "-07:00", "-0700", "-07"]
            .iter()
            .find(|t| at(i, t))
        {
            (offset_text(offset, tok), tok.len())
        } else if let Some(tok) = ["Z07:00:00", "Z070000", "Z07:00", "Z0700", "Z07"]
            .iter()
            .find(|t| at(i, t))
        {
            if offset == 0 {
                ("Z".into(), tok.len())
            } else {
                (offset_text(offset, &tok.replace('Z', "-")), tok.len())
            }
        } else if let Some(n) = frac_len(layout, i) {
            (fraction(nanos, &layout[i..i + n]), n)
        } else {
            let c = layout[i..].chars().next().unwrap_or(' ');
            (c.to_string(), c.len_utf8())
        };
        out.push_str(&text);
        i += n;
    }
    out
}

fn hour12(h: i64) -> i64 {
    match h % 12 {
        0 => 12,
        x => x,
    }
}

fn offset_text(secs: i32, tok: &str) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    match tok {
        "-07" => format!("{sign}{h:02}"),
        "-0700" => format!("{sign}{h:02}{m:02}"),
        "-07:00" => format!("{sign}{h:02}:{m:02}"),
        "-070000" => format!("{sign}{h:02}{m:02}{s:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

/// A fractional-second token at `i`: `.` or `,` followed by 0s or 9s and not by another digit.
fn frac_len(layout: &str, i: usize) -> Option<usize> {
    let b = layout.as_bytes();
    if !matches!(b[i], b'.' | b',') {
        return None;
    }
    let d = *b.get(i + 1)?;
    if d != b'0' && d != b'9' {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] == d {
        j += 1;
    }
    if j < b.len() && b[j].is_ascii_digit() {
        return None;
    }
    Some(j - i)
}

fn fraction(nanos: i64, tok: &str) -> String {
    let digits = tok.len() - 1;
    let all = format!("{nanos:09}");
    let mut frac = all[..digits.min(9)].to_string();
    if tok.as_bytes()[1] == b'9' {
        // `.999`: trailing zeros and an empty fraction are dropped.
        let t = frac.trim_end_matches('0');
        if t.is_empty() {
            return String::new();
        }
        frac = t.to_string();
    }
    format!("{}{frac}", &tok[..1])
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn duration_string(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", trim_frac(u, div));
    }
    let secs = u / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = trim_frac(u % 60_000_000_000, 1_000_000_000);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

fn trim_frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let f = format!("{rest:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layouts() {
        let t: Timestamp = "2026-03-05T14:07:09.120Z".parse().unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            format(t, &utc, "2006-01-02 15:04:05.999999999 -0700 MST"),
            "2026-03-05 14:07:09.12 +0000 UTC"
        );
        assert_eq!(format(t, &utc, "Mon Jan _2 3:4:5 PM 06"), "Thu Mar  5 2:7:9 PM 26");
        assert_eq!(
            format(t, &utc, "2006-01-02T15:04:05.000Z07:00"),
            "2026-03-05T14:07:09.120Z"
        );
        assert_eq!(
            format(t, &utc, "Monday, January 2 (day 002)"),
            "Thursday, March 5 (day 064)"
        );
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(format(t, &paris, "15:04 MST -07:00 Z0700"), "15:07 CET +01:00 +0100");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_string(0), "0s");
        assert_eq!(duration_string(1_500_000), "1.5ms");
        assert_eq!(duration_string(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(duration_string(-90_000_000_000), "-1m30s");
        assert_eq!(duration_string(2_000), "2µs");
    }
}
