//! `--alerts.per-alertname-limit` (Alertmanager 0.31+): at most `limit` alerts per `alertname`
//! are stored. An alert already counted is always let in (its end time updated); a new one is let
//! in while its name has room, or in place of that name's alert that ended earliest if that one
//! has ended by now; otherwise it is refused (limited). Pure: the caller passes `now`.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;

use crate::labels::Fingerprint;

#[derive(Default)]
struct Bucket {
    ends: HashMap<Fingerprint, Timestamp>,
    by_end: BTreeSet<(Timestamp, Fingerprint)>,
}

impl Bucket {
    fn insert(&mut self, fp: Fingerprint, end: Timestamp) {
        self.ends.insert(fp, end);
        self.by_end.insert((end, fp));
    }

    fn remove(&mut self, fp: Fingerprint) {
        if let Some(end) = self.ends.remove(&fp) {
            self.by_end.remove(&(end, fp));
        }
    }
}

/// Per-alertname buckets of fingerprints by end time.
pub struct PerAlertname {
    limit: usize,
    buckets: HashMap<String, Bucket>,
}

impl PerAlertname {
    /// A limit of `limit` alerts per name (0: no limit, everything is let in).
    pub fn new(limit: usize) -> Self {
        PerAlertname {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// The limit (0: none).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the alert `fp` named `name`, ending at `end`, may be stored at `now`; counts it
    /// when it may.
    pub fn admit(&mut self, name: &str, fp: Fingerprint, end: Timestamp, now: Timestamp) -> bool {
        if self.limit == 0 {
            return true;
        }
        let b = match self.buckets.get_mut(name) {
            Some(b) => b,
            None => self.buckets.entry(name.to_string()).or_default(),
        };
        if b.ends.contains_key(&fp) {
            b.remove(fp);
            b.insert(fp, end);
            return true;
        }
        if b.ends.len() < self.limit {
            b.insert(fp, end);
            return true;
        }
        match b.by_end.first().copied() {
            Some((earliest, old)) if earliest < now => {
                b.remove(old);
                b.insert(fp, end);
                true
            }
            _ => false,
        }
    }

    /// Forgets alerts that ended before `now` (an ended alert's slot is free to take anyway) and
    /// names with none left: the buckets stay as large as the alerts firing.
    pub fn gc(&mut self, now: Timestamp) {
        self.buckets.retain(|_, b| {
            while let Some((end, fp)) = b.by_end.first().copied() {
                if end >= now {
                    break;
                }
                b.remove(fp);
            }
            !b.ends.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn a_full_name_refuses_new_alerts_until_one_of_its_alerts_ends() {
        let mut l = PerAlertname::new(2);
        assert!(l.admit("A", Fingerprint(1), t(100), t(0)));
        assert!(l.admit("A", Fingerprint(2), t(50), t(0)));
        assert!(!l.admit("A", Fingerprint(3), t(100), t(0)), "full");
        assert!(l.admit("B", Fingerprint(3), t(100), t(0)), "names have their own room");
        assert!(
            l.admit("A", Fingerprint(1), t(200), t(10)),
            "a counted alert is always let in"
        );
        assert!(
            !l.admit("A", Fingerprint(3), t(100), t(50)),
            "fp 2 ends at 50: not before now"
        );
        assert!(
            l.admit("A", Fingerprint(3), t(100), t(51)),
            "fp 2 ended: its slot is taken"
        );
        assert!(
            !l.admit("A", Fingerprint(2), t(300), t(52)),
            "and fp 2 is now the one refused"
        );
    }

    #[test]
    fn gc_frees_ended_alerts_and_empty_names() {
        let mut l = PerAlertname::new(1);
        assert!(l.admit("A", Fingerprint(1), t(10), t(0)));
        l.gc(t(11));
        assert!(l.buckets.is_empty());
        assert!(l.admit("A", Fingerprint(2), t(100), t(11)));
        assert!(
            PerAlertname::new(0).admit("A", Fingerprint(9), t(0), t(1)),
            "0: no limit"
        );
    }
}
