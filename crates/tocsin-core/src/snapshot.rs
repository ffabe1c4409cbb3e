//! Snapshot codec: Alertmanager's on-disk format (§4.7, §9) for silences and the notification log,
//! a stream of varint-length-delimited `MeshSilence` / `MeshEntry` protobuf records.
//!
//! Decoding keeps every record before a corrupt or truncated one and says where it stopped.

use jiff::Timestamp;
use tocsin_proto::Message;
use tocsin_proto::nflogpb as npb;
use tocsin_proto::nflogpb::receiver_data_value::Value;
use tocsin_proto::silencepb as spb;

use crate::matchers::{MatchType, Matcher};
use crate::nflog::{DataValue, Entry, ReceiverKey, bounded_data};
use crate::silence::{MeshSilence, Silence};
use crate::time::ZERO;

/// What a decode recovered, and the problem that stopped or skipped records, if any.
#[derive(Debug, Default)]
pub struct Decoded<T> {
    /// Records decoded.
    pub records: Vec<T>,
    /// Problems, with byte offsets: a corrupt record stops decoding; an invalid one is skipped.
    pub errors: Vec<String>,
}

fn ts(t: Timestamp) -> Option<tocsin_proto::Timestamp> {
    Some(tocsin_proto::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    })
}

fn from_ts(t: &Option<tocsin_proto::Timestamp>) -> Timestamp {
    t.as_ref()
        .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
        .unwrap_or(ZERO)
}

fn matcher_to_pb(m: &Matcher) -> spb::Matcher {
    let t = match m.op {
        MatchType::Equal => spb::matcher::Type::Equal,
        MatchType::Regexp => spb::matcher::Type::Regexp,
        MatchType::NotEqual => spb::matcher::Type::NotEqual,
        MatchType::NotRegexp => spb::matcher::Type::NotRegexp,
    };
    spb::Matcher {
        r#type: t as i32,
        name: m.name.clone(),
        pattern: m.value.clone(),
    }
}

fn matcher_from_pb(m: &spb::Matcher) -> Result<Matcher, String> {
    let op = match spb::matcher::Type::try_from(m.r#type) {
        Ok(spb::matcher::Type::Equal) => MatchType::Equal,
        Ok(spb::matcher::Type::Regexp) => MatchType::Regexp,
        Ok(spb::matcher::Type::NotEqual) => MatchType::NotEqual,
        Ok(spb::matcher::Type::NotRegexp) => MatchType::NotRegexp,
        Err(_) => return Err(format!("unknown matcher type {}", m.r#type)),
    };
    Matcher::new(op, &m.name, &m.pattern)
}

/// Converts a silence to its protobuf record (legacy `matchers` = first set, for old readers).
pub fn silence_to_pb(m: &MeshSilence) -> spb::MeshSilence {
    let s = &m.silence;
    let sets: Vec<spb::MatcherSet> = s
        .matcher_sets
        .iter()
        .map(|set| spb::MatcherSet {
            matchers: set.iter().map(matcher_to_pb).collect(),
        })
        .collect();
    spb::MeshSilence {
        silence: Some(spb::Silence {
            id: s.id.clone(),
            matchers: sets.first().map(|s| s.matchers.clone()).unwrap_or_default(),
            starts_at: ts(s.starts_at),
            ends_at: ts(s.ends_at),
            updated_at: ts(s.updated_at),
            comments: vec![],
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            annotations: s.annotations.clone().into_iter().collect(),
            matcher_sets: sets,
            receiver_matcher_sets: vec![],
        }),
        expires_at: ts(m.expires_at),
    }
}

/// Converts a protobuf record to a silence, upgrading legacy fields.
///
/// # Errors
/// A missing silence or a matcher that does not compile.
pub fn silence_from_pb(m: &spb::MeshSilence) -> Result<MeshSilence, String> {
    let s = m.silence.as_ref().ok_or("record without silence")?;
    let raw_sets: Vec<&[spb::Matcher]> = if s.matcher_sets.is_empty() {
        vec![&s.matchers[..]]
    } else {
        s.matcher_sets.iter().map(|set| &set.matchers[..]).collect()
    };
    let matcher_sets = raw_sets
        .into_iter()
        .map(|set| set.iter().map(matcher_from_pb).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("silence {}: {e}", s.id))?;
    let (mut comment, mut created_by) = (s.comment.clone(), s.created_by.clone());
    if comment.is_empty()
        && let Some(c) = s.comments.first()
    {
        comment = c.comment.clone();
        created_by = c.author.clone();
    }
    Ok(MeshSilence {
        silence: Silence {
            id: s.id.clone(),
            matcher_sets,
            starts_at: from_ts(&s.starts_at),
            ends_at: from_ts(&s.ends_at),
            updated_at: from_ts(&s.updated_at),
            created_by,
            comment,
            annotations: s.annotations.clone().into_iter().collect(),
        },
        expires_at: from_ts(&m.expires_at),
    })
}

/// Returns the encoded size of a silence record (for `--silences.max-silence-size-bytes`).
pub fn silence_size(m: &MeshSilence) -> usize {
    silence_to_pb(m).encoded_len()
}

/// Converts a log entry to its protobuf record.
pub fn entry_to_pb(e: &Entry) -> npb::MeshEntry {
    npb::MeshEntry {
        entry: Some(npb::Entry {
            group_key: e.group_key.as_bytes().to_vec(),
            receiver: Some(npb::Receiver {
                group_name: e.receiver.group_name.clone(),
                integration: e.receiver.integration.clone(),
                idx: e.receiver.idx,
            }),
            group_hash: vec![],
            resolved: false,
            timestamp: ts(e.timestamp),
            firing_alerts: e.firing_alerts.clone(),
            resolved_alerts: e.resolved_alerts.clone(),
            receiver_data: e
                .receiver_data
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        DataValue::Str(s) => Value::StrVal(s.clone()),
                        DataValue::Int(i) => Value::IntVal(*i),
                        DataValue::Double(d) => Value::DoubleVal(*d),
                    };
                    (k.clone(), npb::ReceiverDataValue { value: Some(value) })
                })
                .collect(),
        }),
        expires_at: ts(e.expires_at),
    }
}

