//! Aggregation groups and their timers (§3.2): one scheduler for all groups, not a task each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};
use jiff::{SignedDuration, Timestamp};
use tocsin_core::alert::Alert;
use tocsin_core::group::GroupAlerts;
use tocsin_core::labels::{Fingerprint, LabelSet};
use tocsin_core::route::RouteTree;
use tokio::time::Instant;

/// Identifies a group: the route (sibling routes may share a key) and the group key.
pub type GroupId = (usize, String);

/// A [`GroupId`] borrowed from a reused key buffer; hashes as the owned one does.
#[derive(Hash)]
struct GroupIdRef<'a>(usize, &'a str);

impl Equivalent<GroupId> for GroupIdRef<'_> {
    fn equivalent(&self, id: &GroupId) -> bool {
        self.0 == id.0 && self.1 == id.1
    }
}

/// A group's identity as its events show it, shared by the `alert_grouped` events of its alerts.
#[derive(Debug)]
pub struct GroupInfo {
    /// Group key string.
    pub key: String,
    /// Group labels.
    pub labels: LabelSet,
    /// The route's receiver.
    pub receiver: String,
}

/// An alert that entered a group: the group, the alert, whether it was resolved.
pub type Grouped = (Arc<GroupInfo>, Fingerprint, bool);

/// One aggregation group.
#[derive(Debug)]
pub struct Group {
    /// Route index in the tree.
    pub route_idx: usize,
    /// Key, labels and receiver.
    pub info: Arc<GroupInfo>,
    /// The alerts.
    pub alerts: GroupAlerts,
    /// When the timer fires next.
    pub next_flush: Instant,
    /// A flush is running.
    pub flushing: bool,
    /// The timer fired while a flush was running: flush again when it ends.
    pub pending: bool,
}

/// A flush to run: a snapshot of one group at its tick.
#[derive(Debug, Clone)]
pub struct FlushJob {
    /// Dispatcher generation (reload bumps it; stale results are ignored).
    pub generation: u64,
    /// The group.
    pub id: GroupId,
    /// Group labels.
    pub labels: LabelSet,
    /// Tick instant.
    pub tick: Instant,
    /// Tick as wall-clock time: the only `now` of this flush.
    pub now: Timestamp,
    /// Stored versions of the flushed alerts.
    pub stored: Vec<Arc<Alert>>,
    /// Copies to notify (firing ones with zero `endsAt`).
    pub sent: Vec<Alert>,
}

/// All groups of the current configuration and their timer queue.
#[derive(Debug, Default)]
pub struct Dispatcher {
    /// Bumped on every reload.
    pub generation: u64,
    /// Groups by id.
    pub groups: HashMap<GroupId, Group>,
    timers: BinaryHeap<Reverse<(Instant, u64, GroupId)>>,
    seq: u64,
}

