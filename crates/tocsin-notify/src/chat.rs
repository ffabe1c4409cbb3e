//! The chat integrations that post one JSON message (reference §4): Discord, Microsoft Teams
//! (the legacy connector card and the Workflows adaptive card), Webex and Telegram. Each is an
//! [`Encoder`]: its body built from the rendered fields by a pure function, its answer judged
//! by Alertmanager's rules.

use serde::Serialize;
use tocsin_core::config::{
    ChatId, DiscordConfig, HttpClientConfig, MsteamsConfig, SecretSource, TelegramConfig, WebexConfig,
};
use tracing::warn;

use crate::fields::Render;
use crate::integration::{Encoded, Encoder, all_resolved, truncate_bytes, truncate_runes};
use crate::sender::{Reply, check_status};
use crate::{FailureReason, NotifyData, NotifyError, read_secret};

/// The common judgement: 2xx succeeds, 5xx is retried, any other status is final.
fn standard(reply: &Reply) -> Result<(), NotifyError> {
    check_status(reply.status, &reply.quoted(), &[])
}

/// A field cut to `n` characters, with a warning when it was.
fn runes(s: String, n: usize, what: &str, kind: &str) -> String {
    let (out, cut) = truncate_runes(&s, n);
    if cut {
        warn!(integration = kind, field = what, max_runes = n, "truncated a field");
    }
    out
}

/// Discord (`discord_configs`): one embed, red while firing, green once resolved.
pub struct Discord(pub DiscordConfig);

#[derive(Serialize)]
struct DiscordMessage {
    content: String,
    embeds: [DiscordEmbed; 1],
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    avatar_url: String,
}

#[derive(Serialize)]
struct DiscordEmbed {
    title: String,
    description: String,
    color: u32,
}

