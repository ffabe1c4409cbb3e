//! The alert store: sharded by fingerprint so ingestion never waits on a global lock (§3.1).

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use parking_lot::RwLock;
use tocsin_core::alert::Alert;
use tocsin_core::labels::{Fingerprint, FingerprintMap};

const SHARDS: usize = 32;

/// All alerts received, merged per fingerprint.
pub struct AlertStore {
    shards: Vec<RwLock<FingerprintMap<Arc<Alert>>>>,
    /// Alerts stored, kept by `put` and `gc` (summing the shards would lock each).
    count: AtomicUsize,
    /// `--alerts.max-alerts`: new alerts past it are refused (0: no bound).
    max: usize,
}

impl Default for AlertStore {
    fn default() -> Self {
        AlertStore::with_max(0)
    }
}

impl AlertStore {
    fn shard(&self, fp: Fingerprint) -> &RwLock<FingerprintMap<Arc<Alert>>> {
        &self.shards[(fp.0 as usize) % SHARDS]
    }

    /// A store that refuses new alerts once it holds `max` (0: no bound).
    pub fn with_max(max: usize) -> Self {
        AlertStore {
            shards: (0..SHARDS).map(|_| RwLock::new(FingerprintMap::default())).collect(),
            count: AtomicUsize::new(0),
            max,
        }
    }

    /// The bound on stored alerts (0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Stores an alert, merging it with the stored version (§3.1); returns what is stored now,
    /// or `None` when the alert is new and the store holds its maximum (an update of a stored
    /// alert, a resolve above all, is always taken).
    pub fn put(&self, alert: Alert, now: Timestamp) -> Option<Arc<Alert>> {
        self.put_new(alert, now).map(|(a, _)| a)
    }

    /// [`AlertStore::put`], and whether the alert's fingerprint was not stored before.
    pub fn put_new(&self, alert: Alert, now: Timestamp) -> Option<(Arc<Alert>, bool)> {
        let mut shard = self.shard(alert.fingerprint).write();
        // One probe of the shard for the lookup and the replacement.
        match shard.entry(alert.fingerprint) {
            Entry::Occupied(mut e) => {
                let merged = Arc::new(Alert::store_merge(e.get(), alert, now));
                e.insert(merged.clone());
                Some((merged, false))
            }
            Entry::Vacant(e) => {
                if self.max > 0 && self.count.load(Ordering::Relaxed) >= self.max {
                    return None;
                }
                self.count.fetch_add(1, Ordering::Relaxed);
                Some((e.insert(Arc::new(alert)).clone(), true))
            }
        }
    }

    /// Returns every stored alert (a snapshot; shards are read one at a time).
    pub fn list(&self) -> Vec<Arc<Alert>> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(s.read().values().cloned());
        }
        out
    }

    /// Returns every stored alert in fingerprint order. Sorts on the map keys: sorting the alerts
    /// by their own field read each one, scattered over the heap, in every comparison.
    pub fn list_sorted(&self) -> Vec<Arc<Alert>> {
        let mut keyed: Vec<(Fingerprint, Arc<Alert>)> = Vec::with_capacity(self.len());
        for s in &self.shards {
            keyed.extend(s.read().iter().map(|(fp, a)| (*fp, a.clone())));
        }
        keyed.sort_unstable_by_key(|(fp, _)| *fp);
        keyed.into_iter().map(|(_, a)| a).collect()
    }

    /// Returns the number of stored alerts.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Returns whether no alert is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes alerts resolved at `now`; returns how many.
    pub fn gc(&self, now: Timestamp) -> usize {
        let mut n = 0;
        for s in &self.shards {
            let mut s = s.write();
            let before = s.len();
            s.retain(|_, a| !a.resolved_at(now));
            n += before - s.len();
        }
        self.count.fetch_sub(n, Ordering::Relaxed);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::labels::{LabelSet, fingerprint};
    use tocsin_core::time::ZERO;

    #[test]
    fn list_sorted_holds_every_alert_once_in_fingerprint_order() {
        let store = AlertStore::default();
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        for i in 0..500 {
            // Every alert twice: the second is a merge, not a new entry.
            for _ in 0..2 {
                let labels: LabelSet = [("alertname", format!("A{}", i % 7)), ("instance", format!("h{i}"))].into();
                let _ = store.put(
                    Alert {
                        fingerprint: fingerprint(&labels),
                        labels,
                        annotations: LabelSet::new(),
                        starts_at: now,
                        ends_at: ZERO,
                        generator_url: "".into(),
                        updated_at: now,
                        timeout: false,
                    },
                    now,
                );
            }
        }
        let sorted: Vec<Fingerprint> = store.list_sorted().iter().map(|a| a.fingerprint).collect();
        let mut expected: Vec<Fingerprint> = store.list().iter().map(|a| a.fingerprint).collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(sorted.len(), 500);
        assert_eq!(sorted, expected);
        assert_eq!(store.len(), 500);
    }

    #[test]
    fn a_full_store_refuses_new_alerts_but_takes_updates() {
        let store = AlertStore::with_max(2);
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let alert = |i: u32, ends_at: Timestamp| {
            let labels: LabelSet = [("alertname", format!("A{i}"))].into();
            Alert {
                fingerprint: fingerprint(&labels),
                labels,
                starts_at: now,
                ends_at,
                updated_at: now,
                ..Alert::default()
            }
        };
        assert!(store.put(alert(1, ZERO), now).is_some());
        assert!(store.put(alert(2, ZERO), now).is_some());
        assert!(store.put(alert(3, ZERO), now).is_none(), "full");
        let resolved = store.put(alert(1, now), now).expect("an update is always taken");
        assert!(resolved.resolved_at(now));
        assert_eq!(store.gc(now), 1);
        assert_eq!(store.len(), 1);
        assert!(store.put(alert(3, ZERO), now).is_some(), "room again after GC");
    }
}
