//! Silences (§6): states, validation, the create/update and expire algorithms, retention, an
//! index so that muting an alert does not scan every silence, and the merge rule for replication.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::labels::{LabelSet, NameValidation, go_quote};
use crate::matchers::{MatchType, Matcher};
use crate::time::{ZERO, is_zero};

/// A silence: any matcher set (OR) whose matchers all match (AND) mutes an alert while active.
#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    /// UUID.
    pub id: String,
    /// Matcher sets; the API creates exactly one.
    pub matcher_sets: Vec<Vec<Matcher>>,
    /// Start.
    pub starts_at: Timestamp,
    /// End.
    pub ends_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Author.
    pub created_by: String,
    /// Comment.
    pub comment: String,
    /// Free-form annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            id: String::new(),
            matcher_sets: Vec::new(),
            starts_at: ZERO,
            ends_at: ZERO,
            updated_at: ZERO,
            created_by: String::new(),
            comment: String::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// The state of a silence at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started yet.
    Pending,
    /// Muting.
    Active,
    /// Ended.
    Expired,
}

impl State {
    /// Returns the API name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Expired => "expired",
        }
    }
}

impl Silence {
    /// Returns the state at `now`: active on `[starts_at, ends_at)`.
    pub fn state(&self, now: Timestamp) -> State {
        if now < self.starts_at {
            State::Pending
        } else if now < self.ends_at {
            State::Active
        } else {
            State::Expired
        }
    }

    /// Returns whether the silence's matchers select the label set.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matcher_sets
            .iter()
            .any(|set| set.iter().all(|m| m.matches(labels)))
    }
}

/// Why a silence operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No silence has this id (API 404).
    #[error("silence not found")]
    NotFound,
    /// The silence is invalid (API 400).
    #[error("invalid silence: {0}")]
    Invalid(String),
    /// A configured limit would be exceeded (API 400).
    #[error("{0}")]
    Limit(String),
}

/// The largest silence stored whatever `--silences.max-silence-size-bytes` says (0, its
/// default, meaning no limit): every silence must fit one replication record, so that it
/// reaches every peer. Tocsin's bound; Alertmanager has none.
pub const MAX_SILENCE_BYTES: usize = 1 << 20;

/// Store limits (`--silences.max-silences`, `--silences.max-silence-size-bytes`; 0 = none).
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Maximum number of silences, expired ones included.
    pub max_silences: usize,
    /// Maximum encoded size of one silence.
    pub max_silence_size_bytes: usize,
}

/// Validates a silence (§6.3).
///
/// # Errors
/// Alertmanager's message, without the `invalid silence: ` prefix.
pub fn validate(s: &Silence, names: NameValidation) -> Result<(), String> {
    if s.matcher_sets.is_empty() {
        return Err("at least one matcher required".into());
    }
    for set in &s.matcher_sets {
        if set.is_empty() {
            return Err("at least one matcher required".into());
        }
        for (i, m) in set.iter().enumerate() {
            if !names.is_valid(&m.name) {
                return Err(format!(
                    "invalid label matcher {i}: invalid label name {}",
                    go_quote(&m.name)
                ));
            }
        }
        if set.iter().all(|m| m.matches_value("")) {
            return Err("at least one matcher must not match the empty string".into());
        }
    }
    if is_zero(s.starts_at) {
        return Err("invalid zero start timestamp".into());
    }
    if is_zero(s.ends_at) {
        return Err("invalid zero end timestamp".into());
    }
    if s.ends_at < s.starts_at {
        return Err("end time must not be before start time".into());
    }
    Ok(())
}

/// A stored silence with its garbage-collection time.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshSilence {
    /// The silence.
    pub silence: Silence,
    /// When it may be deleted (`ends_at + retention`).
    pub expires_at: Timestamp,
}

/// A stored silence, shared by the id set and the index, hashed and compared by its id so that
/// both are searched by id without keeping copies of it (ids were stored four times: 10k
/// silences took twice Alertmanager's memory).
#[derive(Clone, Debug)]
struct ById(Arc<MeshSilence>);