impl Dispatcher {
    fn schedule(&mut self, id: GroupId, at: Instant) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, id)));
    }

    /// Drops every group (reload); returns the new generation.
    pub fn reset(&mut self) -> u64 {
        self.generation += 1;
        self.groups.clear();
        self.timers.clear();
        self.generation
    }

    /// Routes alerts into their groups; returns whether a new group was created (the scheduler
    /// must re-arm). With `grouped`, each alert that entered a group it was not in is added to
    /// it (`alert_grouped` events; a reload's regrouping passes none).
    pub fn insert(
        &mut self,
        tree: &RouteTree,
        alerts: &[Arc<Alert>],
        now_i: Instant,
        now: Timestamp,
        mut grouped: Option<&mut Vec<Grouped>>,
    ) -> bool {
        let mut created = false;
        let mut key = String::new();
        for a in alerts {
            for route in tree.match_routes(&a.labels) {
                route.write_group_key(&a.labels, &mut key);
                if let Some(g) = self.groups.get_mut(&GroupIdRef(route.index, &key)) {
                    if g.alerts.insert(a.clone())
                        && let Some(out) = grouped.as_deref_mut()
                    {
                        out.push((g.info.clone(), a.fingerprint, a.resolved_at(now)));
                    }
                    continue;
                }
                let labels = route.group_labels(&a.labels);
                let id = (route.index, key.clone());
                // An alert that started long ago is flushed at once instead of after group_wait.
                let wait = SignedDuration::try_from(route.group_wait).unwrap_or(SignedDuration::MAX);
                let overdue = a.starts_at.checked_add(wait).is_ok_and(|t| t < now);
                let at = if overdue { now_i } else { now_i + route.group_wait };
                let mut alerts = GroupAlerts::default();
                alerts.insert(a.clone());
                let info = Arc::new(GroupInfo {
                    key: id.1.clone(),
                    labels,
                    receiver: route.receiver.clone(),
                });
                if let Some(out) = grouped.as_deref_mut() {
                    out.push((info.clone(), a.fingerprint, a.resolved_at(now)));
                }
                self.groups.insert(
                    id.clone(),
                    Group {
                        route_idx: route.index,
                        info,
                        alerts,
                        next_flush: at,
                        flushing: false,
                        pending: false,
                    },
                );
                self.schedule(id, at);
                created = true;
            }
        }
        created
    }

    fn job(&self, id: &GroupId, tick: Instant, now: Timestamp) -> Option<FlushJob> {
        let g = self.groups.get(id)?;
        let (stored, sent) = g.alerts.snapshot(now);
        Some(FlushJob {
            generation: self.generation,
            id: id.clone(),
            labels: g.info.labels.clone(),
            tick,
            now,
            stored,
            sent,
        })
    }

    /// Pops due timers at `now_i`, re-arms them one group_interval later and returns the flushes
    /// to start; `wall` maps an instant to wall-clock time.
    pub fn due(&mut self, tree: &RouteTree, now_i: Instant, wall: impl Fn(Instant) -> Timestamp) -> Vec<FlushJob> {
        let mut jobs = Vec::new();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now_i {
                break;
            }
            let Some(Reverse((at, _, id))) = self.timers.pop() else {
                break;
            };
            let Some(g) = self.groups.get_mut(&id) else { continue };
            if g.next_flush != at {
                continue;
            }
            // The timer is reset before the flush runs (§3.2).
            let interval = tree
                .nodes
                .get(g.route_idx)
                .map(|r| r.group_interval)
                .unwrap_or(Duration::from_secs(300));
            g.next_flush = at + interval;
            if g.flushing {
                g.pending = true;
            } else {
                g.flushing = true;
                if let Some(j) = self.job(&id, at, wall(at)) {
                    jobs.push(j);
                }
            }
            let next = self.groups[&id].next_flush;
            self.schedule(id, next);
        }
        jobs
    }

    /// Returns a fresh snapshot of a group of the given generation, if it still exists.
    pub fn snapshot(&self, id: &GroupId, generation: u64, now: Timestamp) -> Option<(Vec<Arc<Alert>>, Vec<Alert>)> {
        if generation != self.generation {
            return None;
        }
        self.groups.get(id).map(|g| g.alerts.snapshot(now))
    }

    /// Returns when the earliest timer fires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Records the end of a flush: on success resolved alerts leave the group, and an emptied
    /// group is destroyed. Returns a follow-up flush when the timer fired meanwhile.
    pub fn flush_done(&mut self, job: &FlushJob, ok: bool, now_i: Instant, now: Timestamp) -> Option<FlushJob> {
        if job.generation != self.generation {
            return None;
        }
        let g = self.groups.get_mut(&job.id)?;
        g.flushing = false;
        if ok {
            g.alerts.remove_resolved(&job.stored, job.now);
            if g.alerts.is_empty() {
                self.groups.remove(&job.id);
                return None;
            }
        }
        if g.pending {
            g.pending = false;
            g.flushing = true;
            return self.job(&job.id, now_i, now);
        }
        None
    }
}
