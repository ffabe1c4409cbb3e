//! The Slack integration (reference §4 slack): an incoming-webhook URL or an app token, one
//! message with one attachment. [`message`] builds the body from the rendered fields (a pure
//! function); [`judge`] reads Slack's answer (a 2xx is a success only when its JSON says
//! `ok: true`, or its text is `ok`). With `update_message`, the message id Slack answers is kept
//! in the group's log entry ([`crate::integration::Encoder::keep`]) and later notifications
//! edit that message; an edit Slack refuses for good falls back to a new message.

use serde::Serialize;
use tocsin_core::config::{HttpClientConfig, SecretSource, SlackConfig};
use tracing::warn;

use crate::fields::Render;
use crate::integration::{Encoded, truncate_runes};
use crate::sender::Reply;
use crate::{FailureReason, Kept, NotifyData, NotifyError, read_secret};
use tocsin_core::nflog::{DataValue, ReceiverData};

/// The message Slack's `chat.postMessage` and incoming webhooks take, keys in Alertmanager's
/// order.
#[derive(Debug, Serialize, PartialEq)]
pub struct Message {
    #[serde(skip_serializing_if = "String::is_empty")]
    channel: String,
    /// The message to update (`chat.update`).
    #[serde(skip_serializing_if = "String::is_empty")]
    ts: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    icon_emoji: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    icon_url: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    link_names: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    attachments: [Attachment; 1],
}

#[derive(Debug, Serialize, PartialEq)]
struct Attachment {
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    title_link: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pretext: String,
    text: String,
    fallback: String,
    callback_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<Field>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    actions: Vec<Action>,
    #[serde(skip_serializing_if = "String::is_empty")]
    image_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    thumb_url: String,
    footer: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    color: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mrkdwn_in: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Field {
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    short: bool,
}

#[derive(Debug, Serialize, PartialEq)]
struct Action {
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    style: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm: Option<Confirm>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Confirm {
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ok_text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    dismiss_text: String,
}

/// Slack's longest title, in characters.
const MAX_TITLE_RUNES: usize = 1024;

/// Every templated field of a config, by name, with its text.
fn templated(c: &SlackConfig) -> Vec<(String, &str)> {
    let mut v: Vec<(String, &str)> = vec![
        ("channel".into(), &c.channel),
        ("username".into(), &c.username),
        ("color".into(), &c.color),
        ("title".into(), &c.title),
        ("title_link".into(), &c.title_link),
        ("pretext".into(), &c.pretext),
        ("text".into(), &c.text),
        ("message_text".into(), &c.message_text),
        ("footer".into(), &c.footer),
        ("fallback".into(), &c.fallback),
        ("callback_id".into(), &c.callback_id),
        ("icon_emoji".into(), &c.icon_emoji),
        ("icon_url".into(), &c.icon_url),
        ("image_url".into(), &c.image_url),
        ("thumb_url".into(), &c.thumb_url),
    ];
    crate::integration::push_chat_fields(&c.fields, &mut v);
    for (i, a) in c.actions.iter().enumerate() {
        for (k, s) in [
            ("type", &a.kind),
            ("text", &a.text),
            ("url", &a.url),
            ("style", &a.style),
            ("name", &a.name),
            ("value", &a.value),
        ] {
            v.push((format!("actions[{i}].{k}"), s));
        }
        if let Some(cf) = &a.confirm {
            for (k, s) in ["text", "title", "ok_text", "dismiss_text"].iter().zip(cf) {
                v.push((format!("actions[{i}].confirm.{k}"), s));
            }
        }
    }
    v
}

/// The default template of a field, used when the configured one fails.
fn fallback(name: &str) -> &'static str {
    match name {
        "username" => r#"{{ template "slack.default.username" . }}"#,
        "color" => r#"{{ template "slack.default.color" . }}"#,
        "title" => r#"{{ template "slack.default.title" . }}"#,
        "title_link" => r#"{{ template "slack.default.titlelink" . }}"#,
        "fallback" => r#"{{ template "slack.default.fallback" . }}"#,
        // The text says why the message looks as it does.
        "text" => "Tocsin could not render this notification's template.\n{{ template \"__text_alert_list\" .Alerts }}",
        _ => "",
    }
}

/// Builds the message from a config's rendered fields (pure).
pub fn message(c: &SlackConfig, r: &mut Render<'_>) -> Message {
    let mut f = |name: &str| r.field(name, fallback(name));
    let (title, cut) = truncate_runes(&f("title"), MAX_TITLE_RUNES);
    if cut {
        warn!(limit = MAX_TITLE_RUNES, "truncated the Slack title");
    }
    let mut attachment = Attachment {
        title,
        title_link: f("title_link"),
        pretext: f("pretext"),
        text: f("text"),
        fallback: f("fallback"),
        callback_id: f("callback_id"),
        fields: Vec::new(),
        actions: Vec::new(),
        image_url: f("image_url"),
        thumb_url: f("thumb_url"),
        footer: f("footer"),
        color: f("color"),
        mrkdwn_in: c.mrkdwn_in.clone(),
    };
    attachment.fields = c
        .fields
        .iter()
        .enumerate()
        .map(|(i, (_, _, short))| Field {
            title: f(&format!("fields[{i}].title")),
            value: f(&format!("fields[{i}].value")),
            short: short.unwrap_or(c.short_fields),
        })
        .collect();
    attachment.actions = c
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut g = |k: &str| f(&format!("actions[{i}].{k}"));
            Action {
                kind: g("type"),
                text: g("text"),
                url: g("url"),
                style: g("style"),
                name: g("name"),
                value: g("value"),
                confirm: a.confirm.as_ref().map(|_| Confirm {
                    text: g("confirm.text"),
                    title: g("confirm.title"),
                    ok_text: g("confirm.ok_text"),
                    dismiss_text: g("confirm.dismiss_text"),
                }),
            }
        })
        .collect();
    Message {
        channel: f("channel"),
        ts: String::new(),
        username: f("username"),
        icon_emoji: f("icon_emoji"),
        icon_url: f("icon_url"),
        link_names: c.link_names,
        text: f("message_text"),
        attachments: [attachment],
    }
}

