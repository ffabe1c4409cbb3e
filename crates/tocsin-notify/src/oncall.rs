//! On-call services that take one request per notification (reference §4): VictorOps
//! (Splunk On-Call), Pushover and incident.io. Each is an [`Encoder`].

use std::collections::BTreeMap;

use tocsin_core::config::{HttpClientConfig, IncidentioConfig, PushoverConfig, SecretSource, VictoropsConfig};
use tracing::warn;

use crate::fields::Render;
use crate::integration::{Encoded, Encoder, all_resolved, cut_runes, group_hash};
use crate::sender::{Reply, check_status};
use crate::{NotifyData, NotifyError, read_secret};

/// VictorOps (`victorops_configs`): the REST endpoint's generic alert.
pub struct Victorops(pub VictoropsConfig);

/// VictorOps' longest state message, in characters.
const VICTOROPS_MAX_RUNES: usize = 20480;

impl Encoder for Victorops {
    const KIND: &'static str = "victorops";
    fn fields(&self) -> Vec<(String, &str)> {
        let c = &self.0;
        let mut v: Vec<(String, &str)> = vec![
            ("routing_key".into(), &c.routing_key),
            ("message_type".into(), &c.message_type),
            ("state_message".into(), &c.state_message),
            ("entity_display_name".into(), &c.entity_display_name),
            ("monitoring_tool".into(), &c.monitoring_tool),
        ];
        for (k, t) in &c.custom_fields {
            v.push((format!("custom_fields.{k}"), t));
        }
        v
    }
    fn endpoint(&self) -> SecretSource {
        SecretSource::Inline(self.0.api_url.clone())
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        Ok(vec![
            read_secret(&self.0.api_key).map_err(|e| format!("failed to read API key from file: {e}"))?,
        ])
    }
    fn encode(&self, d: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let c = &self.0;
        let key = secrets.first().map_or("", String::as_str);
        let routing_key = r.field("routing_key", "");
        let message_type = if all_resolved(d) {
            "RECOVERY".to_string()
        } else {
            let t = r.field("message_type", "");
            if matches!(t.as_str(), "INFO" | "WARNING" | "CRITICAL") {
                t
            } else {
                "CRITICAL".into()
            }
        };
        // A flat object of strings, keys sorted (Go writes a map so).
        let mut body: BTreeMap<String, String> = BTreeMap::new();
        for k in c.custom_fields.keys() {
            body.insert(k.clone(), r.field(&format!("custom_fields.{k}"), ""));
        }
        body.insert(
            "entity_display_name".into(),
            r.field(
                "entity_display_name",
                r#"{{ template "victorops.default.entity_display_name" . }}"#,
            ),
        );
        body.insert("entity_id".into(), group_hash(&d.group_key));
        body.insert("message_type".into(), message_type);
        body.insert(
            "monitoring_tool".into(),
            r.field(
                "monitoring_tool",
                r#"{{ template "victorops.default.monitoring_tool" . }}"#,
            ),
        );
        let state = r.field("state_message", r#"{{ template "victorops.default.state_message" . }}"#);
        body.insert(
            "state_message".into(),
            cut_runes(state, VICTOROPS_MAX_RUNES, "state_message", Self::KIND),
        );
        let mut e = Encoded::json(&body)?;
        let seg = |s: &str| -> String {
            s.split('/')
                .map(|p| {
                    p.bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("/")
        };
        e.url = Some(format!("{}{}/{}", c.api_url, seg(key), seg(&routing_key)));
        Ok(vec![e])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        check_status(reply.status, &reply.quoted(), &[])
    }
}

/// Pushover (`pushover_configs`): every parameter in the query string of a POST.
pub struct Pushover(pub PushoverConfig);

/// Pushover's endpoint (not configurable, as in Alertmanager).
pub const PUSHOVER_URL: &str = "https://api.pushover.net/1/messages.json";

/// A secret as is: Pushover's key files are not trimmed (Alertmanager reads them raw).
fn raw_secret(s: &SecretSource, what: &str) -> Result<String, String> {
    match s {
        SecretSource::Inline(v) => Ok(v.clone()),
        SecretSource::File(p) => std::fs::read_to_string(p).map_err(|e| format!("read {what}: {e}")),
    }
}

impl Encoder for Pushover {
    const KIND: &'static str = "pushover";
    fn fields(&self) -> Vec<(String, &str)> {
        let c = &self.0;
        vec![
            ("title".into(), &c.title),
            ("message".into(), &c.message),
            ("url".into(), &c.url),
            ("url_title".into(), &c.url_title),
            ("device".into(), &c.device),
            ("sound".into(), &c.sound),
            ("priority".into(), &c.priority),
        ]
    }
    fn endpoint(&self) -> SecretSource {
        SecretSource::Inline(PUSHOVER_URL.into())
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        Ok(vec![
            raw_secret(&self.0.token, "token_file")?,
            raw_secret(&self.0.user_key, "user_key_file")?,
        ])
    }
    fn encode(&self, _: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let c = &self.0;
        let [token, user] = secrets else {
            return Err("pushover: the keys were not read".into());
        };
        // The keys are templates too.
        let token = r.template(token).map_err(|e| e.to_string())?;
        let user = r.template(user).map_err(|e| e.to_string())?;
        let mut params: BTreeMap<&str, String> = BTreeMap::new();
        params.insert("token", token);
        params.insert("user", user);
        let title = r.field("title", r#"{{ template "pushover.default.title" . }}"#);
        params.insert("title", cut_runes(title, 250, "title", Self::KIND));
        let message = if c.html {
            params.insert("html", "1".into());
            r.field_html("message", r#"{{ template "pushover.default.message" . }}"#)
        } else {
            r.field("message", r#"{{ template "pushover.default.message" . }}"#)
        };
        if c.monospace {
            params.insert("monospace", "1".into());
        }
        let message = cut_runes(message, 1024, "message", Self::KIND).trim().to_string();
        params.insert(
            "message",
            if message.is_empty() {
                "(no details)".into()
            } else {
                message
            },
        );
        let url = r.field("url", r#"{{ template "pushover.default.url" . }}"#);
        params.insert("url", cut_runes(url, 512, "url", Self::KIND));
        params.insert("url_title", r.field("url_title", ""));
        params.insert("priority", r.field("priority", ""));
        params.insert("retry", c.retry.as_secs().to_string());
        params.insert("expire", c.expire.as_secs().to_string());
        params.insert("device", r.field("device", ""));
        params.insert("sound", r.field("sound", ""));
        if c.ttl.as_secs() > 0 {
            params.insert("ttl", c.ttl.as_secs().to_string());
        }
        let url = reqwest::Url::parse_with_params(PUSHOVER_URL, &params).map_err(|e| e.to_string())?;
        Ok(vec![Encoded {
            method: "POST",
            url: Some(url.to_string()),
            content_type: "text/plain",
            body: Vec::new(),
            authorization: None,
            headers: Vec::new(),
            context: String::new(),
            fallback: None,
        }])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        check_status(reply.status, &reply.quoted(), &[])
    }
}

/// incident.io (`incidentio_configs`): the webhook's body as version 1, to an alert source.
pub struct Incidentio(pub IncidentioConfig);

/// The largest body incident.io takes; past it only the first alert is sent.
const INCIDENTIO_MAX_BYTES: usize = 512 * 1024;

impl Encoder for Incidentio {
    const KIND: &'static str = "incidentio";
    fn fields(&self) -> Vec<(String, &str)> {
        Vec::new()
    }
    fn endpoint(&self) -> SecretSource {
        self.0.url.clone()
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn encode(&self, d: &NotifyData, _: &[String], _: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let mut p = crate::webhook::payload(d, self.0.max_alerts);
        p.version = "1";
        let e = Encoded::json(&p)?;
        if e.body.len() <= INCIDENTIO_MAX_BYTES {
            return Ok(vec![e]);
        }
        // As Alertmanager: all but the first alert dropped, the rest of the body as it was.
        p.alerts.truncate(1);
        let e = Encoded::json(&p)?;
        if e.body.len() > INCIDENTIO_MAX_BYTES {
            warn!(
                integration = "incidentio",
                bytes = e.body.len(),
                "the body is still over 512 KiB with one alert; sent anyway"
            );
        } else {
            warn!(
                integration = "incidentio",
                "the body was over 512 KiB: only the first alert was sent"
            );
        }
        Ok(vec![e])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        #[derive(serde::Deserialize, Default)]
        struct Answer {
            #[serde(default)]
            message: String,
            #[serde(default)]
            errors: Vec<String>,
            #[serde(default)]
            error: String,
        }
        let a: Answer = serde_json::from_slice(&reply.body).unwrap_or_default();
        let parts: Vec<String> = [a.message, a.error, a.errors.join(", ")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        check_status(reply.status, "", &[429]).map_err(|e| NotifyError {
            message: if parts.is_empty() {
                format!("unexpected status code {}", reply.status)
            } else {
                format!("unexpected status code {}: {}", reply.status, parts.join(": "))
            },
            ..e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureReason;

    #[test]
    fn reason_is_kept_for_rate_limits() {
        let r = Reply {
            status: 429,
            body: br#"{"message":"slow down"}"#.to_vec(),
            ..Reply::default()
        };
        let cfg = IncidentioConfig {
            send_resolved: true,
            http: HttpClientConfig::default(),
            url: SecretSource::Inline("http://x/".into()),
            max_alerts: 0,
            timeout: None,
        };
        let e = Incidentio(cfg).judge(&r, &Encoded::json(&()).unwrap()).unwrap_err();
        assert_eq!((e.retryable, e.reason), (true, FailureReason::RateLimited));
        assert_eq!(e.message, "unexpected status code 429: slow down");
    }
}