impl ById {
    fn id(&self) -> &str {
        &self.0.silence.id
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.id()
    }
}

// Hashes exactly as the id `str` does, as `Borrow` requires.
impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for ById {}

/// The silences filed under one anchor: usually one (an `instance` or other per-target value),
/// which needs no set of its own.
#[derive(Clone, Debug)]
enum Bucket {
    One(ById),
    // Boxed so that a bucket is two words, not six: most anchors hold one silence.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<ById>>),
}

impl Bucket {
    fn len(&self) -> usize {
        match self {
            Bucket::One(_) => 1,
            Bucket::Many(set) => set.len(),
        }
    }

    fn insert(&mut self, m: ById) {
        match self {
            Bucket::One(cur) if *cur == m => *cur = m,
            Bucket::One(cur) => *self = Bucket::Many(Box::new([cur.clone(), m].into_iter().collect())),
            Bucket::Many(set) => {
                set.replace(m);
            }
        }
    }

    /// Removes `id`; returns whether it was here.
    fn remove(&mut self, id: &str) -> bool {
        match self {
            Bucket::One(cur) => cur.id() == id,
            Bucket::Many(set) => set.remove(id),
        }
    }

    fn is_empty_after_removing_one(&self) -> bool {
        match self {
            Bucket::One(_) => true,
            Bucket::Many(set) => set.is_empty(),
        }
    }

    fn for_each(&self, mut f: impl FnMut(&MeshSilence)) {
        match self {
            Bucket::One(m) => f(&m.0),
            Bucket::Many(set) => set.iter().for_each(|m| f(&m.0)),
        }
    }
}

/// All silences, indexed for matching.
#[derive(Clone, Debug, Default)]
pub struct Silences {
    by_id: HashSet<ById>,
    /// Equality anchor ([`anchor_key`] of name and value) -> silences with that `=` matcher in
    /// every set, each filed under one of its anchors.
    index: HashMap<Box<str>, Bucket>,
    /// Silences without such an anchor; always checked.
    unindexed: HashSet<ById>,
    retention: Duration,
    limits: Limits,
    names: NameValidation,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(t)
}

/// Writes the index key of a label pair into `key`. One string rather than a pair so that
/// muting looks labels up through one reused buffer; a name containing the separator can only
/// add candidates, and every candidate is matched in full.
fn anchor_key(key: &mut String, name: &str, value: &str) {
    key.clear();
    key.push_str(name);
    key.push('\0');
    key.push_str(value);
}

/// The candidate anchors of a silence: `=` matchers with a non-empty value shared by all sets.
fn anchors(s: &Silence) -> impl Iterator<Item = String> + '_ {
    let first = s.matcher_sets.first().map(Vec::as_slice).unwrap_or(&[]);
    first
        .iter()
        .filter(|m| m.op == MatchType::Equal && !m.value.is_empty())
        .filter(|m| s.matcher_sets.iter().all(|set| set.iter().any(|o| o == *m)))
        .map(|m| {
            let mut key = String::new();
            anchor_key(&mut key, &m.name, &m.value);
            key
        })
}

impl Silences {
    /// Creates an empty store.
    pub fn new(retention: Duration, limits: Limits, names: NameValidation) -> Self {
        Silences {
            retention,
            limits,
            names,
            ..Default::default()
        }
    }

