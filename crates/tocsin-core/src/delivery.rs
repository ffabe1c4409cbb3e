//! The delivery decision of one flush of one group to one integration, as a state machine.
//!
//! The server feeds it what it sees (`now`, the log entry, the claims, who is alive, a fresh
//! look at the group) and executes what it answers: wait, stay quiet, claim and send, release,
//! log. It owns every rule of the HA stagger (§3.3 stage 6 and §4.5) that used to live in async
//! glue:
//!
//! - **Position wait.** The replica at position k first waits `k × peer_timeout`.
//! - **Two looks.** After any wait the group is looked at again. The replica sends only when
//!   both the look taken at its tick and the fresh look need a notification (Alertmanager's
//!   dedup rule applied to each), and then sends the fresh one. The tick look stands for what
//!   the replica before it handled at about the same tick: if that is already logged, what
//!   changed during the wait belongs to the next tick, where position 0 goes first again
//!   (sending it here raced position 0's next tick and duplicated resolved notifications). The
//!   fresh look keeps an alert that resolved during the wait from being sent as firing.
//! - **Claims.** A clustered replica replicates a claim before sending. A peer's claim blocks
//!   only while its claimant is a live member *with the claim's generation* (a claimant that
//!   restarted under the same name no longer blocks), it is not released, not past its
//!   deadline and not fulfilled by a log entry written at or after it. The claimant releases
//!   it at its first failed attempt, so the next replica tries at once (fail-open), and it
//!   keeps retrying only while the log does not show that a peer delivered.
//! - **Bounds.** A claim's deadline is its first attempt's bound (the integration's timeout,
//!   else the flush budget). Whatever peers claim, a replica honours claims only until its
//!   tick + the flush budget and then sends anyway: a stuck or forged claim delays delivery
//!   by at most one budget (`group_interval`, at least 10 s), never for ever.
//!
//! Pure: no clock, no I/O. Timestamps are wall-clock values the caller read; waits are durations
//! the caller sleeps on its monotonic clock.

use std::collections::HashSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::claim::{Claim, Claims};
use crate::nflog::{Entry, NotifyReason, ReceiverKey, needs_update};

/// How often a replica waiting on a peer's claim looks again (the claimant may leave, restart or
/// release without the release reaching us).
pub const CLAIM_RECHECK: Duration = Duration::from_secs(1);

/// The least time a send gets once the decision to send is taken, even when waits used up the
/// flush budget.
pub const MIN_SEND_BUDGET: Duration = Duration::from_secs(10);

/// A cluster member at one life: a restart keeps the name and raises the generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// `--cluster.peer-name`.
    pub name: String,
    /// Start time in milliseconds (chitchat's generation).
    pub generation: u64,
}

/// The fingerprints of one look at a group, after inhibition, time intervals and silences.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// Alerts firing at the look.
    pub firing: HashSet<u64>,
    /// Alerts resolved at the look.
    pub resolved: HashSet<u64>,
}

impl Look {
    /// Builds a look from `(hash, resolved)` pairs.
    pub fn from_alerts(alerts: impl IntoIterator<Item = (u64, bool)>) -> Self {
        let mut l = Look::default();
        for (h, resolved) in alerts {
            if resolved {
                l.resolved.insert(h);
            } else {
                l.firing.insert(h);
            }
        }
        l
    }

    /// Returns whether nothing is in the look.
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty() && self.resolved.is_empty()
    }
}

/// The fixed inputs of one flush of one group to one integration.
#[derive(Clone, Debug)]
pub struct Params {
    /// This replica, when it is a cluster member (alone it never claims).
    pub me: Option<NodeId>,
    /// Group key.
    pub group_key: String,
    /// The integration.
    pub receiver: ReceiverKey,
    /// The integration's `send_resolved`.
    pub send_resolved: bool,
    /// The route's `repeat_interval`.
    pub repeat_interval: Duration,
    /// `position × peer_timeout`.
    pub peer_wait: Duration,
    /// Wall-clock time of the tick.
    pub tick: Timestamp,
    /// The flush budget: `group_interval`, at least 10 s.
    pub budget: Duration,
    /// The integration's per-attempt timeout, if any.
    pub attempt_timeout: Option<Duration>,
}

