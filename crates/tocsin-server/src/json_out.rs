//! Hand-written JSON output for the largest listings, byte for byte what `serde_json` writes.
//!
//! Through serde, a 100k-alert GET /api/v2/alerts spent a third of its time escaping strings,
//! field names included; here constant parts are copied as they are and values are escaped only
//! when they contain a byte that needs it. Tests compare every writer with `serde_json`.

use tocsin_core::labels::{Fingerprint, LabelSet};
use tocsin_core::time::Millis;

/// Appends `s` as a JSON string.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &str) {
    // No short-circuit: the fold over bytes vectorises, and label values are short.
    let needs_escape = s
        .bytes()
        .fold(false, |acc, b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if needs_escape {
        // serde_json's escaping (`\n`, `\u001f`, …) keeps the output identical.
        let _ = serde_json::to_writer(&mut *buf, s);
        return;
    }
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

/// Appends `items` as a JSON array, each written by `write`.
pub(crate) fn push_array<T>(buf: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    buf.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write(buf, item);
    }
    buf.push(b']');
}

/// Appends a list of strings as a JSON array.
pub(crate) fn push_strs<S: AsRef<str>>(buf: &mut Vec<u8>, items: &[S]) {
    push_array(buf, items, |buf, s| push_str(buf, s.as_ref()));
}

/// Appends `true` or `false`.
pub(crate) fn push_bool(buf: &mut Vec<u8>, b: bool) {
    buf.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends a label set as a JSON object.
pub(crate) fn push_labels(buf: &mut Vec<u8>, labels: &LabelSet) {
    push_object(buf, labels.iter());
}

/// Appends string pairs as a JSON object.
pub(crate) fn push_object<'a>(buf: &mut Vec<u8>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    buf.push(b'{');
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        // The common pair, nothing to escape, in one reservation.
        if plain(name) && plain(value) {
            buf.reserve(name.len() + value.len() + 5);
            buf.push(b'"');
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b"\":\"");
            buf.extend_from_slice(value.as_bytes());
            buf.push(b'"');
            continue;
        }
        push_str(buf, name);
        buf.push(b':');
        push_str(buf, value);
    }
    buf.push(b'}');
}

/// Whether `s` is written as it is between quotes.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Appends a timestamp in the API's millisecond form.
pub(crate) fn push_millis(buf: &mut Vec<u8>, t: Millis) {
    match t.bytes() {
        Some(b) => {
            buf.push(b'"');
            buf.extend_from_slice(&b);
            buf.push(b'"');
        }
        None => {
            let _ = serde_json::to_writer(&mut *buf, &t);
        }
    }
}

/// Appends a fingerprint as its 16 hex digits.
pub(crate) fn push_fingerprint(buf: &mut Vec<u8>, fp: Fingerprint) {
    buf.push(b'"');
    buf.extend_from_slice(&fp.hex());
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn timestamps_and_fingerprints_match_serde() {
        for t in [
            "2026-12-02T10:00:00.5Z",
            "0001-01-01T00:00:00Z",
            "9999-12-30T00:00:00.999Z",
        ] {
            let m = Millis(t.parse().unwrap());
            assert_eq!(out(|b| push_millis(b, m)), serde_json::to_string(&m).unwrap());
        }
        let fp = Fingerprint(0x00ab_cdef_0123_4567);
        assert_eq!(out(|b| push_fingerprint(b, fp)), r#""00abcdef01234567""#);
    }

    proptest::proptest! {
        /// Strings, lists and label sets come out exactly as serde_json writes them.
        #[test]
        fn strings_and_label_sets_match_serde(
            pairs in proptest::collection::vec(("\\PC{0,6}|[\"\\\\\\x00-\\x1f\\x7f]{1,3}", "\\PC{0,8}|[a\"\\\\\\n\\x01\\x7fé]{0,4}"), 0..6),
        ) {
            let set: LabelSet = pairs.iter().cloned().collect();
            proptest::prop_assert_eq!(out(|b| push_labels(b, &set)), serde_json::to_string(&set).unwrap());
            let values: Vec<&str> = pairs.iter().map(|(_, v)| v.as_str()).collect();
            proptest::prop_assert_eq!(out(|b| push_strs(b, &values)), serde_json::to_string(&values).unwrap());
        }
    }
}
