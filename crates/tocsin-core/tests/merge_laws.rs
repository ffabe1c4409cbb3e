//! Property tests of the replication merge rules (§4.3): whatever order and however often peers
//! deliver entries, every replica converges to the same state, and GC never drops a live entry.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use tocsin_core::labels::NameValidation;
use tocsin_core::matchers::{MatchType, Matcher};
use tocsin_core::nflog::{Entry, Nflog, ReceiverKey};
use tocsin_core::silence::{Limits, MeshSilence, Silence, Silences};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0..4u8,
        0..3u8,
        0..1000i64,
        prop::collection::vec(0..5u64, 0..4),
        100..3000i64,
    )
        .prop_map(|(g, r, ts, firing, ttl)| Entry {
            group_key: format!("{{}}:{{g=\"{g}\"}}"),
            receiver: ReceiverKey {
                group_name: format!("r{r}"),
                integration: "webhook".into(),
                idx: 0,
            },
            timestamp: t(ts),
            firing_alerts: firing,
            resolved_alerts: vec![],
            expires_at: t(ts + ttl),
            receiver_data: Default::default(),
        })
}

fn silence() -> impl Strategy<Value = MeshSilence> {
    (0..5u8, 0..1000i64, 0..3u8, 100..3000i64).prop_map(|(id, updated, comment, len)| MeshSilence {
        silence: Silence {
            id: format!("s{id}"),
            matcher_sets: vec![vec![
                Matcher::new(MatchType::Equal, "alertname", format!("a{id}")).unwrap(),
            ]],
            starts_at: t(0),
            ends_at: t(len),
            updated_at: t(updated),
            comment: format!("c{comment}"),
            ..Silence::default()
        },
        expires_at: t(len + 500),
    })
}

/// The merged state and its digest: equal states must have equal digests.
type State<V> = (BTreeMap<String, V>, u64);

fn nflog_state(entries: &[Entry], now: Timestamp) -> State<(Timestamp, Vec<u64>)> {
    let mut log = Nflog::default();
    for e in entries {
        log.merge(e.clone(), now);
    }
    let map = log
        .entries()
        .map(|e| (e.state_key(), (e.timestamp, e.firing_alerts.clone())))
        .collect();
    (map, log.digest(now))
}

fn silence_state(entries: &[MeshSilence], now: Timestamp) -> State<(Timestamp, String)> {
    let mut s = Silences::new(Duration::from_secs(500), Limits::default(), NameValidation::Utf8);
    for m in entries {
        s.merge(m.clone(), now);
    }
    let map = s
        .iter()
        .map(|m| (m.silence.id.clone(), (m.silence.updated_at, m.silence.comment.clone())))
        .collect();
    (map, s.digest(now))
}

/// Entries with equal keys and timestamps but different content would make "newest wins"
/// ambiguous; replicas never produce them (a key is written by one send at one instant).
fn unambiguous_nflog(v: &[Entry]) -> bool {
    let mut seen = BTreeMap::new();
    v.iter().all(|e| {
        seen.insert((e.state_key(), e.timestamp), e.firing_alerts.clone())
            .is_none_or(|f| f == e.firing_alerts)
    })
}

fn unambiguous_silences(v: &[MeshSilence]) -> bool {
    let mut seen = BTreeMap::new();
    v.iter().all(|m| {
        seen.insert((m.silence.id.clone(), m.silence.updated_at), m.clone())
            .is_none_or(|o| o == *m)
    })
}

proptest! {
    #[test]
    fn nflog_merge_commutes_and_is_idempotent(mut v in prop::collection::vec(entry(), 0..12), seed in any::<u64>()) {
        prop_assume!(unambiguous_nflog(&v));
        let now = t(0);
        let forward = nflog_state(&v, now);
        let mut twice = v.clone();
        twice.extend(v.iter().cloned());
        prop_assert_eq!(&nflog_state(&twice, now), &forward);
        // A deterministic shuffle from the seed.
        let n = v.len().max(1);
        v.rotate_left((seed as usize) % n);
        v.reverse();
        prop_assert_eq!(nflog_state(&v, now), forward);
    }

    #[test]
    fn silence_merge_commutes_and_is_idempotent(mut v in prop::collection::vec(silence(), 0..12), seed in any::<u64>()) {
        prop_assume!(unambiguous_silences(&v));
        let now = t(0);
        let forward = silence_state(&v, now);
        let mut twice = v.clone();
        twice.extend(v.iter().cloned());
        prop_assert_eq!(&silence_state(&twice, now), &forward);
        let n = v.len().max(1);
        v.rotate_left((seed as usize) % n);
        v.reverse();
        prop_assert_eq!(silence_state(&v, now), forward);
    }

    #[test]
    fn digests_differ_when_states_differ(a in prop::collection::vec(entry(), 0..8), b in prop::collection::vec(entry(), 0..8)) {
        let now = t(0);
        let (sa, sb) = (nflog_state(&a, now), nflog_state(&b, now));
        // Versions, not contents, are digested: equal keys and timestamps count as equal.
        let versions = |s: &State<(Timestamp, Vec<u64>)>| s.0.iter().map(|(k, v)| (k.clone(), v.0)).collect::<Vec<_>>();
        prop_assert_eq!(versions(&sa) == versions(&sb), sa.1 == sb.1);
    }

    #[test]
    fn gc_never_drops_a_live_entry(v in prop::collection::vec(entry(), 0..12), at in 0..4000i64) {
        let mut log = Nflog::default();
        for e in &v {
            log.merge(e.clone(), t(0));
        }
        let before: Vec<Entry> = log.entries().cloned().collect();
        log.gc(t(at));
        for e in before {
            let kept = log.query(&e.group_key, &e.receiver).is_some();
            prop_assert_eq!(kept, e.expires_at > t(at), "entry expiring at {} after gc at {}", e.expires_at, t(at));
        }
    }
}