/// What the replica sees when it asks.
pub struct View<'a> {
    /// Wall-clock time.
    pub now: Timestamp,
    /// This integration's log entry for the group.
    pub entry: Option<&'a Entry>,
    /// The claims held (every group's; the machine looks up its own).
    pub claims: &'a Claims,
    /// Whether a node is a live member at that generation.
    pub live: &'a dyn Fn(&str, u64) -> bool,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sleep this long (or until replicated state changes, when `on_change`), then call
    /// [`Delivery::decide`] again with a fresh view and look.
    Wait {
        /// How long.
        duration: Duration,
        /// Wake early when a peer's log entry or claim arrives.
        on_change: bool,
        /// Why (for logs and events).
        why: WaitReason,
    },
    /// Nothing to send: the log already holds this state, or nothing in it needs a notification.
    Quiet,
    /// Replicate `claim` (when clustered), then send the fresh look's alerts within `within`.
    Send {
        /// Alertmanager's notification reason.
        reason: NotifyReason,
        /// The claim to replicate before the first attempt.
        claim: Option<Claim>,
        /// The send's deadline, from now.
        within: Duration,
        /// Whether a peer's claim was given up on (its deadline or our budget passed).
        claim_expired: bool,
    },
}

/// Why the machine waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// `position × peer_timeout`.
    Position,
    /// A live peer is sending this notification.
    PeerClaim {
        /// The claimant.
        claimant: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Deciding,
    Sending {
        claim: Option<Box<Claim>>,
        look: Look,
        released: bool,
    },
    Done,
}

/// One flush of one group to one integration.
#[derive(Clone, Debug)]
pub struct Delivery {
    p: Params,
    tick_look: Look,
    phase: Phase,
    /// A blocking claim was seen and not yet gone.
    waited_on_claim: bool,
    /// A wait happened: looks passed since may differ from the tick's.
    waited: bool,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

impl Delivery {
    /// Starts a flush with the look taken at the tick.
    pub fn new(p: Params, tick_look: Look) -> Self {
        Delivery {
            p,
            tick_look,
            phase: Phase::Start,
            waited_on_claim: false,
            waited: false,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.p
    }

    fn need(&self, entry: Option<&Entry>, look: &Look, now: Timestamp) -> Option<NotifyReason> {
        needs_update(
            entry,
            &look.firing,
            &look.resolved,
            self.p.send_resolved,
            self.p.repeat_interval,
            now,
        )
    }

    /// The peer claim that blocks this send, if any.
    fn blocking<'c>(&self, v: &View<'c>) -> Option<&'c Claim> {
        let me = self.p.me.as_ref()?;
        v.claims
            .of(&self.p.group_key, &self.p.receiver)
            .filter(|c| {
                let mine = c.sender == me.name && c.generation == me.generation;
                !mine
                    && !c.released
                    && c.deadline > v.now
                    && v.entry.is_none_or(|e| e.timestamp < c.created)
                    && (v.live)(&c.sender, c.generation)
            })
            .max_by_key(|c| c.deadline)
    }

    /// Decides with a fresh view and a fresh look at the group (the first call passes the tick's).
    pub fn decide(&mut self, v: &View<'_>, look: &Look) -> Step {
        if self.phase == Phase::Start {
            self.phase = Phase::Deciding;
            if !self.p.peer_wait.is_zero() {
                self.waited = true;
                return Step::Wait {
                    duration: self.p.peer_wait,
                    on_change: false,
                    why: WaitReason::Position,
                };
            }
        }
        if self.phase != Phase::Deciding {
            return Step::Quiet;
        }
        let tick = self.need(v.entry, &self.tick_look, v.now);
        // Before any wait the caller's look is the tick's: one evaluation serves both.
        let fresh = if self.waited {
            self.need(v.entry, look, v.now)
        } else {
            tick
        };
        let (Some(_), Some(reason)) = (tick, fresh) else {
            self.phase = Phase::Done;
            return Step::Quiet;
        };
        let budget_end = plus(self.p.tick, self.p.budget);
        let mut claim_expired = false;
        if let Some(c) = self.blocking(v) {
            if v.now < budget_end {
                (self.waited_on_claim, self.waited) = (true, true);
                let left = until(v.now, c.deadline.min(budget_end));
                return Step::Wait {
                    duration: left.min(CLAIM_RECHECK).max(Duration::from_millis(1)),
                    on_change: true,
                    why: WaitReason::PeerClaim {
                        claimant: c.sender.clone(),
                    },
                };
            }
            claim_expired = true;
        } else if self.waited_on_claim {
            // The claim we waited on went away without a log entry that covers this state:
            // released, past its deadline, or its claimant died.
            claim_expired = true;
        }
        let within = until(v.now, budget_end).max(MIN_SEND_BUDGET);
        let claim = self.p.me.as_ref().map(|me| Claim {
            group_key: self.p.group_key.clone(),
            receiver: self.p.receiver.clone(),
            sender: me.name.clone(),
            generation: me.generation,
            created: v.now,
            deadline: plus(v.now, self.p.attempt_timeout.unwrap_or(within).min(within)),
            released: false,
        });
        self.phase = Phase::Sending {
            claim: claim.clone().map(Box::new),
            look: look.clone(),
            released: false,
        };
        Step::Send {
            reason,
            claim,
            within,
            claim_expired,
        }
    }

