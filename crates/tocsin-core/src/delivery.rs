//! The delivery decision of one flush of one group to one integration, as a state machine.
//!
//! The server feeds it what it sees (`now`, the log entry, the claims, who is alive, a fresh
//! look at the group) and executes what it answers: wait, stay quiet, claim and send, release,
//! log. It owns every rule of the HA stagger (§3.3 stage 6 and §4.5) that used to live in async
//! glue:
//!
//! - **Position wait.** The replica at position k first waits `k × peer_timeout`.
//! - **Newer entries win.** A log entry written after this replica's tick means a peer decided
//!   later, from a fresher look: the replica stays quiet. Only an entry dated at most
//!   [`TRUSTED_SKEW`] past this replica's `now` counts: one from further ahead comes from a
//!   clock that stepped forward (a resume from suspend) or lies, and is judged by its content
//!   alone, as Alertmanager judges every entry (tocsin-chaos seed 83: a replica whose clock
//!   jumped 39 minutes ahead logged a resolve, and every replica then stayed quiet about the
//!   alert firing again).
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
//!   keeps retrying only while the log does not show that a peer delivered. A claimant waits
//!   [`CLAIM_SETTLE`] after replicating its claim and yields to an earlier competing claim:
//!   replicas whose group timers are out of phase can decide within one push's latency.
//! - **Bounds.** A claim's deadline is its first attempt's bound (the integration's timeout,
//!   else the flush budget). A replica honours every claim until its tick + two flush budgets
//!   (`group_interval`, at least 10 s, each): the replicas' group timers are not in phase, and
//!   a claimant that ticked up to one budget after us may hold its claim for one budget more.
//!   Past that bound it ignores the claims it already waited on, but still honours claims made
//!   after them (replicas that reach their bounds together settle on one sender: tocsin-chaos
//!   seed 86519); at tick + three budgets it sends whatever peers claim. A stuck or forged
//!   claim delays delivery by at most that, never for ever.
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

/// How long a claimant waits after replicating its claim before it sends: longer than a push
/// takes between replicas, so that two replicas that decided within that time both see each
/// other's claim, and only the earlier one (then the lower name) sends.
pub const CLAIM_SETTLE: Duration = Duration::from_millis(200);

/// How far ahead of this replica's clock a peer's log entry may be dated and still be taken as
/// written after this replica's tick: clocks of one cluster agree far better than this under
/// NTP, and a larger gap is a step or a forgery that must not silence the group.
pub const TRUSTED_SKEW: Duration = Duration::from_secs(5);

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
    /// Replicate this claim, sleep `settle`, then call [`Delivery::decide`] again.
    Claim {
        /// The claim.
        claim: Claim,
        /// How long to wait before deciding again.
        settle: Duration,
    },
    /// Send the fresh look's alerts within `within`.
    Send {
        /// Alertmanager's notification reason.
        reason: NotifyReason,
        /// The send's deadline, from now.
        within: Duration,
        /// Whether a peer's claim was given up on (its deadline or our budget passed).
        claim_expired: bool,
    },
}

/// The log entry a successful send writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// Firing fingerprints, sorted.
    pub firing: Vec<u64>,
    /// Resolved fingerprints, sorted.
    pub resolved: Vec<u64>,
    /// The entry's timestamp.
    pub at: Timestamp,
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
    Claimed,
    Sending { look: Look, since: Timestamp },
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
    /// The claimant (name, generation) being waited on, and when its claim was made.
    waited_on: Option<(String, u64, Timestamp)>,
    /// A claimant went away without logging or releasing (it died, or outlived its deadline):
    /// it may have delivered, so the receiver's state is unknown — until a log entry written
    /// after that claim was made says what the receiver got last. The latest such claim's
    /// creation.
    unknown_since: Option<Timestamp>,
    /// A wait happened: looks passed since may differ from the tick's.
    waited: bool,
    /// Our claim, replicated and neither released nor fulfilled yet.
    claimed: Option<Box<Claim>>,
    /// The claims (claimant, generation, creation) that blocked this flush before its honour
    /// bound: they have had their due, and past the bound only other claims are honoured. By
    /// identity, not by date: a claim dated ahead by its claimant's clock must not make every
    /// later claim look older (tocsin-chaos seed 86519 again).
    given_due: Vec<(String, u64, Timestamp)>,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Rounds up to a whole millisecond.
