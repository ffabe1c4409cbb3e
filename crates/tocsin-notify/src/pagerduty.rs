//! The PagerDuty integration (reference §4 pagerduty): Events API v2 with a routing key, v1
//! with a service key. [`event`] builds the body from the rendered fields (pure): `trigger`,
//! or `resolve` once every alert of the group is resolved, deduplicated by the SHA-256 of the
//! group key; `details` values are templates whose rendered text becomes JSON when it reads as
//! a value (the default `firing`/`resolved` lists, `num_firing` numbers).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;
use tocsin_core::config::{PAGERDUTY_V1_URL, PagerdutyConfig, SecretSource};
use tocsin_core::time::is_zero;
use tracing::warn;

use crate::fields::Render;
use crate::integration::{Encoded, truncate_runes};
use crate::sender::Reply;
use crate::{NotifyData, NotifyError, read_secret};

/// An encoded event larger than this has its details replaced (PagerDuty refuses it whole).
pub const MAX_EVENT_BYTES: usize = 512_000;
/// The longest summary (v2) or description (v1), in characters.
const MAX_SUMMARY_RUNES: usize = 1024;
/// What the details become when the event is too large.
const REMOVED: &str = "Custom details have been removed because the original event exceeds the maximum size of 512KB";

/// An Events API v2 event.
#[derive(Debug, Serialize, PartialEq)]
struct EventV2 {
    #[serde(skip_serializing_if = "String::is_empty")]
    routing_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    dedup_key: String,
    event_action: &'static str,
    payload: PayloadV2,
    #[serde(skip_serializing_if = "String::is_empty")]
    client: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    client_url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<Image>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link>,
}

#[derive(Debug, Serialize, PartialEq)]
struct PayloadV2 {
    summary: String,
    source: String,
    severity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    class: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    component: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    custom_details: BTreeMap<String, Json>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Image {
    src: String,
    alt: String,
    href: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct Link {
    href: String,
    text: String,
}

/// An Events API v1 event.
#[derive(Debug, Serialize, PartialEq)]
struct EventV1 {
    service_key: String,
    incident_key: String,
    event_type: &'static str,
    description: String,
    event_action: &'static str,
    payload: Option<()>,
    #[serde(skip_serializing_if = "String::is_empty")]
    client: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    client_url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    details: BTreeMap<String, Json>,
}

/// The SHA-256 of a group key, in lowercase hex: PagerDuty's dedup (incident) key.
pub fn dedup_key(group_key: &str) -> String {
    crate::integration::group_hash(group_key)
}

/// What a rendered details value stands for, read as YAML 1.1 reads a scalar (Alertmanager
/// re-parses each rendered value): null, booleans, integers (also hex and octal), floats, JSON
/// lists and objects (what `toJson` makes); any other text stays a string.
pub fn interpret(text: &str) -> Json {
    let t = text.trim();
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Json::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => return Json::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Json::Bool(false);
        }
        _ => {}
    }
    let (sign, digits) = match t.strip_prefix('-') {
        Some(d) => (-1i64, d),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let int = if let Some(h) = digits.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int.and_then(|i| i.checked_mul(sign)) {
        return Json::from(i);
    }
    let numeric = t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if numeric
        && let Ok(f) = t.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Json::Number(n);
    }
    if (t.starts_with('[') || t.starts_with('{'))
        && let Ok(v) = serde_json::from_str::<Json>(t)
    {
        return v;
    }
    Json::String(text.to_string())
}

/// The templated string leaves of the details, by path, in a fixed order.
fn detail_leaves<'a>(path: &str, v: &'a Json, out: &mut Vec<(String, &'a str)>) {
    match v {
        Json::String(s) => out.push((path.to_string(), s)),
        Json::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                detail_leaves(&format!("{path}[{i}]"), x, out);
            }
        }
        Json::Object(m) => {
            for (k, x) in m {
                detail_leaves(&format!("{path}.{k}"), x, out);
            }
        }
        _ => {}
    }
}

/// The details with every string leaf rendered and interpreted.
fn render_details(path: &str, v: &Json, r: &mut Render<'_>) -> Json {
    match v {
        Json::String(_) => interpret(&r.field(path, "")),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| render_details(&format!("{path}[{i}]"), x, r))
                .collect(),
        ),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), render_details(&format!("{path}.{k}"), x, r)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every templated field of a config, by name, with its text.
fn templated(c: &PagerdutyConfig) -> Vec<(String, &str)> {
    let mut v: Vec<(String, &str)> = vec![
        ("client".into(), &c.client),
        ("client_url".into(), &c.client_url),
        ("description".into(), &c.description),
        ("source".into(), &c.source),
        ("severity".into(), &c.severity),
        ("class".into(), &c.class),
        ("component".into(), &c.component),
        ("group".into(), &c.group),
    ];
    for (i, [src, alt, href]) in c.images.iter().enumerate() {
        v.push((format!("images[{i}].src"), src));
        v.push((format!("images[{i}].alt"), alt));
        v.push((format!("images[{i}].href"), href));
    }
    for (i, [href, text]) in c.links.iter().enumerate() {
        v.push((format!("links[{i}].href"), href));
        v.push((format!("links[{i}].text"), text));
    }
    for (k, x) in &c.details {
        detail_leaves(&format!("details.{k}"), x, &mut v);
    }
    v
}

fn fallback(name: &str) -> &'static str {
    match name {
        "client" | "source" => r#"{{ template "pagerduty.default.client" . }}"#,
        "client_url" => r#"{{ template "pagerduty.default.clientURL" . }}"#,
        "description" => r#"{{ template "pagerduty.default.description" . }}"#,
        _ => "",
    }
}