    /// An attempt failed: returns the release to replicate, the first time, so the next replica
    /// tries at once instead of waiting on a claimant that cannot deliver.
    pub fn attempt_failed(&mut self, now: Timestamp) -> Option<Claim> {
        let Phase::Sending { claim, released, .. } = &mut self.phase else {
            return None;
        };
        if *released {
            return None;
        }
        *released = true;
        let mut c = Claim::clone(claim.as_ref()?);
        c.released = true;
        c.created = c.created.max(now);
        Some(c)
    }

    /// Before a retry: whether to try again. Stops once the log shows that what is being sent
    /// was delivered by a peer (one went ahead after our release).
    pub fn keep_trying(&self, v: &View<'_>) -> bool {
        match &self.phase {
            Phase::Sending { look, .. } => self.need(v.entry, look, v.now).is_some(),
            _ => false,
        }
    }

    /// The send succeeded: returns the sorted firing and resolved fingerprints to log.
    pub fn succeeded(&mut self) -> (Vec<u64>, Vec<u64>) {
        let Phase::Sending { look, .. } = std::mem::replace(&mut self.phase, Phase::Done) else {
            return (vec![], vec![]);
        };
        let mut f: Vec<u64> = look.firing.into_iter().collect();
        let mut r: Vec<u64> = look.resolved.into_iter().collect();
        f.sort_unstable();
        r.sort_unstable();
        (f, r)
    }

