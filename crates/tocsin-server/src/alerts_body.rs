//! Decoding a POST /api/v2/alerts body: every valid alert is kept and every bad item is named.
//!
//! Three tiers, cheapest first. A well-formed batch of the usual shape is read in one pass by
//! `scan` (no `serde_json`); any batch it does not take is split into items, each decoded into
//! a typed alert, and an item that fails that is decoded again as a `Value` by
//! `decode_alert`, which names the problem with go-openapi's message. The scan only takes what
//! the typed decoding would decode to the same alerts (a property test holds it to that), so
//! which tier decoded a batch never shows.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tocsin_core::alert::PostedAlert;
use tocsin_core::labels::{LabelSet, labels_to_string};
use tocsin_core::labelset::LabelSetBuilder;
use tocsin_core::time::{ZERO, parse_rfc3339};

/// Decodes one array item of a POST /api/v2/alerts body.
fn decode_alert(v: &Value) -> Result<PostedAlert, String> {
    let obj = v.as_object().ok_or("alert must be a JSON object")?;
    let map = |key: &str, required: bool| -> Result<LabelSet, String> {
        match obj.get(key) {
            None | Some(Value::Null) if required => Err(format!("{key} in body is required")),
            None | Some(Value::Null) => Ok(LabelSet::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(format!("{key}.{k} in body must be of type string")),
                })
                .collect(),
            Some(_) => Err(format!("{key} in body must be of type object")),
        }
    };
    let time = |key: &str| -> Result<Timestamp, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(ZERO),
            Some(Value::String(s)) if s.is_empty() => Ok(ZERO),
            Some(Value::String(s)) => {
                parse_rfc3339(s).map_err(|e| format!("{key} in body must be of type date-time: {e}"))
            }
            Some(_) => Err(format!("{key} in body must be of type date-time")),
        }
    };
    let generator_url = match obj.get("generatorURL") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("generatorURL in body must be of type uri".into()),
    };
    Ok(PostedAlert {
        labels: map("labels", true)?,
        annotations: map("annotations", false)?,
        starts_at: time("startsAt")?,
        ends_at: time("endsAt")?,
        generator_url,
    })
}

fn describe(raw: &RawValue) -> String {
    let v: Value = serde_json::from_str(raw.get()).unwrap_or_default();
    v.get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            let ls: LabelSet = m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            format!(" {}", labels_to_string(&ls))
        })
        .unwrap_or_default()
}

/// A decoded POST /api/v2/alerts body.
#[derive(Debug, PartialEq)]
pub struct DecodedBatch {
    /// The decodable alerts.
    pub valid: Vec<PostedAlert>,
    /// Index in the body's array of each entry of `valid`.
    pub index_of: Vec<usize>,
    /// (index, message) of items that could not be decoded.
    pub errors: Vec<(usize, String)>,
}

/// The usual shape of a posted alert, decoded without an intermediate `Value`. Anything it does
/// not accept (a null or missing `labels`, a non-string label value, a bad date, a duplicate key)
/// is decoded again by [`decode_alert`], which names the problem. Unknown keys are ignored.
#[derive(Deserialize)]
struct TypedAlert<'a> {
    labels: LabelSet,
    #[serde(default)]
    annotations: Option<LabelSet>,
    #[serde(default, rename = "startsAt", borrow)]
    starts_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, rename = "endsAt", borrow)]
    ends_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

fn typed_time(s: Option<&str>) -> Option<Timestamp> {
    match s {
        None | Some("") => Some(ZERO),
        Some(s) => parse_rfc3339(s).ok(),
    }
}

fn decode_item(raw: &RawValue) -> Result<PostedAlert, String> {
    if let Ok(t) = serde_json::from_str::<TypedAlert<'_>>(raw.get())
        && let (Some(starts_at), Some(ends_at)) = (typed_time(t.starts_at.as_deref()), typed_time(t.ends_at.as_deref()))
    {
        return Ok(PostedAlert {
            labels: t.labels,
            annotations: t.annotations.unwrap_or_default(),
            starts_at,
            ends_at,
            generator_url: t.generator_url.unwrap_or_default(),
        });
    }
    let v: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    decode_alert(&v)
}

