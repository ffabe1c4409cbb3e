//! The replicated state of a replica: notification log, silences and in-flight claims.
//!
//! Its fields are private: everything else reads it through guards that only dereference, and
//! changes it in one of two ways, so that no change can skip replication:
//! - a local change (a silence set or expired, a claim made or released, a send logged) is
//!   applied and then broadcast to the peers, in one method;
//! - a peer's record is merged (`merge_*`) and, when it is news, wakes the deliveries waiting on
//!   a peer ([`ReplicatedState::subscribe`]).
//!
//! Start-up restore and maintenance GC are local by nature (every replica GCs by the same rules;
//! a restored record reaches the peers by anti-entropy) and have their own methods.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use tocsin_core::admit::{Bounds, Refusal, Refused};
use tocsin_core::claim::{Claim, Claims};
use tocsin_core::delivery::View;
use tocsin_core::labels::NameValidation;
use tocsin_core::nflog::{Entry, Nflog, ReceiverData, ReceiverKey};
use tocsin_core::silence::{Limits, MeshSilence, Silence, SilenceError, Silences};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::peer::{Peer, SingleNode};

/// A lock guard that only reads.
pub struct Reading<'a, T>(MutexGuard<'a, T>);

impl<T> Deref for Reading<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Notification log, silences and claims, and the peer they replicate through.
pub struct ReplicatedState {
    clock: Clock,
    nflog: Mutex<Nflog>,
    silences: RwLock<Silences>,
    claims: Mutex<Claims>,
    /// Bumped when a peer's log entry or claim arrives, to wake replicas waiting on a claim.
    changed: watch::Sender<u64>,
    peer: RwLock<Arc<dyn Peer>>,
    /// What a peer's records are held to.
    bounds: RwLock<Bounds>,
    /// Log entries and silences refused for their date, refused again when they come back.
    refused: Mutex<(Refused, Refused)>,
}

impl ReplicatedState {
    /// Empty state of a replica without peers.
    pub fn new(clock: Clock, retention: Duration, limits: Limits, names: NameValidation) -> Self {
        ReplicatedState {
            clock,
            nflog: Mutex::new(Nflog::default()),
            silences: RwLock::new(Silences::new(retention, limits, names)),
            claims: Mutex::new(Claims::default()),
            changed: watch::channel(0).0,
            peer: RwLock::new(Arc::new(SingleNode)),
            refused: Mutex::new((Refused::default(), Refused::default())),
            bounds: RwLock::new(Bounds {
                max_skew: Duration::from_secs(300),
                claim_cap: tocsin_core::delivery::MIN_SEND_BUDGET,
                retention,
            }),
        }
    }

    /// Sets the skew allowed in peers' timestamps and the cap on their claims (at start and on
    /// every reload: the cap follows the configured flush budgets).
    pub fn set_bounds(&self, max_skew: Duration, claim_cap: Duration) {
        let mut b = self.bounds.write();
        (b.max_skew, b.claim_cap) = (max_skew, claim_cap);
    }

    /// Replicates through `peer` from now on (set once, before the scheduler starts).
    pub fn set_peer(&self, peer: Arc<dyn Peer>) {
        *self.peer.write() = peer;
    }

    /// The peer local changes are broadcast through.
    pub fn peer(&self) -> Arc<dyn Peer> {
        self.peer.read().clone()
    }

