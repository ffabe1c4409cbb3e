//! Route `labels` (Alertmanager 0.34): templates on a route, inherited by its children, rendered
//! against the alerts of each notification (and of a group for the API). A label may use
//! another with `{{ routeLabels "name" }}`: labels are rendered after those they name (a
//! cycle is an error for the labels in it). A label whose template fails is left out, as
//! Alertmanager leaves it out; the others are kept.

use std::collections::BTreeMap;

use tocsin_core::labels::LabelSet;
use tocsin_template::Template;

use crate::NotifyData;
use crate::fields::Fields;

/// A route's labels, compiled.
pub struct RouteLabels {
    /// The names in rendering order (those a label names first), with the error of each label
    /// that cannot be rendered (a cycle).
    order: Vec<(String, Option<String>)>,
    fields: Fields,
}

/// The labels a template names with `routeLabels "…"` (a literal name; a computed one reads
/// whatever is rendered by then).
fn references(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("routeLabels") {
        rest = &rest[i + "routeLabels".len()..];
        let arg = rest.trim_start();
        if let Some(q) = arg.strip_prefix('"')
            && let Some(end) = q.find('"')
        {
            out.push(q[..end].to_string());
        }
    }
    out
}

/// The names ordered so that each comes after those it names; labels in a cycle get its error.
fn order(labels: &BTreeMap<String, String>) -> Vec<(String, Option<String>)> {
    fn visit(
        name: &str,
        labels: &BTreeMap<String, String>,
        path: &mut Vec<String>,
        done: &mut BTreeMap<String, Option<String>>,
        out: &mut Vec<(String, Option<String>)>,
    ) {
        if done.contains_key(name) || !labels.contains_key(name) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == name) {
            let mut cycle: Vec<String> = path[at..].to_vec();
            cycle.push(name.to_string());
            let err = format!("route label cycle detected: {}", cycle.join(" -> "));
            for n in &path[at..] {
                done.insert(n.clone(), Some(err.clone()));
                out.push((n.clone(), Some(err.clone())));
            }
            return;
        }
        path.push(name.to_string());
        for r in references(&labels[name]) {
            visit(&r, labels, path, done, out);
        }
        path.pop();
        if !done.contains_key(name) {
            done.insert(name.to_string(), None);
            out.push((name.to_string(), None));
        }
    }
    let (mut done, mut out) = (BTreeMap::new(), Vec::new());
    for name in labels.keys() {
        visit(name, labels, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

impl RouteLabels {
    /// Compiles a route's (inherited) labels.
    ///
    /// # Errors
    /// Names the label whose template does not parse.
    pub fn compile(labels: &BTreeMap<String, String>, templates: &Template) -> Result<RouteLabels, String> {
        let fields = Fields::compile(templates, labels.iter().map(|(k, v)| (k.clone(), v.as_str())))
            .map_err(|e| format!("route labels: {e}"))?;
        Ok(RouteLabels {
            order: order(labels),
            fields,
        })
    }

    /// The labels rendered for `d` (its alerts, receiver and group labels; the reason is
    /// `unknown`, as Alertmanager renders them), and the errors of those left out.
    pub fn render(&self, d: &NotifyData, now: jiff::Timestamp) -> (LabelSet, Vec<String>) {
        let mut data = crate::email::template_data(d);
        data.notification_reason = "unknown".into();
        data.route_labels = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, cycle) in &self.order {
            if let Some(e) = cycle {
                errors.push(format!("{name}: {e}"));
                continue;
            }
            // Each label sees those rendered before it (the ones it names come first).
            let value = data.to_value();
            let mut r = self.fields.render(&value, now);
            match r.try_field(name) {
                Ok(v) => {
                    data.route_labels.insert(name.clone(), v);
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        (data.route_labels.into_iter().collect(), errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_naming_others_come_after_them_and_cycles_are_errors() {
        let labels: BTreeMap<String, String> = [
            ("a", r#"{{ routeLabels "b" }}-a"#),
            ("b", "b"),
            ("x", r#"{{ routeLabels "y" }}"#),
            ("y", r#"{{ routeLabels "x" }}"#),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = order(&labels);
        let names: Vec<&str> = o.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "x", "y"]);
        assert_eq!(o[2].1.as_deref(), Some("route label cycle detected: x -> y -> x"));
        let rl = RouteLabels::compile(&labels, &Template::with_defaults()).unwrap();
        let d = NotifyData {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::default(),
            reason: tocsin_core::nflog::NotifyReason::FirstNotification,
            external_url: String::new(),
            route_labels: LabelSet::default(),
            alerts: vec![],
            receiver_data: Default::default(),
        };
        let (got, errors) = rl.render(&d, "2026-12-07T10:00:00Z".parse().unwrap());
        let got: Vec<(String, String)> = got.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(got, [("a".to_string(), "b-a".to_string()), ("b".into(), "b".into())]);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
