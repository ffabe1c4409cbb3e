//! Alerts: the stored model, ingestion defaults and validation (§3.1), and the merge rule.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::labels::{Fingerprint, LabelSet, NameValidation, fingerprint, go_quote};
use crate::time::{ZERO, is_zero};

/// An alert as stored and routed.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels (never empty after validation).
    pub labels: LabelSet,
    /// Non-identifying annotations.
    pub annotations: LabelSet,
    /// When the alert started firing.
    pub starts_at: Timestamp,
    /// When the alert resolves; never zero once ingested.
    pub ends_at: Timestamp,
    /// Link to the rule that generated it ("" when unknown). Shared: the alerts of one rule
    /// carry the same URL, and ingestion hands consecutive equal URLs one allocation.
    pub generator_url: Arc<str>,
    /// When this version was received.
    pub updated_at: Timestamp,
    /// Whether `ends_at` was filled from `resolve_timeout` rather than sent.
    pub timeout: bool,
    /// Fingerprint of `labels`, computed once.
    pub fingerprint: Fingerprint,
}

/// An alert as posted by a client, before defaults are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct PostedAlert {
    /// Labels as received.
    pub labels: LabelSet,
    /// Annotations as received.
    pub annotations: LabelSet,
    /// `startsAt`, zero if absent.
    pub starts_at: Timestamp,
    /// `endsAt`, zero if absent.
    pub ends_at: Timestamp,
    /// `generatorURL`.
    pub generator_url: String,
}

impl Default for PostedAlert {
    fn default() -> Self {
        PostedAlert {
            labels: LabelSet::new(),
            annotations: LabelSet::new(),
            starts_at: ZERO,
            ends_at: ZERO,
            generator_url: String::new(),
        }
    }
}

impl Default for Alert {
    fn default() -> Self {
        Alert {
            labels: LabelSet::new(),
            annotations: LabelSet::new(),
            starts_at: ZERO,
            ends_at: ZERO,
            generator_url: "".into(),
            updated_at: ZERO,
            timeout: false,
            fingerprint: Fingerprint::default(),
        }
    }
}

impl Alert {
    /// Returns whether the alert is resolved at `now` (`endsAt` set and not after `now`).
    pub fn resolved_at(&self, now: Timestamp) -> bool {
        !is_zero(self.ends_at) && self.ends_at <= now
    }

    /// Merges two versions of the same alert (Alertmanager's `Alert.Merge`).
    ///
    /// The more recently updated one provides labels and annotations; the earliest start wins; a
    /// later explicit end wins over a later timeout-derived one.
    pub fn merge(&self, other: &Alert, now: Timestamp) -> Alert {
        if other.updated_at < self.updated_at {
            return other.merge(self, now);
        }
        let mut res = other.clone();
        if self.starts_at < other.starts_at {
            res.starts_at = self.starts_at;
        }
        if other.resolved_at(now) {
            if self.resolved_at(now) && self.ends_at > other.ends_at {
                res.ends_at = self.ends_at;
            }
        } else if self.ends_at > other.ends_at && !self.timeout {
            res.ends_at = self.ends_at;
        }
        res
    }

    /// Returns the stored alert that results from receiving `new` when `old` is stored: merged when
    /// their activity intervals overlap, otherwise `new` replaces `old`.
    pub fn store_merge(old: &Alert, new: Alert, now: Timestamp) -> Alert {
        let overlaps = (new.ends_at > old.starts_at && new.ends_at < old.ends_at)
            || (new.starts_at > old.starts_at && new.starts_at < old.ends_at);
        if overlaps { old.merge(&new, now) } else { new }
    }
}