/// Decodes a POST /api/v2/alerts body: in one pass when it is well-formed and of the usual
/// shape, otherwise item by item.
///
/// # Errors
/// A body that is not a JSON array, with go-openapi's message.
pub fn decode_alerts(body: &[u8]) -> Result<DecodedBatch, String> {
    if let Some(valid) = scan(body) {
        return Ok(DecodedBatch {
            index_of: (0..valid.len()).collect(),
            valid,
            errors: Vec::new(),
        });
    }
    decode_items(body)
}

/// Decodes a body item by item, each into a typed alert or else through a `Value`: the path a
/// batch the one-pass scan declines takes, public for differential checks (`tocsin-fuzz`).
///
/// # Errors
/// As [`decode_alerts`].
pub fn decode_items(body: &[u8]) -> Result<DecodedBatch, String> {
    let items = split(body)?;
    let mut errors = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    let mut index_of = Vec::with_capacity(items.len());
    for (i, raw) in items.iter().enumerate() {
        match decode_item(raw) {
            Ok(p) => {
                valid.push(p);
                index_of.push(i);
            }
            Err(e) => errors.push((i, e)),
        }
    }
    Ok(DecodedBatch {
        valid,
        index_of,
        errors,
    })
}

/// Splits a body into its raw items.
fn split(body: &[u8]) -> Result<Vec<&RawValue>, String> {
    serde_json::from_slice(body).map_err(|_| {
        // Tell "valid JSON, but not an array" from malformed JSON, as go-openapi does.
        match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => "parsing alerts body from \"\" failed, because json: cannot unmarshal non-array into Go value of type models.PostableAlerts".into(),
            Err(e) => format!("parsing alerts body from \"\" failed, because {e}"),
        }
    })
}

