//! Alertmanager's template data (§2.8): what `.` is in a notification template.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::value::Value;

/// One alert as templates see it.
#[derive(Debug, Clone, Default)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Start.
    pub starts_at: Option<Timestamp>,
    /// End; `None` for a firing alert (Go's zero time).
    pub ends_at: Option<Timestamp>,
    /// Prometheus' link to the expression.
    pub generator_url: String,
    /// 16 hex digits.
    pub fingerprint: String,
}

/// The data of one notification.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// Receiver name, regexp-quoted as Alertmanager passes it.
    pub receiver: String,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Group labels.
    pub group_labels: BTreeMap<String, String>,
    /// Labels shared by every alert.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations shared by every alert.
    pub common_annotations: BTreeMap<String, String>,
    /// `--web.external-url`.
    pub external_url: String,
    /// Why the notification is sent (`first notification`, …).
    pub notification_reason: String,
    /// The route's `labels`, rendered (0.34; empty when the route has none).
    pub route_labels: BTreeMap<String, String>,
}

fn kv(m: &BTreeMap<String, String>) -> Value {
    Value::Kv(Arc::new(m.clone()))
}

fn time(t: Option<Timestamp>) -> Value {
    Value::Time(t.unwrap_or_else(crate::go_zero_time), TimeZone::UTC)
}

impl Alert {
    /// The alert as a `template.Alert` value.
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("Status", Value::str(&self.status));
        f.insert("Labels", kv(&self.labels));
        f.insert("Annotations", kv(&self.annotations));
        f.insert("StartsAt", time(self.starts_at));
        f.insert("EndsAt", time(self.ends_at));
        f.insert("GeneratorURL", Value::str(&self.generator_url));
        f.insert("Fingerprint", Value::str(&self.fingerprint));
        Value::Struct("template.Alert", Arc::new(f))
    }
}

impl Data {
    /// The data as a `template.Data` value.
    pub fn to_value(&self) -> Value {
        let mut f = BTreeMap::new();
        f.insert("Receiver", Value::str(&self.receiver));
        f.insert("Status", Value::str(&self.status));
        f.insert(
            "Alerts",
            Value::Alerts(Arc::new(self.alerts.iter().map(Alert::to_value).collect())),
        );
        f.insert("GroupLabels", kv(&self.group_labels));
        f.insert("CommonLabels", kv(&self.common_labels));
        f.insert("CommonAnnotations", kv(&self.common_annotations));
        f.insert("ExternalURL", Value::str(&self.external_url));
        f.insert("NotificationReason", Value::str(&self.notification_reason));
        f.insert("RouteLabels", kv(&self.route_labels));
        Value::Struct("template.Data", Arc::new(f))
    }
}
