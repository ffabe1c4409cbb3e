//! The webhook integration: payload version 4 (§5.5), field for field.

use std::borrow::Cow;

use serde::Serialize;
use tocsin_core::alert::Alert;
use tocsin_core::config::WebhookConfig;
use tocsin_core::labels::{Fingerprint, LabelSet};
use tocsin_core::time::{Nanos, is_zero};

use crate::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError};

/// One alert in a webhook payload, borrowed from the alert it describes.
#[derive(Debug, Serialize, PartialEq)]
pub struct PayloadAlert<'a> {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Labels.
    pub labels: &'a LabelSet,
    /// Annotations.
    pub annotations: &'a LabelSet,
    /// RFC 3339 with nanoseconds.
    #[serde(rename = "startsAt")]
    pub starts_at: Nanos,
    /// `0001-01-01T00:00:00Z` for firing alerts.
    #[serde(rename = "endsAt")]
    pub ends_at: Nanos,
    /// May be empty.
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
    /// 16 hex digits.
    pub fingerprint: Fingerprint,
}

/// The webhook body, in Alertmanager's field order. It borrows from the notification's data:
/// building it sends a burst of notifications without copying labels or formatting timestamps
/// into strings first.
#[derive(Debug, Serialize, PartialEq)]
pub struct Payload<'a> {
    /// Receiver name, regex-quoted.
    pub receiver: String,
    /// `firing` if any alert fires.
    pub status: &'static str,
    /// The alerts sent.
    pub alerts: Vec<PayloadAlert<'a>>,
    /// Why this notification is sent.
    pub notification_reason: &'static str,
    /// Group labels.
    #[serde(rename = "groupLabels")]
    pub group_labels: &'a LabelSet,
    /// Labels equal on all alerts sent.
    #[serde(rename = "commonLabels")]
    pub common_labels: Cow<'a, LabelSet>,
    /// Annotations equal on all alerts sent.
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: Cow<'a, LabelSet>,
    /// The route's rendered `labels` (0.34; `{}` when none).
    #[serde(rename = "routeLabels")]
    pub route_labels: &'a LabelSet,
    /// External URL.
    #[serde(rename = "externalURL")]
    pub external_url: &'a str,
    /// Always `"4"`.
    pub version: &'static str,
    /// Group key.
    #[serde(rename = "groupKey")]
    pub group_key: &'a str,
    /// Alerts dropped by `max_alerts`.
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
}

/// Escapes regex metacharacters like Go's `regexp.QuoteMeta`.
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The labels equal on every set; borrowed from the first set while that is all of them (the
/// usual single-alert notification copies nothing).
fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> Cow<'a, LabelSet> {
    let Some(first) = sets.next() else {
        return Cow::Owned(LabelSet::new());
    };
    let mut acc = Cow::Borrowed(first);
    for m in sets {
        if !acc.iter().all(|(k, v)| m.get(k) == Some(v)) {
            acc.to_mut().retain(|k, v| m.get(k) == Some(v));
        }
    }
    acc
}

fn payload_alert(a: &Alert) -> PayloadAlert<'_> {
    PayloadAlert {
        status: if is_zero(a.ends_at) { "firing" } else { "resolved" },
        labels: &a.labels,
        annotations: &a.annotations,
        starts_at: Nanos(a.starts_at),
        ends_at: Nanos(a.ends_at),
        generator_url: &a.generator_url,
        fingerprint: a.fingerprint,
    }
}

