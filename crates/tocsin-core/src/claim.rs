//! In-flight claims: "replica X (at generation g) is sending group G to integration R until
//! deadline D".
//!
//! Alertmanager's stagger assumes a send finishes within one peer timeout; when a receiver is
//! slower, the next replica finds no log entry and sends again. A replica about to send replicates
//! a claim first; a peer that sees a live claim waits for the claimant's log entry, its release,
//! or the deadline, whichever comes first. This module stores and merges claims; when a claim
//! blocks is the delivery machine's rule ([`crate::delivery`]).

use std::collections::HashMap;

use jiff::Timestamp;

use crate::nflog::ReceiverKey;

/// One claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Group key string.
    pub group_key: String,
    /// Receiver integration.
    pub receiver: ReceiverKey,
    /// Node name of the claimant.
    pub sender: String,
    /// The claimant's generation: a claimant restarted under the same name holds none of the
    /// claims of its previous life.
    pub generation: u64,
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
    /// Merges a claim, local or remote: per claimant the newest wins (a later generation, then a
    /// later creation), and at equal creation a release wins. Claims already past their deadline are ignored. Returns whether state changed.
    pub fn merge(&mut self, c: Claim, now: Timestamp) -> bool {
        if c.deadline <= now {
            return false;
        }
        let per = self
            .by_target
            .entry((c.group_key.clone(), c.receiver.clone()))
            .or_default();
        match per.get(&c.sender) {
            Some(cur) if (cur.generation, cur.created, cur.released) >= (c.generation, c.created, c.released) => false,
            _ => {
                per.insert(c.sender.clone(), c);
                true
            }
        }
    }

    /// Iterates over the claims on one group's integration, one per claimant.
    pub fn of(&self, group_key: &str, receiver: &ReceiverKey) -> impl Iterator<Item = &Claim> {
        // The key is cloned for the lookup: a claim check is made once per send decision.
        self.by_target
            .get(&(group_key.to_string(), receiver.clone()))
            .into_iter()
            .flat_map(HashMap::values)
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
            generation: 1,
            created: at(created),
            deadline: at(deadline),
            released: false,
        }
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
        let mut restarted = claim("a", 1, 80);
        restarted.generation = 2;
        assert!(
            c.merge(restarted, at(20)),
            "a later generation wins whatever its creation"
        );
        assert_eq!(c.of("{}:{}", &rk()).map(|c| c.generation).collect::<Vec<_>>(), vec![2]);
        assert!(!c.merge(claim("b", 0, 5), at(10)), "already past its deadline");
        assert_eq!(c.len(), 1);
        assert_eq!(c.gc(at(80)), 1);
        assert!(c.is_empty());
    }
}
