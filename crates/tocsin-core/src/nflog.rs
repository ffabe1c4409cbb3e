//! The notification log (§3.6) and the dedup decision (§3.4).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Identifies one integration of one receiver (`nflogpb.Receiver`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverKey {
    /// Receiver name.
    pub group_name: String,
    /// Integration type, e.g. `webhook`.
    pub integration: String,
    /// Index within that type's list.
    pub idx: u32,
}

/// One log entry: what was last sent for a group to one integration.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Group key string.
    pub group_key: String,
    /// Receiver integration.
    pub receiver: ReceiverKey,
    /// When the notification was logged.
    pub timestamp: Timestamp,
    /// Hashes of the firing alerts sent.
    pub firing_alerts: Vec<u64>,
    /// Hashes of the resolved alerts sent.
    pub resolved_alerts: Vec<u64>,
    /// When the entry may be garbage-collected.
    pub expires_at: Timestamp,
    /// What the integration keeps between notifications of the group (Slack's message id for
    /// `update_message`), carried from entry to entry.
    pub receiver_data: ReceiverData,
}

/// One value an integration keeps in the log (`nflogpb.ReceiverDataValue`).
#[derive(Clone, Debug, PartialEq)]
pub enum DataValue {
    /// `str_val`.
    Str(String),
    /// `int_val`.
    Int(i64),
    /// `double_val`.
    Double(f64),
}

/// An entry's receiver data, by key.
pub type ReceiverData = BTreeMap<String, DataValue>;

/// Most keys an entry's receiver data keeps (Alertmanager's integrations use two).
pub const MAX_DATA_KEYS: usize = 8;
/// Longest key or string value kept, in bytes.
pub const MAX_DATA_LEN: usize = 256;

/// Receiver data read from a peer or a snapshot, cut to what an integration could have
/// written: at most [`MAX_DATA_KEYS`] keys, none and no string longer than [`MAX_DATA_LEN`]
/// bytes. The entry itself stands: losing its data costs a new message instead of an edit.
pub fn bounded_data(data: impl IntoIterator<Item = (String, DataValue)>) -> ReceiverData {
    data.into_iter()
        .filter(|(k, v)| k.len() <= MAX_DATA_LEN && !matches!(v, DataValue::Str(s) if s.len() > MAX_DATA_LEN))
        .take(MAX_DATA_KEYS)
        .collect()
}

impl Entry {
    /// Returns the state key `<group key>:<receiver>/<integration>/<idx>`.
    pub fn state_key(&self) -> String {
        state_key(&self.group_key, &self.receiver)
    }
}

/// Returns the nflog state key for a group and integration.
pub fn state_key(group_key: &str, r: &ReceiverKey) -> String {
    format!("{group_key}:{}/{}/{}", r.group_name, r.integration, r.idx)
}

/// One record's share of a state digest: a hash of its identity and version. Summing the shares
/// gives a digest that ignores order, so replicas with equal state have equal digests.
pub fn record_digest(id: &str, version: Timestamp) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    h.update(id.as_bytes());
    h.update(&version.as_nanosecond().to_le_bytes());
    h.digest()
}

/// The in-memory log: latest entry per state key.
#[derive(Clone, Debug, Default)]
pub struct Nflog {
    entries: HashMap<String, Entry>,
}

