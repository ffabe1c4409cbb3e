//! Property tests of what a replica accepts from its peers (`tocsin_core::admit`): whatever a
//! peer sends — random silences, log entries and claims, timestamps anywhere — nothing stored
//! breaks a rule a local record keeps, and the merge laws still hold through admission, with
//! `now` (expiry) generated and ties included.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use tocsin_core::admit::{Bounds, Refused};
use tocsin_core::claim::{Claim, Claims};
use tocsin_core::labels::NameValidation;
use tocsin_core::matchers::{MatchType, Matcher};
use tocsin_core::nflog::{Entry, Nflog, ReceiverKey};
use tocsin_core::silence::{Limits, MeshSilence, Silence, Silences, validate};

const SKEW: i64 = 300;
const CAP: i64 = 60;
const RETENTION: i64 = 3600;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn bounds() -> Bounds {
    Bounds {
        max_skew: Duration::from_secs(SKEW as u64),
        claim_cap: Duration::from_secs(CAP as u64),
        retention: Duration::from_secs(RETENTION as u64),
    }
}

/// Any second from long before to far after `t(0)`, the year-9999 forgery included.
fn when() -> impl Strategy<Value = i64> {
    prop_oneof![
        -5000..5000i64,
        Just(250_000_000_000i64 - 1_800_000_000),
        Just(-1_800_000_000i64),
    ]
}

fn matcher() -> impl Strategy<Value = Matcher> {
    (0..4u8, 0..3u8).prop_map(|(kind, v)| match kind {
        0 => Matcher::new(MatchType::Equal, "alertname", format!("a{v}")).unwrap(),
        1 => Matcher::new(MatchType::Regexp, "job", ".*").unwrap(),
        2 => Matcher::new(MatchType::NotEqual, "job", "").unwrap(),
        _ => Matcher::new(MatchType::Equal, "job", "").unwrap(),
    })
}

fn silence() -> impl Strategy<Value = MeshSilence> {
    (
        0..6u8,
        prop::collection::vec(prop::collection::vec(matcher(), 0..3), 0..2),
        when(),
        when(),
        when(),
        when(),
        0..400usize,
    )
        .prop_map(|(id, sets, start, end, updated, expires, comment)| MeshSilence {
            silence: Silence {
                id: if id == 5 { String::new() } else { format!("s{id}") },
                matcher_sets: sets,
                starts_at: t(start),
                ends_at: t(end),
                updated_at: t(updated),
                comment: "c".repeat(comment),
                ..Silence::default()
            },
            expires_at: t(expires),
        })
}