/// Builds the version 4 payload; `max_alerts` = 0 keeps every alert.
pub fn payload(data: &NotifyData, max_alerts: u64) -> Payload<'_> {
    let keep = if max_alerts == 0 {
        data.alerts.len()
    } else {
        data.alerts.len().min(max_alerts as usize)
    };
    let sent = &data.alerts[..keep];
    let alerts: Vec<PayloadAlert> = sent.iter().map(payload_alert).collect();
    let firing = alerts.iter().any(|a| a.status == "firing");
    Payload {
        receiver: quote_meta(&data.receiver),
        status: if firing { "firing" } else { "resolved" },
        notification_reason: data.reason.as_str(),
        group_labels: &data.group_labels,
        common_labels: common(sent.iter().map(|a| &a.labels)),
        common_annotations: common(sent.iter().map(|a| &a.annotations)),
        route_labels: &data.route_labels,
        external_url: &data.external_url,
        version: "4",
        group_key: &data.group_key,
        truncated_alerts: (data.alerts.len() - keep) as u64,
        alerts,
    }
}

/// A configured webhook.
pub struct Webhook {
    conf: WebhookConfig,
    sender: crate::sender::HttpSender,
    endpoint: crate::sender::Endpoint,
    /// The `payload` and URL templates, compiled; `None` when neither is templated (the
    /// common case, sent without rendering anything).
    templated: Option<Templated>,
}

struct Templated {
    fields: std::sync::Arc<crate::fields::Fields>,
    /// The URL is a template (inline with `{{`, or any `url_file`, whose content may be).
    url: bool,
    payload: Option<std::sync::Arc<serde_json::Value>>,
    shared: crate::Shared,
}

impl Webhook {
    /// Builds the HTTP client for a webhook config, with the default templates.
    ///
    /// # Errors
    /// As [`crate::http::build_client`].
    pub fn new(conf: WebhookConfig, user_agent: &str) -> Result<Self, String> {
        let shared = crate::Shared {
            templates: std::sync::Arc::new(tocsin_template::Template::with_defaults()),
            ..crate::Shared::default()
        };
        Self::with_templates(conf, user_agent, &shared)
    }

    /// Builds the HTTP client and compiles the `payload` and URL templates, if any.
    ///
    /// # Errors
    /// As [`crate::http::build_client`], or a template that does not parse.
    pub fn with_templates(conf: WebhookConfig, user_agent: &str, shared: &crate::Shared) -> Result<Self, String> {
        let sender =
            crate::sender::HttpSender::new("webhook", &conf.http, user_agent)?.with_capture(shared.capture.clone());
        let endpoint = sender.endpoint(conf.url.clone());
        let url_template = match &conf.url {
            tocsin_core::config::SecretSource::Inline(u) => u.contains("{{").then(|| u.clone()),
            tocsin_core::config::SecretSource::File(_) => Some(String::new()),
        };
        let templated = if url_template.is_some() || conf.payload.is_some() {
            let mut fields: Vec<(String, &str)> = Vec::new();
            if let Some(u) = url_template.as_deref().filter(|u| !u.is_empty()) {
                fields.push(("url".into(), u));
            }
            if let Some(p) = &conf.payload {
                crate::fields::value_leaves("payload", p, &mut fields);
            }
            let fields = crate::fields::Fields::compile(&shared.templates, fields)
                .map_err(|e| format!("webhook_configs {e}"))?;
            Some(Templated {
                fields: std::sync::Arc::new(fields),
                url: url_template.is_some(),
                payload: conf.payload.clone().map(std::sync::Arc::new),
                shared: shared.clone(),
            })
        } else {
            None
        };
        Ok(Webhook {
            conf,
            sender,
            endpoint,
            templated,
        })
    }