impl Nflog {
    /// Records a send. An entry dated a little after `now` is a peer's later send (clocks agree
    /// to within [`crate::delivery::TRUSTED_SKEW`]) and stands: this write is skipped. One dated
    /// further ahead comes from a clock that stepped or lies; it is superseded, dated one
    /// millisecond after it so that last-writer-wins merges keep this send's content — else the
    /// log could never again record a send for the group until the clocks met, and every flush
    /// would repeat it.
    #[allow(clippy::too_many_arguments)]
    pub fn log(
        &mut self,
        group_key: &str,
        receiver: &ReceiverKey,
        firing: Vec<u64>,
        resolved: Vec<u64>,
        receiver_data: ReceiverData,
        now: Timestamp,
        expiry: Duration,
        retention: Duration,
    ) -> Option<&Entry> {
        let slot = self.entries.entry(state_key(group_key, receiver));
        let trusted = now
            .checked_add(SignedDuration::try_from(crate::delivery::TRUSTED_SKEW).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(now);
        let now = match &slot {
            std::collections::hash_map::Entry::Occupied(o) if o.get().timestamp > trusted => o
                .get()
                .timestamp
                .checked_add(SignedDuration::from_millis(1))
                .unwrap_or(o.get().timestamp),
            std::collections::hash_map::Entry::Occupied(o) if o.get().timestamp > now => return None,
            _ => now,
        };
        let keep = if expiry.is_zero() {
            retention
        } else {
            expiry.min(retention)
        };
        let expires_at = now
            .checked_add(SignedDuration::try_from(keep).unwrap_or(SignedDuration::MAX))
            .unwrap_or(now);
        let entry = Entry {
            group_key: group_key.to_string(),
            receiver: receiver.clone(),
            timestamp: now,
            firing_alerts: firing,
            resolved_alerts: resolved,
            expires_at,
            receiver_data,
        };
        Some(slot.insert_entry(entry).into_mut())
    }

    /// Returns the entry for a group and integration, regardless of expiry.
    pub fn query(&self, group_key: &str, receiver: &ReceiverKey) -> Option<&Entry> {
        self.entries.get(&state_key(group_key, receiver))
    }

    /// Merges a remote entry: it wins when newer; expired entries are ignored. Returns whether
    /// local state changed.
    pub fn merge(&mut self, e: Entry, now: Timestamp) -> bool {
        if e.expires_at < now {
            return false;
        }
        let key = e.state_key();
        match self.entries.get(&key) {
            Some(cur) if cur.timestamp >= e.timestamp => false,
            _ => {
                self.entries.insert(key, e);
                true
            }
        }
    }

    /// Deletes entries whose `expires_at` is not after `now`; returns how many.
    pub fn gc(&mut self, now: Timestamp) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires_at > now);
        before - self.entries.len()
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Digest of the entries not expired at `now` (the ones a peer would still accept).
    pub fn digest(&self, now: Timestamp) -> u64 {
        self.entries
            .iter()
            .filter(|(_, e)| e.expires_at > now)
            .fold(0, |d, (k, e)| d.wrapping_add(record_digest(k, e.timestamp)))
    }

    /// Returns whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over all entries.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

/// Why a notification is sent (`notification_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyReason {
    /// No previous firing notification.
    FirstNotification,
    /// A firing alert that was not notified before.
    NewAlertsAdded,
    /// A resolved alert that was not notified before.
    SomeAlertsResolved,
    /// No firing alerts remain.
    AllAlertsResolved,
    /// Nothing changed, but repeat_interval elapsed.
    RepeatIntervalElapsed,
}

impl NotifyReason {
    /// Returns Alertmanager's string for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyReason::FirstNotification => "first notification",
            NotifyReason::NewAlertsAdded => "new alerts added",
            NotifyReason::SomeAlertsResolved => "some alerts resolved",
            NotifyReason::AllAlertsResolved => "all alerts resolved",
            NotifyReason::RepeatIntervalElapsed => "repeat interval elapsed",
        }
    }
}

