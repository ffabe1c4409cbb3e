//! What a replica accepts from its peers: every record merged passes the rules a local one does.
//!
//! A peer is not trusted to be honest or to have a sane clock. A record it sends is refused when
//! no local change could have produced it (an invalid or oversized silence, one silence too many,
//! a timestamp later than this replica's clock allows), and bounded when only its reach is the
//! problem (a claim blocks no longer than [`Bounds::claim_cap`] from its receipt; a log entry
//! lives no longer than the retention). A refusal never stops the rest of a push or sync: the
//! caller counts it by [`Refusal::as_str`] and goes on.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::claim::{Claim, Claims};
use crate::nflog::{Entry, Nflog};
use crate::silence::{MeshSilence, Silences, validate};

/// Why a peer's record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// It fails the validation a local record passes (a silence without matchers, its end
    /// before its start, an invalid label name…).
    Invalid,
    /// Larger than `--silences.max-silence-size-bytes`.
    TooLarge,
    /// A new silence past `--silences.max-silences`.
    TooMany,
    /// Dated later than this replica's clock plus the allowed skew.
    Future,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::TooLarge => "too_large",
            Refusal::TooMany => "too_many",
            Refusal::Future => "future_timestamp",
        }
    }
}

/// Records refused for being dated ahead, remembered until they would have expired: anti-entropy
/// sends the same record again, and once this replica's clock has caught up with it, it would
/// pass — and replace the newer records written meanwhile by its later timestamp
/// (tocsin-chaos seed 32006: an entry of a replica 333 s ahead, admitted 300 s late, made every
/// replica believe a resolve was already notified). A refused record stays refused.
#[derive(Clone, Debug, Default)]
pub struct Refused {
    /// State key -> (timestamp refused, forget after), at most [`Refused::PER_KEY`] per key.
    seen: HashMap<String, Vec<(Timestamp, Timestamp)>>,
}

impl Refused {
    /// How many refused versions of one record are remembered.
    pub const PER_KEY: usize = 16;

    fn knows(&self, key: &str, ts: Timestamp) -> bool {
        self.seen.get(key).is_some_and(|v| v.iter().any(|(t, _)| *t == ts))
    }

    fn remember(&mut self, key: String, ts: Timestamp, until: Timestamp) {
        let v = self.seen.entry(key).or_default();
        if v.len() >= Self::PER_KEY {
            v.remove(0);
        }
        v.push((ts, until));
    }

    /// Forgets records past their expiry; returns how many are still remembered.
    pub fn gc(&mut self, now: Timestamp) -> usize {
        for v in self.seen.values_mut() {
            v.retain(|(_, until)| *until > now);
        }
        self.seen.retain(|_, v| !v.is_empty());
        self.seen.values().map(Vec::len).sum()
    }
}