    async fn send(&self, data: &NotifyData) -> Result<(), NotifyError> {
        let Some(t) = &self.templated else {
            // Sized for a few alerts, so that a small body is written without growing the buffer.
            let mut body = Vec::with_capacity(1024 + 512 * data.alerts.len().min(64));
            serde_json::to_writer(&mut body, &payload(data, self.conf.max_alerts))
                .map_err(|e| NotifyError::fatal(FailureReason::Other, e.to_string()))?;
            return self.post(&self.endpoint, body).await;
        };
        let fatal = |m: String| NotifyError::fatal(FailureReason::Other, m);
        // A url_file's content may be a template too, read at each send.
        let url_file = match (&self.conf.url, t.url) {
            (tocsin_core::config::SecretSource::File(_), true) => {
                Some(crate::read_secret(&self.conf.url).map_err(fatal)?)
            }
            _ => None,
        };
        // `max_alerts` applies before rendering (the templates see the alerts sent).
        let mut sent = data.clone();
        if self.conf.max_alerts > 0 && sent.alerts.len() as u64 > self.conf.max_alerts {
            sent.alerts.truncate(self.conf.max_alerts as usize);
        }
        let (fields, body_template, has_url) = (t.fields.clone(), t.payload.clone(), t.url);
        let templates = t.shared.templates.clone();
        let (url, body, errors) = tokio::task::spawn_blocking(move || {
            let value = crate::email::template_data(&sent).to_value();
            let mut r = fields.render(&value, jiff::Timestamp::now());
            let url = match (&url_file, has_url) {
                (Some(text), _) => Some(
                    templates
                        .execute_str(
                            text,
                            &value,
                            &tocsin_template::Options {
                                html: false,
                                now: r.now(),
                            },
                        )
                        .map_err(|e| format!("templating the URL failed: {e}"))?,
                ),
                (None, true) => Some(r.field("url", "")),
                (None, false) => None,
            };
            let url_errors = r.errors.len();
            if url_errors > 0 {
                return Err(format!("templating the URL failed: {}", r.errors.join("; ")));
            }
            let body = body_template.map(|p| crate::fields::render_value("payload", &p, &mut r));
            Ok((url, body, r.errors))
        })
        .await
        .map_err(|e| fatal(format!("rendering the templates failed: {e}")))?
        .map_err(fatal)?;
        let endpoint = match url {
            Some(u) if u.trim().is_empty() => return Err(fatal("the webhook URL rendered empty".into())),
            Some(u) => self
                .sender
                .endpoint(tocsin_core::config::SecretSource::Inline(u.trim().to_string())),
            None => self.sender.endpoint(self.conf.url.clone()),
        };
        let body = match body {
            // A payload whose template fails gives way to the standard body: the receiver gets
            // the notification in the shape it gets without a payload, rather than none.
            Some(_) if !errors.is_empty() => {
                t.shared.template_errors.inc();
                tracing::warn!(group_key = %data.group_key, receiver = %data.receiver, integration = "webhook", ?errors, "payload template error; sending the standard body");
                serde_json::to_vec(&payload(data, self.conf.max_alerts))
            }
            Some(v) => serde_json::to_vec(&v).map(|mut b| {
                b.push(b'\n');
                b
            }),
            None => serde_json::to_vec(&payload(data, self.conf.max_alerts)),
        }
        .map_err(|e| fatal(e.to_string()))?;
        self.post(&endpoint, body).await
    }

    async fn post(&self, endpoint: &crate::sender::Endpoint, body: Vec<u8>) -> Result<(), NotifyError> {
        let reply = self
            .sender
            .post(crate::sender::Request {
                endpoint,
                method: "POST",
                content_type: "application/json",
                body,
                authorization: None,
                headers: Vec::new(),
            })
            .await?;
        // The webhook has no retry codes of its own.
        crate::sender::check_status(reply.status, &reply.quoted(), &[]).map_err(|e| reply.annotate(e))
    }
}

/// Maps a response status to success or a (retryable?) error: 2xx ok, 5xx retry, others fail.
pub async fn classify<F, Fut>(status: u16, body: F) -> Result<(), NotifyError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    if (200..300).contains(&status) {
        return Ok(());
    }
    let reply = crate::sender::Reply {
        status,
        body: body().await.into_bytes(),
        ..crate::sender::Reply::default()
    };
    crate::sender::check_status(status, &reply.quoted(), &[])
}

impl Notifier for Webhook {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move { self.send(data).await.map(|()| None) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use tocsin_core::labels::fingerprint;
    use tocsin_core::nflog::NotifyReason;
    use tocsin_core::time::ZERO;