    /// Reads the notification log.
    pub fn nflog(&self) -> Reading<'_, Nflog> {
        Reading(self.nflog.lock())
    }

    /// Reads the silences.
    pub fn silences(&self) -> RwLockReadGuard<'_, Silences> {
        self.silences.read()
    }

    /// Reads the claims.
    pub fn claims(&self) -> Reading<'_, Claims> {
        Reading(self.claims.lock())
    }

    /// Wakes when a peer's log entry or claim was news.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What the delivery machine of one group's integration needs to see, now.
    pub fn view<T>(&self, group_key: &str, rk: &ReceiverKey, f: impl FnOnce(&View<'_>) -> T) -> T {
        let peer = self.peer();
        let live = |n: &str, g: u64| peer.is_live(n, g);
        let nflog = self.nflog.lock();
        let claims = self.claims.lock();
        f(&View {
            now: self.clock.now(),
            entry: nflog.query(group_key, rk),
            claims: &claims,
            live: &live,
        })
    }

    /// Merges a notification log entry from a peer if it passes [`Bounds::merge_entry`];
    /// returns whether it was new.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn merge_nflog(&self, e: Entry) -> Result<bool, Refusal> {
        let b = *self.bounds.read();
        let new = b.merge_entry(&mut self.nflog.lock(), &mut self.refused.lock().0, e, self.clock.now())?;
        if new {
            self.changed.send_modify(|v| *v += 1);
        }
        Ok(new)
    }

    /// Merges an in-flight claim from a peer if it passes [`Bounds::merge_claim`]; returns
    /// whether it changed local state.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn merge_claim(&self, c: Claim) -> Result<bool, Refusal> {
        let b = *self.bounds.read();
        let new = b.merge_claim(&mut self.claims.lock(), c, self.clock.now())?;
        if new {
            self.changed.send_modify(|v| *v += 1);
        }
        Ok(new)
    }

    /// Merges a silence from a peer if it passes [`Bounds::merge_silence`]; returns whether it
    /// changed local state.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn merge_silence(&self, m: MeshSilence) -> Result<bool, Refusal> {
        let b = *self.bounds.read();
        b.merge_silence(
            &mut self.silences.write(),
            &mut self.refused.lock().1,
            m,
            self.clock.now(),
        )
    }

    /// Creates or updates a silence and replicates it.
    ///
    /// # Errors
    /// As [`Silences::set`].
    pub fn set_silence(&self, s: Silence, new_id: impl FnOnce() -> String) -> Result<String, SilenceError> {
        let now = self.clock.now();
        let mut store = self.silences.write();
        let old_id = s.id.clone();
        let id = store.set(s, now, new_id)?;
        // A replaced silence was expired: replicate that too.
        let changed: Vec<MeshSilence> = [old_id, id.clone()]
            .iter()
            .filter_map(|i| store.get_mesh(i).cloned())
            .collect();
        drop(store);
        let peer = self.peer();
        for m in &changed {
            peer.broadcast_silence(m);
        }
        Ok(id)
    }

    /// Expires a silence and replicates it.
    ///
    /// # Errors
    /// [`SilenceError::NotFound`] for an unknown id.
    pub fn expire_silence(&self, id: &str) -> Result<(), SilenceError> {
        let now = self.clock.now();
        let mut store = self.silences.write();
        store.expire(id, now)?;
        let m = store.get_mesh(id).cloned();
        drop(store);
        if let Some(m) = m {
            self.peer().broadcast_silence(&m);
        }
        Ok(())
    }

    /// Records a claim (or its release) made here and replicates it.
    pub fn claim(&self, c: &Claim) {
        self.claims.lock().merge(c.clone(), self.clock.now());
        self.peer().broadcast_claim(c);
    }

    /// Logs a notification sent from here and replicates the entry.
    #[allow(clippy::too_many_arguments)]
    pub fn log(
        &self,
        group_key: &str,
        rk: &ReceiverKey,
        firing: Vec<u64>,
        resolved: Vec<u64>,
        receiver_data: ReceiverData,
        at: Timestamp,
        expiry: Duration,
        retention: Duration,
    ) -> Option<Entry> {
        let logged = self
            .nflog
            .lock()
            .log(group_key, rk, firing, resolved, receiver_data, at, expiry, retention)
            .cloned();
        if let Some(e) = &logged {
            self.peer().broadcast_nflog(e);
        }
        logged
    }

    /// Restores the snapshots read at start-up (peers learn them by anti-entropy).
    pub fn restore(&self, silences: Vec<MeshSilence>, entries: Vec<Entry>) {
        let now = self.clock.now();
        self.silences.write().load(silences);
        let mut log = self.nflog.lock();
        for e in entries {
            log.merge(e, now);
        }
    }

    /// GCs the silences past retention and reads what is left (for the snapshot).
    pub fn gc_silences<T>(&self, read: impl FnOnce(&Silences) -> T) -> T {
        let mut s = self.silences.write();
        s.gc(self.clock.now());
        read(&s)
    }

    /// GCs the notification log and reads what is left (for the snapshot).
    pub fn gc_nflog<T>(&self, read: impl FnOnce(&Nflog) -> T) -> T {
        let mut l = self.nflog.lock();
        l.gc(self.clock.now());
        read(&l)
    }

    /// Drops claims past their deadline, and forgets refused records past their expiry.
    pub fn gc_claims(&self) -> usize {
        let now = self.clock.now();
        let mut refused = self.refused.lock();
        refused.0.gc(now);
        refused.1.gc(now);
        self.claims.lock().gc(now)
    }
}