    fn insert(&mut self, m: MeshSilence) {
        self.remove(&m.silence.id);
        // File the silence under its most selective anchor: the one whose bucket is smallest now
        // (an `instance` matcher rather than an `alertname` shared by many silences).
        let best = anchors(&m.silence).min_by_key(|k| self.index.get(k.as_str()).map_or(0, Bucket::len));
        let m = ById(Arc::new(m));
        match best {
            Some(k) => match self.index.entry(k.into_boxed_str()) {
                std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().insert(m.clone()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Bucket::One(m.clone()));
                }
            },
            None => {
                self.unindexed.insert(m.clone());
            }
        }
        self.by_id.insert(m);
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.take(id) else { return };
        // The silence is in the bucket of one of its anchors, or else in the unindexed set.
        let mut filed = false;
        for k in anchors(&old.0.silence) {
            if let Some(bucket) = self.index.get_mut(k.as_str())
                && bucket.remove(id)
            {
                if bucket.is_empty_after_removing_one() {
                    self.index.remove(k.as_str());
                }
                filed = true;
                break;
            }
        }
        if !filed {
            self.unindexed.remove(id);
        }
    }

    fn mesh(&self, s: Silence) -> MeshSilence {
        MeshSilence {
            expires_at: plus(s.ends_at, self.retention),
            silence: s,
        }
    }

    /// The label name rules silences are validated with.
    pub fn names(&self) -> NameValidation {
        self.names
    }

    /// How long an ended silence is kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The store's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Returns the number of stored silences (expired ones until GC included).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Returns whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Returns a silence by id.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id).map(|m| &m.0.silence)
    }

    /// Returns a stored silence with its GC time, by id.
    pub fn get_mesh(&self, id: &str) -> Option<&MeshSilence> {
        self.by_id.get(id).map(|m| &*m.0)
    }

    /// Iterates over all stored silences.
    pub fn iter(&self) -> impl Iterator<Item = &MeshSilence> {
        self.by_id.iter().map(|m| &*m.0)
    }

    /// Digest of the silences not expired at `now` (the ones a peer would still accept); see
    /// [`crate::nflog::record_digest`].
    pub fn digest(&self, now: Timestamp) -> u64 {
        self.iter().filter(|m| m.expires_at > now).fold(0, |d, m| {
            d.wrapping_add(crate::nflog::record_digest(&m.silence.id, m.silence.updated_at))
        })
    }

    /// Creates or updates a silence (§6.4) and returns its id (a new one unless updated in place).
    /// `new_id` is called only when a new silence is created.
    ///
    /// # Errors
    /// [`SilenceError::NotFound`] for an unknown id, `Invalid` or `Limit` otherwise; nothing is
    /// stored on error.
    pub fn set(
        &mut self,
        mut s: Silence,
        now: Timestamp,
        new_id: impl FnOnce() -> String,
    ) -> Result<String, SilenceError> {
        if is_zero(s.starts_at) {
            s.starts_at = now;
        }
        validate(&s, self.names).map_err(SilenceError::Invalid)?;
        let old = if s.id.is_empty() {
            None
        } else {
            Some(self.get(&s.id).cloned().ok_or(SilenceError::NotFound)?)
        };
        if let Some(old) = &old
            && can_update(old, &s, now)
        {
            s.updated_at = now;
            self.check_size(&s)?;
            let m = self.mesh(s);
            let id = m.silence.id.clone();
            self.insert(m);
            return Ok(id);
        }
        if self.limits.max_silences > 0 && self.by_id.len() >= self.limits.max_silences {
            return Err(SilenceError::Limit(format!(
                "exceeded maximum number of silences: {} (limit: {})",
                self.by_id.len(),
                self.limits.max_silences
            )));
        }
        s.id = new_id();
        if s.starts_at < now {
            s.starts_at = now;
        }
        s.updated_at = now;
        self.check_size(&s)?;
        if let Some(old) = old
            && old.state(now) != State::Expired
        {
            self.expire(&old.id, now)?;
        }
        let m = self.mesh(s);
        let id = m.silence.id.clone();
        self.insert(m);
        Ok(id)
    }

    fn check_size(&self, s: &Silence) -> Result<(), SilenceError> {
        let limit = match self.limits.max_silence_size_bytes {
            0 => MAX_SILENCE_BYTES,
            n => n.min(MAX_SILENCE_BYTES),
        };
        let size = crate::snapshot::silence_size(&self.mesh(s.clone()));
        if size > limit {
            return Err(SilenceError::Limit(format!(
                "silence exceeded maximum size: {size} bytes (limit: {limit} bytes)"
            )));
        }
        Ok(())
    }

    /// Expires a silence (§6.5); expiring an expired one succeeds and changes nothing.
    ///
    /// # Errors
    /// [`SilenceError::NotFound`] for an unknown id.
    pub fn expire(&mut self, id: &str, now: Timestamp) -> Result<(), SilenceError> {
        let mut s = self.get(id).cloned().ok_or(SilenceError::NotFound)?;
        match s.state(now) {
            State::Expired => return Ok(()),
            State::Active => s.ends_at = now,
            State::Pending => {
                s.starts_at = now;
                s.ends_at = now;
            }
        }
        s.updated_at = now;
        let m = self.mesh(s);
        self.insert(m);
        Ok(())
    }

    /// Returns the ids of active silences muting `labels` at `now`, sorted.
    pub fn silenced_by(&self, labels: &LabelSet, now: Timestamp) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.by_id.is_empty() {
            return out;
        }
        let mut check = |m: &MeshSilence| {
            if m.silence.state(now) == State::Active && m.silence.matches(labels) {
                out.push(m.silence.id.clone());
            }
        };
        let mut key = String::new();
        for (name, value) in labels {
            anchor_key(&mut key, name, value);
            if let Some(bucket) = self.index.get(key.as_str()) {
                bucket.for_each(&mut check);
            }
        }
        self.unindexed.iter().for_each(|m| check(&m.0));
        out.sort();
        out.dedup();
        out
    }

    /// Deletes silences whose `expires_at` is not after `now`; returns how many.
    pub fn gc(&mut self, now: Timestamp) -> usize {
        let dead: Vec<String> = self
            .iter()
            .filter(|m| m.expires_at <= now)
            .map(|m| m.silence.id.clone())
            .collect();
        for id in &dead {
            self.remove(id);
        }
        dead.len()
    }

    /// Merges a silence from a peer or a snapshot: last writer (by `updated_at`) wins; silences
    /// already past `expires_at` are ignored. Returns whether local state changed.
    pub fn merge(&mut self, m: MeshSilence, now: Timestamp) -> bool {
        if m.expires_at < now {
            return false;
        }
        if self
            .get(&m.silence.id)
            .is_some_and(|cur| cur.updated_at >= m.silence.updated_at)
        {
            return false;
        }
        self.insert(m);
        true
    }

    /// Replaces the whole state (snapshot load), keeping entries even if expired until next GC.
    pub fn load(&mut self, entries: Vec<MeshSilence>) {
        self.by_id.clear();
        self.index.clear();
        self.unindexed.clear();
        for m in entries {
            self.insert(m);
        }
    }
}