/// Converts a protobuf record to a log entry.
///
/// # Errors
/// A record without entry or receiver.
pub fn entry_from_pb(m: &npb::MeshEntry) -> Result<Entry, String> {
    let e = m.entry.as_ref().ok_or("record without entry")?;
    let r = e.receiver.as_ref().ok_or("entry without receiver")?;
    Ok(Entry {
        group_key: String::from_utf8_lossy(&e.group_key).into_owned(),
        receiver: ReceiverKey {
            group_name: r.group_name.clone(),
            integration: r.integration.clone(),
            idx: r.idx,
        },
        timestamp: from_ts(&e.timestamp),
        firing_alerts: e.firing_alerts.clone(),
        resolved_alerts: e.resolved_alerts.clone(),
        expires_at: from_ts(&m.expires_at),
        // A value without a type is one this build does not know: left out.
        receiver_data: bounded_data(e.receiver_data.iter().filter_map(|(k, v)| {
            let v = match v.value.as_ref()? {
                Value::StrVal(s) => DataValue::Str(s.clone()),
                Value::IntVal(i) => DataValue::Int(*i),
                Value::DoubleVal(d) => DataValue::Double(*d),
            };
            Some((k.clone(), v))
        })),
    })
}

fn encode_all<M: Message>(records: impl Iterator<Item = M>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        // Writing into a Vec cannot run out of space.
        let _ = r.encode_length_delimited(&mut out);
    }
    out
}

fn decode_all<M: Message + Default, T>(bytes: &[u8], convert: impl Fn(&M) -> Result<T, String>) -> Decoded<T> {
    let mut out = Decoded {
        records: Vec::new(),
        errors: Vec::new(),
    };
    let mut pos = 0;
    while pos < bytes.len() {
        let mut rest = &bytes[pos..];
        let before = rest.len();
        let len = match prost::encoding::decode_varint(&mut rest) {
            Ok(l) => l as usize,
            Err(e) => {
                out.errors.push(format!("corrupt record length at byte {pos}: {e}"));
                return out;
            }
        };
        let start = pos + (before - rest.len());
        if len > bytes.len() - start {
            out.errors.push(format!(
                "truncated record at byte {pos}: needs {len} bytes, {} left",
                bytes.len() - start
            ));
            return out;
        }
        match M::decode(&bytes[start..start + len]) {
            Ok(m) => match convert(&m) {
                Ok(t) => out.records.push(t),
                Err(e) => out.errors.push(format!("invalid record at byte {pos} skipped: {e}")),
            },
            Err(e) => {
                out.errors.push(format!("corrupt record at byte {pos}: {e}"));
                return out;
            }
        }
        pos = start + len;
    }
    out
}

/// Encodes silences as Alertmanager's `silences` snapshot.
pub fn encode_silences<'a>(entries: impl Iterator<Item = &'a MeshSilence>) -> Vec<u8> {
    encode_all(entries.map(silence_to_pb))
}

/// Decodes a `silences` snapshot.
pub fn decode_silences(bytes: &[u8]) -> Decoded<MeshSilence> {
    decode_all::<spb::MeshSilence, _>(bytes, silence_from_pb)
}

/// Encodes log entries as Alertmanager's `nflog` snapshot.
pub fn encode_nflog<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
    encode_all(entries.map(entry_to_pb))
}