impl Encoder for Discord {
    const KIND: &'static str = "discord";
    fn fields(&self) -> Vec<(String, &str)> {
        vec![
            ("title".into(), &self.0.title),
            ("message".into(), &self.0.message),
            ("content".into(), &self.0.content),
        ]
    }
    fn endpoint(&self) -> SecretSource {
        self.0.webhook_url.clone()
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn encode(&self, d: &NotifyData, _: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let title = r.field("title", r#"{{ template "discord.default.title" . }}"#);
        let message = r.field("message", r#"{{ template "discord.default.message" . }}"#);
        let content = r.field("content", "");
        let avatar_url = if self.0.avatar_url.is_empty() || reqwest::Url::parse(&self.0.avatar_url).is_ok() {
            self.0.avatar_url.clone()
        } else {
            warn!(avatar_url = %self.0.avatar_url, "discord: bad avatar_url, left out");
            String::new()
        };
        let msg = DiscordMessage {
            content: runes(content, 2000, "content", Self::KIND),
            embeds: [DiscordEmbed {
                title: runes(title, 256, "title", Self::KIND),
                description: runes(message, 4096, "message", Self::KIND),
                color: if all_resolved(d) { 0x2E_CC71 } else { 0x99_2D22 },
            }],
            username: self.0.username.clone(),
            avatar_url,
        };
        Ok(vec![Encoded::json(&msg)?])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        standard(reply)
    }
}

/// Microsoft Teams: the connector card (`msteams_configs`) or the Workflows adaptive card
/// (`msteamsv2_configs`).
pub struct Msteams(pub MsteamsConfig);

#[derive(Serialize)]
struct MessageCard {
    #[serde(rename = "@context")]
    context: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    summary: String,
    text: String,
    #[serde(rename = "themeColor")]
    theme_color: &'static str,
}

#[derive(Serialize)]
struct AdaptiveMessage {
    #[serde(rename = "type")]
    kind: &'static str,
    attachments: [AdaptiveAttachment; 1],
}

#[derive(Serialize)]
struct AdaptiveAttachment {
    #[serde(rename = "contentType")]
    content_type: &'static str,
    #[serde(rename = "contentUrl")]
    content_url: Option<String>,
    content: AdaptiveCard,
}

#[derive(Serialize)]
struct AdaptiveCard {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    body: [TextBlock; 2],
    msteams: Width,
}

#[derive(Serialize)]
struct Width {
    width: &'static str,
}

#[derive(Serialize)]
struct TextBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    weight: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    size: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    wrap: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    style: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    color: &'static str,
}

impl Encoder for Msteams {
    const KIND: &'static str = "msteams";
    fn fields(&self) -> Vec<(String, &str)> {
        vec![
            ("title".into(), &self.0.title),
            ("summary".into(), &self.0.summary),
            ("text".into(), &self.0.text),
        ]
    }
    fn endpoint(&self) -> SecretSource {
        self.0.webhook_url.clone()
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn encode(&self, d: &NotifyData, _: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let resolved = all_resolved(d);
        let v = if self.0.v2 { "msteamsv2" } else { "msteams" };
        let title = r.field("title", &format!("{{{{ template \"{v}.default.title\" . }}}}"));
        let text = r.field("text", &format!("{{{{ template \"{v}.default.text\" . }}}}"));
        if !self.0.v2 {
            let card = MessageCard {
                context: "http://schema.org/extensions",
                kind: "MessageCard",
                title,
                summary: r.field("summary", r#"{{ template "msteams.default.summary" . }}"#),
                text,
                theme_color: if resolved { "2DC72D" } else { "8C1A1A" },
            };
            return Ok(vec![Encoded::json(&card)?]);
        }
        let block = |text: String| TextBlock {
            kind: "TextBlock",
            text,
            weight: "",
            size: "",
            wrap: true,
            style: "",
            color: "",
        };
        let msg = AdaptiveMessage {
            kind: "message",
            attachments: [AdaptiveAttachment {
                content_type: "application/vnd.microsoft.card.adaptive",
                content_url: None,
                content: AdaptiveCard {
                    schema: "http://adaptivecards.io/schemas/adaptive-card.json",
                    kind: "AdaptiveCard",
                    version: "1.2",
                    body: [
                        TextBlock {
                            weight: "Bolder",
                            size: "Medium",
                            style: "heading",
                            color: if resolved { "Good" } else { "Attention" },
                            ..block(title)
                        },
                        block(text),
                    ],
                    msteams: Width { width: "full" },
                },
            }],
        };
        Ok(vec![Encoded::json(&msg)?])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        standard(reply)
    }
}

/// Webex (`webex_configs`): markdown to a room, the bot token in `http_config.authorization`.
pub struct Webex(pub WebexConfig);

#[derive(Serialize)]
struct WebexMessage {
    markdown: String,
    #[serde(rename = "roomId", skip_serializing_if = "String::is_empty")]
    room_id: String,
}

/// Webex's longest message, in bytes.
const WEBEX_MAX_BYTES: usize = 7439;

impl Encoder for Webex {
    const KIND: &'static str = "webex";
    fn fields(&self) -> Vec<(String, &str)> {
        vec![("message".into(), &self.0.message), ("room_id".into(), &self.0.room_id)]
    }
    fn endpoint(&self) -> SecretSource {
        SecretSource::Inline(self.0.api_url.clone())
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn encode(&self, _: &NotifyData, _: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let message = r.field("message", r#"{{ template "webex.default.message" . }}"#);
        let (markdown, cut) = truncate_bytes(&message, WEBEX_MAX_BYTES);
        if cut {
            warn!(
                integration = "webex",
                max_bytes = WEBEX_MAX_BYTES,
                "truncated the message"
            );
        }
        let room_id = r.field("room_id", "");
        Ok(vec![Encoded::json(&WebexMessage { markdown, room_id })?])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        standard(reply)
    }
}

/// Telegram (`telegram_configs`): `sendMessage` of the Bot API.
pub struct Telegram(pub TelegramConfig);

/// Telegram's longest message, in characters.
const TELEGRAM_MAX_RUNES: usize = 4096;
/// What Alertmanager sends instead of an HTML message too long to cut safely.
const TELEGRAM_TOO_LONG: &str = "Alertmanager notification could not be sent: message length exceeds Telegram limits.\n\t\t\tPlease check the template used for producing the message content.";

/// `sendMessage`'s parameters: every value a string, keys in alphabetical order.
#[derive(Serialize)]
struct TelegramMessage {
    chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_notification: Option<&'static str>,
    disable_web_page_preview: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_thread_id: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    parse_mode: String,
    text: String,
}

impl Encoder for Telegram {
    const KIND: &'static str = "telegram";
    fn fields(&self) -> Vec<(String, &str)> {
        vec![("message".into(), &self.0.message)]
    }
    fn endpoint(&self) -> SecretSource {
        // Replaced at each send by the URL with the token (see `encode`).
        SecretSource::Inline(self.0.api_url.clone())
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        let token = read_secret(&self.0.bot_token)?;
        let chat = match &self.0.chat_id {
            ChatId::Inline(id) => id.to_string(),
            ChatId::File(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("could not read {}: {e}", p.display()))?;
                let id: i64 = text
                    .trim()
                    .parse()
                    .map_err(|e| format!("could not parse chat_id from {}: {e}", p.display()))?;
                id.to_string()
            }
        };
        Ok(vec![token, chat])
    }
    fn encode(&self, _: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let [token, chat_id] = secrets else {
            return Err("telegram: the bot token and chat id were not read".into());
        };
        let text = if self.0.parse_mode == "HTML" {
            let html = r.field_html("message", r#"{{ template "telegram.default.message" . }}"#);
            if html.chars().count() > TELEGRAM_MAX_RUNES {
                warn!(
                    integration = "telegram",
                    max_runes = TELEGRAM_MAX_RUNES,
                    "message too long for Telegram: sending a notice instead"
                );
                TELEGRAM_TOO_LONG.to_string()
            } else {
                html
            }
        } else {
            let text = r.field("message", r#"{{ template "telegram.default.message" . }}"#);
            runes(text, TELEGRAM_MAX_RUNES, "message", Self::KIND)
        };
        let msg = TelegramMessage {
            chat_id: chat_id.clone(),
            disable_notification: self.0.disable_notifications.then_some("true"),
            disable_web_page_preview: "true",
            message_thread_id: (self.0.message_thread_id != 0).then(|| self.0.message_thread_id.to_string()),
            parse_mode: self.0.parse_mode.clone(),
            text,
        };
        let mut e = Encoded::json(&msg)?;
        e.url = Some(format!("{}/bot{token}/sendMessage", self.0.api_url));
        Ok(vec![e])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        // Telegram's answer says it all (the status is not looked at): `ok`, or an error code.
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            ok: bool,
            #[serde(default)]
            error_code: u16,
            #[serde(default)]
            description: String,
        }
        match serde_json::from_slice::<Answer>(&reply.body) {
            Ok(a) if a.ok => Ok(()),
            // Every failure is retried, as Alertmanager does.
            Ok(a) => Err(NotifyError::retryable(
                FailureReason::of_status(a.error_code),
                format!("telegram: {} ({})", a.description, a.error_code),
            )),
            Err(e) => Err(NotifyError::retryable(
                FailureReason::of_status(reply.status),
                format!("telegram: unexpected answer (status {}): {e}", reply.status),
            )),
        }
    }
}
