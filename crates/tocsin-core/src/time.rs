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
    let secs = t.as_second();
    let nanos = t.subsec_nanosecond();
    let base = Timestamp::from_second(secs).unwrap_or(ZERO);
    let mut s = base.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos != 0 {
        let frac = format!("{:09}", nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Formats with millisecond precision (`2026-11-23T18:33:30.712Z`), as API v2 JSON uses.
pub fn format_millis(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an RFC 3339 timestamp with any offset.
pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(format_rfc3339_nano(ZERO), "0001-01-01T00:00:00Z");
        let t: Timestamp = "2026-11-23T18:33:30.712000Z".parse().unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30.712Z");
        assert_eq!(format_millis(t), "2026-11-23T18:33:30.712Z");
        let t: Timestamp = "2026-11-23T18:33:30Z".parse().unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30Z");
        assert_eq!(format_millis(t), "2026-11-23T18:33:30.000Z");
        let t = parse_rfc3339("2026-11-23T20:33:30.000000001+02:00").unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-11-23T18:33:30.000000001Z");
    }
}