fn ceil_ms(t: Timestamp) -> Timestamp {
    let ms = t.as_millisecond();
    let down = Timestamp::from_millisecond(ms).unwrap_or(t);
    if down < t {
        Timestamp::from_millisecond(ms + 1).unwrap_or(t)
    } else {
        down
    }
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
            waited_on: None,
            unknown_since: None,
            waited: false,
            claimed: None,
            given_due: Vec::new(),
        }
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

    /// Remembers that what a claim made at `t` delivered is unknown. A claim dated past
    /// [`TRUSTED_SKEW`] from `now` (its claimant's clock is ahead) counts as made now: any
    /// entry logged from now on is later (tocsin-chaos seed 59067: a claimant 55 s ahead would
    /// otherwise have kept the outcome unknown for 55 s, and three replicas sent once more).
    fn unknown_at(&mut self, t: Timestamp, now: Timestamp) {
        let t = t.min(plus(now, TRUSTED_SKEW));
        self.unknown_since = Some(self.unknown_since.map_or(t, |u| u.max(t)));
    }

    /// Whether a peer's claim blocks this send. Once we hold a claim, only claims made before it
    /// (then by a lower name) block.
    fn blocks(&self, c: &Claim, v: &View<'_>) -> bool {
        let Some(me) = self.p.me.as_ref() else { return false };
        let ours = self.claimed.as_deref();
        let mine = c.sender == me.name && c.generation == me.generation;
        let earlier = ours.is_none_or(|o| (c.created, &c.sender) < (o.created, &o.sender));
        !mine
            && earlier
            && !c.released
            && c.deadline > v.now
            && v.entry.is_none_or(|e| e.timestamp < c.created)
            && (v.live)(&c.sender, c.generation)
    }

    /// The peer claim that blocks this send and is still honoured, if any (the one held
    /// longest), and whether any claim blocks at all. Before `honour_until` every blocking
    /// claim is honoured; from then until `hard_stop` only claims other than those that
    /// blocked before the bound (replicas that reach their bounds together still settle on
    /// one sender); past `hard_stop`, none.
    fn blocking<'c>(&self, v: &View<'c>, honour_until: Timestamp, hard_stop: Timestamp) -> (Option<&'c Claim>, bool) {
        let mut any = false;
        let honoured = v
            .claims
            .of(&self.p.group_key, &self.p.receiver)
            .filter(|c| self.blocks(c, v))
            .inspect(|_| any = true)
            .filter(|c| v.now < honour_until || (v.now < hard_stop && !self.had_its_due(c)))
            .max_by_key(|c| c.deadline);
        (honoured, any)
    }

    fn had_its_due(&self, c: &Claim) -> bool {
        self.given_due
            .iter()
            .any(|(n, g, t)| *n == c.sender && *g == c.generation && *t == c.created)
    }

    /// Decides with a fresh view and, after a wait, a fresh look at the group (`None`: the
    /// tick's look still stands, as before any wait; it is not copied).
    pub fn decide(&mut self, v: &View<'_>, look: Option<&Look>) -> Step {
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
        if !matches!(self.phase, Phase::Deciding | Phase::Claimed) {
            return Step::Quiet;
        }
        // A peer logged a send after our tick: its look was newer than our tick's, so our tick
        // is handled, and what its entry lacks is the next tick's business. Judging our older
        // tick look against its newer entry would "resolve" alerts it just notified firing.
        if v.entry
            .is_some_and(|e| e.timestamp > self.p.tick && e.timestamp <= plus(v.now, TRUSTED_SKEW))
        {
            self.phase = Phase::Done;
            return Step::Quiet;
        }
        let Some(_) = self.need(v.entry, &self.tick_look, v.now) else {
            self.phase = Phase::Done;
            return Step::Quiet;
        };
        let budget_end = plus(self.p.tick, self.p.budget);
        let honour_until = plus(budget_end, self.p.budget);
        let hard_stop = plus(honour_until, self.p.budget);
        let mut claim_expired = false;
        // The claimant we waited on is gone: released (its send failed, the log stands) or not
        // (it died or outlived its deadline, and may have delivered). Remembered for the rest of
        // the flush, whoever we wait on next (tocsin-chaos seed 70423: a claimant killed after
        // its receiver got "firing", the next one failing and releasing).
        if let Some((n, g, created)) = self.waited_on.take() {
            let mut theirs = v
                .claims
                .of(&self.p.group_key, &self.p.receiver)
                .filter(|c| c.sender == n && c.generation == g);
            let unknown = match theirs.next() {
                Some(c) if self.blocks(c, v) => {
                    self.waited_on = Some((n.clone(), g, c.created));
                    None
                }
                Some(c) if c.released || v.entry.is_some_and(|e| e.timestamp >= c.created) => None,
                Some(c) => Some(c.created),
                None => Some(created),
            };
            drop(theirs);
            if let Some(t) = unknown {
                self.unknown_at(t, v.now);
            }
        }
        // Any peer's claim on this integration that ended the same way, waited on or not (seed
        // 70423 again: a replica that decided after the claimant had died): while no log entry
        // covers it, what the receiver holds is unknown.
        let me = self.p.me.as_ref();
        let dead = v
            .claims
            .of(&self.p.group_key, &self.p.receiver)
            .filter(|c| {
                let mine = me.is_some_and(|m| c.sender == m.name && c.generation == m.generation);
                !mine
                    && !c.released
                    && v.entry.is_none_or(|e| e.timestamp < c.created)
                    && (c.deadline <= v.now || !(v.live)(&c.sender, c.generation))
            })
            .map(|c| c.created)
            .max();
        if let Some(t) = dead {
            self.unknown_at(t, v.now);
        }
        // A live claim is waited on even when the fresh look needs nothing: the claimant is
        // sending a state we do not know, and if it dies before logging, what the receiver
        // holds is unknown.
        let (honoured, any_blocks) = self.blocking(v, honour_until, hard_stop);
        if let Some(c) = honoured {
            if v.now < honour_until {
                let blocking: Vec<_> = v
                    .claims
                    .of(&self.p.group_key, &self.p.receiver)
                    .filter(|c| self.blocks(c, v) && !self.had_its_due(c))
                    .map(|c| (c.sender.clone(), c.generation, c.created))
                    .collect();
                self.given_due.extend(blocking);
            }
            (self.waited_on_claim, self.waited) = (true, true);
            self.waited_on = Some((c.sender.clone(), c.generation, c.created));
            self.phase = Phase::Deciding;
            let bound = if v.now < honour_until { honour_until } else { hard_stop };
            let left = until(v.now, c.deadline.min(bound));
            return Step::Wait {
                duration: left.min(CLAIM_RECHECK).max(Duration::from_millis(1)),
                on_change: true,
                why: WaitReason::PeerClaim {
                    claimant: c.sender.clone(),
                },
            };
        } else if any_blocks {
            claim_expired = true;
        } else if self.waited_on_claim {
            // The claim we waited on went away without a log entry that covers this state:
            // released, past its deadline, or its claimant died.
            claim_expired = true;
        }
        // Before any wait the look is the tick's: one evaluation serves both.
        let fresh = match look {
            Some(l) if self.waited => self.need(v.entry, l, v.now),
            _ => self.need(v.entry, &self.tick_look, v.now),
        };
        let changed = look.is_some_and(|l| *l != self.tick_look);
        // After a claim ended without a log entry, the claimant may or may not have delivered
        // about our tick's state (found by tocsin-chaos, seed 4468: a claimant killed after its
        // receiver got "resolved", the alert firing again, and the log still saying "firing").
        // A fresh look that differs from the tick's is then sent even when the log says it was
        // notified: a duplicate at worst, never a silence. A claimant that released its claim
        // reported a failure, and the log stands.
        // A log entry written after the unknown claim was made (a peer delivered since) says
        // again what the receiver got last (tocsin-chaos seed 59067: three replicas that had
        // waited out a dead claimant each sent the state a fourth had just logged).
        let unknown = changed
            && self
                .unknown_since
                .is_some_and(|t| v.entry.is_none_or(|e| e.timestamp < t));
        let reason = match fresh {
            Some(r) => r,
            None if unknown && look.is_some_and(|l| l.firing.is_empty()) => NotifyReason::AllAlertsResolved,
            None if unknown => NotifyReason::NewAlertsAdded,
            None => {
                self.phase = Phase::Done;
                return Step::Quiet;
            }
        };
        let within = until(v.now, budget_end).max(MIN_SEND_BUDGET);
        if let (Phase::Deciding, Some(me)) = (&self.phase, &self.p.me) {
            let claim = self.new_claim(me, v, within);
            self.claimed = Some(Box::new(claim.clone()));
            (self.phase, self.waited) = (Phase::Claimed, true);
            return Step::Claim {
                claim,
                settle: CLAIM_SETTLE,
            };
        }
        // What is sent is logged: the fresh look, or the tick's, which is not needed any more.
        let sent = match look {
            Some(l) => l.clone(),
            None => std::mem::take(&mut self.tick_look),
        };
        self.phase = Phase::Sending {
            look: sent,
            since: v.now,
        };
        Step::Send {
            reason,
            within,
            claim_expired,
        }
    }

    fn new_claim(&self, me: &NodeId, v: &View<'_>, within: Duration) -> Claim {
        // A claim is fulfilled by a log entry written at or after it, so it must be created
        // strictly after the entry it is about to supersede: on a whole millisecond (claims
        // travel in ms) past that entry. Sent at the same instant, it would look fulfilled.
        let created = v
            .entry
            .map_or(v.now, |e| v.now.max(plus(e.timestamp, Duration::from_millis(1))));
        let created = ceil_ms(created);
        Claim {
            group_key: self.p.group_key.clone(),
            receiver: self.p.receiver.clone(),
            sender: me.name.clone(),
            generation: me.generation,
            created,
            deadline: plus(created, self.p.attempt_timeout.unwrap_or(within).min(within)),
            released: false,
        }
    }

    /// Gives up our claim, if one is outstanding: returns the release to replicate. Called when
    /// the flush ends without a send (quiet, cancelled, the group gone) and after a failure.
    pub fn abandon(&mut self, now: Timestamp) -> Option<Claim> {
        let mut c = *self.claimed.take()?;
        c.released = true;
        c.created = c.created.max(now);
        Some(c)
    }

    /// An attempt failed: returns the release to replicate, the first time, so the next replica
    /// tries at once instead of waiting on a claimant that cannot deliver.
    pub fn attempt_failed(&mut self, now: Timestamp) -> Option<Claim> {
        self.abandon(now)
    }

    /// Before a retry: whether to try again. Stops once the log shows that a peer delivered
    /// after this send began, or a live peer claimed after it (one went ahead after our
    /// release): its look was at least as fresh as ours, and retrying ours could deliver a
    /// firing state after its resolved one. What it lacks, or fails to deliver, the next tick
    /// notifies.
    pub fn keep_trying(&self, v: &View<'_>) -> bool {
        match &self.phase {
            Phase::Sending { look, since } => {
                let taken_over = self.p.me.as_ref().is_some_and(|me| {
                    v.claims.of(&self.p.group_key, &self.p.receiver).any(|c| {
                        c.sender != me.name
                            && !c.released
                            && c.created > *since
                            && c.deadline > v.now
                            && (v.live)(&c.sender, c.generation)
                    })
                });
                !taken_over && v.entry.is_none_or(|e| e.timestamp < *since) && self.need(v.entry, look, v.now).is_some()
            }
            _ => false,
        }
    }

    /// The send succeeded: returns what to log, the sorted firing and resolved fingerprints and
    /// the entry's timestamp: `now`, but never before the claim it fulfils.
    pub fn succeeded(&mut self, now: Timestamp) -> Logged {
        let claim = self.claimed.take();
        let Phase::Sending { look, .. } = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Logged {
                firing: vec![],
                resolved: vec![],
                at: now,
            };
        };
        let mut firing: Vec<u64> = look.firing.into_iter().collect();
        let mut resolved: Vec<u64> = look.resolved.into_iter().collect();
        firing.sort_unstable();
        resolved.sort_unstable();
        Logged {
            firing,
            resolved,
            at: claim.map_or(now, |c| now.max(c.created)),
        }
    }

    /// The send gave up (deadline, fatal error, cancel): returns the release to replicate, if
    /// it was not released yet.
    pub fn failed(&mut self, now: Timestamp) -> Option<Claim> {
        self.phase = Phase::Done;
        self.abandon(now)
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

    fn params(me: &str, position: u32) -> Params {
        Params {
            me: Some(NodeId {
                name: me.into(),
                generation: 1,
            }),
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
            receiver_data: Default::default(),
        }
    }

    /// What one replica sees: claims, the log entry, members alive by name and generation.
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

        fn view<T>(&self, now: i64, f: impl FnOnce(&View<'_>) -> T) -> T {
            let live = |n: &str, g: u64| self.live.iter().any(|(m, h)| m == n && *h == g);
            f(&View {
                now: at(now),
                entry: self.entry.as_ref(),
                claims: &self.claims,
                live: &live,
            })
        }

        /// One decision; a claim it makes is replicated at once.
        fn decide(&mut self, d: &mut Delivery, now: i64, look: &Look) -> Step {
            let step = self.view(now, |v| d.decide(v, Some(look)));
            if let Step::Claim { claim, .. } = &step {
                self.claims.merge(claim.clone(), at(now));
            }
            step
        }

        /// Decides until the machine sends or stays quiet, with the same look every time;
        /// returns the step, the claim it made if any, and the virtual time.
        fn run(&mut self, d: &mut Delivery, mut now: i64, look: &Look) -> (Step, Option<Claim>, i64) {
            let mut claim = None;
            for _ in 0..10_000 {
                match self.decide(d, now, look) {
                    Step::Wait { duration, .. } => now += duration.as_secs().max(1) as i64,
                    Step::Claim { claim: c, .. } => claim = Some(c),
                    s => return (s, claim, now),
                }
            }
            panic!("the machine never decided");
        }

        fn keep_trying(&self, d: &Delivery, now: i64) -> bool {
            self.view(now, |v| d.keep_trying(v))
        }
    }

    fn sends(s: &Step) -> bool {
        matches!(s, Step::Send { .. })
    }

    #[test]
    fn first_position_claims_settles_and_sends() {
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut d = Delivery::new(params("a", 0), firing(&[1]));
        let Step::Claim { claim: c, settle } = w.decide(&mut d, 0, &firing(&[1])) else {
            panic!()
        };
        assert_eq!(settle, CLAIM_SETTLE);
        assert_eq!((c.sender.as_str(), c.generation, c.created), ("a", 1, at(0)));
        assert_eq!(c.deadline, at(300), "no attempt timeout: the flush budget");
        let s = w.decide(&mut d, 0, &firing(&[1]));
        assert!(
            matches!(
                s,
                Step::Send {
                    reason: NotifyReason::FirstNotification,
                    ..
                }
            ),
            "{s:?}"
        );
        let logged = d.succeeded(at(0));
        assert_eq!((logged.firing, logged.at), (vec![1], at(0)));
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
        w.run(&mut dead, 0, &firing(&[1]));
        let mut d = Delivery::new(params("b", 1), firing(&[1]));
        let (s, _, t) = w.run(&mut d, 0, &firing(&[1]));
        assert!(sends(&s), "{s:?}");
        assert_eq!(t, 15, "at the position wait, not at the claim's deadline");
        // The same claim from the live generation blocks until its deadline.
        w.live = vec![("a".into(), 1), ("b".into(), 1)];
        let mut d = Delivery::new(params("b", 1), firing(&[1]));
        let (s, _, t) = w.run(&mut d, 0, &firing(&[1]));
        assert!(sends(&s));
        assert_eq!(t, 300);
    }

    #[test]
    fn a_failing_claimant_releases_at_its_first_failed_attempt() {
        // Bug: the claim was released only when the claimant gave up at its deadline, so a
        // claimant that could not reach its receiver held every peer for group_interval.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut a = Delivery::new(params("a", 0), firing(&[1]));
        assert!(sends(&w.run(&mut a, 0, &firing(&[1])).0));
        let release = a.attempt_failed(at(1)).expect("first failure releases");
        assert!(release.released);
        assert_eq!(a.attempt_failed(at(2)), None, "released once");
        w.claims.merge(release, at(1));
        assert!(w.keep_trying(&a, 1), "alone with its release, a keeps trying");
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        let (s, _, t) = w.run(&mut b, 0, &firing(&[1]));
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
        // a stops retrying once b took over: b's live claim made after a's send began (seed
        // 848 of tocsin-chaos: a slow peer's notification under way, its entry not yet
        // written) or b's entry.
        assert!(!w.keep_trying(&a, 16));
        w.claims = Claims::default();
        assert!(w.keep_trying(&a, 16));
        w.entry = Some(entry(&[1], &[], 15));
        assert!(!w.keep_trying(&a, 16));
        // Even when b's entry is of a newer state (the alert resolved meanwhile): a retry of
        // a's "firing" would arrive after b's "resolved".
        w.entry = Some(entry(&[], &[1], 15));
        assert!(!w.keep_trying(&a, 16));
        w.entry = Some(entry(&[], &[1], -5));
        assert!(w.keep_trying(&a, 16), "an entry older than the send does not stop it");
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
        w.run(&mut a, 0, &firing(&[1]));
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
        w.run(&mut a, 0, &firing(&[1]));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        w.decide(&mut b, 0, &firing(&[1]));
        assert!(matches!(
            w.decide(&mut b, 15, &firing(&[1])),
            Step::Wait { on_change: true, .. }
        ));
        w.entry = Some(entry(&[1], &[], 0));
        assert_eq!(w.decide(&mut b, 20, &firing(&[1])), Step::Quiet);
    }

    #[test]
    fn a_claim_made_at_the_instant_of_the_previous_entry_still_blocks() {
        // Found by tocsin-chaos (seed 11): a claimant whose pending flush started the instant
        // its previous send was logged made a claim with the entry's timestamp, which peers
        // took as already fulfilled, and sent a duplicate.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[1], &[], 0));
        let mut a = Delivery::new(params("a", 0), firing(&[1, 2]));
        let (_, Some(c), _) = w.run(&mut a, 0, &firing(&[1, 2])) else {
            panic!()
        };
        assert!(c.created > at(0));
        let mut p = params("b", 1);
        p.peer_wait = Duration::ZERO;
        let mut b = Delivery::new(p, firing(&[1, 2]));
        assert!(matches!(
            w.decide(&mut b, 0, &firing(&[1, 2])),
            Step::Wait { on_change: true, .. }
        ));
        // Its own entry, logged at once, fulfils it.
        let logged = a.succeeded(at(0));
        assert_eq!(logged.at, c.created);
        let mut e = entry(&[1, 2], &[], 0);
        e.timestamp = logged.at;
        w.entry = Some(e);
        assert_eq!(w.decide(&mut b, 1, &firing(&[1, 2])), Step::Quiet);
    }

    #[test]
    fn of_two_claims_made_within_the_settle_time_only_the_earlier_sends() {
        // Found by tocsin-chaos (seeds 157, 213, 233): replicas whose group timers are out of
        // phase decided at the same instant, each before the other's claim arrived, and both
        // sent. Each now waits CLAIM_SETTLE after claiming; the later (then higher-named)
        // claimant yields and waits on the earlier claim.
        // Each decides before the other's claim arrives: two views, then the claims cross.
        let (mut wa, mut wb) = (World::new(&[("a", 1), ("b", 1)]), World::new(&[("a", 1), ("b", 1)]));
        let mut a = Delivery::new(params("a", 0), firing(&[1]));
        let mut b = Delivery::new(params("b", 0), firing(&[1]));
        let Step::Claim { claim: cb, .. } = wb.decide(&mut b, 0, &firing(&[1])) else {
            panic!()
        };
        let Step::Claim { claim: ca, .. } = wa.decide(&mut a, 0, &firing(&[1])) else {
            panic!()
        };
        wa.claims.merge(cb, at(0));
        wb.claims.merge(ca, at(0));
        // Same instant: the lower name wins.
        assert!(sends(&wa.decide(&mut a, 0, &firing(&[1]))));
        assert!(matches!(
            wb.decide(&mut b, 0, &firing(&[1])),
            Step::Wait {
                why: WaitReason::PeerClaim { ref claimant },
                ..
            } if claimant == "a"
        ));
        // a delivers and logs; b stays quiet and gives up its claim.
        let logged = a.succeeded(at(0));
        let mut e = entry(&logged.firing, &[], 0);
        e.timestamp = logged.at;
        wb.entry = Some(e);
        assert_eq!(wb.decide(&mut b, 1, &firing(&[1])), Step::Quiet);
        assert!(b.abandon(at(1)).is_some_and(|r| r.released && r.sender == "b"));
    }

    #[test]
    fn an_entry_newer_than_the_tick_wins() {
        // Found by tocsin-chaos (seed 101): position 4 ticked at 0 with only resolved alerts,
        // position 0 notified a new firing alert at 10; at 12 position 4 judged its old look
        // ("all resolved") against that entry and sent, and so did position 3.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        let mut d = Delivery::new(params("b", 1), resolved(&[1, 2]));
        w.decide(&mut d, 0, &resolved(&[1, 2]));
        w.entry = Some(entry(&[3], &[2], 10));
        let fresh = Look {
            firing: [3].into(),
            resolved: [1, 2].into(),
        };
        assert_eq!(w.decide(&mut d, 15, &fresh), Step::Quiet);
    }

    #[test]
    fn an_entry_from_a_clock_far_ahead_is_judged_by_its_content() {
        // tocsin-chaos seed 83: a's clock stepped 2,330 s ahead and it logged "a0 resolved".
        // When a0 fired again every replica found that entry "newer than its tick" and stayed
        // quiet for the rest of the run. Judged by content, the new firing state is sent.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[], &[1], 2_330));
        let mut b = Delivery::new(params("b", 0), firing(&[1]));
        assert!(sends(&w.run(&mut b, 100, &firing(&[1])).0));
        // Within the trusted skew the entry still wins (a peer a little ahead that decided later).
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[], &[1], 104));
        let mut b = Delivery::new(params("b", 0), firing(&[1]));
        assert_eq!(w.decide(&mut b, 100, &firing(&[1])), Step::Quiet);
    }

    #[test]
    fn a_claimant_that_dies_before_logging_leaves_the_receiver_unknown() {
        // tocsin-chaos seed 4468: a was notifying "resolved" (the log said "firing"), died
        // after its receiver got it and before logging; the alert fired again meanwhile. The
        // log still says "firing", but the receiver may hold "resolved": b sends the fresh
        // "firing" instead of staying quiet.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[1], &[], -30));
        let mut a = Delivery::new(params("a", 0), resolved(&[1]));
        assert!(sends(&w.run(&mut a, 0, &resolved(&[1])).0));
        let mut b = Delivery::new(params("b", 1), resolved(&[1]));
        w.decide(&mut b, 0, &resolved(&[1]));
        // At 15 the alert fires again: the log says nothing is new, but a's claim is live.
        assert!(matches!(
            w.decide(&mut b, 15, &firing(&[1])),
            Step::Wait { on_change: true, .. }
        ));
        w.live = vec![("b".into(), 1)];
        let (s, _, _) = w.run(&mut b, 20, &firing(&[1]));
        assert!(
            matches!(
                s,
                Step::Send {
                    claim_expired: true,
                    ..
                }
            ),
            "{s:?}"
        );
        // Had the look not changed, the log would decide as usual.
        let mut w = World::new(&[("a", 1), ("b", 1)]);
        w.entry = Some(entry(&[1], &[], -30));
        let mut a = Delivery::new(params("a", 0), firing(&[1, 2]));
        w.run(&mut a, 0, &firing(&[1, 2]));
        let mut b = Delivery::new(params("b", 1), firing(&[1, 2]));
        w.decide(&mut b, 0, &firing(&[1, 2]));
        w.decide(&mut b, 15, &firing(&[1, 2]));
        w.live = vec![("b".into(), 1)];
        assert!(
            sends(&w.run(&mut b, 20, &firing(&[1, 2])).0),
            "the tick's state is still not logged"
        );
    }

    #[test]
    fn a_send_logged_after_the_unknown_claim_says_what_the_receiver_got() {
        // tocsin-chaos seed 59067: b waited on a's claim; a died without logging, so what its
        // receiver got is unknown. Then c delivered the fresh state and logged it: the log is
        // news again, and b, whose look changed during its wait, stays quiet instead of
        // sending c's state once more.
        let mut w = World::new(&[("a", 1), ("b", 1), ("c", 1)]);
        w.entry = Some(entry(&[1], &[], -30));
        let mut a = Delivery::new(params("a", 0), firing(&[1, 2]));
        assert!(sends(&w.run(&mut a, 0, &firing(&[1, 2])).0));
        let mut b = Delivery::new(params("b", 1), firing(&[1, 2]));
        w.decide(&mut b, 0, &firing(&[1, 2]));
        assert!(matches!(
            w.decide(&mut b, 15, &firing(&[1, 2, 3])),
            Step::Wait { on_change: true, .. }
        ));
        w.live = vec![("b".into(), 1), ("c".into(), 1)];
        w.entry = Some(entry(&[1, 2, 3], &[], 16));
        assert_eq!(w.decide(&mut b, 17, &firing(&[1, 2, 3])), Step::Quiet);
    }

    #[test]
    fn an_unknown_outcome_is_remembered_across_the_next_claimants() {
        // tocsin-chaos seed 70423: a's receiver got "firing", a died before logging; b then
        // claimed, failed and released. c must still notify the resolve: the receiver may hold
        // a's "firing", whatever b's failure says.
        let mut w = World::new(&[("a", 1), ("b", 1), ("c", 1)]);
        let mut a = Delivery::new(params("a", 0), firing(&[1]));
        w.run(&mut a, 0, &firing(&[1]));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        w.decide(&mut b, 0, &firing(&[1]));
        assert!(matches!(
            w.decide(&mut b, 15, &firing(&[1])),
            Step::Wait { on_change: true, .. }
        ));
        let mut c = Delivery::new(params("c", 2), firing(&[1]));
        w.decide(&mut c, 0, &firing(&[1]));
        assert!(matches!(
            w.decide(&mut c, 30, &firing(&[1])),
            Step::Wait { on_change: true, .. }
        ));
        // a dies; the alert has resolved.
        w.live = vec![("b".into(), 1), ("c".into(), 1)];
        assert!(sends(&w.run(&mut b, 31, &resolved(&[1])).0));
        assert!(
            matches!(w.decide(&mut c, 31, &resolved(&[1])), Step::Wait { .. }),
            "b's claim"
        );
        let release = b.attempt_failed(at(32)).unwrap();
        w.claims.merge(release, at(32));
        let (s, _, _) = w.run(&mut c, 33, &resolved(&[1]));
        assert!(
            matches!(
                s,
                Step::Send {
                    reason: NotifyReason::AllAlertsResolved,
                    ..
                }
            ),
            "{s:?}"
        );
    }

    #[test]
    fn no_claim_blocks_longer_than_two_flush_budgets() {
        // A live member's claim with a deadline in 9999 (a bug or a forgery) delays the send by
        // two flush budgets at most; the send then still gets its minimum time.
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
        let (s, _, t) = w.run(&mut b, 0, &firing(&[1]));
        assert_eq!(t, 600);
        assert!(
            matches!(s, Step::Send { within, claim_expired: true, .. } if within == MIN_SEND_BUDGET),
            "{s:?}"
        );
    }

    fn stuck(sender: &str, created: i64) -> Claim {
        Claim {
            group_key: "{}:{}".into(),
            receiver: rk(),
            sender: sender.into(),
            generation: 1,
            created: at(created),
            deadline: "9999-01-01T00:00:00Z".parse().unwrap(),
            released: false,
        }
    }

    #[test]
    fn replicas_reaching_their_bound_together_still_settle_on_one_sender() {
        // Found by tocsin-chaos (seed 86519 of a 100k run): two replicas that had waited on a
        // slow claimant reached their honour bound in the same instant; past the bound each
        // ignored every claim, its twin's too, and both sent. The claims made at the bound are
        // not the one they gave up on, so the settle tie-break still picks one. The slow
        // claimant's clock may be ahead (in the seed, by 286 s): its claim, dated after the
        // bound, must not hide the claims made at the bound.
        for created in [0, 700] {
            bound_twins_settle(created);
        }
    }

    fn bound_twins_settle(stuck_created: i64) {
        let live = [("a", 1), ("b", 1), ("s", 1)];
        let (mut wa, mut wb) = (World::new(&live), World::new(&live));
        wa.claims.merge(stuck("s", stuck_created), at(0));
        wb.claims.merge(stuck("s", stuck_created), at(0));
        let mut a = Delivery::new(params("a", 1), firing(&[1]));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        let step_to_claim = |w: &mut World, d: &mut Delivery| {
            let mut now = 0;
            loop {
                match w.decide(d, now, &firing(&[1])) {
                    Step::Wait { duration, .. } => now += duration.as_secs().max(1) as i64,
                    Step::Claim { claim, .. } => return (claim, now),
                    s => panic!("{s:?} at {now}"),
                }
            }
        };
        let (ca2, t) = step_to_claim(&mut wa, &mut a);
        let (cb2, _) = step_to_claim(&mut wb, &mut b);
        // Both claim at their bound (600 s), each before the other's claim arrives; the claims
        // cross within the settle time, and only the earlier (then lower-named) one sends.
        assert_eq!(t, 600);
        wa.claims.merge(cb2, at(t));
        wb.claims.merge(ca2, at(t));
        assert!(sends(&wa.decide(&mut a, t, &firing(&[1]))));
        assert!(matches!(
            wb.decide(&mut b, t, &firing(&[1])),
            Step::Wait { why: WaitReason::PeerClaim { ref claimant }, .. } if claimant == "a"
        ));
    }

    #[test]
    fn claims_made_past_the_bound_are_honoured_one_budget_more_at_most() {
        // Past the honour bound a chain of fresh claims (each live, none logging) still cannot
        // hold a replica for ever: it sends at tick + three budgets.
        let mut w = World::new(&[("b", 1), ("s", 1), ("t", 1)]);
        w.claims.merge(stuck("s", 0), at(0));
        let mut b = Delivery::new(params("b", 1), firing(&[1]));
        let mut now = 0;
        let step = loop {
            if now == 600 {
                w.claims.merge(stuck("t", 600), at(now));
            }
            match w.decide(&mut b, now, &firing(&[1])) {
                Step::Wait { duration, .. } => now += duration.as_secs().max(1) as i64,
                Step::Claim { .. } => {}
                s => break s,
            }
        };
        assert_eq!(now, 900, "sent at {now}, not at the hard stop");
        assert!(
            matches!(
                step,
                Step::Send {
                    claim_expired: true,
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn the_claim_deadline_is_the_first_attempt_bound() {
        let mut w = World::new(&[("a", 1)]);
        let mut p = params("a", 0);
        p.attempt_timeout = Some(Duration::from_secs(5));
        let mut d = Delivery::new(p, firing(&[1]));
        let Step::Claim { claim: c, .. } = w.decide(&mut d, 0, &firing(&[1])) else {
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
        assert!(sends(&w.decide(&mut d, 0, &firing(&[1]))), "no claim, no settle");
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
        let (s, _, _) = w.run(&mut d, 15, &firing(&[1, 2, 3]));
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
        assert_eq!(d.succeeded(at(15)).firing, vec![1, 2, 3]);
    }
}
