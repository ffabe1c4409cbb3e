//! The routing tree (§2.3): matching with `continue`, inherited options, route keys and group keys.

use std::time::Duration;

use crate::labels::{LabelSet, labels_to_string, write_labels};
use crate::matchers::{Matcher, all_match, matchers_to_string};

/// How a route groups alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label.
    All,
    /// The listed label names (possibly none).
    Labels(Vec<String>),
}

/// A node of the routing tree with its options already inherited from its parent.
#[derive(Clone, Debug)]
pub struct Route {
    /// Index in [`RouteTree::nodes`].
    pub index: usize,
    /// Parent index (`None` for the root).
    pub parent: Option<usize>,
    /// Children indices in configuration order.
    pub children: Vec<usize>,
    /// Matchers (from `match`, `match_re` and `matchers`), sorted.
    pub matchers: Vec<Matcher>,
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Whether matching continues with later siblings.
    pub continue_matching: bool,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait between notifications of an existing group.
    pub group_interval: Duration,
    /// Wait before re-sending an unchanged notification.
    pub repeat_interval: Duration,
    /// Interval names that mute this route (not inherited).
    pub mute_time_intervals: Vec<String>,
    /// Interval names outside of which this route is muted (not inherited).
    pub active_time_intervals: Vec<String>,
    /// `labels` (0.34): templates, the parent's with this route's laid over them.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `Route.Key()`: parent key + `/` + matchers string.
    pub key: String,
    /// `Route.ID()`: like the key, plus the child index per level.
    pub id: String,
}

impl Route {
    /// Returns the group labels of an alert on this route.
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names.iter().filter_map(|n| labels.get(n).map(|v| (n, v))).collect(),
        }
    }

    /// Returns the group key string `<route key>:<group labels>` (§3.2).
    pub fn group_key(&self, group_labels: &LabelSet) -> String {
        format!("{}:{}", self.key, labels_to_string(group_labels))
    }

    /// Writes into `out` the group key of an alert with `labels` on this route, as
    /// `group_key(&group_labels(labels))` would return it, without building either: routing
    /// every re-sent alert to its group spent three allocations on them.
    pub fn write_group_key(&self, labels: &LabelSet, out: &mut String) {
        out.clear();
        out.push_str(&self.key);
        out.push(':');
        match &self.group_by {
            GroupBy::All => write_labels(out, labels.iter()),
            GroupBy::Labels(names) => {
                // The configured names in name order, each once, without sorting a copy.
                let names = || names.iter().map(String::as_str);
                let first = names().min();
                let sorted = std::iter::successors(first, |prev| names().filter(|n| n > prev).min());
                write_labels(out, sorted.filter_map(|n| labels.get(n).map(|v| (n, v))));
            }
        }
    }
}

/// The whole routing tree as an arena; node 0 is the root.
#[derive(Clone, Debug)]
pub struct RouteTree {
    /// All nodes, parents before children.
    pub nodes: Vec<Route>,
}

/// Options a child may override; the rest come from its parent.
#[derive(Clone, Debug, Default)]
pub struct RouteSpec {
    /// Matchers of the node.
    pub matchers: Vec<Matcher>,
    /// Receiver, inherited when `None`.
    pub receiver: Option<String>,
    /// Grouping, inherited when `None`.
    pub group_by: Option<GroupBy>,
    /// `continue`.
    pub continue_matching: bool,
    /// Inherited when `None`.
    pub group_wait: Option<Duration>,
    /// Inherited when `None`.
    pub group_interval: Option<Duration>,
    /// Inherited when `None`.
    pub repeat_interval: Option<Duration>,
    /// Not inherited.
    pub mute_time_intervals: Vec<String>,
    /// Not inherited.
    pub active_time_intervals: Vec<String>,
    /// `labels`: laid over the parent's, key by key.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Children.
    pub routes: Vec<RouteSpec>,
}

/// Root defaults (§2.3).
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Root default group interval.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// Root default repeat interval.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

impl RouteTree {
    /// Builds the tree from a root spec, applying inheritance.
    pub fn build(root: RouteSpec) -> RouteTree {
        let mut tree = RouteTree { nodes: Vec::new() };
        let base = Route {
            index: 0,
            parent: None,
            children: Vec::new(),
            matchers: Vec::new(),
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            continue_matching: false,
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            labels: std::collections::BTreeMap::new(),
            key: String::new(),
            id: String::new(),
        };
        tree.add(&base, None, 0, root);
        tree
    }

    fn add(&mut self, parent: &Route, parent_idx: Option<usize>, child_pos: usize, spec: RouteSpec) -> usize {
        let index = self.nodes.len();
        let mut matchers = spec.matchers;
        crate::matchers::sort_matchers(&mut matchers);
        let ms = matchers_to_string(&matchers);
        let (key, id) = match parent_idx {
            None => (ms.clone(), ms),
            Some(_) => (
                format!("{}/{}", parent.key, ms),
                format!("{}/{}/{}", parent.id, ms, child_pos),
            ),
        };
        let node = Route {
            index,
            parent: parent_idx,
            children: Vec::new(),
            matchers,
            receiver: spec.receiver.unwrap_or_else(|| parent.receiver.clone()),
            group_by: spec.group_by.unwrap_or_else(|| parent.group_by.clone()),
            continue_matching: spec.continue_matching,
            group_wait: spec.group_wait.unwrap_or(parent.group_wait),
            group_interval: spec.group_interval.unwrap_or(parent.group_interval),
            repeat_interval: spec.repeat_interval.unwrap_or(parent.repeat_interval),
            mute_time_intervals: spec.mute_time_intervals,
            active_time_intervals: spec.active_time_intervals,
            labels: {
                let mut l = parent.labels.clone();
                l.extend(spec.labels.unwrap_or_default());
                l
            },
            key,
            id,
        };
        self.nodes.push(node.clone());
        let mut children = Vec::with_capacity(spec.routes.len());
        for (pos, child) in spec.routes.into_iter().enumerate() {
            children.push(self.add(&node, Some(index), pos, child));
        }
        self.nodes[index].children = children;
        index
    }

