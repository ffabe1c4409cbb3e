//! Route `labels` (Alertmanager 0.34): templates on a route, inherited by its children, rendered
//! against the alerts of each notification (and of a group for the API). A label whose template
//! fails is left out, as Alertmanager leaves it out; the others are kept.

use std::collections::BTreeMap;

use tocsin_core::labels::LabelSet;
use tocsin_template::Template;

use crate::NotifyData;
use crate::fields::Fields;

/// A route's labels, compiled.
pub struct RouteLabels {
    names: Vec<String>,
    fields: Fields,
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
            names: labels.keys().cloned().collect(),
            fields,
        })
    }

    /// The labels rendered for `d` (its alerts, receiver and group labels; the reason is
    /// `unknown`, as Alertmanager renders them), and the errors of those left out.
    pub fn render(&self, d: &NotifyData, now: jiff::Timestamp) -> (LabelSet, Vec<String>) {
        let mut data = crate::email::template_data(d);
        data.notification_reason = "unknown".into();
        data.route_labels = BTreeMap::new();
        let value = data.to_value();
        let mut r = self.fields.render(&value, now);
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for name in &self.names {
            match r.try_field(name) {
                Ok(v) => out.push((name.clone(), v)),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        (out.into_iter().collect(), errors)
    }
}
