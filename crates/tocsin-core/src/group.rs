//! Aggregation-group contents (§3.2): the alerts of one group, flush snapshots and clean-up.

use std::cmp::Ordering;
use std::sync::Arc;

use jiff::Timestamp;

use crate::alert::Alert;
use crate::labels::{FingerprintMap, LabelSet};
use crate::time::ZERO;

/// The alerts of one aggregation group.
#[derive(Clone, Debug, Default)]
pub struct GroupAlerts {
    alerts: FingerprintMap<Arc<Alert>>,
}

impl GroupAlerts {
    /// Inserts or replaces an alert; returns whether the group did not hold it.
    pub fn insert(&mut self, alert: Arc<Alert>) -> bool {
        self.alerts.insert(alert.fingerprint, alert).is_none()
    }

    /// Returns whether the group holds no alerts.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Returns the number of alerts.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Iterates over the alerts in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Alert>> {
        self.alerts.values()
    }

    /// Returns the flush snapshot at `now`: stored versions, sorted, and the copies to notify,
    /// where firing alerts have `endsAt` zeroed.
    pub fn snapshot(&self, now: Timestamp) -> (Vec<Arc<Alert>>, Vec<Alert>) {
        let mut stored: Vec<Arc<Alert>> = self.alerts.values().cloned().collect();
        sort_alerts(&mut stored, |a| &a.labels);
        let sent = stored
            .iter()
            .map(|a| {
                let mut c = (**a).clone();
                if !c.resolved_at(now) {
                    c.ends_at = ZERO;
                }
                c
            })
            .collect();
        (stored, sent)
    }

    /// After a fully successful flush, removes the alerts of `flushed` that were resolved at
    /// `now` and not updated since.
    pub fn remove_resolved(&mut self, flushed: &[Arc<Alert>], now: Timestamp) {
        for a in flushed {
            if !a.resolved_at(now) {
                continue;
            }
            if let Some(cur) = self.alerts.get(&a.fingerprint)
                && cur.updated_at == a.updated_at
            {
                self.alerts.remove(&a.fingerprint);
            }
        }
    }
}

/// The part of [`alert_order`] that looks at `job` and `instance`.
type SortKey<'a> = (Option<&'a str>, Option<&'a str>);

fn sort_key(l: &LabelSet) -> SortKey<'_> {
    (l.get("job"), l.get("instance"))
}

fn key_order(a: SortKey<'_>, b: SortKey<'_>) -> Ordering {
    // A present value sorts before an absent one.
    let part = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (Some(x), Some(y)) => x.cmp(y),
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (None, None) => Ordering::Equal,
    };
    part(a.0, b.0).then_with(|| part(a.1, b.1))
}

/// Orders alerts by `job`, then `instance`, then the whole label set (Alertmanager's `AlertSlice`).
pub fn alert_order(a: &LabelSet, b: &LabelSet) -> Ordering {
    key_order(sort_key(a), sort_key(b)).then_with(|| label_set_order(a, b))
}

/// Sorts alerts in [`alert_order`], looking up each alert's `job` and `instance` once rather
/// than in every comparison (the lookups dominated sorting large groups).
pub fn sort_alerts<T: Clone>(items: &mut Vec<T>, labels: impl Fn(&T) -> &LabelSet) {
    let keys: Vec<SortKey<'_>> = items.iter().map(|t| sort_key(labels(t))).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&i, &j| {
        key_order(keys[i], keys[j]).then_with(|| label_set_order(labels(&items[i]), labels(&items[j])))
    });
    let sorted: Vec<T> = order.iter().map(|&i| items[i].clone()).collect();
    *items = sorted;
}

/// Orders label sets like Prometheus' `LabelSet.Before`.
pub fn label_set_order(a: &LabelSet, b: &LabelSet) -> Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
        match an.cmp(bn) {
            Ordering::Equal => {}
            o => return o,
        }
        match av.cmp(bv) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {

    proptest::proptest! {
        /// The cached-key sort orders exactly like sorting with `alert_order`.
        #[test]
        fn sort_alerts_agrees_with_alert_order(
            sets in proptest::collection::vec(
                proptest::collection::btree_map("(job|instance|a|z)", "[ab]{0,2}", 0..4),
                0..40,
            )
        ) {
            let sets: Vec<LabelSet> = sets.iter().map(|m| m.iter().collect()).collect();
            let mut fast = sets.clone();
            sort_alerts(&mut fast, |l| l);
            let mut slow = sets;
            slow.sort_by(alert_order);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    use super::*;
    use crate::labels::fingerprint;

    fn alert(pairs: &[(&str, &str)], ends: i64, updated: i64) -> Arc<Alert> {
        let labels: LabelSet = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Arc::new(Alert {
            fingerprint: fingerprint(&labels),
            labels,
            ends_at: Timestamp::from_second(ends).unwrap(),
            updated_at: Timestamp::from_second(updated).unwrap(),
            ..Alert::default()
        })
    }

    #[test]
    fn snapshot_sorts_and_zeroes_firing_ends() {
        let mut g = GroupAlerts::default();
        g.insert(alert(&[("a", "2"), ("job", "b")], 100, 1));
        g.insert(alert(&[("a", "1"), ("job", "b")], 10, 1));
        g.insert(alert(&[("a", "0")], 100, 1));
        let (stored, sent) = g.snapshot(Timestamp::from_second(50).unwrap());
        let order: Vec<_> = stored.iter().map(|a| a.labels["a"].to_string()).collect();
        assert_eq!(order, ["1", "2", "0"]);
        assert_eq!(sent[0].ends_at, Timestamp::from_second(10).unwrap());
        assert_eq!(sent[1].ends_at, ZERO);
    }

    #[test]
    fn resolved_alerts_leave_only_if_not_updated() {
        let mut g = GroupAlerts::default();
        let a = alert(&[("a", "1")], 10, 1);
        let b = alert(&[("a", "2")], 10, 1);
        g.insert(a.clone());
        g.insert(b.clone());
        let (stored, _) = g.snapshot(Timestamp::from_second(20).unwrap());
        g.insert(alert(&[("a", "2")], 100, 15));
        g.remove_resolved(&stored, Timestamp::from_second(20).unwrap());
        assert_eq!(g.len(), 1);
        assert!(g.iter().all(|x| &x.labels["a"] == "2"));
    }
}