/// The 400 message for a batch's rejected items, `(index, message)`: each named by its index
/// and labels, in body order.
pub fn rejection_message(body: &[u8], mut errors: Vec<(usize, String)>) -> String {
    let items = split(body).unwrap_or_default();
    errors.sort_by_key(|(i, _)| *i);
    errors
        .iter()
        .map(|(i, e)| {
            let labels = items.get(*i).map(|raw| describe(raw)).unwrap_or_default();
            format!("alert {i}{labels}: {e}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decodes a whole batch in one pass, or returns `None` for anything but a well-formed array of
/// objects with `labels` (an object of strings) and, each at most once, `annotations`,
/// `startsAt`, `endsAt` and `generatorURL` (null or of their type, dates that parse). The
/// item-by-item decoding then takes the batch and names what is wrong, if anything is.
///
/// serde_json's derived decoding spent most of a POST's decoding time in its generic machinery
/// (the item split, matching field names, visitor calls per label); here label names and values
/// go straight from the body into the packed label set.
fn scan(body: &[u8]) -> Option<Vec<PostedAlert>> {
    let mut s = Scanner {
        text: std::str::from_utf8(body).ok()?,
        at: 0,
    };
    let mut labels = LabelSetBuilder::new();
    // ~450 bytes per alert from Prometheus; a guess too small only costs a regrowth.
    let mut out = Vec::with_capacity(body.len() / 256);
    s.eat(b'[')?;
    if s.eat(b']').is_none() {
        loop {
            out.push(s.alert(&mut labels)?);
            if s.eat(b',').is_none() {
                s.eat(b']')?;
                break;
            }
        }
    }
    s.skip_ws();
    (s.at == body.len()).then_some(out)
}

/// A cursor over a JSON text. Every method leaves the cursor after what it read and returns
/// `None` when the text is not what it expects.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// Reads `c` after optional whitespace.
    fn eat(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        (self.bytes().get(self.at) == Some(&c)).then(|| self.at += 1)
    }

    /// Reads `null` after optional whitespace.
    fn null(&mut self) -> bool {
        self.skip_ws();
        let null = self.bytes()[self.at..].starts_with(b"null");
        if null {
            self.at += 4;
        }
        null
    }

    /// Reads a string after optional whitespace; borrowed from the text unless it has escapes.
    fn string(&mut self) -> Option<std::borrow::Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        self.at = special_at(self.bytes(), start);
        if self.bytes().get(self.at) == Some(&b'"') {
            self.at += 1;
            return self.text.get(start..self.at - 1).map(std::borrow::Cow::Borrowed);
        }
        let mut owned = String::from(self.text.get(start..self.at)?);
        loop {
            match self.bytes().get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(std::borrow::Cow::Owned(owned));
                }
                b'\\' => {
                    self.at += 1;
                    owned.push(self.escape()?);
                }
                // A raw control character, which JSON does not allow in a string.
                _ => return None,
            }
            let from = self.at;
            self.at = special_at(self.bytes(), from);
            owned.push_str(self.text.get(from..self.at)?);
        }
    }

    /// Reads what follows a backslash in a string.
    fn escape(&mut self) -> Option<char> {
        let c = *self.bytes().get(self.at)?;
        self.at += 1;
        Some(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                match unit {
                    0xd800..0xdc00 => {
                        // A leading surrogate must be followed by an escaped trailing one.
                        if self.bytes().get(self.at..self.at + 2)? != b"\\u" {
                            return None;
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..0xe000).contains(&low) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00))?
                    }
                    _ => char::from_u32(unit)?,
                }
            }
            _ => return None,
        })
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// Reads an object of strings into a label set.
    fn label_set(&mut self, b: &mut LabelSetBuilder) -> Option<LabelSet> {
        self.eat(b'{')?;
        b.clear();
        if self.eat(b'}').is_none() {
            loop {
                b.push_name(&self.string()?);
                self.eat(b':')?;
                b.push_value(&self.string()?);
                if self.eat(b',').is_none() {
                    self.eat(b'}')?;
                    break;
                }
            }
        }
        Some(b.finish())
    }

    /// Reads a date-time string or null (zero).
    fn time(&mut self) -> Option<Timestamp> {
        if self.null() {
            return Some(ZERO);
        }
        typed_time(Some(&self.string()?))
    }

    fn alert(&mut self, b: &mut LabelSetBuilder) -> Option<PostedAlert> {
        self.eat(b'{')?;
        let (mut labels, mut annotations, mut starts_at, mut ends_at, mut generator_url) =
            (None, None, None, None, None);
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            // A key seen twice goes to the item-by-item decoding, where the last one wins.
            match &*key {
                "labels" if labels.is_none() => labels = Some(self.label_set(b)?),
                "annotations" if annotations.is_none() => {
                    annotations = Some(if self.null() {
                        LabelSet::new()
                    } else {
                        self.label_set(b)?
                    });
                }
                "startsAt" if starts_at.is_none() => starts_at = Some(self.time()?),
                "endsAt" if ends_at.is_none() => ends_at = Some(self.time()?),
                "generatorURL" if generator_url.is_none() => {
                    generator_url = Some(if self.null() {
                        String::new()
                    } else {
                        self.string()?.into_owned()
                    });
                }
                _ => return None,
            }
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                break;
            }
        }
        Some(PostedAlert {
            labels: labels?,
            annotations: annotations.unwrap_or_default(),
            starts_at: starts_at.unwrap_or(ZERO),
            ends_at: ends_at.unwrap_or(ZERO),
            generator_url: generator_url.unwrap_or_default(),
        })
    }
}