fn rk(r: u8) -> ReceiverKey {
    ReceiverKey {
        group_name: format!("r{r}"),
        integration: "webhook".into(),
        idx: 0,
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    (0..3u8, 0..2u8, when(), when(), prop::collection::vec(0..5u64, 0..4)).prop_map(|(g, r, ts, expires, firing)| {
        Entry {
            group_key: format!("{{}}:{{g=\"{g}\"}}"),
            receiver: rk(r),
            timestamp: t(ts),
            firing_alerts: firing,
            resolved_alerts: vec![],
            expires_at: t(expires),
            receiver_data: Default::default(),
        }
    })
}

fn claim() -> impl Strategy<Value = Claim> {
    (0..2u8, 0..3u8, 1..3u64, when(), when(), any::<bool>()).prop_map(
        |(g, sender, generation, created, deadline, released)| Claim {
            group_key: format!("{{}}:{{g=\"{g}\"}}"),
            receiver: rk(0),
            sender: format!("n{sender}"),
            generation,
            created: t(created),
            deadline: t(deadline),
            released,
        },
    )
}

fn silences(limits: Limits) -> Silences {
    Silences::new(Duration::from_secs(RETENTION as u64), limits, NameValidation::Utf8)
}

proptest! {
    #[test]
    fn no_stored_silence_breaks_a_local_rule(v in prop::collection::vec(silence(), 0..16), now in -3000..3000i64) {
        let limits = Limits { max_silences: 4, max_silence_size_bytes: 300 };
        let mut store = silences(limits);
        for m in v {
            let _ = bounds().merge_silence(&mut store, &mut Refused::default(), m, t(now));
        }
        prop_assert!(store.len() <= 4);
        for m in store.iter() {
            let s = &m.silence;
            prop_assert!(validate(s, NameValidation::Utf8).is_ok(), "{s:?}");
            prop_assert!(!s.id.is_empty());
            prop_assert!(s.updated_at <= t(now + SKEW));
            prop_assert!(m.expires_at <= s.ends_at + jiff::SignedDuration::from_secs(RETENTION + SKEW));
            prop_assert!(tocsin_core::snapshot::silence_size(m) <= 300);
        }
    }

    #[test]
    fn no_stored_entry_is_dated_past_the_skew_or_outlives_the_retention(v in prop::collection::vec(entry(), 0..16), now in -3000..3000i64) {
        let mut log = Nflog::default();
        for e in v {
            let _ = bounds().merge_entry(&mut log, &mut Refused::default(), e, t(now));
        }
        for e in log.entries() {
            prop_assert!(e.timestamp <= t(now + SKEW));
            prop_assert!(e.expires_at <= e.timestamp + jiff::SignedDuration::from_secs(RETENTION));
        }
    }

    #[test]
    fn no_stored_claim_blocks_past_the_cap(v in prop::collection::vec((claim(), 0..100i64), 0..16), now in -3000..3000i64) {
        let mut claims = Claims::default();
        let mut received = now;
        for (c, later) in v {
            received += later;
            let _ = bounds().merge_claim(&mut claims, c, t(received));
            for c in claims.iter() {
                prop_assert!(c.deadline <= t(received + CAP), "{c:?} received by {received}");
                prop_assert!(c.created <= t(received + SKEW));
            }
        }
    }

    #[test]
    fn admission_keeps_the_merge_laws(
        mut s in prop::collection::vec(silence(), 0..10),
        mut e in prop::collection::vec(entry(), 0..10),
        mut c in prop::collection::vec(claim(), 0..10),
        now in -3000..3000i64,
        seed in any::<u64>(),
    ) {
        // Distinct content under one version would make "newest wins" ambiguous; replicas never
        // write two at one instant.
        let mut seen = BTreeMap::new();
        prop_assume!(s.iter().all(|m| seen.insert((m.silence.id.clone(), m.silence.updated_at), m.clone()).is_none_or(|o| o == *m)));
        let mut seen = BTreeMap::new();
        prop_assume!(e.iter().all(|x| seen.insert((x.state_key(), x.timestamp), x.clone()).is_none_or(|o| o == *x)));
        let mut seen = BTreeMap::new();
        prop_assume!(c.iter().all(|x| seen.insert((x.sender.clone(), x.group_key.clone(), x.generation, x.created, x.released), x.clone()).is_none_or(|o| o == *x)));
        let now = t(now);
        let state = |s: &[MeshSilence], e: &[Entry], c: &[Claim]| {
            let b = bounds();
            let mut store = silences(Limits::default());
            let mut log = Nflog::default();
            let mut claims = Claims::default();
            for m in s { let _ = b.merge_silence(&mut store, &mut Refused::default(), m.clone(), now); }
            for x in e { let _ = b.merge_entry(&mut log, &mut Refused::default(), x.clone(), now); }
            for x in c { let _ = b.merge_claim(&mut claims, x.clone(), now); }
            let mut sil: Vec<MeshSilence> = store.iter().cloned().collect();
            sil.sort_by(|a, b| a.silence.id.cmp(&b.silence.id));
            let mut ent: Vec<Entry> = log.entries().cloned().collect();
            ent.sort_by_key(Entry::state_key);
            let mut cl: Vec<Claim> = claims.iter().cloned().collect();
            cl.sort_by(|a, b| (&a.group_key, &a.sender).cmp(&(&b.group_key, &b.sender)));
            (sil, ent, cl)
        };
        let forward = state(&s, &e, &c);
        fn twice<T: Clone>(v: &[T]) -> Vec<T> {
            v.iter().chain(v).cloned().collect()
        }
        let (s2, e2, c2) = (twice(&s), twice(&e), twice(&c));
        prop_assert_eq!(&state(&s2, &e2, &c2), &forward);
        let k = seed as usize;
        let n = s.len().max(1);
        s.rotate_left(k % n);
        s.reverse();
        let n = e.len().max(1);
        e.rotate_left(k % n);
        e.reverse();
        let n = c.len().max(1);
        c.rotate_left(k % n);
        c.reverse();
        prop_assert_eq!(state(&s, &e, &c), forward);
    }
}
