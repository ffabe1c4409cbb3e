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
use crate::integration::{Encoded, Encoder, all_resolved, cut_runes, push_chat_fields, truncate_bytes};
use crate::sender::{Reply, check_status};
use crate::{FailureReason, NotifyData, NotifyError, read_secret};

/// The common judgement: 2xx succeeds, 5xx is retried, any other status is final.
fn standard(reply: &Reply) -> Result<(), NotifyError> {
    check_status(reply.status, &reply.quoted(), &[])
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
            content: cut_runes(content, 2000, "content", Self::KIND),
            embeds: [DiscordEmbed {
                title: cut_runes(title, 256, "title", Self::KIND),
                description: cut_runes(message, 4096, "message", Self::KIND),
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
    /// The chat id is not a secret (Alertmanager shows it).
    fn redacted(&self, secrets: &[String]) -> Vec<String> {
        secrets.iter().take(1).cloned().collect()
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
            cut_runes(text, TELEGRAM_MAX_RUNES, "message", Self::KIND)
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

/// A Slack-like attachment field: `short` written only when configured (Mattermost), or
/// always (Rocket.Chat, `short_fields` standing in).
#[derive(Serialize)]
struct ChatField {
    #[serde(skip_serializing_if = "Option::is_none")]
    short: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
}

/// Mattermost (`mattermost_configs`): an incoming webhook message with attachments.
pub struct Mattermost(pub tocsin_core::config::MattermostConfig);

#[derive(Serialize)]
struct MattermostMessage {
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    channel: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    icon_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    icon_emoji: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<MattermostAttachment>,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    props: Option<MattermostProps>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<MattermostPriority>,
}

#[derive(Serialize)]
struct MattermostProps {
    #[serde(skip_serializing_if = "String::is_empty")]
    card: String,
}

#[derive(Serialize)]
struct MattermostPriority {
    priority: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    requested_ack: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    persistent_notifications: bool,
}

#[derive(Serialize, Default)]
struct MattermostAttachment {
    #[serde(skip_serializing_if = "String::is_empty")]
    fallback: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    color: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pretext: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    author_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    author_link: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    author_icon: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    title_link: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<ChatField>,
    #[serde(skip_serializing_if = "String::is_empty")]
    thumb_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    footer: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    footer_icon: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    image_url: String,
}

/// Mattermost's longest top-level text, in characters.
const MATTERMOST_MAX_RUNES: usize = 16383;

fn attachment_fields<'a>(
    prefix: &str,
    a: &'a tocsin_core::config::MattermostAttachment,
    out: &mut Vec<(String, &'a str)>,
) {
    for (k, v) in tocsin_core::config::MATTERMOST_ATTACHMENT_KEYS.iter().zip(&a.strings) {
        out.push((format!("{prefix}.{k}"), v));
    }
    for (i, (t, v, _)) in a.fields.iter().enumerate() {
        out.push((format!("{prefix}.fields[{i}].title"), t));
        out.push((format!("{prefix}.fields[{i}].value"), v));
    }
}

fn render_attachment(
    prefix: &str,
    a: &tocsin_core::config::MattermostAttachment,
    r: &mut Render<'_>,
) -> MattermostAttachment {
    let mut s = |k: &str| r.field(&format!("{prefix}.{k}"), "");
    let mut out = MattermostAttachment {
        fallback: s("fallback"),
        color: s("color"),
        pretext: s("pretext"),
        text: s("text"),
        author_name: s("author_name"),
        author_link: s("author_link"),
        author_icon: s("author_icon"),
        title: s("title"),
        title_link: s("title_link"),
        thumb_url: s("thumb_url"),
        footer: s("footer"),
        footer_icon: s("footer_icon"),
        image_url: s("image_url"),
        ..MattermostAttachment::default()
    };
    out.fields = a
        .fields
        .iter()
        .enumerate()
        .map(|(i, (_, _, short))| ChatField {
            short: *short,
            title: r.field(&format!("{prefix}.fields[{i}].title"), ""),
            value: r.field(&format!("{prefix}.fields[{i}].value"), ""),
        })
        .collect();
    out
}

impl Encoder for Mattermost {
    const KIND: &'static str = "mattermost";
    fn fields(&self) -> Vec<(String, &str)> {
        let c = &self.0;
        let mut v: Vec<(String, &str)> = vec![
            ("channel".into(), &c.channel),
            ("username".into(), &c.username),
            ("text".into(), &c.text),
            ("icon_url".into(), &c.icon_url),
            ("icon_emoji".into(), &c.icon_emoji),
            ("type".into(), &c.kind),
        ];
        if let Some(card) = &c.card {
            v.push(("props.card".into(), card));
        }
        if let Some((p, _, _)) = &c.priority {
            v.push(("priority.priority".into(), p));
        }
        attachment_fields("top", &c.top, &mut v);
        for (i, a) in c.attachments.iter().enumerate() {
            attachment_fields(&format!("attachments[{i}]"), a, &mut v);
        }
        v
    }
    fn endpoint(&self) -> SecretSource {
        self.0.webhook_url.clone()
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn encode(&self, _: &NotifyData, _: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let c = &self.0;
        let channel = r.field("channel", "");
        // Without `attachments`, the top-level fields make the one attachment, the text in it.
        let (text, attachments) = if c.attachments.is_empty() {
            (String::new(), vec![render_attachment("top", &c.top, r)])
        } else {
            let text = r.field("text", r#"{{ template "mattermost.default.text" . }}"#);
            let list = (0..c.attachments.len())
                .map(|i| render_attachment(&format!("attachments[{i}]"), &c.attachments[i], r))
                .collect();
            (cut_runes(text, MATTERMOST_MAX_RUNES, "text", Self::KIND), list)
        };
        let priority = c.priority.as_ref().map(|(_, ack, persistent)| {
            let p = r.field("priority.priority", "").to_lowercase();
            let p = if matches!(p.as_str(), "urgent" | "important" | "standard") {
                p
            } else {
                warn!(integration = "mattermost", priority = %p, "unknown priority: standard");
                "standard".to_string()
            };
            MattermostPriority {
                requested_ack: *ack && p != "standard",
                persistent_notifications: *persistent && p == "urgent",
                priority: p,
            }
        });
        let msg = MattermostMessage {
            text,
            channel: channel.clone(),
            username: r.field("username", r#"{{ template "mattermost.default.username" . }}"#),
            icon_url: r.field("icon_url", ""),
            icon_emoji: r.field("icon_emoji", ""),
            attachments,
            kind: r.field("type", ""),
            props: c.card.as_ref().map(|_| MattermostProps {
                card: r.field("props.card", ""),
            }),
            priority,
        };
        let mut e = Encoded::json(&msg)?;
        e.context = channel;
        Ok(vec![e])
    }
    fn judge(&self, reply: &Reply, sent: &Encoded) -> Result<(), NotifyError> {
        standard(reply).map_err(|e| NotifyError {
            message: format!("channel {:?}: {}", sent.context, e.message),
            ..e
        })
    }
}

/// Rocket.Chat (`rocketchat_configs`): `chat.postMessage` with a personal access token.
pub struct Rocketchat(pub tocsin_core::config::RocketchatConfig);

#[derive(Serialize)]
struct RocketchatMessage {
    #[serde(skip_serializing_if = "String::is_empty")]
    channel: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    emoji: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    avatar: String,
    attachments: [RocketchatAttachment; 1],
}

#[derive(Serialize)]
struct RocketchatAttachment {
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    title_link: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    image_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    thumb_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    color: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<ChatField>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    actions: Vec<RocketchatAction>,
}

#[derive(Serialize)]
struct RocketchatAction {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    url: String,
    is_webview: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    msg: String,
    msg_in_chat_window: bool,
}

impl Encoder for Rocketchat {
    const KIND: &'static str = "rocketchat";
    fn fields(&self) -> Vec<(String, &str)> {
        let c = &self.0;
        let mut v: Vec<(String, &str)> = vec![
            ("channel".into(), &c.channel),
            ("color".into(), &c.color),
            ("title".into(), &c.title),
            ("title_link".into(), &c.title_link),
            ("text".into(), &c.text),
            ("emoji".into(), &c.emoji),
            ("icon_url".into(), &c.icon_url),
            ("image_url".into(), &c.image_url),
            ("thumb_url".into(), &c.thumb_url),
        ];
        push_chat_fields(&c.fields, &mut v);
        for (i, [text, url, msg]) in c.actions.iter().enumerate() {
            v.push((format!("actions[{i}].text"), text));
            v.push((format!("actions[{i}].url"), url));
            v.push((format!("actions[{i}].msg"), msg));
        }
        v
    }
    fn endpoint(&self) -> SecretSource {
        SecretSource::Inline(self.0.url.clone())
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        Ok(vec![read_secret(&self.0.token)?, read_secret(&self.0.token_id)?])
    }
    fn encode(&self, _: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let c = &self.0;
        let [token, token_id] = secrets else {
            return Err("rocketchat: the tokens were not read".into());
        };
        let title = r.field("title", r#"{{ template "rocketchat.default.title" . }}"#);
        let attachment = RocketchatAttachment {
            title: cut_runes(title, 1024, "title", Self::KIND),
            title_link: r.field("title_link", r#"{{ template "rocketchat.default.titlelink" . }}"#),
            text: r.field("text", r#"{{ template "rocketchat.default.text" . }}"#),
            image_url: r.field("image_url", ""),
            thumb_url: r.field("thumb_url", ""),
            color: r.field("color", r#"{{ if eq .Status "firing" }}red{{ else }}green{{ end }}"#),
            fields: c
                .fields
                .iter()
                .enumerate()
                .map(|(i, (_, _, short))| ChatField {
                    short: Some(short.unwrap_or(c.short_fields)),
                    title: r.field(&format!("fields[{i}].title"), ""),
                    value: r.field(&format!("fields[{i}].value"), ""),
                })
                .collect(),
            actions: (0..c.actions.len())
                .map(|i| RocketchatAction {
                    kind: "button",
                    text: r.field(&format!("actions[{i}].text"), ""),
                    url: r.field(&format!("actions[{i}].url"), ""),
                    is_webview: false,
                    msg: r.field(&format!("actions[{i}].msg"), ""),
                    msg_in_chat_window: false,
                })
                .collect(),
        };
        let channel = r.field("channel", "");
        let msg = RocketchatMessage {
            channel: channel.clone(),
            emoji: r.field("emoji", ""),
            avatar: r.field("icon_url", ""),
            attachments: [attachment],
        };
        let mut e = Encoded::json(&msg)?;
        e.headers = vec![
            ("X-Auth-Token".into(), token.clone()),
            ("X-User-Id".into(), token_id.clone()),
        ];
        e.context = channel;
        Ok(vec![e])
    }
    fn judge(&self, reply: &Reply, sent: &Encoded) -> Result<(), NotifyError> {
        let prefixed = |e: NotifyError| NotifyError {
            message: format!("channel {:?}: {}", sent.context, e.message),
            ..e
        };
        standard(reply).map_err(prefixed)?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            success: bool,
            #[serde(default)]
            error: String,
        }
        match serde_json::from_slice::<Answer>(&reply.body) {
            Ok(a) if a.success => Ok(()),
            Ok(a) => Err(prefixed(NotifyError::fatal(
                FailureReason::ClientError,
                format!("error response from Rocketchat: {}", a.error),
            ))),
            Err(e) => Err(prefixed(NotifyError::retryable(
                FailureReason::ClientError,
                format!("could not unmarshal JSON response {:?}: {e}", reply.quoted()),
            ))),
        }
    }
}