    fn alert(name: &str, team: &str, resolved: bool) -> Alert {
        let labels: LabelSet = [
            ("alertname".to_string(), name.to_string()),
            ("team".to_string(), team.to_string()),
        ]
        .into();
        Alert {
            fingerprint: fingerprint(&labels),
            labels,
            annotations: [("summary".to_string(), format!("{name} is down"))].into(),
            starts_at: "2026-11-23T18:33:30.712Z".parse::<Timestamp>().unwrap(),
            ends_at: if resolved {
                "2026-11-23T18:40:00Z".parse().unwrap()
            } else {
                ZERO
            },
            generator_url: "http://prom/graph".into(),
            ..Alert::default()
        }
    }

    #[test]
    fn payload_v4_is_byte_for_byte() {
        let data = NotifyData {
            receiver: "team.x".into(),
            group_key: r#"{}/{team="a.b"}:{alertname="A1"}"#.into(),
            group_labels: [("alertname".to_string(), "A1".to_string())].into(),
            reason: NotifyReason::FirstNotification,
            external_url: "http://vm:19093".into(),
            route_labels: Default::default(),
            alerts: vec![alert("A1", "a.b", false), alert("A1", "c", true)],
            receiver_data: Default::default(),
        };
        let json = serde_json::to_string(&payload(&data, 1)).unwrap();
        let fp = alert("A1", "a.b", false).fingerprint.to_string();
        let expected = format!(
            concat!(
                r#"{{"receiver":"team\\.x","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"A1","team":"a.b"}},"#,
                r#""annotations":{{"summary":"A1 is down"}},"startsAt":"2026-11-23T18:33:30.712Z","endsAt":"0001-01-01T00:00:00Z","#,
                r#""generatorURL":"http://prom/graph","fingerprint":"{}"}}],"notification_reason":"first notification","#,
                r#""groupLabels":{{"alertname":"A1"}},"commonLabels":{{"alertname":"A1","team":"a.b"}},"#,
                r#""commonAnnotations":{{"summary":"A1 is down"}},"routeLabels":{{}},"externalURL":"http://vm:19093","version":"4","#,
                r#""groupKey":"{{}}/{{team=\"a.b\"}}:{{alertname=\"A1\"}}","truncatedAlerts":1}}"#
            ),
            fp
        );
        assert_eq!(json, expected);
        let all = payload(&data, 0);
        assert_eq!(all.truncated_alerts, 0);
        assert_eq!(all.alerts[1].status, "resolved");
        assert_eq!(*all.common_labels, [("alertname".to_string(), "A1".to_string())].into());
        // One alert: its own labels are the common ones.
        let one = NotifyData {
            alerts: vec![alert("A1", "c", true)],
            ..data
        };
        let p = payload(&one, 0);
        assert_eq!(*p.common_labels, one.alerts[0].labels);
        assert_eq!(*p.common_annotations, one.alerts[0].annotations);
    }

    #[tokio::test]
    async fn status_classification() {
        let body = || async { "oops".to_string() };
        assert!(classify(200, body).await.is_ok());
        let e = classify(503, body).await.unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.reason, FailureReason::ServerError);
        let e = classify(404, body).await.unwrap_err();
        assert!(!e.retryable);
        assert_eq!(e.message, "unexpected status code 404: oops");
        assert_eq!(e.reason, FailureReason::ClientError);
        // Alertmanager 0.34's reasons: 401/403 authError, 429 rateLimited (final for a webhook).
        for (status, reason) in [
            (401, FailureReason::AuthError),
            (403, FailureReason::AuthError),
            (429, FailureReason::RateLimited),
        ] {
            let e = classify(status, body).await.unwrap_err();
            assert!(!e.retryable, "{status}");
            assert_eq!(e.reason, reason, "{status}");
        }
    }
}
