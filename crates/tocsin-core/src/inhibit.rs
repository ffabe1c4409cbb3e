//! Inhibition (§2.6): a firing source alert mutes target alerts with equal labels.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::alert::Alert;
use crate::labels::{Fingerprint, LabelSet};
use crate::matchers::{Matcher, all_match};

/// A validated inhibition rule.
#[derive(Clone, Debug, Default)]
pub struct InhibitRule {
    /// Optional name (may repeat).
    pub name: Option<String>,
    /// Matchers an inhibiting alert must satisfy.
    pub source: Vec<Matcher>,
    /// Matchers an inhibited alert must satisfy.
    pub target: Vec<Matcher>,
    /// Labels whose values must be equal on source and target (absent equals empty).
    pub equal: Vec<String>,
}

#[derive(Clone, Debug)]
struct Source {
    ends_at: Timestamp,
    matches_target: bool,
}

/// Per-rule caches of source alerts, indexed by their `equal` label values.
#[derive(Clone, Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    // For each rule: equal-values key -> source fingerprint -> source.
    sources: Vec<HashMap<Vec<String>, HashMap<Fingerprint, Source>>>,
}

impl Inhibitor {
    /// Creates an inhibitor with empty caches.
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let sources = vec![HashMap::new(); rules.len()];
        Inhibitor { rules, sources }
    }

    /// Returns the number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    fn equal_key(rule: &InhibitRule, labels: &LabelSet) -> Vec<String> {
        rule.equal
            .iter()
            .map(|n| labels.get(n).unwrap_or_default().to_string())
            .collect()
    }

    /// Records an alert version; it becomes a source for every rule whose source side it matches.
    pub fn observe(&mut self, alert: &Alert) {
        for (rule, cache) in self.rules.iter().zip(self.sources.iter_mut()) {
            if all_match(&rule.source, &alert.labels) {
                let src = Source {
                    ends_at: alert.ends_at,
                    matches_target: all_match(&rule.target, &alert.labels),
                };
                cache
                    .entry(Self::equal_key(rule, &alert.labels))
                    .or_default()
                    .insert(alert.fingerprint, src);
            }
        }
    }

    /// Returns the fingerprint of an alert inhibiting `labels` at `now`, if any.
    pub fn inhibited_by(&self, labels: &LabelSet, now: Timestamp) -> Option<Fingerprint> {
        for (rule, cache) in self.rules.iter().zip(&self.sources) {
            if !all_match(&rule.target, labels) {
                continue;
            }
            // A two-sided match must not be inhibited by alerts that are targets themselves.
            let exclude_two_sided = all_match(&rule.source, labels);
            let Some(bucket) = cache.get(&Self::equal_key(rule, labels)) else {
                continue;
            };
            let found = bucket
                .iter()
                .filter(|(_, s)| s.ends_at > now && !(exclude_two_sided && s.matches_target))
                .map(|(fp, _)| *fp)
                .min();
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Drops sources that are resolved at `now`.
    pub fn gc(&mut self, now: Timestamp) {
        for cache in &mut self.sources {
            cache.retain(|_, bucket| {
                bucket.retain(|_, s| s.ends_at > now);
                !bucket.is_empty()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::fingerprint;
    use crate::matchers::{ParseMode, parse_matchers};

    fn alert(pairs: &[(&str, &str)], ends: i64) -> Alert {
        let labels: LabelSet = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Alert {
            fingerprint: fingerprint(&labels),
            labels,
            ends_at: Timestamp::from_second(ends).unwrap(),
            ..Alert::default()
        }
    }

    #[test]
    fn source_inhibits_target_with_equal_labels_until_resolved() {
        let rule = InhibitRule {
            source: parse_matchers("alertname=JobDown", ParseMode::Fallback).unwrap(),
            target: parse_matchers("alertname=InstanceDown", ParseMode::Fallback).unwrap(),
            equal: vec!["job".into(), "zone".into()],
            ..Default::default()
        };
        let mut ih = Inhibitor::new(vec![rule]);
        let src = alert(&[("alertname", "JobDown"), ("job", "j"), ("zone", "aa")], 100);
        ih.observe(&src);
        let t_aa = alert(&[("alertname", "InstanceDown"), ("job", "j"), ("zone", "aa")], 100);
        let t_ab = alert(&[("alertname", "InstanceDown"), ("job", "j"), ("zone", "ab")], 100);
        let now = Timestamp::from_second(50).unwrap();
        assert_eq!(ih.inhibited_by(&t_aa.labels, now), Some(src.fingerprint));
        assert_eq!(ih.inhibited_by(&t_ab.labels, now), None);
        // Once the source resolves, it no longer inhibits.
        assert_eq!(
            ih.inhibited_by(&t_aa.labels, Timestamp::from_second(100).unwrap()),
            None
        );
    }

    #[test]
    fn two_sided_rule_does_not_self_inhibit() {
        let rule = InhibitRule {
            source: parse_matchers("severity=~critical|warning", ParseMode::Fallback).unwrap(),
            target: parse_matchers("severity=~critical|warning", ParseMode::Fallback).unwrap(),
            equal: vec!["alertname".into()],
            ..Default::default()
        };
        let mut ih = Inhibitor::new(vec![rule]);
        let a = alert(&[("alertname", "x"), ("severity", "critical")], 100);
        ih.observe(&a);
        assert_eq!(ih.inhibited_by(&a.labels, Timestamp::from_second(1).unwrap()), None);
    }
}
