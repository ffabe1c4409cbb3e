//! Label sets, their fingerprints and hashes, and label-name validity.

use std::fmt;
use std::hash::Hasher;

pub use crate::labelset::LabelSet;

/// 64-bit alert identity: FNV-1a over sorted labels, printed as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fingerprint(pub u64);

/// A map keyed by fingerprint, for the alert store and each group's alerts. Hashed with foldhash:
/// std's SipHash of the key was a tenth of storing a re-sent alert. foldhash is seeded per process,
/// so fingerprints crafted to collide cannot flood it.
pub type FingerprintMap<V> = foldhash::HashMap<Fingerprint, V>;

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Serialises as the 16-hex-digit string of `Display`, without allocating.
impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.hex()).map_err(serde::ser::Error::custom)?)
    }
}

/// Parses the hex string `Serialize` writes.
impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        Fingerprint::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a fingerprint: {s:?}")))
    }
}

impl Fingerprint {
    /// The 16 lower-case hex digits of `Display`, without allocating.
    pub fn hex(self) -> [u8; 16] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut b = [0u8; 16];
        for (i, c) in b.iter_mut().enumerate() {
            *c = HEX[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        b
    }

    /// Parses the 16-hex-digit form printed by `Display`.
    pub fn parse(s: &str) -> Option<Self> {
        u64::from_str_radix(s, 16).ok().map(Fingerprint)
    }
}

/// Returns the fingerprint of a label set as Prometheus computes it (`LabelSet.Fingerprint`).
pub fn fingerprint(labels: &LabelSet) -> Fingerprint {
    let mut h = fnv::FnvHasher::default();
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[0xff]);
        h.write(value.as_bytes());
        h.write(&[0xff]);
    }
    Fingerprint(h.finish())
}

/// Returns the alert hash stored in the notification log (xxhash64, seed 0; Alertmanager's `hashAlert`).
pub fn hash_alert(labels: &LabelSet) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for (name, value) in labels {
        h.update(name.as_bytes());
        h.update(&[0xff]);
        h.update(value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

/// Formats a label set as Go's `LabelSet.String()`: `{a="x", b="y"}` with Go string quoting.
pub fn labels_to_string(labels: &LabelSet) -> String {
    let mut out = String::with_capacity(2 + labels.len() * 16);
    write_labels(&mut out, labels.iter());
    out
}

/// Appends pairs, given in name order, as [`labels_to_string`] formats a label set.
pub fn write_labels<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        go_quote_into(out, value);
    }
    out.push('}');
}

/// Appends `s` quoted like Go's `strconv.Quote` (`%q`).
pub fn go_quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Returns `s` quoted like Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    go_quote_into(&mut out, s);
    out
}

/// Which label names are accepted (`--enable-feature=classic-mode` vs the UTF-8 default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NameValidation {
    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    Classic,
    /// Any non-empty string (Rust strings are always valid UTF-8).
    #[default]
    Utf8,
}

/// Returns whether `name` is a classic Prometheus label name.
pub fn is_classic_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl NameValidation {
    /// Returns whether `name` is a valid label name under this mode.
    pub fn is_valid(self, name: &str) -> bool {
        match self {
            NameValidation::Classic => is_classic_label_name(name),
            NameValidation::Utf8 => !name.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fingerprint_and_hash_match_prometheus_vectors() {
        assert_eq!(fingerprint(&LabelSet::new()).0, 0xcbf29ce484222325);
        let l = ls(&[("alertname", "foo"), ("job", "bar")]);
        assert_eq!(fingerprint(&l).to_string(), "8aba0fb1e9e94f70");
        assert_eq!(serde_json::to_string(&fingerprint(&l)).unwrap(), "\"8aba0fb1e9e94f70\"");
        assert_eq!(
            serde_json::to_string(&Fingerprint(0xab)).unwrap(),
            "\"00000000000000ab\""
        );
        assert_eq!(format!("{:016x}", hash_alert(&l)), "fd9f2fcc55407923");
    }

    #[test]
    fn label_set_string_is_go_formatted() {
        let l = ls(&[("b", "y\"q"), ("a", "x")]);
        assert_eq!(labels_to_string(&l), r#"{a="x", b="y\"q"}"#);
        assert_eq!(labels_to_string(&LabelSet::new()), "{}");
    }

    #[test]
    fn classic_names() {
        assert!(is_classic_label_name("_a1"));
        assert!(!is_classic_label_name("0a"));
        assert!(!is_classic_label_name("a:b"));
        assert!(!is_classic_label_name(""));
        assert!(NameValidation::Utf8.is_valid("fooΣ"));
    }
}