/// Slack's answer judged as Alertmanager judges it; `channel` prefixes the errors.
///
/// # Errors
/// A 5xx or an undecodable JSON body is retried; any other failure is final.
pub fn judge(reply: &Reply, channel: &str) -> Result<(), NotifyError> {
    let prefixed = |e: NotifyError| NotifyError {
        message: format!("channel {channel:?}: {}", e.message),
        ..e
    };
    crate::sender::check_status(reply.status, &reply.quoted(), &[]).map_err(prefixed)?;
    let json = reply
        .content_type
        .as_deref()
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if json {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            ok: bool,
            #[serde(default)]
            error: String,
        }
        return match serde_json::from_slice::<Answer>(&reply.body) {
            Ok(a) if a.ok => Ok(()),
            Ok(a) => Err(prefixed(NotifyError::fatal(
                FailureReason::ClientError,
                format!("error response from Slack: {}", a.error),
            ))),
            Err(e) => Err(prefixed(NotifyError::retryable(
                FailureReason::Other,
                format!("could not unmarshal JSON response {:?}: {e}", reply.quoted()),
            ))),
        };
    }
    if reply.body == b"ok" {
        return Ok(());
    }
    Err(prefixed(NotifyError::fatal(
        FailureReason::ClientError,
        format!("received an error response from Slack: {}", reply.quoted()),
    )))
}

/// Slack's protocol for [`crate::integration::HttpIntegration`].
pub struct Slack(pub SlackConfig);

impl crate::integration::Encoder for Slack {
    const KIND: &'static str = "slack";
    fn fields(&self) -> Vec<(String, &str)> {
        templated(&self.0)
    }
    fn endpoint(&self) -> SecretSource {
        self.0.url.clone()
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        self.0.app_token.iter().map(read_secret).collect()
    }
    fn encode(&self, d: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let mut msg = message(&self.0, r);
        let authorization = secrets.first().map(|t| format!("Bearer {t}"));
        let mut post = Encoded::json(&msg)?;
        post.authorization.clone_from(&authorization);
        post.context = msg.channel.clone();
        let Some((update_url, (ts, channel))) = self.0.update_url.as_ref().zip(posted(&d.receiver_data)) else {
            return Ok(vec![post]);
        };
        // The group's message was posted before: updated in place, or posted anew when Slack
        // no longer knows it (deleted, or an id a peer got wrong).
        (msg.ts, msg.channel) = (ts.to_string(), channel.to_string());
        let mut update = Encoded::json(&msg)?;
        update.url = Some(update_url.clone());
        update.authorization = authorization;
        update.context = msg.channel;
        update.fallback = Some(Box::new(post));
        Ok(vec![update])
    }
    fn judge(&self, reply: &Reply, sent: &Encoded) -> Result<(), NotifyError> {
        judge(reply, &sent.context)
    }
    fn keep(&self, reply: &Reply, _: &Encoded, had: &ReceiverData) -> Kept {
        self.0.update_url.as_ref()?;
        #[derive(serde::Deserialize)]
        struct Posted {
            #[serde(default)]
            ts: String,
            #[serde(default)]
            channel: String,
        }
        let p: Posted = serde_json::from_slice(&reply.body).ok()?;
        if !(id_like(&p.ts) && id_like(&p.channel)) {
            return None;
        }
        let mut kept = had.clone();
        kept.insert(THREAD_TS.into(), DataValue::Str(p.ts));
        kept.insert(CHANNEL_ID.into(), DataValue::Str(p.channel));
        Some(kept)
    }
}

/// The log keys of a posted message, Alertmanager's.
const THREAD_TS: &str = "threadTs";
const CHANNEL_ID: &str = "channelId";

/// A Slack id or timestamp as Slack writes them (`C024BE91L`, `1503435956.000247`); anything
/// else in the log is ignored.
fn id_like(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The group's posted message (its timestamp and channel), when the log holds one.
pub fn posted(data: &ReceiverData) -> Option<(&str, &str)> {
    let get = |k: &str| match data.get(k) {
        Some(DataValue::Str(s)) if id_like(s) => Some(s.as_str()),
        _ => None,
    };
    Some((get(THREAD_TS)?, get(CHANNEL_ID)?))
}