/// Returns the position of the first `"`, `\` or control character at or after `from`, or the
/// text's length. Eight bytes at a time: label values are mostly longer than that.
fn special_at(b: &[u8], mut from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Sets the high bit of each byte of `w` that is zero (exact for the lowest such byte, which
    // is the one used).
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    while let Some(chunk) = b.get(from..from + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let hits = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS);
        if hits != 0 {
            return from + (hits.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while let Some(&c) = b.get(from) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        from += 1;
    }
    from
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    fn errors(body: &str) -> Vec<(usize, String)> {
        decode_alerts(body.as_bytes()).unwrap().errors
    }

    #[test]
    fn body_that_is_not_an_array_gets_go_openapis_message() {
        let e = decode_alerts(br#"{"labels": {}}"#).err().unwrap();
        assert!(
            e.ends_with("cannot unmarshal non-array into Go value of type models.PostableAlerts"),
            "{e}"
        );
        let e = decode_alerts(b"[1,").err().unwrap();
        assert!(
            e.starts_with("parsing alerts body from \"\" failed, because EOF"),
            "{e}"
        );
    }

    #[test]
    fn items_the_typed_decoding_refuses_are_named_precisely() {
        let body = r#"[
            {"labels": {"a": "b"}, "annotations": null, "startsAt": "", "endsAt": null, "generatorURL": null, "status": "x"},
            {"labels": {"a": 1}},
            {"labels": {"a": "b"}, "endsAt": "yesterday"},
            {"labels": {"a": "b"}, "generatorURL": 5},
            7,
            {"labels": {"a": "b"}, "labels": {"a": "c"}},
            {"labels": {"a": "\u00e9\n"}, "startsAt": "2026-12-02T10:00:00.5+01:00"}
        ]"#;
        let d = decode_alerts(body.as_bytes()).unwrap();
        assert_eq!(d.index_of, [0, 5, 6]);
        // A duplicate key keeps the last value, as Go's decoder does.
        assert_eq!(d.valid[1].labels.get("a"), Some("c"));
        assert_eq!(d.valid[2].labels.get("a"), Some("é\n"));
        assert_eq!(d.valid[2].starts_at.to_string(), "2026-12-02T09:00:00.5Z");
        let msgs: Vec<(usize, String)> = errors(body);
        assert_eq!(msgs[0], (1, "labels.a in body must be of type string".to_string()));
        assert_eq!(msgs[1].0, 2);
        assert!(
            msgs[1].1.starts_with("endsAt in body must be of type date-time"),
            "{}",
            msgs[1].1
        );
        assert_eq!(msgs[2], (3, "generatorURL in body must be of type uri".to_string()));
        assert_eq!(msgs[3], (4, "alert must be a JSON object".to_string()));
    }

    #[test]
    fn the_scan_takes_only_a_whole_well_formed_array() {
        assert_eq!(scan(b" [ ]\n"), Some(vec![]));
        let one = br#"[{"labels":{"b":"2","a":"1"}}]"#;
        let got = scan(one).unwrap();
        assert_eq!(got[0].labels.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
        assert_eq!(got[0].starts_at, ZERO);
        for refused in [
            &br#"[{"labels":{"a":"1"}}] x"#[..],
            br#"[{"labels":{"a":"1"}},]"#,
            br#"[{"labels":{"a":"1"}}"#,
            br#"[{"labels":{"a":"1"}} {"labels":{}}]"#,
            br#"[{"labels":{"a":"1",}}]"#,
            br#"[{}]"#,
            br#"[{"labels":null}]"#,
            br#"[{"labels":{"a":"\ud800"}}]"#,
            br#"[{"labels":{"a":"\x"}}]"#,
            b"[{\"labels\":{\"a\":\"tab\there\"}}]",
            b"[{\"labels\":{\"a\":\"\xff\"}}]",
            br#"{"labels":{"a":"1"}}"#,
        ] {
            assert_eq!(scan(refused), None, "{}", String::from_utf8_lossy(refused));
        }
    }

    #[test]
    fn the_string_scan_finds_the_first_special_byte() {
        for text in [
            "",
            "abcdefghijklmnop",
            "abcdefgh\"",
            "abcdefghi\\",
            "ab\u{1}",
            "\"",
            "éééééé\"",
        ] {
            let want = text
                .bytes()
                .position(|c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(text.len());
            for from in 0..=want {
                assert_eq!(special_at(text.as_bytes(), from), want, "{text:?} from {from}");
            }
        }
    }

    /// A string in JSON: as serde_json writes it, or every UTF-16 unit as a `\u` escape.
    fn quote(s: &str, escape_all: bool) -> String {
        if !escape_all {
            return serde_json::to_string(s).unwrap();
        }
        let mut out = String::from("\"");
        for (i, unit) in s.encode_utf16().enumerate() {
            // Both cases of hex digits.
            if i % 2 == 0 {
                write!(out, "\\u{unit:04x}").unwrap();
            } else {
                write!(out, "\\u{unit:04X}").unwrap();
            }
        }
        out.push('"');
        out
    }

    /// Optional fields: absent, null or a value.
    fn field<T: std::fmt::Debug + Clone>(value: impl Strategy<Value = T>) -> impl Strategy<Value = Option<Option<T>>> {
        proptest::option::of(proptest::option::of(value))
    }

    type Pairs = Vec<(String, String)>;

    #[derive(Clone, Debug)]
    struct Item {
        labels: Pairs,
        annotations: Option<Option<Pairs>>,
        starts_at: Option<Option<&'static str>>,
        ends_at: Option<Option<&'static str>>,
        url: Option<Option<String>>,
        /// Something the scan must refuse: an unknown key, null labels, a number as a value,
        /// `labels` twice, an item that is not an object, a lone surrogate.
        odd: Option<u8>,
        escape_all: bool,
        reverse: bool,
    }

    const TIMES: [&str; 4] = [
        "",
        "2026-11-23T18:33:30.712Z",
        "2026-12-02T10:00:00.5+01:00",
        "yesterday",
    ];

    fn pairs() -> impl Strategy<Value = Pairs> {
        proptest::collection::vec(("[a-c_]{1,2}", "\\PC{0,6}|[\"\\\\/\n\t\u{1F600}é]{0,3}"), 0..5)
    }

    fn item() -> impl Strategy<Value = Item> {
        (
            pairs(),
            field(pairs()),
            field(proptest::sample::select(&TIMES[..])),
            field(proptest::sample::select(&TIMES[..])),
            field("\\PC{0,8}"),
            proptest::option::weighted(0.1, 0u8..6),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(labels, annotations, starts_at, ends_at, url, odd, escape_all, reverse)| Item {
                    labels,
                    annotations,
                    starts_at,
                    ends_at,
                    url,
                    odd,
                    escape_all,
                    reverse,
                },
            )
    }

    impl Item {
        fn scannable(&self) -> bool {
            let time_ok = |t: Option<Option<&str>>| t.flatten() != Some("yesterday");
            self.odd.is_none() && time_ok(self.starts_at) && time_ok(self.ends_at)
        }

        fn json(&self, ws: &str) -> String {
            let q = |s: &str| quote(s, self.escape_all);
            let object = |pairs: &Pairs| {
                let fields: Vec<String> = pairs
                    .iter()
                    .map(|(n, v)| format!("{}{ws}:{ws}{}", q(n), q(v)))
                    .collect();
                format!("{{{ws}{}{ws}}}", fields.join(&format!("{ws},{ws}")))
            };
            let mut fields = vec![(q("labels"), object(&self.labels))];
            let mut optional = |key: &str, value: Option<Option<String>>| {
                if let Some(v) = value {
                    fields.push((q(key), v.unwrap_or_else(|| "null".into())));
                }
            };
            optional("annotations", self.annotations.as_ref().map(|a| a.as_ref().map(object)));
            optional("startsAt", self.starts_at.map(|t| t.map(q)));
            optional("endsAt", self.ends_at.map(|t| t.map(q)));
            optional("generatorURL", self.url.as_ref().map(|u| u.as_deref().map(q)));
            match self.odd {
                Some(0) => fields.push((q("status"), q("firing"))),
                Some(1) => fields[0].1 = "null".into(),
                Some(2) => fields[0].1 = format!("{{{}:1}}", q("a")),
                Some(3) => fields.push((q("labels"), object(&self.labels))),
                Some(4) => return "7".into(),
                Some(_) => fields[0].1 = r#"{"a":"\ud800"}"#.into(),
                None => {}
            }
            if self.reverse {
                fields.reverse();
            }
            let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}{ws}:{ws}{v}")).collect();
            format!("{{{ws}{}{ws}}}", fields.join(&format!("{ws},{ws}")))
        }
    }

    proptest! {
        /// Whatever the scan takes, it decodes to exactly what the item-by-item decoding does,
        /// and it takes every batch of the usual shape.
        #[test]
        fn the_scan_agrees_with_the_item_by_item_decoding(
            items in proptest::collection::vec(item(), 0..4),
            ws in proptest::sample::select(&["", " ", "\n\t "][..]),
        ) {
            let body = format!("{ws}[{ws}{}{ws}]{ws}", items.iter().map(|i| i.json(ws)).collect::<Vec<_>>().join(","));
            let slow = decode_items(body.as_bytes()).unwrap();
            let fast = scan(body.as_bytes());
            if items.iter().all(Item::scannable) {
                prop_assert!(fast.is_some(), "refused {body}");
            }
            if let Some(fast) = fast {
                prop_assert!(slow.errors.is_empty(), "took {body}: {:?}", slow.errors);
                prop_assert_eq!(fast, slow.valid);
            }
        }
    }
}