/// Builds the event body for `key` (rendered) from a config's rendered fields (pure); `resolve`
/// when every alert is resolved. Larger than [`MAX_EVENT_BYTES`]: details replaced.
pub fn event(c: &PagerdutyConfig, key: String, d: &NotifyData, r: &mut Render<'_>) -> Vec<u8> {
    let resolve = d.alerts.iter().all(|a| !is_zero(a.ends_at));
    let action = if resolve { "resolve" } else { "trigger" };
    let mut f = |name: &str| r.field(name, fallback(name));
    let (summary, cut) = truncate_runes(&f("description"), MAX_SUMMARY_RUNES);
    if cut {
        warn!(limit = MAX_SUMMARY_RUNES, "truncated the PagerDuty summary");
    }
    let details: BTreeMap<String, Json> = c
        .details
        .iter()
        .map(|(k, v)| (k.clone(), render_details(&format!("details.{k}"), v, r)))
        .collect();
    let mut f = |name: &str| r.field(name, fallback(name));
    let removed = || BTreeMap::from([("error".to_string(), Json::from(REMOVED))]);
    let encode = |v: &dyn erased::Ser| {
        let mut out = v.to_vec();
        out.push(b'\n');
        out
    };
    if c.v1 {
        let trigger = !resolve;
        let mut e = EventV1 {
            service_key: key,
            incident_key: dedup_key(&d.group_key),
            event_type: action,
            description: summary,
            event_action: "",
            payload: None,
            client: if trigger { f("client") } else { String::new() },
            client_url: if trigger { f("client_url") } else { String::new() },
            details,
        };
        let body = encode(&e);
        if body.len() <= MAX_EVENT_BYTES {
            return body;
        }
        warn!(
            limit = MAX_EVENT_BYTES,
            "PagerDuty event too large: its details were removed"
        );
        e.details = removed();
        return encode(&e);
    }
    let images = (0..c.images.len())
        .map(|i| Image {
            src: f(&format!("images[{i}].src")),
            alt: f(&format!("images[{i}].alt")),
            href: f(&format!("images[{i}].href")),
        })
        .filter(|i| !i.src.is_empty())
        .collect();
    let links = (0..c.links.len())
        .map(|i| Link {
            href: f(&format!("links[{i}].href")),
            text: f(&format!("links[{i}].text")),
        })
        .filter(|l| !l.href.is_empty())
        .collect();
    let severity = f("severity");
    let mut e = EventV2 {
        routing_key: key,
        dedup_key: dedup_key(&d.group_key),
        event_action: action,
        payload: PayloadV2 {
            summary,
            source: f("source"),
            severity: if severity.is_empty() { "error".into() } else { severity },
            class: f("class"),
            component: f("component"),
            group: f("group"),
            custom_details: details,
        },
        client: f("client"),
        client_url: f("client_url"),
        images,
        links,
    };
    let body = encode(&e);
    if body.len() <= MAX_EVENT_BYTES {
        return body;
    }
    warn!(
        limit = MAX_EVENT_BYTES,
        "PagerDuty event too large: its custom details were removed"
    );
    e.payload.custom_details = removed();
    encode(&e)
}

mod erased {
    /// Serialises either event version to JSON.
    pub trait Ser {
        fn to_vec(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_vec(&self) -> Vec<u8> {
            // Plain structs of strings, maps and JSON values: encoding cannot fail.
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

/// PagerDuty's answer judged as Alertmanager judges it: v1 retries 5xx and 403, v2 5xx and
/// 429; a 400's `message` and `errors` are quoted.
///
/// # Errors
/// Any status but 2xx.
pub fn judge(reply: &Reply, v1: bool) -> Result<(), NotifyError> {
    let status = reply.status;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let mut msg = format!("unexpected status code {status}");
    if status == 400 {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            message: String,
            #[serde(default)]
            errors: Vec<String>,
        }
        if let Ok(a) = serde_json::from_slice::<Answer>(&reply.body) {
            msg = format!("{msg}: {}: {}", a.message, a.errors.join(","));
        }
    }
    let retry: &[u16] = if v1 { &[403] } else { &[429] };
    crate::sender::check_status(status, "", retry).map_err(|e| NotifyError { message: msg, ..e })
}

/// PagerDuty's protocol for [`crate::integration::HttpIntegration`].
pub struct Pagerduty(pub PagerdutyConfig);

impl Pagerduty {
    fn what(&self) -> &'static str {
        if self.0.v1 { "service" } else { "routing" }
    }
}

impl crate::integration::Encoder for Pagerduty {
    const KIND: &'static str = "pagerduty";
    fn fields(&self) -> Vec<(String, &str)> {
        templated(&self.0)
    }
    fn endpoint(&self) -> SecretSource {
        SecretSource::Inline(if self.0.v1 {
            PAGERDUTY_V1_URL.to_string()
        } else {
            self.0.url.clone()
        })
    }
    fn http(&self) -> &tocsin_core::config::HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        let key = read_secret(&self.0.key).map_err(|e| format!("failed to read {} key from file: {e}", self.what()))?;
        Ok(vec![key])
    }
    fn encode(&self, d: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let what = self.what();
        // The key is a template too; one that fails is an error, not a fallback: an event sent
        // with a wrong key pages no one and says nothing.
        let key = r
            .template(secrets.first().map_or("", String::as_str))
            .map_err(|e| format!("the {what} key template failed: {e}"))?;
        if key.is_empty() {
            return Err(format!("{what} key cannot be empty"));
        }
        Ok(vec![Encoded {
            method: "POST",
            url: None,
            content_type: "application/json",
            body: event(&self.0, key, d, r),
            authorization: None,
            headers: Vec::new(),
            context: String::new(),
            fallback: None,
        }])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        judge(reply, self.0.v1)
    }
}