/// Whether `new` may update `old` in place (§6.4 `canUpdate`).
fn can_update(old: &Silence, new: &Silence, now: Timestamp) -> bool {
    if old.matcher_sets != new.matcher_sets {
        return false;
    }
    match old.state(now) {
        State::Active => old.starts_at.as_second() == new.starts_at.as_second() && new.ends_at >= now,
        State::Pending => new.starts_at >= now,
        State::Expired => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchers::{ParseMode, parse_matchers};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn sil(matchers: &str, start: i64, end: i64) -> Silence {
        Silence {
            matcher_sets: vec![parse_matchers(matchers, ParseMode::Fallback).unwrap()],
            starts_at: t(start),
            ends_at: t(end),
            created_by: "me".into(),
            comment: "c".into(),
            ..Silence::default()
        }
    }

    fn store() -> Silences {
        Silences::new(Duration::from_secs(3600), Limits::default(), NameValidation::Utf8)
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id-{n}")
        }
    }

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn validation_messages() {
        let mut s = store();
        let mut next = ids();
        let empty = Silence {
            matcher_sets: vec![],
            starts_at: t(0),
            ends_at: t(10),
            ..Silence::default()
        };
        assert_eq!(
            s.set(empty, t(0), &mut next).unwrap_err().to_string(),
            "invalid silence: at least one matcher required"
        );
        assert_eq!(
            s.set(sil("a=~\".*\"", 0, 10), t(0), &mut next).unwrap_err().to_string(),
            "invalid silence: at least one matcher must not match the empty string"
        );
        assert_eq!(
            s.set(sil("a=b", 10, 5), t(0), &mut next).unwrap_err().to_string(),
            "invalid silence: end time must not be before start time"
        );
        let mut unknown = sil("a=b", 0, 10);
        unknown.id = "nope".into();
        assert_eq!(s.set(unknown, t(0), &mut next).unwrap_err(), SilenceError::NotFound);
        assert!(s.is_empty());
    }

    #[test]
    fn update_in_place_or_expire_and_replace() {
        let mut s = store();
        let mut next = ids();
        let id = s.set(sil("alertname=x", 0, 100), t(0), &mut next).unwrap();
        assert_eq!(id, "id-1");
        // Active: extending the end keeps the id.
        let mut upd = s.get(&id).unwrap().clone();
        upd.ends_at = t(200);
        upd.comment = "longer".into();
        assert_eq!(s.set(upd, t(10), &mut next).unwrap(), "id-1");
        assert_eq!(s.get("id-1").unwrap().ends_at, t(200));
        // Active: changing the start creates a new silence and expires the old one.
        let mut moved = s.get(&id).unwrap().clone();
        moved.starts_at = t(5);
        assert_eq!(s.set(moved, t(20), &mut next).unwrap(), "id-2");
        assert_eq!(s.get("id-1").unwrap().state(t(20)), State::Expired);
        assert_eq!(
            s.get("id-2").unwrap().starts_at,
            t(20),
            "a start in the past becomes now"
        );
        // Expired: never updated in place.
        let mut again = s.get("id-1").unwrap().clone();
        again.ends_at = t(500);
        assert_eq!(s.set(again, t(30), &mut next).unwrap(), "id-3");
    }

    #[test]
    fn expire_by_state() {
        let mut s = store();
        let mut next = ids();
        let active = s.set(sil("a=b", 0, 100), t(0), &mut next).unwrap();
        let pending = s.set(sil("a=c", 50, 100), t(0), &mut next).unwrap();
        s.expire(&active, t(10)).unwrap();
        s.expire(&pending, t(10)).unwrap();
        assert_eq!(s.get(&active).unwrap().ends_at, t(10));
        assert_eq!(s.get(&pending).unwrap().starts_at, t(10));
        assert_eq!(s.get(&pending).unwrap().state(t(10)), State::Expired);
        s.expire(&active, t(20)).unwrap();
        assert_eq!(
            s.get(&active).unwrap().updated_at,
            t(10),
            "expiring twice changes nothing"
        );
        assert_eq!(s.expire("nope", t(20)), Err(SilenceError::NotFound));
    }

    #[test]
    fn muting_uses_the_index_and_the_unindexed_list() {
        let mut s = store();
        let mut next = ids();
        let a = s
            .set(sil("alertname=x, sev=~\"crit|warn\"", 0, 100), t(0), &mut next)
            .unwrap();
        let b = s.set(sil("team=~\"a.*\"", 0, 100), t(0), &mut next).unwrap();
        let _pending = s.set(sil("alertname=x", 50, 100), t(0), &mut next).unwrap();
        assert_eq!(
            s.silenced_by(&ls(&[("alertname", "x"), ("sev", "crit")]), t(1)),
            vec![a.clone()]
        );
        assert_eq!(
            s.silenced_by(&ls(&[("alertname", "x"), ("sev", "crit"), ("team", "ab")]), t(1)),
            vec![a, b]
        );
        assert!(s.silenced_by(&ls(&[("alertname", "y")]), t(1)).is_empty());
        assert_eq!(
            s.silenced_by(&ls(&[("alertname", "x")]), t(60)).len(),
            1,
            "the pending one became active"
        );
        assert!(
            s.silenced_by(&ls(&[("alertname", "x")]), t(100)).is_empty(),
            "ends_at is exclusive"
        );
    }

    #[test]
    fn index_buckets_follow_updates_merges_and_gc() {
        let mut s = store();
        let mut next = ids();
        // Three silences whose only anchor is `alertname=x` share one bucket; one is unindexed.
        let a = s
            .set(sil("alertname=x, team=~\"a.*\"", 0, 100), t(0), &mut next)
            .unwrap();
        let b = s
            .set(sil("alertname=x, team=~\"b.*\"", 0, 200), t(0), &mut next)
            .unwrap();
        let c = s.set(sil("alertname=x", 0, 300), t(0), &mut next).unwrap();
        let d = s.set(sil("team=~\"b.*\"", 0, 300), t(0), &mut next).unwrap();
        let x = |team: &str| ls(&[("alertname", "x"), ("team", team)]);
        assert_eq!(s.silenced_by(&x("ab"), t(1)), vec![a.clone(), c.clone()]);
        assert_eq!(s.silenced_by(&x("bb"), t(1)), vec![b.clone(), c.clone(), d.clone()]);
        // Updated in place (same matchers, new comment): still found once, with the new comment.
        let mut changed = s.get(&b).unwrap().clone();
        changed.comment = "longer".into();
        assert_eq!(s.set(changed, t(2), &mut next).unwrap(), b);
        assert_eq!(s.silenced_by(&x("bb"), t(3)), vec![b.clone(), c.clone(), d.clone()]);
        assert_eq!(s.get(&b).unwrap().comment, "longer");
        // A peer's newer version replaces it in the bucket as well.
        let mut remote = s.get_mesh(&b).unwrap().clone();
        remote.silence.comment = "remote".into();
        remote.silence.updated_at = t(4);
        assert!(s.merge(remote, t(4)));
        assert_eq!(s.silenced_by(&x("bb"), t(5)), vec![b.clone(), c.clone(), d.clone()]);
        assert_eq!(s.get(&b).unwrap().comment, "remote");
        // GC takes each out of its bucket; the last one removes the bucket.
        assert_eq!(s.gc(t(100 + 3600)), 1);
        assert_eq!(s.silenced_by(&x("ab"), t(50)), vec![c.clone()]);
        assert_eq!(s.gc(t(300 + 3600)), 3);
        assert!(s.is_empty() && s.index.is_empty() && s.unindexed.is_empty());
    }

    #[test]
    fn gc_respects_retention_and_merge_is_last_writer_wins() {
        let mut s = store();
        let mut next = ids();
        let id = s.set(sil("a=b", 0, 100), t(0), &mut next).unwrap();
        assert_eq!(s.gc(t(100 + 3599)), 0);
        let mut newer = s.iter().next().unwrap().clone();
        newer.silence.comment = "remote".into();
        newer.silence.updated_at = t(50);
        assert!(s.merge(newer.clone(), t(60)));
        assert!(!s.merge(newer, t(60)), "merging twice changes nothing");
        assert_eq!(s.get(&id).unwrap().comment, "remote");
        assert_eq!(s.gc(t(100 + 3600)), 1);
    }

    #[test]
    fn limits() {
        let mut s = Silences::new(
            Duration::ZERO,
            Limits {
                max_silences: 1,
                max_silence_size_bytes: 0,
            },
            NameValidation::Utf8,
        );
        let mut next = ids();
        s.set(sil("a=b", 0, 100), t(0), &mut next).unwrap();
        assert_eq!(
            s.set(sil("a=c", 0, 100), t(0), &mut next).unwrap_err().to_string(),
            "exceeded maximum number of silences: 1 (limit: 1)"
        );
        let mut small = Silences::new(
            Duration::ZERO,
            Limits {
                max_silences: 0,
                max_silence_size_bytes: 20,
            },
            NameValidation::Utf8,
        );
        assert!(
            small
                .set(sil("a=b", 0, 100), t(0), &mut next)
                .unwrap_err()
                .to_string()
                .starts_with("silence exceeded maximum size")
        );
        // Without a configured limit, a silence must still fit one replication record.
        let mut unlimited = Silences::new(Duration::ZERO, Limits::default(), NameValidation::Utf8);
        let mut huge = sil("a=b", 0, 100);
        huge.comment = "x".repeat(5 << 20);
        let err = unlimited.set(huge, t(0), &mut next).unwrap_err().to_string();
        assert!(err.ends_with("(limit: 1048576 bytes)"), "{err}");
        assert!(unlimited.is_empty(), "nothing stored");
    }
}
