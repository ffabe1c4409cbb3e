//! In-flight claims: "replica X is sending group G to integration R until deadline D".
//!
//! Alertmanager's stagger assumes a send finishes within one peer timeout; when a receiver is
//! slower, the next replica finds no log entry and sends again. A replica about to send replicates
//! a claim first; a peer that sees a live claim waits for the claimant's log entry, its release,
//! or the deadline, whichever comes first. A claim is dead once released, past its deadline,
//! superseded by a log entry written at or after it, or held by a replica that is not a live
//! member, so a dead claimant never blocks delivery (fail-open).

use std::collections::HashMap;

use jiff::Timestamp;

use crate::nflog::{Entry, ReceiverKey};

/// One claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Group key string.
    pub group_key: String,
    /// Receiver integration.
    pub receiver: ReceiverKey,
    /// Node name of the claimant.
    pub sender: String,
    /// When the claim was made (orders a claimant's successive claims).
    pub created: Timestamp,
    /// When the claimant gives up sending.
    pub deadline: Timestamp,
    /// The claimant finished without logging (the send failed or was cancelled).
    pub released: bool,
}

/// Claims of one group's integration, by claimant.
type PerIntegration = HashMap<String, Claim>;

/// Every replica's claims, newest per (group, integration, claimant). Indexed by group and
/// integration, so the check made before each send touches only that integration's claims.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    by_target: HashMap<(String, ReceiverKey), PerIntegration>,
}

impl Claims {
    /// Merges a claim, local or remote: per claimant the newest wins, and at equal creation a
    /// release wins. Claims already past their deadline are ignored. Returns whether state changed.
    pub fn merge(&mut self, c: Claim, now: Timestamp) -> bool {
        if c.deadline <= now {
            return false;
        }
        let per = self
            .by_target
            .entry((c.group_key.clone(), c.receiver.clone()))
            .or_default();
        match per.get(&c.sender) {
            Some(cur) if (cur.created, cur.released) >= (c.created, c.released) => false,
            _ => {
                per.insert(c.sender.clone(), c);
                true
            }
        }
    }

    /// Returns the live claim of another replica on a group's integration with the latest
    /// deadline. `logged` is that integration's log entry: a claim made at or before it has
    /// been fulfilled. `is_live` says whether a node is a live member.
    pub fn blocking(
        &self,
        group_key: &str,
        receiver: &ReceiverKey,
        me: &str,
        logged: Option<&Entry>,
        now: Timestamp,
        is_live: impl Fn(&str) -> bool,
    ) -> Option<&Claim> {
        self.by_target
            .get(&(group_key.to_string(), receiver.clone()))?
            .values()
            .filter(|c| {
                c.sender != me
                    && !c.released
                    && c.deadline > now
                    && logged.is_none_or(|e| e.timestamp < c.created)
                    && is_live(&c.sender)
            })
            .max_by_key(|c| c.deadline)
    }

    /// Deletes claims past their deadline; returns how many.
    pub fn gc(&mut self, now: Timestamp) -> usize {
        let before = self.len();
        for per in self.by_target.values_mut() {
            per.retain(|_, c| c.deadline > now);
        }
        self.by_target.retain(|_, per| !per.is_empty());
        before - self.len()
    }

    /// Iterates over all claims (for a full-state sync).
    pub fn iter(&self) -> impl Iterator<Item = &Claim> {
        self.by_target.values().flat_map(HashMap::values)
    }

    /// Returns the number of claims held.
    pub fn len(&self) -> usize {
        self.by_target.values().map(HashMap::len).sum()
    }

    /// Returns whether no claim is held.
    pub fn is_empty(&self) -> bool {
        self.by_target.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn rk() -> ReceiverKey {
        ReceiverKey {
            group_name: "r".into(),
            integration: "webhook".into(),
            idx: 0,
        }
    }

    fn claim(sender: &str, created: i64, deadline: i64) -> Claim {
        Claim {
            group_key: "{}:{}".into(),
            receiver: rk(),
            sender: sender.into(),
            created: at(created),
            deadline: at(deadline),
            released: false,
        }
    }

    fn entry(ts: i64) -> Entry {
        Entry {
            group_key: "{}:{}".into(),
            receiver: rk(),
            timestamp: at(ts),
            firing_alerts: vec![1],
            resolved_alerts: vec![],
            expires_at: at(ts + 3600),
        }
    }

    fn blocking<'a>(c: &'a Claims, logged: Option<&Entry>, now: i64, live: &[&str]) -> Option<&'a str> {
        c.blocking("{}:{}", &rk(), "me", logged, at(now), |n| live.contains(&n))
            .map(|c| c.sender.as_str())
    }

    #[test]
    fn a_live_peer_claim_blocks_until_its_deadline() {
        let mut c = Claims::default();
        assert!(c.merge(claim("a", 0, 60), at(0)));
        assert_eq!(blocking(&c, None, 30, &["a"]), Some("a"));
        assert_eq!(blocking(&c, None, 60, &["a"]), None);
    }

    #[test]
    fn own_dead_released_or_fulfilled_claims_do_not_block() {
        let mut c = Claims::default();
        c.merge(claim("me", 0, 60), at(0));
        assert_eq!(blocking(&c, None, 1, &["me"]), None);
        c.merge(claim("a", 0, 60), at(0));
        assert_eq!(blocking(&c, None, 1, &["me"]), None, "claimant left the cluster");
        assert_eq!(
            blocking(&c, Some(&entry(5)), 6, &["a"]),
            None,
            "claimant logged its send"
        );
        assert_eq!(blocking(&c, Some(&entry(-5)), 6, &["a"]), Some("a"), "older entry");
        let mut rel = claim("a", 0, 60);
        rel.released = true;
        assert!(c.merge(rel, at(2)));
        assert_eq!(blocking(&c, None, 3, &["a"]), None);
    }

    #[test]
    fn merge_keeps_the_newest_and_a_release_beats_its_claim() {
        let mut c = Claims::default();
        let mut rel = claim("a", 10, 60);
        rel.released = true;
        assert!(c.merge(rel.clone(), at(10)));
        // The claim arriving after its own release (pushes are not ordered) changes nothing.
        assert!(!c.merge(claim("a", 10, 60), at(10)));
        assert!(!c.merge(claim("a", 5, 60), at(10)), "older claim");
        assert!(c.merge(claim("a", 20, 80), at(20)), "newer claim");
        assert!(!c.merge(claim("b", 0, 5), at(10)), "already past its deadline");
        assert_eq!(c.len(), 1);
        assert_eq!(c.gc(at(80)), 1);
        assert!(c.is_empty());
    }
}