/// Applies ingestion defaults and validates a posted alert (§3.1).
///
/// # Errors
/// Returns Alertmanager's message (`start time must be before end time`, `at least one label pair
/// required`, `invalid label set: invalid name "0a"`, …).
pub fn prepare(
    posted: PostedAlert,
    now: Timestamp,
    resolve_timeout: Duration,
    names: NameValidation,
) -> Result<Alert, String> {
    let PostedAlert {
        mut labels,
        mut annotations,
        mut starts_at,
        mut ends_at,
        generator_url,
    } = posted;
    let mut timeout = false;
    if is_zero(starts_at) {
        starts_at = if is_zero(ends_at) { now } else { ends_at };
    }
    if is_zero(ends_at) {
        let rt = jiff::SignedDuration::try_from(resolve_timeout).unwrap_or(jiff::SignedDuration::ZERO);
        ends_at = now.checked_add(rt).unwrap_or(now);
        timeout = true;
    }
    labels.retain(|_, v| !v.is_empty());
    annotations.retain(|_, v| !v.is_empty());
    if ends_at < starts_at {
        return Err("start time must be before end time".into());
    }
    validate_label_set(&labels, names).map_err(|e| format!("invalid label set: {e}"))?;
    if labels.is_empty() {
        return Err("at least one label pair required".into());
    }
    validate_label_set(&annotations, names).map_err(|e| format!("invalid annotations: {e}"))?;
    let fingerprint = fingerprint(&labels);
    Ok(Alert {
        labels,
        annotations,
        starts_at,
        ends_at,
        generator_url: generator_url.into(),
        updated_at: now,
        timeout,
        fingerprint,
    })
}

fn validate_label_set(ls: &LabelSet, names: NameValidation) -> Result<(), String> {
    for name in ls.keys() {
        if !names.is_valid(name) {
            return Err(format!("invalid name {}", go_quote(name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn alert(start: i64, end: i64, updated: i64, timeout: bool) -> Alert {
        Alert {
            labels: [("a".to_string(), "b".to_string())].into(),
            starts_at: t(start),
            ends_at: t(end),
            updated_at: t(updated),
            timeout,
            ..Alert::default()
        }
    }

    #[test]
    fn a_stored_alert_fits_a_128_byte_allocation_with_its_reference_counts() {
        // 100k stored alerts: every size class step up costs 3 MB of RSS.
        assert!(std::mem::size_of::<Alert>() + 2 * std::mem::size_of::<usize>() <= 128);
    }

    #[test]
    fn prepare_applies_defaults() {
        let posted = PostedAlert {
            labels: [("alertname", "x"), ("empty", "")].into(),
            ..PostedAlert::default()
        };
        let a = prepare(posted, t(0), Duration::from_secs(300), NameValidation::Utf8).unwrap();
        assert_eq!(a.starts_at, t(0));
        assert_eq!(a.ends_at, t(300));
        assert!(a.timeout);
        assert!(!a.labels.contains_key("empty"));
    }

    #[test]
    fn prepare_rejects_bad_alerts_with_alertmanager_messages() {
        let rt = Duration::from_secs(300);
        let none = PostedAlert::default();
        assert_eq!(
            prepare(none, t(0), rt, NameValidation::Utf8).unwrap_err(),
            "at least one label pair required"
        );
        let bad_name = PostedAlert {
            labels: [("0a", "x")].into(),
            ..Default::default()
        };
        assert_eq!(
            prepare(bad_name, t(0), rt, NameValidation::Classic).unwrap_err(),
            "invalid label set: invalid name \"0a\""
        );
        let backwards = PostedAlert {
            labels: [("a", "x")].into(),
            starts_at: t(10),
            ends_at: t(5),
            ..Default::default()
        };
        assert_eq!(
            prepare(backwards, t(0), rt, NameValidation::Utf8).unwrap_err(),
            "start time must be before end time"
        );
    }

    #[test]
    fn merge_keeps_earliest_start_and_latest_explicit_end() {
        let now = t(100);
        let old = alert(1, 200, 10, false);
        let new = alert(5, 150, 20, true);
        let m = Alert::store_merge(&old, new, now);
        assert_eq!(m.starts_at, t(1));
        // Older explicit end wins over a newer timeout end when it is later.
        assert_eq!(m.ends_at, t(200));
        // No overlap: replaced.
        let later = alert(300, 400, 30, false);
        assert_eq!(Alert::store_merge(&old, later.clone(), now), later);
    }

    #[test]
    fn merge_latest_resolve_wins_when_both_resolved() {
        let now = t(100);
        let a = alert(1, 48, 10, false);
        let b = alert(1, 41, 20, false);
        assert_eq!(a.merge(&b, now).ends_at, t(48));
    }
}