/// The bounds a peer's records are held to.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// How far past this replica's clock a peer's timestamp may be (`--cluster.max-clock-skew`).
    pub max_skew: Duration,
    /// The longest a peer's claim may block from when it is received: the longest first
    /// attempt a configured route allows.
    pub claim_cap: Duration,
    /// `--data.retention`: no log entry outlives it.
    pub retention: Duration,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl Bounds {
    fn latest(&self, now: Timestamp) -> Timestamp {
        plus(now, self.max_skew)
    }

    /// Merges a peer's silence into `store` if it passes; returns whether state changed.
    ///
    /// # Errors
    /// Why it was refused; nothing is stored.
    pub fn merge_silence(
        &self,
        store: &mut Silences,
        refused: &mut Refused,
        m: MeshSilence,
        now: Timestamp,
    ) -> Result<bool, Refusal> {
        let s = &m.silence;
        if s.updated_at > self.latest(now) {
            let until = m.expires_at.min(plus(s.ends_at, store.retention() + self.max_skew));
            refused.remember(s.id.clone(), s.updated_at, until);
            return Err(Refusal::Future);
        }
        if refused.knows(&s.id, s.updated_at) {
            return Err(Refusal::Future);
        }
        // What this replica already holds, every sync sends again: it would not change state,
        // so it is not validated and encoded once more for nothing.
        if store.get(&s.id).is_some_and(|cur| cur.updated_at >= s.updated_at) {
            return Ok(false);
        }
        validate(s, store.names()).map_err(|_| Refusal::Invalid)?;
        if s.id.is_empty() || m.expires_at > plus(s.ends_at, store.retention() + self.max_skew) {
            return Err(Refusal::Invalid);
        }
        let limits = store.limits();
        let max_size = match limits.max_silence_size_bytes {
            0 => crate::silence::MAX_SILENCE_BYTES,
            n => n.min(crate::silence::MAX_SILENCE_BYTES),
        };
        if crate::snapshot::silence_size(&m) > max_size {
            return Err(Refusal::TooLarge);
        }
        if limits.max_silences > 0 && store.get(&s.id).is_none() && store.len() >= limits.max_silences {
            return Err(Refusal::TooMany);
        }
        Ok(store.merge(m, now))
    }

    /// Merges a peer's log entry into `log` if it passes, its expiry cut to the retention;
    /// returns whether state changed.
    ///
    /// # Errors
    /// Why it was refused; nothing is stored.
    pub fn merge_entry(
        &self,
        log: &mut Nflog,
        refused: &mut Refused,
        mut e: Entry,
        now: Timestamp,
    ) -> Result<bool, Refusal> {
        let key = e.state_key();
        if e.timestamp > self.latest(now) {
            let until = e.expires_at.min(plus(e.timestamp, self.retention));
            refused.remember(key, e.timestamp, until);
            return Err(Refusal::Future);
        }
        if refused.knows(&key, e.timestamp) {
            return Err(Refusal::Future);
        }
        e.expires_at = e.expires_at.min(plus(e.timestamp, self.retention));
        Ok(log.merge(e, now))
    }

    /// Merges a peer's claim into `claims` if it passes, its deadline cut to the claim cap from
    /// now; returns whether state changed.
    ///
    /// # Errors
    /// Why it was refused; nothing is stored.
    pub fn merge_claim(&self, claims: &mut Claims, mut c: Claim, now: Timestamp) -> Result<bool, Refusal> {
        if c.created > self.latest(now) {
            return Err(Refusal::Future);
        }
        // A deadline before the creation is kept: a claimant creates its claim just after the
        // entry it supersedes, which a peer's clock may have dated ahead of its own; the cap
        // bounds what such a claim can hold.
        c.deadline = c.deadline.min(plus(now, self.claim_cap));
        Ok(claims.merge(c, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::NameValidation;
    use crate::matchers::parse_matchers;
    use crate::nflog::ReceiverKey;
    use crate::silence::{Limits, Silence};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn bounds() -> Bounds {
        Bounds {
            max_skew: Duration::from_secs(300),
            claim_cap: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
        }
    }

    fn silence(id: &str, matchers: &str, updated: i64) -> MeshSilence {
        MeshSilence {
            silence: Silence {
                id: id.into(),
                matcher_sets: vec![parse_matchers(matchers, Default::default()).unwrap_or_default()],
                starts_at: t(0),
                ends_at: t(600),
                updated_at: t(updated),
                created_by: "peer".into(),
                comment: "c".into(),
                ..Silence::default()
            },
            expires_at: t(600 + 3600),
        }
    }

    fn store(limits: Limits) -> Silences {
        Silences::new(Duration::from_secs(3600), limits, NameValidation::Utf8)
    }

    #[test]
    fn a_silence_from_a_peer_passes_the_local_rules() {
        let b = bounds();
        let mut s = store(Limits::default());
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), silence("a", "job=\"db\"", 0), t(0)),
            Ok(true)
        );
        // The forged "mute everything" of the issue: no matchers, dated in 9999.
        let mut forged = silence("b", "", 0);
        forged.silence.updated_at = "9999-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), forged.clone(), t(0)),
            Err(Refusal::Future)
        );
        forged.silence.updated_at = t(0);
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), forged, t(0)),
            Err(Refusal::Invalid)
        );
        // A matcher that matches everything, an end before the start, a GC time past retention.
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), silence("c", "job=~\".*\"", 0), t(0)),
            Err(Refusal::Invalid)
        );
        let mut backwards = silence("d", "job=\"db\"", 0);
        backwards.silence.ends_at = t(-1);
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), backwards, t(0)),
            Err(Refusal::Invalid)
        );
        let mut forever = silence("e", "job=\"db\"", 0);
        forever.expires_at = "9999-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), forever, t(0)),
            Err(Refusal::Invalid)
        );
        // Within the skew: accepted.
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), silence("f", "job=\"db\"", 299), t(0)),
            Ok(true)
        );
        assert_eq!(s.len(), 2, "nothing refused was stored");
    }

    #[test]
    fn silence_limits_apply_to_peers_too() {
        let b = bounds();
        let mut s = store(Limits {
            max_silences: 1,
            max_silence_size_bytes: 200,
        });
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), silence("a", "job=\"db\"", 0), t(0)),
            Ok(true)
        );
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), silence("b", "job=\"db\"", 0), t(0)),
            Err(Refusal::TooMany)
        );
        // An update of a known silence is not a new one.
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), silence("a", "job=\"web\"", 1), t(1)),
            Ok(true)
        );
        let mut big = silence("a", "job=\"db\"", 2);
        big.silence.comment = "x".repeat(500);
        assert_eq!(
            b.merge_silence(&mut s, &mut Refused::default(), big, t(2)),
            Err(Refusal::TooLarge)
        );
    }

    fn rk() -> ReceiverKey {
        ReceiverKey {
            group_name: "r".into(),
            integration: "webhook".into(),
            idx: 0,
        }
    }

    #[test]
    fn log_entries_are_bounded_by_the_skew_and_the_retention() {
        let b = bounds();
        let mut log = Nflog::default();
        let entry = |ts: i64, expires: i64| Entry {
            group_key: "{}:{}".into(),
            receiver: rk(),
            timestamp: t(ts),
            firing_alerts: vec![1],
            resolved_alerts: vec![],
            expires_at: t(expires),
            receiver_data: Default::default(),
        };
        assert_eq!(
            b.merge_entry(&mut log, &mut Refused::default(), entry(301, 400), t(0)),
            Err(Refusal::Future)
        );
        assert!(log.is_empty());
        assert_eq!(
            b.merge_entry(&mut log, &mut Refused::default(), entry(10, 1_000_000), t(0)),
            Ok(true)
        );
        assert_eq!(log.query("{}:{}", &rk()).unwrap().expires_at, t(10 + 3600));
        // Refused once for its date, a record stays refused when it comes again after the
        // clock caught up (it would replace the newer entry at 10).
        let mut memo = Refused::default();
        assert_eq!(
            b.merge_entry(&mut log, &mut memo, entry(400, 4000), t(0)),
            Err(Refusal::Future)
        );
        assert_eq!(
            b.merge_entry(&mut log, &mut memo, entry(400, 4000), t(200)),
            Err(Refusal::Future)
        );
        assert_eq!(log.query("{}:{}", &rk()).unwrap().timestamp, t(10));
        // A record never refused, dated the same second, is another matter.
        assert_eq!(b.merge_entry(&mut log, &mut memo, entry(401, 4000), t(200)), Ok(true));
        assert_eq!(memo.gc(t(4001)), 0, "forgotten once it would have expired");
    }

    #[test]
    fn a_claim_blocks_at_most_the_cap_from_its_receipt() {
        let b = bounds();
        let mut claims = Claims::default();
        let claim = |created: i64, deadline: Timestamp| Claim {
            group_key: "{}:{}".into(),
            receiver: rk(),
            sender: "n1".into(),
            generation: 1,
            created: t(created),
            deadline,
            released: false,
        };
        let forever: Timestamp = "9999-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(b.merge_claim(&mut claims, claim(0, forever), t(5)), Ok(true));
        assert_eq!(claims.iter().next().unwrap().deadline, t(65));
        assert_eq!(
            b.merge_claim(&mut claims, claim(400, forever), t(5)),
            Err(Refusal::Future)
        );
        // Created after its deadline (after a peer's entry dated ahead): kept, and as bounded.
        assert_eq!(b.merge_claim(&mut claims, claim(3, t(2)), t(1)), Ok(true));
    }
}