    /// The send gave up (deadline, fatal error, cancel): returns the release to replicate, if
    /// it was not released yet.
    pub fn failed(&mut self, now: Timestamp) -> Option<Claim> {
        let release = self.attempt_failed(now);
        self.phase = Phase::Done;
        release
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

    fn node(name: &str, generation: u64) -> NodeId {
        NodeId {
            name: name.into(),
            generation,
        }
    }

    fn params(me: &str, position: u32) -> Params {
        Params {
            me: Some(node(me, 1)),
            group_key: "{}:{}".into(),
            receiver: rk(),
            send_resolved: true,
            repeat_interval: Duration::from_secs(3600),
            peer_wait: Duration::from_secs(15) * position,
            tick: at(0),
            budget: Duration::from_secs(300),
            attempt_timeout: None,
        }
    }

    fn firing(h: &[u64]) -> Look {
        Look {
            firing: h.iter().copied().collect(),
            resolved: HashSet::new(),
        }
    }

    fn resolved(h: &[u64]) -> Look {
        Look {
            firing: HashSet::new(),
            resolved: h.iter().copied().collect(),
        }
    }

    fn entry(firing: &[u64], resolved: &[u64], ts: i64) -> Entry {
        Entry {
            group_key: "{}:{}".into(),
            receiver: rk(),
            timestamp: at(ts),
            firing_alerts: firing.to_vec(),
            resolved_alerts: resolved.to_vec(),
            expires_at: at(ts + 7200),
        }
    }

    /// Members alive, by name and generation.
    struct World {
        claims: Claims,
        entry: Option<Entry>,
        live: Vec<(String, u64)>,
    }

    impl World {
        fn new(live: &[(&str, u64)]) -> Self {
            World {
                claims: Claims::default(),
                entry: None,
                live: live.iter().map(|(n, g)| (n.to_string(), *g)).collect(),
            }
        }

        fn decide(&self, d: &mut Delivery, now: i64, look: &Look) -> Step {
            let live = |n: &str, g: u64| self.live.iter().any(|(m, h)| m == n && *h == g);
            let v = View {
                now: at(now),
                entry: self.entry.as_ref(),
                claims: &self.claims,
                live: &live,
            };
            d.decide(&v, look)
        }

        fn keep_trying(&self, d: &Delivery, now: i64) -> bool {
            let live = |_: &str, _: u64| true;
            d.keep_trying(&View {
                now: at(now),
                entry: self.entry.as_ref(),
                claims: &self.claims,
                live: &live,
            })
        }

        /// Runs the machine as the server does, with the same look every time, until it sends
        /// or stays quiet; returns the step and the virtual time.
        fn run(&self, d: &mut Delivery, mut now: i64, look: &Look) -> (Step, i64) {
            for _ in 0..10_000 {
                match self.decide(d, now, look) {
                    Step::Wait { duration, .. } => now += duration.as_secs().max(1) as i64,
                    s => return (s, now),
                }
            }
            panic!("the machine never decided");
        }
    }

    fn sends(s: &Step) -> bool {
        matches!(s, Step::Send { .. })
    }

    #[test]
    fn first_position_sends_at_once_and_claims() {
        let w = World::new(&[("a", 1), ("b", 1)]);
        let mut d = Delivery::new(params("a", 0), firing(&[1]));
        let s = w.decide(&mut d, 0, &firing(&[1]));
        let Step::Send { reason, claim, .. } = s else {
            panic!("{s:?}")
        };
        assert_eq!(reason, NotifyReason::FirstNotification);
        let c = claim.unwrap();
        assert_eq!((c.sender.as_str(), c.generation, c.created), ("a", 1, at(0)));
        assert_eq!(c.deadline, at(300), "no attempt timeout: the flush budget");
        assert_eq!(d.succeeded(), (vec![1], vec![]));
    }

    #[test]
    fn later_positions_wait_their_turn_then_find_the_entry() {
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut d = Delivery::new(params("b", 1), firing(&[1]));
        assert_eq!(
            w.decide(&mut d, 0, &firing(&[1])),
            Step::Wait {
                duration: Duration::from_secs(15),
                on_change: false,
                why: WaitReason::Position
            }
        );
        w.entry = Some(entry(&[1], &[], 0));
        assert_eq!(w.decide(&mut d, 15, &firing(&[1])), Step::Quiet);
    }

    #[test]
    fn a_claim_of_a_previous_generation_does_not_block() {
        // Bug: liveness was checked by name, so a replica restarted mid-send under the same
        // name (a StatefulSet pod) blocked every peer with its dead claim for group_interval.
        let mut w = World::new(&[("a", 2), ("b", 1)]);
        let mut dead = Delivery::new(params("a", 0), firing(&[1]));
        let Step::Send { claim: Some(c), .. } = w.decide(&mut dead, 0, &firing(&[1])) else {
            panic!()
        };
        assert!(w.claims.merge(c, at(0)));
        let mut d = Delivery::new(params("b", 1), firing(&[1]));
        let (s, t) = w.run(&mut d, 0, &firing(&[1]));
        assert!(sends(&s), "{s:?}");
        assert_eq!(t, 15, "at the position wait, not at the claim's deadline");
        // The same claim from the live generation blocks.
        w.live = vec![("a".into(), 1), ("b".into(), 1)];
        let mut d = Delivery::new(params("b", 1), firing(&[1]));
        assert!(matches!(w.run(&mut d, 0, &firing(&[1])), (Step::Send { .. }, 300)));
    }

    #[test]
    fn a_failing_claimant_releases_at_its_first_failed_attempt() {
        // Bug: the claim was released only when the claimant gave up at its deadline, so a
        // claimant that could not reach its receiver held every peer for group_interval.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut a = Delivery::new(params("a", 0), firing(&[1]));
        let Step::Send { claim: Some(c), .. } = w.decide(&mut a, 0, &firing(&[1])) else {
            panic!()
        };
        w.claims.merge(c, at(0));
        let release = a.attempt_failed(at(1)).expect("first failure releases");
        assert!(release.released);
        assert_eq!(a.attempt_failed(at(2)), None, "released once");
        w.claims.merge(release, at(1));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        let (s, t) = w.run(&mut b, 0, &firing(&[1]));
        assert!(
            matches!(
                s,
                Step::Send {
                    claim_expired: false,
                    ..
                }
            ),
            "{s:?}"
        );
        assert_eq!(t, 15);
        // a keeps retrying only until b's entry shows the delivery.
        assert!(w.keep_trying(&a, 10));
        w.entry = Some(entry(&[1], &[], 15));
        assert!(!w.keep_trying(&a, 16));
    }

    #[test]
    fn a_resolve_during_the_position_wait_is_left_to_the_next_tick() {
        // Bug: after the position wait the replica decided from the fresh snapshot alone. With
        // group_interval = peer_timeout, position 1 evaluated a resolve that arrived during its
        // wait at the moment position 0 sent it at its own next tick: two resolved
        // notifications. The tick look is already logged, so position 1 stays quiet.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[1], &[], -2));
        let mut p = params("b", 1);
        p.peer_wait = Duration::from_secs(2);
        let mut d = Delivery::new(p, firing(&[1]));
        assert!(matches!(w.decide(&mut d, 0, &firing(&[1])), Step::Wait { .. }));
        assert_eq!(w.decide(&mut d, 2, &resolved(&[1])), Step::Quiet);
    }

    #[test]
    fn a_resolve_during_a_claim_wait_is_not_sent_as_firing() {
        // Bug: after waiting on a claim the replica sent the alerts taken before the wait.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut a = Delivery::new(params("a", 0), firing(&[1]));
        let Step::Send { claim: Some(c), .. } = w.decide(&mut a, 0, &firing(&[1])) else {
            panic!()
        };
        w.claims.merge(c, at(0));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        assert!(matches!(w.decide(&mut b, 0, &firing(&[1])), Step::Wait { .. }));
        assert!(matches!(
            w.decide(&mut b, 15, &firing(&[1])),
            Step::Wait {
                why: WaitReason::PeerClaim { .. },
                ..
            }
        ));
        // The alert resolves at 20; a gives up at 30 without logging.
        let release = a.failed(at(30)).unwrap();
        w.claims.merge(release, at(30));
        assert_eq!(
            w.decide(&mut b, 31, &resolved(&[1])),
            Step::Quiet,
            "nothing firing was notified"
        );
    }

    #[test]
    fn a_claim_fulfilled_by_the_log_ends_the_wait_without_a_send() {
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut a = Delivery::new(params("a", 0), firing(&[1]));
        let Step::Send { claim: Some(c), .. } = w.decide(&mut a, 0, &firing(&[1])) else {
            panic!()
        };
        w.claims.merge(c, at(0));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        w.decide(&mut b, 0, &firing(&[1]));
        assert!(matches!(
            w.decide(&mut b, 15, &firing(&[1])),
            Step::Wait { on_change: true, .. }
        ));
        w.entry = Some(entry(&[1], &[], 20));
        assert_eq!(w.decide(&mut b, 20, &firing(&[1])), Step::Quiet);
    }

    #[test]
    fn no_claim_blocks_longer_than_the_flush_budget() {
        // A live member's claim with a deadline in 9999 (a bug or a forgery) delays the send by
        // the flush budget at most; the send then still gets its minimum time.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.claims.merge(
            Claim {
                group_key: "{}:{}".into(),
                receiver: rk(),
                sender: "a".into(),
                generation: 1,
                created: at(0),
                deadline: "9999-01-01T00:00:00Z".parse().unwrap(),
                released: false,
            },
            at(0),
        );
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        let (s, t) = w.run(&mut b, 0, &firing(&[1]));
        assert_eq!(t, 300);
        assert!(
            matches!(s, Step::Send { within, claim_expired: true, .. } if within == MIN_SEND_BUDGET),
            "{s:?}"
        );
    }

