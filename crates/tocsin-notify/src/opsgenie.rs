//! Opsgenie (`opsgenie_configs`, reference §4 opsgenie): an alert created (or updated) per
//! group under an alias derived from the group key, closed once every alert is resolved.
//! [`Encoder::encode`] builds the requests from the rendered fields (pure).

use std::collections::BTreeMap;

use serde::Serialize;
use tocsin_core::config::{HttpClientConfig, OpsgenieConfig, SecretSource};
use tracing::warn;

use crate::fields::Render;
use crate::integration::{Encoded, Encoder, all_resolved, group_hash, truncate_runes};
use crate::sender::{Reply, check_status};
use crate::{NotifyData, NotifyError, read_secret};

/// Opsgenie's longest message, in characters.
const MAX_MESSAGE_RUNES: usize = 130;

/// The integration.
pub struct Opsgenie(pub OpsgenieConfig);

#[derive(Serialize)]
struct Create {
    alias: String,
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    details: BTreeMap<String, String>,
    source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    responders: Vec<Responder>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    note: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    priority: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    entity: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    actions: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Responder {
    #[serde(skip_serializing_if = "String::is_empty")]
    id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize)]
struct Close {
    source: String,
}

#[derive(Serialize)]
struct UpdateMessage {
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

#[derive(Serialize)]
struct UpdateDescription {
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
}

/// A comma-separated list as Alertmanager splits it: the whole trimmed, empty pieces dropped
/// (the pieces themselves are not trimmed).
fn split(s: &str) -> Vec<String> {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

impl Opsgenie {
    /// `{api_url}{path}`, the API URL's query string (if any) kept after the path.
    fn url(&self, path: &str, query: &str) -> String {
        let (base, q) = match self.0.api_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.0.api_url.as_str(), None),
        };
        let joined: Vec<&str> = q.into_iter().chain((!query.is_empty()).then_some(query)).collect();
        if joined.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{}", joined.join("&"))
        }
    }
}

impl Encoder for Opsgenie {
    const KIND: &'static str = "opsgenie";
    fn fields(&self) -> Vec<(String, &str)> {
        let c = &self.0;
        let mut v: Vec<(String, &str)> = vec![
            ("message".into(), &c.message),
            ("description".into(), &c.description),
            ("source".into(), &c.source),
            ("entity".into(), &c.entity),
            ("actions".into(), &c.actions),
            ("tags".into(), &c.tags),
            ("note".into(), &c.note),
            ("priority".into(), &c.priority),
        ];
        for (k, t) in &c.details {
            v.push((format!("details.{k}"), t));
        }
        for (i, r) in c.responders.iter().enumerate() {
            for (f, t) in ["id", "name", "username", "type"].iter().zip(r) {
                v.push((format!("responders[{i}].{f}"), t));
            }
        }
        v
    }
    fn endpoint(&self) -> SecretSource {
        SecretSource::Inline(self.url("v2/alerts", ""))
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        Ok(vec![
            read_secret(&self.0.api_key).map_err(|e| format!("read key_file error: {e}"))?,
        ])
    }
    fn encode(&self, d: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let key = r
            .template(secrets.first().map_or("", String::as_str))
            .map_err(|e| format!("templating error: {e}"))?;
        let auth = Some(format!("GenieKey {}", key.trim()));
        let alias = group_hash(&d.group_key);
        let with_auth = |mut e: Encoded| {
            e.authorization.clone_from(&auth);
            e
        };
        let source = r.field("source", r#"{{ template "opsgenie.default.source" . }}"#);
        if all_resolved(d) {
            let mut e = Encoded::json(&Close { source })?;
            e.url = Some(self.url(&format!("v2/alerts/{alias}/close"), "identifierType=alias"));
            return Ok(vec![with_auth(e)]);
        }
        let (message, cut) = truncate_runes(
            &r.field("message", r#"{{ template "opsgenie.default.message" . }}"#),
            MAX_MESSAGE_RUNES,
        );
        if cut {
            warn!(
                integration = "opsgenie",
                max_runes = MAX_MESSAGE_RUNES,
                "truncated the message"
            );
        }
        let description = r.field("description", r#"{{ template "opsgenie.default.description" . }}"#);
        // The common labels, the configured details laid over them.
        let mut details = crate::webhook::payload(d, 0)
            .common_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>();
        for k in self.0.details.keys() {
            let v = r.field(&format!("details.{k}"), "");
            details.insert(k.clone(), v);
        }
        let mut responders = Vec::new();
        for i in 0..self.0.responders.len() {
            let mut f = |n: &str| r.field(&format!("responders[{i}].{n}"), "");
            let (id, name, username, kind) = (f("id"), f("name"), f("username"), f("type"));
            if id.is_empty() && name.is_empty() && username.is_empty() && kind.is_empty() {
                continue;
            }
            if kind == "teams" {
                responders.extend(split(&name).into_iter().map(|name| Responder {
                    id: String::new(),
                    name,
                    username: String::new(),
                    kind: "team".into(),
                }));
                continue;
            }
            responders.push(Responder {
                id,
                name,
                username,
                kind,
            });
        }
        let create = Create {
            alias: alias.clone(),
            message: message.clone(),
            description: description.clone(),
            details,
            source,
            responders,
            tags: split(&r.field("tags", "")),
            note: r.field("note", ""),
            priority: r.field("priority", ""),
            entity: r.field("entity", ""),
            actions: split(&r.field("actions", "")),
        };
        let mut out = vec![with_auth(Encoded::json(&create)?)];
        if self.0.update_alerts {
            let mut m = Encoded::json(&UpdateMessage { message })?;
            m.method = "PUT";
            m.url = Some(self.url(&format!("v2/alerts/{alias}/message"), "identifierType=alias"));
            let mut ds = Encoded::json(&UpdateDescription { description })?;
            ds.method = "PUT";
            ds.url = Some(self.url(&format!("v2/alerts/{alias}/description"), "identifierType=alias"));
            out.push(with_auth(m));
            out.push(with_auth(ds));
        }
        Ok(out)
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        check_status(reply.status, &reply.quoted(), &[429])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_split_as_alertmanager_splits_them() {
        assert_eq!(super::split(" a, b,,c "), ["a", " b", "c"]);
        assert!(super::split("  ").is_empty());
    }
}