    /// Returns the root.
    pub fn root(&self) -> &Route {
        &self.nodes[0]
    }

    /// Whether an alert can match several routes: only through a `continue` below the root.
    /// Without one, every alert is in exactly one group.
    pub fn has_continue(&self) -> bool {
        self.nodes.iter().any(|r| r.parent.is_some() && r.continue_matching)
    }

    /// Returns the routes an alert with `labels` is delivered to, in order (Alertmanager's `Route.Match`).
    pub fn match_routes(&self, labels: &LabelSet) -> Vec<&Route> {
        let mut out = Vec::new();
        self.match_into(0, labels, &mut out);
        out
    }

    fn match_into<'a>(&'a self, idx: usize, labels: &LabelSet, out: &mut Vec<&'a Route>) -> bool {
        let node = &self.nodes[idx];
        if !all_match(&node.matchers, labels) {
            return false;
        }
        let mut matched_child = false;
        for &c in &node.children {
            if self.match_into(c, labels, out) {
                matched_child = true;
                if !self.nodes[c].continue_matching {
                    break;
                }
            }
        }
        if !matched_child {
            out.push(node);
        }
        true
    }

    /// Returns the route with the given `Route.ID()`.
    pub fn by_id(&self, id: &str) -> Option<&Route> {
        self.nodes.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchers::{ParseMode, parse_matchers};

    fn spec(matchers: &str, receiver: Option<&str>, cont: bool, routes: Vec<RouteSpec>) -> RouteSpec {
        RouteSpec {
            matchers: if matchers.is_empty() {
                vec![]
            } else {
                parse_matchers(matchers, ParseMode::Fallback).unwrap()
            },
            receiver: receiver.map(String::from),
            continue_matching: cont,
            routes,
            ..RouteSpec::default()
        }
    }

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    proptest::proptest! {
        /// The allocation-free group key equals the key of the built group labels, whatever the
        /// order and repetition of the configured names.
        #[test]
        fn written_group_key_matches_the_built_one(
            names in proptest::collection::vec("[a-e]", 0..6),
            all in proptest::bool::ANY,
            labels in proptest::collection::btree_map("[a-f]", "[x-z\"\n]{1,3}", 0..6),
        ) {
            let tree = RouteTree::build(RouteSpec {
                group_by: Some(if all { GroupBy::All } else { GroupBy::Labels(names) }),
                ..spec("", Some("r"), false, vec![])
            });
            let (route, labels): (&Route, LabelSet) = (&tree.nodes[0], labels.iter().collect());
            let mut out = String::from("stale");
            route.write_group_key(&labels, &mut out);
            proptest::prop_assert_eq!(out, route.group_key(&route.group_labels(&labels)));
        }
    }

    #[test]
    fn matching_with_continue_and_fallback_to_parent() {
        let tree = RouteTree::build(RouteSpec {
            group_by: Some(GroupBy::Labels(vec!["alertname".into()])),
            ..spec(
                "",
                Some("default"),
                false,
                vec![
                    spec("team=a", Some("a"), true, vec![]),
                    spec(
                        "team=~a|b",
                        Some("ab"),
                        false,
                        vec![spec("sev=crit", Some("pager"), false, vec![])],
                    ),
                    spec("team=a", Some("never"), false, vec![]),
                ],
            )
        });
        let recv = |l: &LabelSet| {
            tree.match_routes(l)
                .iter()
                .map(|r| r.receiver.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(recv(&ls(&[("team", "a")])), ["a", "ab"]);
        assert_eq!(recv(&ls(&[("team", "b"), ("sev", "crit")])), ["pager"]);
        assert_eq!(recv(&ls(&[("team", "c")])), ["default"]);
        assert!(tree.has_continue());
        // `continue` on the root alone lets no alert match twice.
        let root_only = RouteTree::build(spec(
            "",
            Some("default"),
            true,
            vec![spec("team=a", Some("a"), false, vec![])],
        ));
        assert!(!root_only.has_continue());
        // Inheritance of group_by, keys and ids.
        let pager = &tree.nodes[3];
        assert_eq!(pager.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(pager.key, r#"{}/{team=~"a|b"}/{sev="crit"}"#);
        assert_eq!(pager.id, r#"{}/{team=~"a|b"}/1/{sev="crit"}/0"#);
        let gl = pager.group_labels(&ls(&[("alertname", "A1"), ("x", "y")]));
        assert_eq!(
            pager.group_key(&gl),
            r#"{}/{team=~"a|b"}/{sev="crit"}:{alertname="A1"}"#
        );
    }
}