/// Decodes an `nflog` snapshot.
pub fn decode_nflog(bytes: &[u8]) -> Decoded<Entry> {
    decode_all::<npb::MeshEntry, _>(bytes, entry_from_pb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchers::{ParseMode, parse_matchers};

    fn silence(id: &str) -> MeshSilence {
        MeshSilence {
            silence: Silence {
                id: id.into(),
                matcher_sets: vec![parse_matchers(r#"alertname="x", sev=~"crit|warn""#, ParseMode::Fallback).unwrap()],
                starts_at: "2026-11-23T10:00:00Z".parse().unwrap(),
                ends_at: "2026-11-23T12:00:00.5Z".parse().unwrap(),
                updated_at: "2026-11-23T10:00:00Z".parse().unwrap(),
                created_by: "me".into(),
                comment: "maintenance".into(),
                annotations: [("ticket".to_string(), "T-1".to_string())].into(),
            },
            expires_at: "2026-11-28T12:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn silences_round_trip_and_corruption_keeps_what_came_before() {
        let all = [silence("a"), silence("b"), silence("c")];
        let bytes = encode_silences(all.iter());
        let d = decode_silences(&bytes);
        assert!(d.errors.is_empty());
        assert_eq!(d.records, all);
        // Truncate in the middle of the third record.
        let cut = &bytes[..bytes.len() - 5];
        let d = decode_silences(cut);
        assert_eq!(d.records.len(), 2);
        assert!(d.errors[0].starts_with("truncated record at byte"), "{:?}", d.errors);
        // Garbage in the second record.
        let one = encode_silences([silence("a")].iter()).len();
        let mut bad = bytes.clone();
        for b in &mut bad[one + 2..one + 12] {
            *b = 0xff;
        }
        let d = decode_silences(&bad);
        assert_eq!(d.records.len(), 1);
        assert_eq!(d.errors.len(), 1);
    }

    #[test]
    fn legacy_records_are_upgraded() {
        let legacy = spb::MeshSilence {
            silence: Some(spb::Silence {
                id: "old".into(),
                matchers: vec![spb::Matcher {
                    r#type: 0,
                    name: "job".into(),
                    pattern: "db".into(),
                }],
                comments: vec![spb::Comment {
                    author: "ops".into(),
                    comment: "from 0.1x".into(),
                    timestamp: None,
                }],
                ..Default::default()
            }),
            expires_at: None,
        };
        let m = silence_from_pb(&legacy).unwrap();
        assert_eq!(m.silence.matcher_sets[0][0].to_string(), r#"job="db""#);
        assert_eq!(
            (m.silence.created_by.as_str(), m.silence.comment.as_str()),
            ("ops", "from 0.1x")
        );
        // Writers keep the legacy list equal to the first set.
        let pb = silence_to_pb(&m);
        assert_eq!(pb.silence.unwrap().matchers.len(), 1);
    }

    #[test]
    fn nflog_round_trip() {
        let e = Entry {
            group_key: r#"{}:{alertname="x"}"#.into(),
            receiver: ReceiverKey {
                group_name: "r".into(),
                integration: "webhook".into(),
                idx: 0,
            },
            timestamp: "2026-11-23T10:00:00.123456789Z".parse().unwrap(),
            firing_alerts: vec![1, u64::MAX],
            resolved_alerts: vec![7],
            expires_at: "2026-11-23T18:00:00Z".parse().unwrap(),
            receiver_data: [
                ("channelId".into(), DataValue::Str("C024BE91L".into())),
                ("n".into(), DataValue::Int(-3)),
                ("x".into(), DataValue::Double(0.5)),
            ]
            .into(),
        };
        let bytes = encode_nflog([e.clone()].iter());
        // A MeshEntry record starts with its length, then field 1 (entry) as a message: 0x0a.
        let mut rest = &bytes[..];
        prost::encoding::decode_varint(&mut rest).unwrap();
        assert_eq!(rest[0], 0x0a);
        let d = decode_nflog(&bytes);
        assert_eq!(d.records, vec![e]);
    }

    #[test]
    fn receiver_data_from_a_peer_is_cut_to_what_an_integration_writes() {
        let mut pb = entry_to_pb(&Entry {
            group_key: "{}:{}".into(),
            receiver: ReceiverKey {
                group_name: "r".into(),
                integration: "slack".into(),
                idx: 0,
            },
            timestamp: "2026-11-23T10:00:00Z".parse().unwrap(),
            firing_alerts: vec![1],
            resolved_alerts: vec![],
            expires_at: "2026-11-23T18:00:00Z".parse().unwrap(),
            receiver_data: Default::default(),
        });
        let data = &mut pb.entry.as_mut().unwrap().receiver_data;
        let str_val = |s: String| npb::ReceiverDataValue {
            value: Some(Value::StrVal(s)),
        };
        data.insert("threadTs".into(), str_val("1503435956.000247".into()));
        data.insert("huge".into(), str_val("x".repeat(1 << 20)));
        data.insert("untyped".into(), npb::ReceiverDataValue { value: None });
        for i in 0..100 {
            data.insert(format!("k{i}"), str_val("v".into()));
        }
        let e = entry_from_pb(&pb).unwrap();
        assert_eq!(e.firing_alerts, vec![1], "the entry itself stands");
        assert_eq!(e.receiver_data.len(), crate::nflog::MAX_DATA_KEYS);
        assert!(!e.receiver_data.contains_key("huge") && !e.receiver_data.contains_key("untyped"));
    }
}