/// Decides whether to notify (Alertmanager's `DedupStage.needsUpdate`); `None` means stay quiet.
pub fn needs_update(
    entry: Option<&Entry>,
    firing: &HashSet<u64>,
    resolved: &HashSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: Timestamp,
) -> Option<NotifyReason> {
    let Some(entry) = entry else {
        return (!firing.is_empty()).then_some(NotifyReason::FirstNotification);
    };
    let logged_firing: HashSet<u64> = entry.firing_alerts.iter().copied().collect();
    if !firing.is_subset(&logged_firing) {
        return Some(if logged_firing.is_empty() {
            NotifyReason::FirstNotification
        } else {
            NotifyReason::NewAlertsAdded
        });
    }
    if firing.is_empty() {
        return (!logged_firing.is_empty()).then_some(NotifyReason::AllAlertsResolved);
    }
    if send_resolved {
        let logged_resolved: HashSet<u64> = entry.resolved_alerts.iter().copied().collect();
        if !resolved.is_subset(&logged_resolved) {
            return Some(NotifyReason::SomeAlertsResolved);
        }
    }
    let cutoff = now
        .checked_sub(SignedDuration::try_from(repeat).unwrap_or(SignedDuration::MAX))
        .ok()?;
    (entry.timestamp < cutoff).then_some(NotifyReason::RepeatIntervalElapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn set(v: &[u64]) -> HashSet<u64> {
        v.iter().copied().collect()
    }

    fn entry(firing: &[u64], resolved: &[u64], ts: i64) -> Entry {
        Entry {
            group_key: "{}:{}".into(),
            receiver: ReceiverKey {
                group_name: "r".into(),
                integration: "webhook".into(),
                idx: 0,
            },
            timestamp: t(ts),
            firing_alerts: firing.to_vec(),
            resolved_alerts: resolved.to_vec(),
            expires_at: t(ts + 1000),
            receiver_data: Default::default(),
        }
    }

    #[test]
    fn dedup_decision_table() {
        let rep = Duration::from_secs(100);
        use NotifyReason::*;
        assert_eq!(
            needs_update(None, &set(&[1]), &set(&[]), true, rep, t(0)),
            Some(FirstNotification)
        );
        assert_eq!(needs_update(None, &set(&[]), &set(&[1]), true, rep, t(0)), None);
        let e = entry(&[1], &[], 0);
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 2]), &set(&[]), true, rep, t(10)),
            Some(NewAlertsAdded)
        );
        assert_eq!(needs_update(Some(&e), &set(&[1]), &set(&[]), true, rep, t(10)), None);
        assert_eq!(
            needs_update(Some(&e), &set(&[]), &set(&[1]), false, rep, t(10)),
            Some(AllAlertsResolved)
        );
        let e2 = entry(&[1, 2], &[], 0);
        assert_eq!(
            needs_update(Some(&e2), &set(&[1]), &set(&[2]), true, rep, t(10)),
            Some(SomeAlertsResolved)
        );
        assert_eq!(needs_update(Some(&e2), &set(&[1]), &set(&[2]), false, rep, t(10)), None);
        assert_eq!(
            needs_update(Some(&e), &set(&[1]), &set(&[]), true, rep, t(101)),
            Some(RepeatIntervalElapsed)
        );
        assert_eq!(
            needs_update(Some(&entry(&[], &[1], 0)), &set(&[]), &set(&[1]), true, rep, t(500)),
            None
        );
    }

    #[test]
    fn log_merge_keeps_newest_and_gc_drops_expired() {
        let r = ReceiverKey {
            group_name: "r".into(),
            integration: "webhook".into(),
            idx: 0,
        };
        let mut log = Nflog::default();
        let d = Duration::from_secs(3600);
        log.log("{}:{}", &r, vec![1], vec![], Default::default(), t(10), d, d * 10);
        assert!(!log.merge(entry(&[9], &[], 5), t(11)));
        assert!(log.merge(entry(&[9], &[], 20), t(21)));
        assert_eq!(log.query("{}:{}", &r).unwrap().firing_alerts, vec![9]);
        assert_eq!(log.gc(t(2000)), 1);
        assert!(log.is_empty());
    }

    #[test]
    fn a_send_supersedes_an_entry_dated_far_ahead_of_the_local_clock() {
        // A peer whose clock is an hour ahead logged first; this replica's later send must win
        // every last-writer-wins merge, or the peer's stale entry comes back and is re-sent.
        let r = ReceiverKey {
            group_name: "r".into(),
            integration: "webhook".into(),
            idx: 0,
        };
        let mut log = Nflog::default();
        let d = Duration::from_secs(7200);
        assert!(log.merge(entry(&[], &[1], 3600), t(0)));
        let mine = log
            .log("{}:{}", &r, vec![1], vec![], Default::default(), t(10), d, d)
            .cloned()
            .unwrap();
        assert_eq!(mine.firing_alerts, vec![1]);
        assert_eq!(mine.timestamp, t(3600) + SignedDuration::from_millis(1));
        assert!(
            !log.merge(entry(&[], &[1], 3600), t(11)),
            "the stale entry does not come back"
        );
        // A peer's entry a second ahead is its later send: it stands.
        let mut log = Nflog::default();
        assert!(log.merge(entry(&[], &[1], 11), t(10)));
        assert!(
            log.log("{}:{}", &r, vec![1], vec![], Default::default(), t(10), d, d)
                .is_none()
        );
        assert_eq!(log.query("{}:{}", &r).unwrap().resolved_alerts, vec![1]);
    }
}