    #[test]
    fn the_claim_deadline_is_the_first_attempt_bound() {
        let w = World::new(&[("a", 1)]);
        let mut p = params("a", 0);
        p.attempt_timeout = Some(Duration::from_secs(5));
        let mut d = Delivery::new(p, firing(&[1]));
        let Step::Send { claim: Some(c), .. } = w.decide(&mut d, 0, &firing(&[1])) else {
            panic!()
        };
        assert_eq!(c.deadline, at(5));
    }

    #[test]
    fn alone_there_is_no_claim_and_a_new_alert_during_the_wait_waits_for_the_next_tick() {
        let mut w = World::new(&[]);
        let mut p = params("x", 0);
        p.me = None;
        let mut d = Delivery::new(p, firing(&[1]));
        assert!(matches!(
            w.decide(&mut d, 0, &firing(&[1])),
            Step::Send { claim: None, .. }
        ));
        // Position 1 with alert 1 logged; alert 2 joins during the wait: next tick's business.
        w.entry = Some(entry(&[1], &[], 0));
        let mut d = Delivery::new(params("b", 1), firing(&[1]));
        w.decide(&mut d, 0, &firing(&[1]));
        assert_eq!(w.decide(&mut d, 15, &firing(&[1, 2])), Step::Quiet);
    }

    #[test]
    fn a_new_firing_alert_is_sent_with_the_fresh_look() {
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[1], &[], -100));
        let mut d = Delivery::new(params("b", 1), firing(&[1, 2]));
        w.decide(&mut d, 0, &firing(&[1, 2]));
        let s = w.decide(&mut d, 15, &firing(&[1, 2, 3]));
        assert!(
            matches!(
                s,
                Step::Send {
                    reason: NotifyReason::NewAlertsAdded,
                    ..
                }
            ),
            "{s:?}"
        );
        assert_eq!(d.succeeded(), (vec![1, 2, 3], vec![]));
    }
}
