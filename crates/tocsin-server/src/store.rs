//! The alert store: sharded by fingerprint so ingestion never waits on a global lock (§3.1).

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::RwLock;
use tocsin_core::alert::Alert;
use tocsin_core::labels::Fingerprint;

const SHARDS: usize = 32;

/// All alerts received, merged per fingerprint.
pub struct AlertStore {
    shards: Vec<RwLock<HashMap<Fingerprint, Arc<Alert>>>>,
}

impl Default for AlertStore {
    fn default() -> Self {
        AlertStore {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }
}

impl AlertStore {
    fn shard(&self, fp: Fingerprint) -> &RwLock<HashMap<Fingerprint, Arc<Alert>>> {
        &self.shards[(fp.0 as usize) % SHARDS]
    }

    /// Stores an alert, merging it with the stored version (§3.1); returns what is stored now.
    pub fn put(&self, alert: Alert, now: Timestamp) -> Arc<Alert> {
        let mut shard = self.shard(alert.fingerprint).write();
        let merged = match shard.get(&alert.fingerprint) {
            Some(old) => Arc::new(Alert::store_merge(old, alert, now)),
            None => Arc::new(alert),
        };
        shard.insert(merged.fingerprint, merged.clone());
        merged
    }

    /// Returns every stored alert (a snapshot; shards are read one at a time).
    pub fn list(&self) -> Vec<Arc<Alert>> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(s.read().values().cloned());
        }
        out
    }

    /// Returns the number of stored alerts.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
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
        n
    }
}
