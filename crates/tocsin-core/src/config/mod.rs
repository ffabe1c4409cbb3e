//! `alertmanager.yml`: strict parsing (raw layer) and validation into [`Config`] (§2, §10.3).
//!
//! No file is read here: `*_file` paths are resolved against the config file's directory and read
//! by the integration at send time, as Alertmanager does.

pub mod raw;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::inhibit::InhibitRule;
use crate::labels::{NameValidation, go_quote, is_classic_label_name};
use crate::matchers::{MatchType, Matcher, ParseMode, parse_matchers};
use crate::route::{GroupBy, RouteSpec, RouteTree};
use crate::timeinterval::TimeInterval;
use raw::{RawConfig, RawHttpConfig, RawRoute, RawTlsConfig, Secret};

/// A configuration error, worded as Alertmanager words it where it has a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// What the loader needs from the outside world.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Matcher parser mode (`--enable-feature`).
    pub parse_mode: ParseMode,
    /// Zone that `location: Local` means.
    pub local_timezone: TimeZone,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            parse_mode: ParseMode::Fallback,
            local_timezone: TimeZone::UTC,
        }
    }
}

impl LoadOptions {
    /// Label-name rules implied by the parse mode.
    pub fn name_validation(&self) -> NameValidation {
        match self.parse_mode {
            ParseMode::Classic => NameValidation::Classic,
            _ => NameValidation::Utf8,
        }
    }
}

/// A secret given inline or as a file to read when it is used.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value itself.
    Inline(String),
    /// A file whose trimmed content is the value.
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<secret>)"),
            SecretSource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// TLS client settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA bundle (PEM) inline.
    pub ca: Option<String>,
    /// CA bundle file.
    pub ca_file: Option<PathBuf>,
    /// Client certificate inline.
    pub cert: Option<String>,
    /// Client certificate file.
    pub cert_file: Option<PathBuf>,
    /// Client key.
    pub key: Option<SecretSource>,
    /// Expected server name.
    pub server_name: Option<String>,
    /// Skip certificate verification.
    pub insecure_skip_verify: bool,
    /// Minimum TLS version (`TLS12`, `TLS13`).
    pub min_version: Option<String>,
}

/// Prometheus' common HTTP client settings (the subset Tocsin honours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// Basic auth user (inline or `username_file`) and password.
    pub basic_auth: Option<(SecretSource, Option<SecretSource>)>,
    /// Authorization header scheme and credentials (`bearer_token` becomes `Bearer`).
    pub authorization: Option<(String, SecretSource)>,
    /// Proxy URL.
    pub proxy_url: Option<String>,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Follow redirects (default true).
    pub follow_redirects: bool,
    /// Allow HTTP/2 (default true).
    pub enable_http2: bool,
    /// `http_headers`: each header with its values, in order (a file's value is read at use).
    pub headers: Vec<(String, Vec<SecretSource>)>,
    /// `no_proxy`: hosts, domains and CIDRs `proxy_url` is not used for (comma-separated).
    pub no_proxy: Option<String>,
    /// `proxy_connect_header`: headers sent to the proxy on CONNECT.
    pub proxy_connect_headers: Vec<(String, String)>,
    /// `proxy_from_environment`: the proxy from `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`.
    pub proxy_from_environment: bool,
    /// `oauth2`: a bearer token fetched with the client credentials grant.
    pub oauth2: Option<OAuth2Config>,
}

/// `oauth2` of an `http_config`: the client credentials grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Config {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret` or `client_secret_file` (read at each token request).
    pub client_secret: SecretSource,
    /// `scopes`, sent space-separated.
    pub scopes: Vec<String>,
    /// `token_url`.
    pub token_url: String,
    /// `endpoint_params`, sent with the token request.
    pub endpoint_params: BTreeMap<String, String>,
}

/// Headers `http_headers` may not set (Prometheus' common HTTP config reserves them).
const RESERVED_HEADERS: [&str; 20] = [
    "Authorization",
    "Host",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "User-Agent",
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Www-Authenticate",
    "Accept-Encoding",
    "X-Prometheus-Remote-Write-Version",
    "X-Prometheus-Remote-Read-Version",
    "X-Prometheus-Scrape-Timeout-Seconds",
    "X-Amz-Date",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
    "Authentication",
    "Upgrade",
];

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            proxy_url: None,
            tls: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            headers: Vec::new(),
            no_proxy: None,
            proxy_connect_headers: Vec::new(),
            proxy_from_environment: false,
            oauth2: None,
        }
    }
}

/// A webhook integration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// Target URL, inline or from a file.
    pub url: SecretSource,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// Maximum alerts per payload (0 = unlimited).
    pub max_alerts: u64,
    /// Per-request timeout (None = no timeout beyond the flush deadline).
    pub timeout: Option<Duration>,
    /// `payload` (0.32): a body of the user's own, its keys and string values templates.
    pub payload: Option<serde_json::Value>,
}

/// An email integration (§2.5); every string but `smarthost` and `hello` is a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailConfig {
    /// Send resolved notifications (default false).
    pub send_resolved: bool,
    /// Recipients, comma-separated (templated).
    pub to: String,
    /// Sender (templated).
    pub from: String,
    /// Name sent in EHLO.
    pub hello: String,
    /// SMTP server host.
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// Username for AUTH PLAIN/LOGIN.
    pub auth_username: Option<String>,
    /// Password, inline or from a file.
    pub auth_password: Option<SecretSource>,
    /// Authorization identity for PLAIN.
    pub auth_identity: Option<String>,
    /// Headers by canonical name, with `Subject`, `To` and `From` filled in (templated).
    pub headers: BTreeMap<String, String>,
    /// HTML body template (empty: none).
    pub html: String,
    /// Text body template (empty: none).
    pub text: String,
    /// Refuse to send unless the server offers STARTTLS (default true).
    pub require_tls: bool,
    /// TLS from the first byte (default: when the port is 465).
    pub implicit_tls: bool,
    /// TLS settings.
    pub tls: TlsConfig,
    /// `threading` (0.30): `None` when off, else whether threads start anew each day.
    pub threading: Option<ThreadBy>,
}

/// A Slack integration (§4 slack); every string but the URLs and tokens is a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackConfig {
    /// Send resolved notifications (default false).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// Where to post: `api_url`(`_file`), or `app_url` when an app token is used.
    pub url: SecretSource,
    /// An app token, sent as `Authorization: Bearer`.
    pub app_token: Option<SecretSource>,
    /// With `update_message`: where a group's message, once posted, is updated
    /// (`chat.update` beside `api_url`'s `chat.postMessage`).
    pub update_url: Option<String>,
    /// `channel`.
    pub channel: String,
    /// `username`.
    pub username: String,
    /// `color`.
    pub color: String,
    /// `title` (at most 1024 runes once rendered).
    pub title: String,
    /// `title_link`.
    pub title_link: String,
    /// `pretext`.
    pub pretext: String,
    /// `text`.
    pub text: String,
    /// `message_text`: the message's top-level text.
    pub message_text: String,
    /// `fields`: title, value and `short` (else `short_fields`).
    pub fields: Vec<(String, String, Option<bool>)>,
    /// `short_fields`.
    pub short_fields: bool,
    /// `footer`.
    pub footer: String,
    /// `fallback`.
    pub fallback: String,
    /// `callback_id`.
    pub callback_id: String,
    /// `icon_emoji`.
    pub icon_emoji: String,
    /// `icon_url`.
    pub icon_url: String,
    /// `image_url`.
    pub image_url: String,
    /// `thumb_url`.
    pub thumb_url: String,
    /// `link_names`.
    pub link_names: bool,
    /// `mrkdwn_in` (default `fallback, pretext, text`).
    pub mrkdwn_in: Vec<String>,
    /// `actions`.
    pub actions: Vec<SlackAction>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
}

/// A Slack action (every string a template).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlackAction {
    /// `type`.
    pub kind: String,
    /// `text`.
    pub text: String,
    /// `url`.
    pub url: String,
    /// `style`.
    pub style: String,
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: String,
    /// `confirm`: text, title, ok_text, dismiss_text.
    pub confirm: Option<[String; 4]>,
}

/// A PagerDuty integration (§4 pagerduty): Events API v2 with a routing key, v1 with a
/// service key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagerdutyConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The routing key (v2) or service key (v1), templated.
    pub key: SecretSource,
    /// Events API v1 (`service_key`).
    pub v1: bool,
    /// Where v2 events go (v1 has a fixed URL).
    pub url: String,
    /// `client`.
    pub client: String,
    /// `client_url`.
    pub client_url: String,
    /// `description` (the summary; at most 1024 runes once rendered).
    pub description: String,
    /// `details`, the defaults merged in: string leaves are templates.
    pub details: BTreeMap<String, serde_json::Value>,
    /// `images`: src, alt, href.
    pub images: Vec<[String; 3]>,
    /// `links`: href, text.
    pub links: Vec<[String; 2]>,
    /// `source` (default: the `client` template).
    pub source: String,
    /// `severity` (default `error`).
    pub severity: String,
    /// `class`.
    pub class: String,
    /// `component`.
    pub component: String,
    /// `group`.
    pub group: String,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
}

/// A Discord integration (§4 discord).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscordConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The webhook URL, inline or from a file.
    pub webhook_url: SecretSource,
    /// `content` (templated; at most 2000 characters).
    pub content: String,
    /// `title` (templated; at most 256 characters).
    pub title: String,
    /// `message` (templated; at most 4096 characters).
    pub message: String,
    /// `username` (not templated).
    pub username: String,
    /// `avatar_url` (not templated).
    pub avatar_url: String,
}

/// A Microsoft Teams integration: the legacy connector card (`msteams_configs`), or the
/// Workflows adaptive card (`msteamsv2_configs`, no `summary`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsteamsConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The webhook URL, inline or from a file.
    pub webhook_url: SecretSource,
    /// `title` (templated).
    pub title: String,
    /// `summary` (templated; the legacy card only).
    pub summary: String,
    /// `text` (templated).
    pub text: String,
    /// The Workflows adaptive card (`msteamsv2_configs`).
    pub v2: bool,
}

/// A Webex integration (§4 webex): the bot token is `http_config.authorization`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebexConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The messages API.
    pub api_url: String,
    /// `room_id` (templated).
    pub room_id: String,
    /// `message` (templated; at most 7439 bytes).
    pub message: String,
}

/// A Telegram chat id, inline or from a file read at each send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatId {
    /// The id.
    Inline(i64),
    /// A file holding it.
    File(PathBuf),
}

/// A Telegram integration (§4 telegram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelegramConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The Bot API's base URL.
    pub api_url: String,
    /// The bot token, inline or from a file.
    pub bot_token: SecretSource,
    /// The chat.
    pub chat_id: ChatId,
    /// A forum topic (0: none).
    pub message_thread_id: i64,
    /// `message` (templated; at most 4096 characters).
    pub message: String,
    /// `disable_notifications`.
    pub disable_notifications: bool,
    /// `HTML` (default), `Markdown`, `MarkdownV2` or empty.
    pub parse_mode: String,
}

/// An Opsgenie responder: id, name, username, type (all templated).
pub type OpsgenieResponder = [String; 4];

/// An Opsgenie integration (§4 opsgenie).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsgenieConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The API key (templated), inline or from a file.
    pub api_key: SecretSource,
    /// The API's base URL, ending with `/`.
    pub api_url: String,
    /// `message` (templated; at most 130 characters).
    pub message: String,
    /// `description`.
    pub description: String,
    /// `source`.
    pub source: String,
    /// `details`, laid over the common labels (values templated).
    pub details: BTreeMap<String, String>,
    /// `entity`.
    pub entity: String,
    /// `responders`.
    pub responders: Vec<OpsgenieResponder>,
    /// `actions`, comma-separated once rendered.
    pub actions: String,
    /// `tags`, comma-separated once rendered.
    pub tags: String,
    /// `note`.
    pub note: String,
    /// `priority`.
    pub priority: String,
    /// Also update an existing alert's message and description.
    pub update_alerts: bool,
}

/// A VictorOps (Splunk On-Call) integration (§4 victorops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VictoropsConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The API key, inline or from a file.
    pub api_key: SecretSource,
    /// The REST endpoint's base, ending with `/`.
    pub api_url: String,
    /// `routing_key` (templated).
    pub routing_key: String,
    /// `message_type` (templated; `CRITICAL` unless `INFO` or `WARNING`).
    pub message_type: String,
    /// `state_message` (templated; at most 20480 characters).
    pub state_message: String,
    /// `entity_display_name` (templated).
    pub entity_display_name: String,
    /// `monitoring_tool` (templated).
    pub monitoring_tool: String,
    /// `custom_fields` (values templated).
    pub custom_fields: BTreeMap<String, String>,
}

/// A Pushover integration (§4 pushover).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushoverConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The user key (a file's content is used as is, untrimmed, as Alertmanager does).
    pub user_key: SecretSource,
    /// The application token (likewise).
    pub token: SecretSource,
    /// `title` (templated; at most 250 characters).
    pub title: String,
    /// `message` (templated; at most 1024 characters).
    pub message: String,
    /// `url` (templated; at most 512 characters).
    pub url: String,
    /// `url_title` (templated).
    pub url_title: String,
    /// `device` (templated).
    pub device: String,
    /// `sound` (templated).
    pub sound: String,
    /// `priority` (templated).
    pub priority: String,
    /// `retry`.
    pub retry: Duration,
    /// `expire`.
    pub expire: Duration,
    /// `ttl` (zero: not sent).
    pub ttl: Duration,
    /// `html`: the message rendered for HTML.
    pub html: bool,
    /// `monospace`.
    pub monospace: bool,
}

/// An incident.io integration (§4 incidentio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentioConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings (the alert source token becomes its authorization).
    pub http: HttpClientConfig,
    /// The alert source URL, inline or from a file.
    pub url: SecretSource,
    /// Alerts per notification (0: all).
    pub max_alerts: u64,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
}

/// A Slack-like attachment field: title, value, `short`.
pub type ChatField = (String, String, Option<bool>);

/// A Rocket.Chat integration (§4 rocketchat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocketchatConfig {
    /// Send resolved notifications (default false).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// `{api_url}api/v1/chat.postMessage`.
    pub url: String,
    /// `X-Auth-Token`.
    pub token: SecretSource,
    /// `X-User-Id`.
    pub token_id: SecretSource,
    /// `channel`.
    pub channel: String,
    /// `color`.
    pub color: String,
    /// `title` (at most 1024 characters).
    pub title: String,
    /// `title_link`.
    pub title_link: String,
    /// `text`.
    pub text: String,
    /// `fields`.
    pub fields: Vec<ChatField>,
    /// `short_fields`.
    pub short_fields: bool,
    /// `emoji`.
    pub emoji: String,
    /// `icon_url` (sent as `avatar`).
    pub icon_url: String,
    /// `image_url`.
    pub image_url: String,
    /// `thumb_url`.
    pub thumb_url: String,
    /// `actions`: text, url, msg.
    pub actions: Vec<[String; 3]>,
}

/// A Mattermost attachment (every string templated).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MattermostAttachment {
    /// fallback, color, pretext, text, author_name, author_link, author_icon, title,
    /// title_link, thumb_url, footer, footer_icon, image_url — in that order.
    pub strings: [String; 13],
    /// `fields`.
    pub fields: Vec<ChatField>,
}

/// The names of [`MattermostAttachment::strings`], in order.
pub const MATTERMOST_ATTACHMENT_KEYS: [&str; 13] = [
    "fallback",
    "color",
    "pretext",
    "text",
    "author_name",
    "author_link",
    "author_icon",
    "title",
    "title_link",
    "thumb_url",
    "footer",
    "footer_icon",
    "image_url",
];

/// A Mattermost integration (§4 mattermost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MattermostConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The incoming webhook URL, inline or from a file.
    pub webhook_url: SecretSource,
    /// `channel`.
    pub channel: String,
    /// `username`.
    pub username: String,
    /// `text`.
    pub text: String,
    /// `icon_url`.
    pub icon_url: String,
    /// `icon_emoji`.
    pub icon_emoji: String,
    /// The attachment built from the top-level fields, used when `attachments` is not given.
    pub top: MattermostAttachment,
    /// `attachments`.
    pub attachments: Vec<MattermostAttachment>,
    /// `type`.
    pub kind: String,
    /// `props.card` (None: no `props`).
    pub card: Option<String>,
    /// `priority`: priority, requested_ack, persistent_notifications (None: none).
    pub priority: Option<(String, bool, bool)>,
}

/// An Amazon SNS integration (§4 sns): `Publish`, signed with AWS Signature Version 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnsConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// A custom endpoint (templated); else `https://sns.<region>.amazonaws.com/`.
    pub api_url: String,
    /// `sigv4.region` (else `AWS_REGION` / `AWS_DEFAULT_REGION` at send time).
    pub region: String,
    /// `sigv4.access_key` and `secret_key` (else the `AWS_*` environment at send time).
    pub keys: Option<(String, SecretSource)>,
    /// `topic_arn` (templated).
    pub topic_arn: String,
    /// `phone_number` (templated).
    pub phone_number: String,
    /// `target_arn` (templated).
    pub target_arn: String,
    /// `subject` (templated; sent when not empty).
    pub subject: String,
    /// `message` (templated).
    pub message: String,
    /// `attributes` (names and values templated).
    pub attributes: BTreeMap<String, String>,
}

/// A WeChat Work integration (§4 wechat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WechatConfig {
    /// Send resolved notifications (default false).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpClientConfig,
    /// The API's base URL, ending with `/`.
    pub api_url: String,
    /// The application secret (templated), inline or from a file.
    pub api_secret: SecretSource,
    /// `corp_id` (templated).
    pub corp_id: String,
    /// `message` (templated).
    pub message: String,
    /// `to_user` (templated).
    pub to_user: String,
    /// `to_party` (templated).
    pub to_party: String,
    /// `to_tag` (templated).
    pub to_tag: String,
    /// `agent_id` (templated).
    pub agent_id: String,
    /// `text` or `markdown`.
    pub message_type: String,
}

/// A Jira integration (§4 jira): an issue per group, found by its `ALERT{hash}` label,
/// created, updated, and moved by the configured transitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JiraConfig {
    /// Send resolved notifications (default true).
    pub send_resolved: bool,
    /// HTTP client settings (the credentials).
    pub http: HttpClientConfig,
    /// The REST API's base URL (`…/rest/api/2` or `…/3`).
    pub api_url: String,
    /// `auto`, `cloud` or `datacenter`: which search endpoint.
    pub api_type: String,
    /// `project` (templated).
    pub project: String,
    /// `issue_type` (templated).
    pub issue_type: String,
    /// `summary` (templated; at most 255 characters) and whether an update sends it.
    pub summary: (String, bool),
    /// `description` (templated; at most 32767 characters; JSON for API v3) and whether an
    /// update sends it.
    pub description: (String, bool),
    /// `labels` (each templated).
    pub labels: Vec<String>,
    /// `priority` (templated; not sent when empty).
    pub priority: String,
    /// The transition that reopens a done issue while the group fires.
    pub reopen_transition: String,
    /// The transition that resolves an open issue once the group is resolved.
    pub resolve_transition: String,
    /// Issues with this resolution are not reused.
    pub wont_fix_resolution: String,
    /// How long a done issue is reopened rather than a new one created.
    pub reopen_duration: Duration,
    /// Custom `fields` (keys and string values templated).
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// The Events API v1 endpoint (`url` does not apply to v1).
pub const PAGERDUTY_V1_URL: &str = "https://events.pagerduty.com/generic/2010-04-15/create_event.json";

/// How email threads are cut (`threading.thread_by_date`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadBy {
    /// One thread per group for ever (`none`).
    Group,
    /// One thread per group and local day (`daily`).
    Day,
}

/// A receiver and its integrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receiver {
    /// Unique name.
    pub name: String,
    /// `labels` (0.33): matched by the API's `receiver_matchers`; `name` is always the name.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Webhook integrations in order.
    pub webhooks: Vec<WebhookConfig>,
    /// Email integrations in order.
    pub emails: Vec<EmailConfig>,
    /// Slack integrations in order.
    pub slacks: Vec<SlackConfig>,
    /// PagerDuty integrations in order.
    pub pagerduties: Vec<PagerdutyConfig>,
    /// Opsgenie integrations in order.
    pub opsgenies: Vec<OpsgenieConfig>,
    /// Telegram integrations in order.
    pub telegrams: Vec<TelegramConfig>,
    /// Discord integrations in order.
    pub discords: Vec<DiscordConfig>,
    /// Webex integrations in order.
    pub webexes: Vec<WebexConfig>,
    /// Microsoft Teams integrations in order: the legacy cards, then the Workflows ones.
    pub msteams: Vec<MsteamsConfig>,
    /// VictorOps integrations in order.
    pub victorops: Vec<VictoropsConfig>,
    /// Pushover integrations in order.
    pub pushovers: Vec<PushoverConfig>,
    /// incident.io integrations in order.
    pub incidentios: Vec<IncidentioConfig>,
    /// Rocket.Chat integrations in order.
    pub rocketchats: Vec<RocketchatConfig>,
    /// Mattermost integrations in order.
    pub mattermosts: Vec<MattermostConfig>,
    /// SNS integrations in order.
    pub sns: Vec<SnsConfig>,
    /// WeChat integrations in order.
    pub wechats: Vec<WechatConfig>,
    /// Jira integrations in order.
    pub jiras: Vec<JiraConfig>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file's text as loaded.
    pub original: String,
    /// The parsed raw form (re-marshalled for `/api/v2/status`, secrets redacted).
    pub raw: RawConfig,
    /// `global.resolve_timeout`.
    pub resolve_timeout: Duration,
    /// `event_recorder` (0.33): where events are exported.
    pub event_recorder: EventRecorder,
    /// The routing tree.
    pub route: RouteTree,
    /// Receivers by name.
    pub receivers: BTreeMap<String, Receiver>,
    /// Inhibition rules.
    pub inhibit_rules: Vec<InhibitRule>,
    /// Named time intervals (from `time_intervals` and `mute_time_intervals`).
    pub time_intervals: HashMap<String, Vec<TimeInterval>>,
    /// Template globs, resolved against the config directory.
    pub templates: Vec<PathBuf>,
    /// Non-fatal findings to log at load.
    pub warnings: Vec<String>,
}

impl Config {
    /// Returns the receiver names referenced by some route, in sorted order.
    pub fn active_receivers(&self) -> Vec<&Receiver> {
        let used: HashSet<&str> = self.route.nodes.iter().map(|r| r.receiver.as_str()).collect();
        self.receivers
            .values()
            .filter(|r| used.contains(r.name.as_str()))
            .collect()
    }
}

/// Parses YAML text into the raw layer.
///
/// # Errors
/// Returns the YAML error (unknown fields, wrong types, syntax) with its location.
pub fn parse_raw(text: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_saphyr::from_str::<RawConfig>(text).map_err(|e| ConfigError(e.to_string()))
}

/// Parses and validates a configuration; `base_dir` is the directory of the config file.
///
/// # Errors
/// Returns the first problem found, worded as Alertmanager words it.
pub fn load(text: &str, base_dir: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    let raw = parse_raw(text)?;
    validate(raw, text, base_dir, opts)
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn secret(
    inline: &Option<Secret>,
    file: &Option<String>,
    base: &Path,
    what: &str,
) -> Result<Option<SecretSource>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => err(format!("at most one of {what} & {what}_file must be configured")),
        (Some(s), None) => Ok(Some(SecretSource::Inline(s.0.clone()))),
        (None, Some(f)) => Ok(Some(SecretSource::File(resolve(base, f)))),
        (None, None) => Ok(None),
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` → `Content-Type`.
fn canonical_header(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = true;
    for c in k.chars() {
        out.extend(if upper {
            c.to_uppercase().collect::<Vec<_>>()
        } else {
            c.to_lowercase().collect()
        });
        upper = c == '-';
    }
    out
}

fn email_config(e: &raw::RawEmailConfig, g: &raw::RawGlobal, base: &Path) -> Result<EmailConfig, ConfigError> {
    let to = e.to.clone().unwrap_or_default();
    if to.is_empty() {
        return err("missing to address in email config");
    }
    let smarthost = e
        .smarthost
        .clone()
        .or_else(|| g.smtp_smarthost.clone())
        .unwrap_or_default();
    if smarthost.is_empty() {
        return err("no global SMTP smarthost set");
    }
    let (host, port) = smarthost
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?)))
        .ok_or_else(|| ConfigError(format!("address {smarthost}: missing port in address")))?;
    let from = e.from.clone().or_else(|| g.smtp_from.clone()).unwrap_or_default();
    if from.is_empty() {
        return err("no global SMTP from set");
    }
    if e.auth_secret.is_some()
        || e.auth_secret_file.is_some()
        || g.smtp_auth_secret.is_some()
        || g.smtp_auth_secret_file.is_some()
    {
        return err("auth_secret (CRAM-MD5) is not supported by Tocsin: use auth_password (PLAIN or LOGIN)");
    }
    let threading = match &e.threading {
        Some(t) if t.enabled == Some(true) => Some(match t.thread_by_date.as_deref().unwrap_or("") {
            "none" => ThreadBy::Group,
            "daily" => ThreadBy::Day,
            other => {
                return err(format!(
                    "invalid thread_by_date {}: must be \"none\" or \"daily\"",
                    go_quote(other)
                ));
            }
        }),
        _ => None,
    };
    let password = match secret(&e.auth_password, &e.auth_password_file, base, "auth_password")? {
        Some(p) => Some(p),
        None => secret(
            &g.smtp_auth_password,
            &g.smtp_auth_password_file,
            base,
            "smtp_auth_password",
        )?,
    };
    let mut headers = BTreeMap::new();
    for (k, v) in e.headers.iter().flatten() {
        if headers.insert(canonical_header(k), v.clone()).is_some() {
            return err(format!(
                "duplicate header {} in email config",
                go_quote(&canonical_header(k))
            ));
        }
    }
    if threading.is_some() {
        for h in ["References", "In-Reply-To"] {
            if headers.contains_key(h) {
                return err(format!(
                    "email threading is enabled: the {h} header is set by Tocsin and cannot be configured"
                ));
            }
        }
    }
    headers
        .entry("Subject".into())
        .or_insert_with(|| r#"{{ template "email.default.subject" . }}"#.into());
    headers.entry("To".into()).or_insert_with(|| to.clone());
    headers.entry("From".into()).or_insert_with(|| from.clone());
    let tls = match &e.tls_config {
        Some(_) => tls_config(&e.tls_config, base)?,
        None => tls_config(&g.smtp_tls_config, base)?,
    };
    Ok(EmailConfig {
        send_resolved: e.send_resolved.unwrap_or(false),
        to,
        from,
        hello: e
            .hello
            .clone()
            .or_else(|| g.smtp_hello.clone())
            .unwrap_or_else(|| "localhost".into()),
        host: host.to_string(),
        port,
        auth_username: e.auth_username.clone().or_else(|| g.smtp_auth_username.clone()),
        auth_password: password,
        auth_identity: e.auth_identity.clone().or_else(|| g.smtp_auth_identity.clone()),
        headers,
        html: e
            .html
            .clone()
            .unwrap_or_else(|| r#"{{ template "email.default.html" . }}"#.into()),
        text: e.text.clone().unwrap_or_default(),
        require_tls: e.require_tls.or(g.smtp_require_tls).unwrap_or(true),
        implicit_tls: e
            .force_implicit_tls
            .or(g.smtp_force_implicit_tls)
            .unwrap_or(port == 465),
        tls,
        threading,
    })
}

fn tls_config(raw: &Option<RawTlsConfig>, base: &Path) -> Result<TlsConfig, ConfigError> {
    let Some(t) = raw else { return Ok(TlsConfig::default()) };
    if t.ca.is_some() && t.ca_file.is_some() {
        return err("at most one of ca and ca_file must be configured");
    }
    if t.cert.is_some() && t.cert_file.is_some() {
        return err("at most one of cert and cert_file must be configured");
    }
    let key = secret(&t.key, &t.key_file, base, "key")?;
    let has_cert = t.cert.is_some() || t.cert_file.is_some();
    if has_cert != key.is_some() {
        return err("exactly one of key or key_file must be configured when a client certificate is configured");
    }
    if let Some(v) = &t.min_version
        && !matches!(v.as_str(), "TLS10" | "TLS11" | "TLS12" | "TLS13")
    {
        return err(format!("unknown TLS version: {v}"));
    }
    Ok(TlsConfig {
        ca: t.ca.clone(),
        ca_file: t.ca_file.as_deref().map(|f| resolve(base, f)),
        cert: t.cert.clone(),
        cert_file: t.cert_file.as_deref().map(|f| resolve(base, f)),
        key,
        server_name: t.server_name.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        min_version: t.min_version.clone(),
    })
}

fn http_config(raw: &RawHttpConfig, base: &Path) -> Result<HttpClientConfig, ConfigError> {
    let oauth2 = match &raw.oauth2 {
        None => None,
        Some(o) => {
            if o.tls_config.is_some()
                || o.proxy_url.is_some()
                || o.no_proxy.is_some()
                || o.proxy_from_environment.is_some()
                || o.proxy_connect_header.is_some()
            {
                return err(
                    "oauth2 tls_config and proxy settings are not supported by Tocsin yet (the token request uses the http_config's)",
                );
            }
            let token_url = o.token_url.clone().unwrap_or_default();
            check_url(&token_url, "oauth2 token_url")?;
            let Some(client_secret) = secret(&o.client_secret, &o.client_secret_file, base, "client_secret")? else {
                return err("oauth2 client_secret or client_secret_file must be configured");
            };
            Some(OAuth2Config {
                client_id: o.client_id.clone().unwrap_or_default(),
                client_secret,
                scopes: o.scopes.clone().unwrap_or_default(),
                token_url,
                endpoint_params: o.endpoint_params.clone().unwrap_or_default(),
            })
        }
    };
    let mut headers = Vec::new();
    for (name, h) in raw.http_headers.iter().flatten() {
        let canonical = canonical_header(name);
        if RESERVED_HEADERS.contains(&canonical.as_str()) {
            return err(format!("setting header {} is not allowed", go_quote(&canonical)));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            || name.is_empty()
        {
            return err(format!("invalid header name {}", go_quote(name)));
        }
        let mut values: Vec<SecretSource> = h
            .values
            .iter()
            .flatten()
            .map(|v| SecretSource::Inline(v.clone()))
            .collect();
        values.extend(h.secrets.iter().flatten().map(|v| SecretSource::Inline(v.0.clone())));
        values.extend(h.files.iter().flatten().map(|f| SecretSource::File(resolve(base, f))));
        headers.push((name.clone(), values));
    }
    let bearer = secret(&raw.bearer_token, &raw.bearer_token_file, base, "bearer_token")?;
    let mut authorization = None;
    if let Some(a) = &raw.authorization {
        if bearer.is_some() {
            return err("authorization is not compatible with bearer_token & bearer_token_file");
        }
        let scheme = a.r#type.clone().unwrap_or_else(|| "Bearer".into());
        if scheme.eq_ignore_ascii_case("basic") {
            return err(r#"authorization type cannot be set to "basic", use "basic_auth" instead"#);
        }
        let cred = secret(&a.credentials, &a.credentials_file, base, "credentials")?;
        authorization = cred.map(|c| (scheme, c));
    } else if let Some(b) = bearer {
        authorization = Some(("Bearer".into(), b));
    }
    if oauth2.is_some() && (authorization.is_some() || raw.basic_auth.is_some()) {
        return err("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured");
    }
    let mut basic_auth = None;
    if let Some(b) = &raw.basic_auth {
        if authorization.is_some() {
            return err("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured");
        }
        let user = match (&b.username, &b.username_file) {
            (Some(_), Some(_)) => return err("at most one of basic_auth username & username_file must be configured"),
            (_, Some(f)) => SecretSource::File(resolve(base, f)),
            (u, None) => SecretSource::Inline(u.clone().unwrap_or_default()),
        };
        let pw = secret(&b.password, &b.password_file, base, "password")?;
        basic_auth = Some((user, pw));
    }
    // Prometheus' common HTTP config rules.
    let from_env = raw.proxy_from_environment == Some(true);
    let no_proxy = raw.no_proxy.clone().filter(|n| !n.is_empty());
    let connect: Vec<(String, String)> = raw
        .proxy_connect_header
        .iter()
        .flatten()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.0.clone())))
        .collect();
    if from_env {
        if raw.proxy_url.is_some() {
            return err("if proxy_from_environment is configured, proxy_url must not be configured");
        }
        if no_proxy.is_some() {
            return err("if proxy_from_environment is configured, no_proxy must not be configured");
        }
        if !connect.is_empty() {
            return err("if proxy_from_environment is configured, proxy_connect_header must not be configured");
        }
    } else if raw.proxy_url.is_none() {
        if no_proxy.is_some() {
            return err("if no_proxy is configured, proxy_url must also be configured");
        }
        if !connect.is_empty() {
            return err("if proxy_connect_header is configured, proxy_url must also be configured");
        }
    }
    if let Some(p) = &raw.proxy_url {
        check_url(&p.0, "proxy_url")?;
    }
    Ok(HttpClientConfig {
        basic_auth,
        authorization,
        proxy_url: raw.proxy_url.as_ref().map(|p| p.0.clone()),
        tls: tls_config(&raw.tls_config, base)?,
        follow_redirects: raw.follow_redirects.unwrap_or(true),
        enable_http2: raw.enable_http2.unwrap_or(true),
        headers,
        no_proxy,
        proxy_connect_headers: connect,
        proxy_from_environment: from_env,
        oauth2,
    })
}

/// A `webhook_url` or `webhook_url_file` (exactly one), as Discord and Teams take them.
fn webhook_url(url: &Option<Secret>, file: &Option<String>, base: &Path) -> Result<SecretSource, ConfigError> {
    match secret(url, file, base, "webhook_url")? {
        Some(SecretSource::Inline(u)) => {
            check_url(&u, "webhook_url")?;
            Ok(SecretSource::Inline(u))
        }
        Some(f) => Ok(f),
        None => err("one of webhook_url or webhook_url_file must be configured"),
    }
}

fn telegram_config(
    c: &raw::RawTelegramConfig,
    g: &raw::RawGlobal,
    http: HttpClientConfig,
    base: &Path,
) -> Result<TelegramConfig, ConfigError> {
    let token = match secret(&c.bot_token, &c.bot_token_file, base, "bot_token")? {
        Some(t) => t,
        None => match secret(
            &g.telegram_bot_token,
            &g.telegram_bot_token_file,
            base,
            "telegram_bot_token",
        )? {
            Some(t) => t,
            None => return err("missing bot_token or bot_token_file on telegram_config"),
        },
    };
    let chat_id = match (c.chat_id.filter(|id| *id != 0), &c.chat_id_file) {
        (Some(_), Some(_)) => return err("at most one of chat_id & chat_id_file must be configured"),
        (Some(id), None) => ChatId::Inline(id),
        (None, Some(f)) => ChatId::File(resolve(base, f)),
        (None, None) => return err("missing chat_id or chat_id_file on telegram_config"),
    };
    let parse_mode = c.parse_mode.clone().unwrap_or_else(|| "HTML".into());
    if !matches!(parse_mode.as_str(), "" | "HTML" | "Markdown" | "MarkdownV2") {
        return err("unknown parse_mode on telegram_config, must be Markdown, MarkdownV2, HTML or empty string");
    }
    let api_url = c
        .api_url
        .clone()
        .or_else(|| g.telegram_api_url.clone())
        .unwrap_or_else(|| "https://api.telegram.org".into());
    check_url(&api_url, "api_url")?;
    Ok(TelegramConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        api_url,
        bot_token: token,
        chat_id,
        message_thread_id: c.message_thread_id.unwrap_or(0),
        message: c
            .message
            .clone()
            .unwrap_or_else(|| r#"{{ template "telegram.default.message" . }}"#.into()),
        disable_notifications: c.disable_notifications.unwrap_or(false),
        parse_mode,
    })
}

fn opsgenie_config(
    c: &raw::RawOpsgenieConfig,
    g: &raw::RawGlobal,
    http: HttpClientConfig,
    base: &Path,
) -> Result<OpsgenieConfig, ConfigError> {
    let own = secret(&c.api_key, &c.api_key_file, base, "api_key")?;
    let api_key = match own {
        Some(k) => k,
        None => match secret(&g.opsgenie_api_key, &g.opsgenie_api_key_file, base, "opsgenie_api_key")? {
            Some(k) => k,
            None => return err("no global OpsGenie API Key set either inline or in a file"),
        },
    };
    let mut responders = Vec::new();
    for r in c.responders.iter().flatten() {
        let f = |v: &Option<String>| v.clone().unwrap_or_default();
        let (id, name, username, kind) = (f(&r.id), f(&r.name), f(&r.username), f(&r.r#type));
        let shown = format!("{{{id} {name} {username} {kind}}}");
        if id.is_empty() && name.is_empty() && username.is_empty() {
            return err(format!(
                "opsGenieConfig responder {shown} has to have at least one of id, username or name specified"
            ));
        }
        // A templated type is checked once rendered; a literal one now (case-insensitively,
        // as Alertmanager checks it, though it sends it as written).
        if !kind.contains("{{")
            && !matches!(
                kind.to_ascii_lowercase().as_str(),
                "team" | "teams" | "user" | "escalation" | "schedule"
            )
        {
            return err(format!(
                "opsGenieConfig responder {shown} type does not match valid options ^(team|teams|user|escalation|schedule)$"
            ));
        }
        responders.push([id, name, username, kind]);
    }
    let mut api_url = c
        .api_url
        .clone()
        .or_else(|| g.opsgenie_api_url.clone())
        .unwrap_or_else(|| "https://api.opsgenie.com/".into());
    check_url(&api_url, "api_url")?;
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let t = |v: &Option<String>, d: &str| {
        v.clone()
            .unwrap_or_else(|| format!("{{{{ template \"opsgenie.default.{d}\" . }}}}"))
    };
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(OpsgenieConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        api_key,
        api_url,
        message: t(&c.message, "message"),
        description: t(&c.description, "description"),
        source: t(&c.source, "source"),
        details: c.details.clone().unwrap_or_default(),
        entity: plain(&c.entity),
        responders,
        actions: plain(&c.actions),
        tags: plain(&c.tags),
        note: plain(&c.note),
        priority: plain(&c.priority),
        update_alerts: c.update_alerts.unwrap_or(false),
    })
}

fn victorops_config(
    c: &raw::RawVictoropsConfig,
    g: &raw::RawGlobal,
    http: HttpClientConfig,
    base: &Path,
) -> Result<VictoropsConfig, ConfigError> {
    if c.routing_key.as_deref().unwrap_or("").is_empty() {
        return err("missing Routing key in VictorOps config");
    }
    let own = secret(&c.api_key, &c.api_key_file, base, "api_key")?;
    const RESERVED: [&str; 7] = [
        "routing_key",
        "message_type",
        "state_message",
        "entity_display_name",
        "monitoring_tool",
        "entity_id",
        "entity_state",
    ];
    for k in c.custom_fields.iter().flatten().map(|(k, _)| k) {
        if RESERVED.contains(&k.as_str()) {
            return err(format!(
                "victorOps config contains custom field {k} which cannot be used as it conflicts with the fixed/static fields"
            ));
        }
    }
    let api_key = match own {
        Some(k) => k,
        None => match secret(
            &g.victorops_api_key,
            &g.victorops_api_key_file,
            base,
            "victorops_api_key",
        )? {
            Some(k) => k,
            None => return err("no global VictorOps API Key set"),
        },
    };
    let mut api_url = c
        .api_url
        .clone()
        .or_else(|| g.victorops_api_url.clone())
        .unwrap_or_else(|| "https://alert.victorops.com/integrations/generic/20131114/alert/".into());
    check_url(&api_url, "api_url")?;
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let t = |v: &Option<String>, d: &str| {
        v.clone()
            .unwrap_or_else(|| format!("{{{{ template \"victorops.default.{d}\" . }}}}"))
    };
    Ok(VictoropsConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        api_key,
        api_url,
        routing_key: c.routing_key.clone().unwrap_or_default(),
        message_type: c.message_type.clone().unwrap_or_else(|| "CRITICAL".into()),
        state_message: t(&c.state_message, "state_message"),
        entity_display_name: t(&c.entity_display_name, "entity_display_name"),
        monitoring_tool: t(&c.monitoring_tool, "monitoring_tool"),
        custom_fields: c.custom_fields.clone().unwrap_or_default(),
    })
}

fn pushover_config(
    c: &raw::RawPushoverConfig,
    http: HttpClientConfig,
    base: &Path,
) -> Result<PushoverConfig, ConfigError> {
    let Some(user_key) = secret(&c.user_key, &c.user_key_file, base, "user_key")? else {
        return err("one of user_key or user_key_file must be configured");
    };
    let Some(token) = secret(&c.token, &c.token_file, base, "token")? else {
        return err("one of token or token_file must be configured");
    };
    if c.html == Some(true) && c.monospace == Some(true) {
        return err("at most one of monospace & html must be configured");
    }
    let t = |v: &Option<String>, d: &str| {
        v.clone()
            .unwrap_or_else(|| format!("{{{{ template \"pushover.default.{d}\" . }}}}"))
    };
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(PushoverConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        user_key,
        token,
        title: t(&c.title, "title"),
        message: t(&c.message, "message"),
        url: t(&c.url, "url"),
        url_title: plain(&c.url_title),
        device: plain(&c.device),
        sound: plain(&c.sound),
        priority: c
            .priority
            .clone()
            .unwrap_or_else(|| r#"{{ if eq .Status "firing" }}2{{ else }}0{{ end }}"#.into()),
        retry: c.retry.map_or(Duration::from_secs(60), |d| d.0),
        expire: c.expire.map_or(Duration::from_secs(3600), |d| d.0),
        ttl: c.ttl.map_or(Duration::ZERO, |d| d.0),
        html: c.html.unwrap_or(false),
        monospace: c.monospace.unwrap_or(false),
    })
}

fn incidentio_config(
    c: &raw::RawIncidentioConfig,
    mut http: HttpClientConfig,
    base: &Path,
) -> Result<IncidentioConfig, ConfigError> {
    let url = match secret(&c.url, &c.url_file, base, "url")? {
        Some(SecretSource::Inline(u)) => {
            check_url(&u, "url")?;
            SecretSource::Inline(u)
        }
        Some(f) => f,
        None => return err("one of url or url_file must be configured"),
    };
    let token = secret(
        &c.alert_source_token,
        &c.alert_source_token_file,
        base,
        "alert_source_token",
    )?;
    let own_auth = c.http_config.as_ref().is_some_and(|h| h.authorization.is_some());
    if token.is_some() && own_auth {
        return err(
            "cannot specify alert_source_token or alert_source_token_file when using http_config.authorization",
        );
    }
    if token.is_none() && c.http_config.is_some() && !own_auth {
        return err(
            "at least one of alert_source_token, alert_source_token_file or http_config.authorization must be configured",
        );
    }
    if let Some(t) = token {
        http.authorization = Some(("Bearer".into(), t));
        http.basic_auth = None;
    }
    Ok(IncidentioConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        url,
        max_alerts: c.max_alerts.unwrap_or(0),
        timeout: c.timeout.map(|d| d.0).filter(|d| !d.is_zero()),
    })
}

fn chat_fields(fields: &Option<Vec<raw::RawSlackField>>, what: &str) -> Result<Vec<ChatField>, ConfigError> {
    let mut out = Vec::new();
    for f in fields.iter().flatten() {
        let (title, value) = (f.title.clone().unwrap_or_default(), f.value.clone().unwrap_or_default());
        if title.is_empty() {
            return err(format!("missing title in {what} field configuration"));
        }
        if value.is_empty() {
            return err(format!("missing value in {what} field configuration"));
        }
        out.push((title, value, f.short));
    }
    Ok(out)
}

fn rocketchat_config(
    c: &raw::RawRocketchatConfig,
    g: &raw::RawGlobal,
    http: HttpClientConfig,
    base: &Path,
) -> Result<RocketchatConfig, ConfigError> {
    let token_id = match secret(&c.token_id, &c.token_id_file, base, "token_id")? {
        Some(t) => t,
        None => match secret(
            &g.rocketchat_token_id,
            &g.rocketchat_token_id_file,
            base,
            "rocketchat_token_id",
        )? {
            Some(t) => t,
            None => return err("no global Rocketchat TokenID set either inline or in a file"),
        },
    };
    let token = match secret(&c.token, &c.token_file, base, "token")? {
        Some(t) => t,
        None => match secret(&g.rocketchat_token, &g.rocketchat_token_file, base, "rocketchat_token")? {
            Some(t) => t,
            None => return err("no global Rocketchat Token set either inline or in a file"),
        },
    };
    let mut api_url = c
        .api_url
        .clone()
        .or_else(|| g.rocketchat_api_url.clone())
        .unwrap_or_else(|| "https://open.rocket.chat/".into());
    check_url(&api_url, "api_url")?;
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let fields = c
        .fields
        .iter()
        .flatten()
        .map(|f| {
            (
                f.title.clone().unwrap_or_default(),
                f.value.clone().unwrap_or_default(),
                f.short,
            )
        })
        .collect();
    let t = |v: &Option<String>, d: &str| {
        v.clone()
            .unwrap_or_else(|| format!("{{{{ template \"rocketchat.default.{d}\" . }}}}"))
    };
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(RocketchatConfig {
        send_resolved: c.send_resolved.unwrap_or(false),
        http,
        url: format!("{api_url}api/v1/chat.postMessage"),
        token,
        token_id,
        channel: plain(&c.channel),
        color: c
            .color
            .clone()
            .unwrap_or_else(|| r#"{{ if eq .Status "firing" }}red{{ else }}green{{ end }}"#.into()),
        title: t(&c.title, "title"),
        title_link: t(&c.title_link, "titlelink"),
        text: t(&c.text, "text"),
        fields,
        short_fields: c.short_fields.unwrap_or(false),
        emoji: t(&c.emoji, "emoji"),
        icon_url: t(&c.icon_url, "iconurl"),
        image_url: plain(&c.image_url),
        thumb_url: plain(&c.thumb_url),
        actions: c
            .actions
            .iter()
            .flatten()
            .map(|a| [plain(&a.text), plain(&a.url), plain(&a.msg)])
            .collect(),
    })
}

fn mattermost_config(
    c: &raw::RawMattermostConfig,
    g: &raw::RawGlobal,
    http: HttpClientConfig,
    base: &Path,
) -> Result<MattermostConfig, ConfigError> {
    let webhook_url = match secret(&c.webhook_url, &c.webhook_url_file, base, "webhook_url")? {
        Some(u) => u,
        None => match secret(
            &g.mattermost_webhook_url,
            &g.mattermost_webhook_url_file,
            base,
            "mattermost_webhook_url",
        )? {
            Some(u) => u,
            None => return err("missing webhook_url or webhook_url_file on mattermost_config"),
        },
    };
    if let SecretSource::Inline(u) = &webhook_url {
        check_url(u, "webhook_url")?;
    }
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    let t = |v: &Option<String>, d: &str| {
        v.clone()
            .unwrap_or_else(|| format!("{{{{ template \"mattermost.default.{d}\" . }}}}"))
    };
    let top = MattermostAttachment {
        strings: [
            t(&c.fallback, "fallback"),
            t(&c.color, "color"),
            plain(&c.pretext),
            t(&c.text, "text"),
            plain(&c.author_name),
            plain(&c.author_link),
            plain(&c.author_icon),
            t(&c.title, "title"),
            t(&c.title_link, "titlelink"),
            plain(&c.thumb_url),
            plain(&c.footer),
            plain(&c.footer_icon),
            plain(&c.image_url),
        ],
        fields: chat_fields(&c.fields, "Mattermost")?,
    };
    let mut attachments = Vec::new();
    for a in c.attachments.iter().flatten() {
        attachments.push(MattermostAttachment {
            strings: [
                plain(&a.fallback),
                plain(&a.color),
                plain(&a.pretext),
                plain(&a.text),
                plain(&a.author_name),
                plain(&a.author_link),
                plain(&a.author_icon),
                plain(&a.title),
                plain(&a.title_link),
                plain(&a.thumb_url),
                plain(&a.footer),
                plain(&a.footer_icon),
                plain(&a.image_url),
            ],
            fields: chat_fields(&a.fields, "Mattermost")?,
        });
    }
    Ok(MattermostConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        webhook_url,
        channel: plain(&c.channel),
        username: t(&c.username, "username"),
        text: t(&c.text, "text"),
        icon_url: plain(&c.icon_url),
        icon_emoji: plain(&c.icon_emoji),
        top,
        attachments,
        kind: plain(&c.r#type),
        card: c.props.as_ref().and_then(|p| p.card.clone()).filter(|s| !s.is_empty()),
        priority: c
            .priority
            .as_ref()
            .filter(|p| p.priority.as_deref().is_some_and(|s| !s.is_empty()))
            .map(|p| {
                (
                    p.priority.clone().unwrap_or_default(),
                    p.requested_ack.unwrap_or(false),
                    p.persistent_notifications.unwrap_or(false),
                )
            }),
    })
}

fn sns_config(c: &raw::RawSnsConfig, http: HttpClientConfig) -> Result<SnsConfig, ConfigError> {
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    let (topic, phone, target) = (plain(&c.topic_arn), plain(&c.phone_number), plain(&c.target_arn));
    if topic.is_empty() && phone.is_empty() && target.is_empty() {
        return err("must provide either a Target ARN, Topic ARN, or Phone Number for SNS config");
    }
    let sigv4 = c.sigv4.clone().unwrap_or_default();
    // Credentials Tocsin cannot obtain are refused, never ignored: a profile file or an STS
    // role would need the AWS SDK's credential chain.
    for (key, set) in [
        ("profile", sigv4.profile.is_some()),
        ("role_arn", sigv4.role_arn.is_some()),
        ("external_id", sigv4.external_id.is_some()),
    ] {
        if set {
            return err(format!(
                "sns_configs sigv4.{key} is not supported by Tocsin yet: give access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
            ));
        }
    }
    let keys = match (&sigv4.access_key, &sigv4.secret_key) {
        (Some(a), Some(s)) if !a.is_empty() => Some((a.clone(), SecretSource::Inline(s.0.clone()))),
        (None, None) => None,
        _ => {
            return err(
                "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SigV4 config",
            );
        }
    };
    if let Some(u) = c.api_url.as_deref().filter(|u| !u.contains("{{")) {
        check_url(u, "api_url")?;
    }
    Ok(SnsConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        api_url: plain(&c.api_url),
        region: plain(&sigv4.region),
        keys,
        topic_arn: topic,
        phone_number: phone,
        target_arn: target,
        subject: c
            .subject
            .clone()
            .unwrap_or_else(|| r#"{{ template "sns.default.subject" . }}"#.into()),
        message: c
            .message
            .clone()
            .unwrap_or_else(|| r#"{{ template "sns.default.message" . }}"#.into()),
        attributes: c.attributes.clone().unwrap_or_default(),
    })
}

fn wechat_config(
    c: &raw::RawWechatConfig,
    g: &raw::RawGlobal,
    http: HttpClientConfig,
    base: &Path,
) -> Result<WechatConfig, ConfigError> {
    let message_type = c
        .message_type
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "text".into());
    if message_type != "text" && message_type != "markdown" {
        return err(format!(
            "weChat message type {message_type:?} does not match valid options ^(text|markdown)$"
        ));
    }
    let api_secret = match secret(&c.api_secret, &c.api_secret_file, base, "api_secret")? {
        Some(s) => s,
        None => match secret(
            &g.wechat_api_secret,
            &g.wechat_api_secret_file,
            base,
            "wechat_api_secret",
        )? {
            Some(s) => s,
            None => return err("no global Wechat Api Secret set either inline or in a file"),
        },
    };
    let corp_id = match c.corp_id.clone().or_else(|| g.wechat_api_corp_id.clone()) {
        Some(id) if !id.is_empty() => id,
        _ => return err("no global Wechat CorpID set"),
    };
    let mut api_url = c
        .api_url
        .clone()
        .or_else(|| g.wechat_api_url.clone())
        .unwrap_or_else(|| "https://qyapi.weixin.qq.com/cgi-bin/".into());
    check_url(&api_url, "api_url")?;
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let t = |v: &Option<String>, d: &str| {
        v.clone()
            .unwrap_or_else(|| format!("{{{{ template \"wechat.default.{d}\" . }}}}"))
    };
    Ok(WechatConfig {
        send_resolved: c.send_resolved.unwrap_or(false),
        http,
        api_url,
        api_secret,
        corp_id,
        message: t(&c.message, "message"),
        to_user: t(&c.to_user, "to_user"),
        to_party: t(&c.to_party, "to_party"),
        to_tag: t(&c.to_tag, "to_tag"),
        agent_id: t(&c.agent_id, "agent_id"),
        message_type,
    })
}

fn jira_config(c: &raw::RawJiraConfig, g: &raw::RawGlobal, http: HttpClientConfig) -> Result<JiraConfig, ConfigError> {
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    if plain(&c.project).is_empty() {
        return err("missing project in jira_config");
    }
    if plain(&c.issue_type).is_empty() {
        return err("missing issue_type in jira_config");
    }
    let api_type = c.api_type.clone().unwrap_or_else(|| "auto".into());
    if !matches!(api_type.as_str(), "auto" | "cloud" | "datacenter") {
        return err("unknown api_type on jira_config, must be auto, cloud or datacenter");
    }
    let Some(api_url) = c.api_url.clone().or_else(|| g.jira_api_url.clone()) else {
        return err("no global Jira Cloud URL set");
    };
    check_url(&api_url, "api_url")?;
    let text = |t: &Option<raw::RawJiraText>, default: &str| match t {
        None => (default.to_string(), true),
        Some(raw::RawJiraText::Text(s)) => (s.clone(), true),
        Some(raw::RawJiraText::Full {
            template,
            enable_update,
        }) => (
            template.clone().unwrap_or_else(|| default.to_string()),
            enable_update.unwrap_or(true),
        ),
    };
    Ok(JiraConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http,
        api_url,
        api_type,
        project: plain(&c.project),
        issue_type: plain(&c.issue_type),
        summary: text(&c.summary, r#"{{ template "jira.default.summary" . }}"#),
        description: text(&c.description, r#"{{ template "jira.default.description" . }}"#),
        labels: c.labels.clone().unwrap_or_default(),
        priority: c
            .priority
            .clone()
            .unwrap_or_else(|| r#"{{ template "jira.default.priority" . }}"#.into()),
        reopen_transition: plain(&c.reopen_transition),
        resolve_transition: plain(&c.resolve_transition),
        wont_fix_resolution: plain(&c.wont_fix_resolution),
        reopen_duration: c.reopen_duration.map_or(Duration::ZERO, |d| d.0),
        fields: c.fields.clone().unwrap_or_default(),
    })
}

/// Whether a URL is a `chat.postMessage` endpoint: its path's last segment, with no query.
fn post_message_url(u: &str) -> bool {
    url_path(u).is_some_and(|p| p.ends_with("/chat.postMessage"))
}

/// The path of an absolute http(s) URL without query or fragment, if it is one.
fn url_path(u: &str) -> Option<&str> {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"))?;
    let path = &rest[rest.find('/')?..];
    (!path.contains(['?', '#'])).then_some(path)
}

/// The default template of a Slack field.
fn slack_default(name: &str) -> String {
    format!("{{{{ template \"slack.default.{name}\" . }}}}")
}

fn slack_config(
    c: &raw::RawSlackConfig,
    g: &raw::RawGlobal,
    global_http: &HttpClientConfig,
    base: &Path,
) -> Result<SlackConfig, ConfigError> {
    let api_url = secret(&c.api_url, &c.api_url_file, base, "api_url")?;
    let app_token = secret(&c.app_token, &c.app_token_file, base, "app_token")?;
    if api_url.is_some() && app_token.is_some() {
        return err("at most one of api_url/api_url_file & app_token/app_token_file must be configured");
    }
    // Alertmanager allows only Slack's own chat.postMessage URL, given inline, and updates at
    // Slack's chat.update. Tocsin takes any URL ending in chat.postMessage (a Slack-compatible
    // gateway, a test server) and updates beside it (docs/compatibility.md).
    let update_url = match (&api_url, c.update_message) {
        (_, None | Some(false)) => None,
        (Some(SecretSource::Inline(u)), Some(true)) if post_message_url(u) => {
            Some(format!("{}chat.update", &u[..u.len() - "chat.postMessage".len()]))
        }
        _ => {
            return err(
                "update_message can only be used with bot tokens. api_url must be set to https://slack.com/api/chat.postMessage",
            );
        }
    };
    for f in c.fields.iter().flatten() {
        if f.title.as_deref().unwrap_or("").is_empty() {
            return err("missing title in Slack field configuration");
        }
        if f.value.as_deref().unwrap_or("").is_empty() {
            return err("missing value in Slack field configuration");
        }
    }
    let mut actions = Vec::new();
    for a in c.actions.iter().flatten() {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        if s(&a.r#type).is_empty() {
            return err("missing type in Slack action configuration");
        }
        if s(&a.text).is_empty() {
            return err("missing text in Slack action configuration");
        }
        let by_url = !s(&a.url).is_empty();
        if !by_url && s(&a.name).is_empty() {
            return err("missing name or url in Slack action configuration");
        }
        let confirm = match &a.confirm {
            Some(cf) if !by_url => {
                if s(&cf.text).is_empty() {
                    return err("missing text in Slack confirmation configuration");
                }
                Some([s(&cf.text), s(&cf.title), s(&cf.ok_text), s(&cf.dismiss_text)])
            }
            _ => None,
        };
        actions.push(SlackAction {
            kind: s(&a.r#type),
            text: s(&a.text),
            url: s(&a.url),
            style: s(&a.style),
            // A URL button carries no name, value or confirmation (as Alertmanager clears them).
            name: if by_url { String::new() } else { s(&a.name) },
            value: if by_url { String::new() } else { s(&a.value) },
            confirm,
        });
    }
    if let Some(u) = &c.api_url {
        check_url(&u.0, "api_url")?;
    }
    let app_url = c
        .app_url
        .clone()
        .or_else(|| g.slack_app_url.clone())
        .unwrap_or_else(|| "https://slack.com/api/chat.postMessage".into());
    check_url(&app_url, "app_url")?;
    let http = match &c.http_config {
        Some(h) => http_config(h, base)?,
        None => global_http.clone(),
    };
    // The globals: a token only where the config names no URL and no authorization of its own.
    let app_token = match app_token {
        Some(t) => Some(t),
        None if c.api_url.is_none() && c.api_url_file.is_none() && http.authorization.is_none() => {
            secret(&g.slack_app_token, &g.slack_app_token_file, base, "slack_app_token")?
        }
        None => None,
    };
    let url = match (&app_token, api_url) {
        (Some(_), _) => {
            if http.authorization.is_some() || http.basic_auth.is_some() || http.oauth2.is_some() {
                return err("http authorization can't be set when using Slack App tokens");
            }
            SecretSource::Inline(app_url)
        }
        (None, Some(u)) => u,
        (None, None) => match secret(&g.slack_api_url, &g.slack_api_url_file, base, "slack_api_url")? {
            Some(u) => {
                if let SecretSource::Inline(s) = &u {
                    check_url(s, "slack_api_url")?;
                }
                u
            }
            None => return err("no Slack API URL nor App token set either inline or in a file"),
        },
    };
    let t = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| slack_default(default));
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(SlackConfig {
        send_resolved: c.send_resolved.unwrap_or(false),
        http,
        url,
        app_token,
        update_url,
        channel: plain(&c.channel),
        username: t(&c.username, "username"),
        color: t(&c.color, "color"),
        title: t(&c.title, "title"),
        title_link: t(&c.title_link, "titlelink"),
        pretext: t(&c.pretext, "pretext"),
        text: t(&c.text, "text"),
        message_text: plain(&c.message_text),
        fields: c
            .fields
            .iter()
            .flatten()
            .map(|f| (plain(&f.title), plain(&f.value), f.short))
            .collect(),
        short_fields: c.short_fields.unwrap_or(false),
        footer: t(&c.footer, "footer"),
        fallback: t(&c.fallback, "fallback"),
        callback_id: t(&c.callback_id, "callbackid"),
        icon_emoji: t(&c.icon_emoji, "iconemoji"),
        icon_url: t(&c.icon_url, "iconurl"),
        image_url: plain(&c.image_url),
        thumb_url: plain(&c.thumb_url),
        link_names: c.link_names.unwrap_or(false),
        mrkdwn_in: match &c.mrkdwn_in {
            Some(m) if !m.is_empty() => m.clone(),
            _ => vec!["fallback".into(), "pretext".into(), "text".into()],
        },
        actions,
        timeout: c.timeout.map(|d| d.0).filter(|d| !d.is_zero()),
    })
}

fn pagerduty_config(
    c: &raw::RawPagerdutyConfig,
    g: &raw::RawGlobal,
    global_http: &HttpClientConfig,
    base: &Path,
) -> Result<PagerdutyConfig, ConfigError> {
    let routing = secret(&c.routing_key, &c.routing_key_file, base, "routing_key")?;
    let service = secret(&c.service_key, &c.service_key_file, base, "service_key")?;
    let (key, v1) = match (service, routing) {
        (Some(k), _) => (k, true),
        (None, Some(k)) => (k, false),
        (None, None) => return err("missing service or routing key in PagerDuty config"),
    };
    let url = c
        .url
        .clone()
        .or_else(|| g.pagerduty_url.clone())
        .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into());
    check_url(&url, "url")?;
    let mut details = c.details.clone().unwrap_or_default();
    for (k, v) in [
        ("firing", "{{ .Alerts.Firing | toJson }}"),
        ("resolved", "{{ .Alerts.Resolved | toJson }}"),
        ("num_firing", "{{ .Alerts.Firing | len }}"),
        ("num_resolved", "{{ .Alerts.Resolved | len }}"),
    ] {
        details
            .entry(k.into())
            .or_insert_with(|| serde_json::Value::String(v.into()));
    }
    let plain = |v: &Option<String>| v.clone().unwrap_or_default();
    let client = c
        .client
        .clone()
        .unwrap_or_else(|| "{{ template \"pagerduty.default.client\" . }}".into());
    Ok(PagerdutyConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http: match &c.http_config {
            Some(h) => http_config(h, base)?,
            None => global_http.clone(),
        },
        key,
        v1,
        url,
        source: c
            .source
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| client.clone()),
        client,
        client_url: c
            .client_url
            .clone()
            .unwrap_or_else(|| "{{ template \"pagerduty.default.clientURL\" . }}".into()),
        description: c
            .description
            .clone()
            .unwrap_or_else(|| "{{ template \"pagerduty.default.description\" .}}".into()),
        details,
        images: c
            .images
            .iter()
            .flatten()
            .map(|i| [plain(&i.src), plain(&i.alt), plain(&i.href)])
            .collect(),
        links: c
            .links
            .iter()
            .flatten()
            .map(|l| [plain(&l.href), plain(&l.text)])
            .collect(),
        severity: plain(&c.severity),
        class: plain(&c.class),
        component: plain(&c.component),
        group: plain(&c.group),
        timeout: c.timeout.map(|d| d.0).filter(|d| !d.is_zero()),
    })
}

/// `event_recorder` (0.33): the outputs events are exported to, with
/// `--enable-feature=event-recorder`.
#[derive(Clone, Debug, Default)]
pub struct EventRecorder {
    /// `file_outputs`: files events are appended to, one JSON line each.
    pub files: Vec<PathBuf>,
    /// `webhook_outputs`.
    pub webhooks: Vec<EventWebhook>,
    /// How many `stdout_outputs` (events go to stdout once however many).
    pub stdout: usize,
}

impl EventRecorder {
    /// Whether any output is configured.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.webhooks.is_empty() && self.stdout == 0
    }
}

/// An `event_recorder` `webhook_outputs` item, defaults applied.
#[derive(Clone, Debug)]
pub struct EventWebhook {
    /// `url`.
    pub url: String,
    /// `http_config` (Prometheus' defaults; the global one is not inherited).
    pub http: HttpClientConfig,
    /// `timeout` (10s).
    pub timeout: Duration,
    /// `workers` (4): requests under way at once.
    pub workers: usize,
    /// `max_retries` (3): attempts per request in all.
    pub max_retries: u32,
    /// `retry_backoff` (500ms), doubled per attempt up to 30s.
    pub retry_backoff: Duration,
    /// `batch`: the body is a JSON array of events.
    pub batch: bool,
    /// `batch_max_events` (100).
    pub batch_max_events: usize,
    /// `batch_max_bytes` (1 MiB, soft: one larger event goes alone).
    pub batch_max_bytes: usize,
    /// `batch_flush_interval` (100ms).
    pub batch_flush_interval: Duration,
}

fn event_recorder(raw: Option<&raw::RawEventRecorder>, base: &Path) -> Result<EventRecorder, ConfigError> {
    let Some(raw) = raw else {
        return Ok(EventRecorder::default());
    };
    if raw.kafka_outputs.as_ref().is_some_and(|k| !k.is_empty()) {
        return err(
            "event_recorder kafka_outputs is not supported by Tocsin (see docs/compatibility.md); use file, webhook or stdout outputs",
        );
    }
    let mut out = EventRecorder {
        stdout: raw.stdout_outputs.as_ref().map_or(0, Vec::len),
        ..EventRecorder::default()
    };
    for f in raw.file_outputs.iter().flatten() {
        let path = f.path.clone().unwrap_or_default();
        if path.is_empty() {
            return err("event_recorder file output requires a path");
        }
        out.files.push(base.join(path));
    }
    for w in raw.webhook_outputs.iter().flatten() {
        let url = w.url.as_ref().map(|u| u.0.clone()).unwrap_or_default();
        if url.is_empty() {
            return err("event_recorder webhook output requires a url");
        }
        if check_url(&url, "url").is_err() {
            return err("event_recorder webhook output requires an absolute http(s) url");
        }
        let (events, bytes) = (w.batch_max_events.unwrap_or(0), w.batch_max_bytes.unwrap_or(0));
        let interval = w.batch_flush_interval.as_ref().map_or(Duration::ZERO, |d| d.0);
        if events < 0 || bytes < 0 || w.workers.unwrap_or(0) < 0 || w.max_retries.unwrap_or(0) < 0 {
            return err("event_recorder webhook batch settings cannot be negative");
        }
        if !w.batch.unwrap_or(false)
            && (w.batch_max_events.is_some() || w.batch_max_bytes.is_some() || w.batch_flush_interval.is_some())
        {
            return err("event_recorder webhook batch settings require batch: true");
        }
        let positive = |v: i64, default: usize| {
            if v > 0 {
                usize::try_from(v).unwrap_or(default)
            } else {
                default
            }
        };
        out.webhooks.push(EventWebhook {
            url,
            http: match &w.http_config {
                Some(h) => http_config(h, base)?,
                None => HttpClientConfig::default(),
            },
            timeout: w
                .timeout
                .as_ref()
                .map_or(Duration::from_secs(10), |d| d.0)
                .max(Duration::from_millis(1)),
            workers: positive(w.workers.unwrap_or(0), 4),
            max_retries: u32::try_from(positive(w.max_retries.unwrap_or(0), 3)).unwrap_or(3),
            retry_backoff: w
                .retry_backoff
                .as_ref()
                .map_or(Duration::from_millis(500), |d| d.0)
                .max(Duration::from_millis(1)),
            batch: w.batch.unwrap_or(false),
            batch_max_events: positive(events, 100),
            batch_max_bytes: positive(bytes, 1 << 20),
            batch_flush_interval: if interval.is_zero() {
                Duration::from_millis(100)
            } else {
                interval
            },
        });
    }
    Ok(out)
}

fn check_url(u: &str, what: &str) -> Result<(), ConfigError> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return err(format!("invalid {what}: {u:?} is not an absolute URL"));
    };
    if scheme != "http" && scheme != "https" {
        return err(format!("unsupported scheme {scheme:?} for URL"));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return err(format!("invalid {what}: {u:?} has no host"));
    }
    Ok(())
}

fn legacy_matchers(
    eq: &Option<BTreeMap<String, String>>,
    re: &Option<BTreeMap<String, String>>,
) -> Result<Vec<Matcher>, ConfigError> {
    let mut out = Vec::new();
    for (k, v) in eq.iter().flatten() {
        if !is_classic_label_name(k) {
            return err(format!("invalid label name {}", go_quote(k)));
        }
        out.push(Matcher::new(MatchType::Equal, k, v).map_err(ConfigError)?);
    }
    for (k, v) in re.iter().flatten() {
        if !is_classic_label_name(k) {
            return err(format!("invalid label name {}", go_quote(k)));
        }
        out.push(
            Matcher::new(MatchType::Regexp, k, v)
                .map_err(|e| ConfigError(format!("invalid regexp value for {}: {e}", go_quote(k))))?,
        );
    }
    Ok(out)
}

fn matcher_strings(list: &Option<Vec<String>>, opts: &LoadOptions) -> Result<Vec<Matcher>, ConfigError> {
    let mut out = Vec::new();
    for s in list.iter().flatten() {
        let ms = parse_matchers(s, opts.parse_mode).map_err(ConfigError)?;
        for m in &ms {
            if !opts.name_validation().is_valid(&m.name) {
                return err(format!("invalid label name {}", go_quote(&m.name)));
            }
        }
        out.extend(ms);
    }
    Ok(out)
}

fn route_spec(r: &RawRoute, opts: &LoadOptions, names: &NameValidation) -> Result<RouteSpec, ConfigError> {
    let mut matchers = legacy_matchers(&r.match_, &r.match_re)?;
    matchers.extend(matcher_strings(&r.matchers, opts)?);
    let group_by = match &r.group_by {
        None => None,
        Some(list) => {
            let mut seen = HashSet::new();
            let mut all = false;
            for l in list {
                if l == "..." {
                    all = true;
                    continue;
                }
                if !names.is_valid(l) {
                    return err(format!("invalid label name {} in group_by list", go_quote(l)));
                }
                if !seen.insert(l.as_str()) {
                    return err(format!("duplicated label {} in group_by", go_quote(l)));
                }
            }
            if all && list.len() > 1 {
                return err("cannot have wildcard group_by (`...`) and other labels at the same time");
            }
            Some(if all {
                GroupBy::All
            } else {
                GroupBy::Labels(list.clone())
            })
        }
    };
    if r.group_interval.is_some_and(|d| d.0.is_zero()) {
        return err("group_interval cannot be zero");
    }
    if r.repeat_interval.is_some_and(|d| d.0.is_zero()) {
        return err("repeat_interval cannot be zero");
    }
    for name in r.labels.iter().flatten().map(|(k, _)| k) {
        if !names.is_valid(name) {
            return err(format!("invalid label name {} in route labels", go_quote(name)));
        }
    }
    let routes = r
        .routes
        .iter()
        .flatten()
        .map(|c| route_spec(c, opts, names))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteSpec {
        matchers,
        receiver: r.receiver.clone().filter(|s| !s.is_empty()),
        group_by,
        continue_matching: r.continue_.unwrap_or(false),
        group_wait: r.group_wait.map(|d| d.0),
        group_interval: r.group_interval.map(|d| d.0),
        repeat_interval: r.repeat_interval.map(|d| d.0),
        mute_time_intervals: r.mute_time_intervals.clone().unwrap_or_default(),
        active_time_intervals: r.active_time_intervals.clone().unwrap_or_default(),
        labels: r.labels.clone(),
        routes,
    })
}

/// Validates a parsed raw configuration.
///
/// # Errors
/// As [`load`].
pub fn validate(raw: RawConfig, text: &str, base: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    let names = opts.name_validation();
    let global = raw.global.clone().unwrap_or_default();
    let resolve_timeout = global.resolve_timeout.map(|d| d.0).unwrap_or(Duration::from_secs(300));
    let global_http = match &global.http_config {
        Some(h) => http_config(h, base)?,
        None => HttpClientConfig::default(),
    };
    // A global given twice (inline and as a file) is an error even where no receiver uses
    // it, as Alertmanager checks the globals first.
    for (inline, file, what) in [
        (&global.slack_api_url, &global.slack_api_url_file, "slack_api_url"),
        (&global.slack_app_token, &global.slack_app_token_file, "slack_app_token"),
        (
            &global.opsgenie_api_key,
            &global.opsgenie_api_key_file,
            "opsgenie_api_key",
        ),
        (
            &global.victorops_api_key,
            &global.victorops_api_key_file,
            "victorops_api_key",
        ),
        (
            &global.telegram_bot_token,
            &global.telegram_bot_token_file,
            "telegram_bot_token",
        ),
        (
            &global.rocketchat_token,
            &global.rocketchat_token_file,
            "rocketchat_token",
        ),
        (
            &global.rocketchat_token_id,
            &global.rocketchat_token_id_file,
            "rocketchat_token_id",
        ),
        (
            &global.wechat_api_secret,
            &global.wechat_api_secret_file,
            "wechat_api_secret",
        ),
        (
            &global.mattermost_webhook_url,
            &global.mattermost_webhook_url_file,
            "mattermost_webhook_url",
        ),
    ] {
        secret(inline, file, base, what)?;
    }
    let app_token = global.slack_app_token.is_some() || global.slack_app_token_file.is_some();
    let api_url = global.slack_api_url.is_some() || global.slack_api_url_file.is_some();
    let same_url = global.slack_api_url.as_ref().map(|u| u.0.as_str()) == global.slack_app_url.as_deref();
    if app_token && api_url && !same_url {
        return err(
            "at most one of slack_app_token/slack_app_token_file & slack_api_url/slack_api_url_file must be configured",
        );
    }
    if global.smtp_smarthost.as_deref().is_some_and(|h| !h.contains(':')) {
        return err("address ".to_string()
            + global.smtp_smarthost.as_deref().unwrap_or("")
            + ": missing port in address");
    }

    // Time intervals: names unique across both lists.
    let mut time_intervals: HashMap<String, Vec<TimeInterval>> = HashMap::new();
    for (list, what) in [
        (&raw.mute_time_intervals, "mute time interval"),
        (&raw.time_intervals, "time interval"),
    ] {
        for set in list.iter().flatten() {
            if set.name.is_empty() {
                return err(format!("missing name in {what}"));
            }
            if time_intervals.contains_key(&set.name) {
                return err(format!("{what} {} is not unique", go_quote(&set.name)));
            }
            let parsed = set
                .time_intervals
                .iter()
                .map(|ti| TimeInterval::from_raw(ti, &opts.local_timezone))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError(format!("time interval {}: {e}", go_quote(&set.name))))?;
            time_intervals.insert(set.name.clone(), parsed);
        }
    }

    // Receivers.
    let mut receivers = BTreeMap::new();
    for r in raw.receivers.iter().flatten() {
        if r.name.is_empty() {
            return err("missing name in receiver");
        }
        if receivers.contains_key(&r.name) {
            return err(format!("notification config name {} is not unique", go_quote(&r.name)));
        }
        if let Some(labels) = &r.labels
            && let Some(n) = labels.get("name")
            && n != &r.name
        {
            return err(format!(
                "receiver label \"name\" must match receiver name {}, got {}",
                go_quote(&r.name),
                go_quote(n)
            ));
        }
        let mut webhooks = Vec::new();
        for w in r.webhook_configs.iter().flatten() {
            let url = match (&w.url, &w.url_file) {
                (None, None) => return err("one of url or url_file must be configured"),
                (Some(_), Some(_)) => return err("at most one of url & url_file must be configured"),
                (Some(u), None) => {
                    // A templated URL (0.31) is checked once rendered, at each send.
                    if !u.0.contains("{{") {
                        check_url(&u.0, "url")?;
                    }
                    SecretSource::Inline(u.0.clone())
                }
                (None, Some(f)) => SecretSource::File(resolve(base, f)),
            };
            let http = match &w.http_config {
                Some(h) => http_config(h, base)?,
                None => global_http.clone(),
            };
            webhooks.push(WebhookConfig {
                send_resolved: w.send_resolved.unwrap_or(true),
                url,
                http,
                max_alerts: w.max_alerts.unwrap_or(0),
                timeout: w.timeout.map(|d| d.0).filter(|d| !d.is_zero()),
                payload: w.payload.clone(),
            });
        }
        let emails = r
            .email_configs
            .iter()
            .flatten()
            .map(|e| email_config(e, &global, base))
            .collect::<Result<Vec<_>, _>>()?;
        let slacks = r
            .slack_configs
            .iter()
            .flatten()
            .map(|c| slack_config(c, &global, &global_http, base))
            .collect::<Result<Vec<_>, _>>()?;
        let pagerduties = r
            .pagerduty_configs
            .iter()
            .flatten()
            .map(|c| pagerduty_config(c, &global, &global_http, base))
            .collect::<Result<Vec<_>, _>>()?;
        let http_of = |h: &Option<RawHttpConfig>| -> Result<HttpClientConfig, ConfigError> {
            match h {
                Some(h) => http_config(h, base),
                None => Ok(global_http.clone()),
            }
        };
        let mut opsgenies = Vec::new();
        for c in r.opsgenie_configs.iter().flatten() {
            opsgenies.push(opsgenie_config(c, &global, http_of(&c.http_config)?, base)?);
        }
        let mut telegrams = Vec::new();
        for c in r.telegram_configs.iter().flatten() {
            telegrams.push(telegram_config(c, &global, http_of(&c.http_config)?, base)?);
        }
        let mut discords = Vec::new();
        for c in r.discord_configs.iter().flatten() {
            let webhook_url = webhook_url(&c.webhook_url, &c.webhook_url_file, base)?;
            let t = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
            discords.push(DiscordConfig {
                send_resolved: c.send_resolved.unwrap_or(true),
                http: http_of(&c.http_config)?,
                webhook_url,
                content: c.content.clone().unwrap_or_default(),
                title: t(&c.title, r#"{{ template "discord.default.title" . }}"#),
                message: t(&c.message, r#"{{ template "discord.default.message" . }}"#),
                username: c.username.clone().unwrap_or_default(),
                avatar_url: c.avatar_url.clone().unwrap_or_default(),
            });
        }
        let mut webexes = Vec::new();
        for c in r.webex_configs.iter().flatten() {
            if c.room_id.as_deref().unwrap_or("").is_empty() {
                return err("missing room_id on webex_config");
            }
            // The bot token; the global http_config does not apply (Alertmanager checks first).
            let http = match &c.http_config {
                Some(h) => http_config(h, base)?,
                None => HttpClientConfig::default(),
            };
            if http.authorization.is_none() {
                return err("missing webex_configs.http_config.authorization");
            }
            let api_url = c
                .api_url
                .clone()
                .or_else(|| global.webex_api_url.clone())
                .unwrap_or_else(|| "https://webexapis.com/v1/messages".into());
            check_url(&api_url, "api_url")?;
            webexes.push(WebexConfig {
                send_resolved: c.send_resolved.unwrap_or(true),
                http,
                api_url,
                room_id: c.room_id.clone().unwrap_or_default(),
                message: c
                    .message
                    .clone()
                    .unwrap_or_else(|| r#"{{ template "webex.default.message" . }}"#.into()),
            });
        }
        let mut msteams = Vec::new();
        for c in r.msteams_configs.iter().flatten() {
            let t = |v: &Option<String>, d: &str| {
                v.clone()
                    .unwrap_or_else(|| format!("{{{{ template \"msteams.default.{d}\" . }}}}"))
            };
            msteams.push(MsteamsConfig {
                send_resolved: c.send_resolved.unwrap_or(true),
                http: http_of(&c.http_config)?,
                webhook_url: webhook_url(&c.webhook_url, &c.webhook_url_file, base)?,
                title: t(&c.title, "title"),
                summary: t(&c.summary, "summary"),
                text: t(&c.text, "text"),
                v2: false,
            });
        }
        for c in r.msteamsv2_configs.iter().flatten() {
            let t = |v: &Option<String>, d: &str| {
                v.clone()
                    .unwrap_or_else(|| format!("{{{{ template \"msteamsv2.default.{d}\" . }}}}"))
            };
            // 0.34: an http_config without a proxy_url inherits the global one.
            let http = match &c.http_config {
                Some(h) => {
                    let mut h = http_config(h, base)?;
                    if h.proxy_url.is_none() {
                        h.proxy_url = global_http.proxy_url.clone();
                    }
                    h
                }
                None => global_http.clone(),
            };
            msteams.push(MsteamsConfig {
                send_resolved: c.send_resolved.unwrap_or(true),
                http,
                webhook_url: webhook_url(&c.webhook_url, &c.webhook_url_file, base)?,
                title: t(&c.title, "title"),
                summary: String::new(),
                text: t(&c.text, "text"),
                v2: true,
            });
        }
        let mut victorops = Vec::new();
        for c in r.victorops_configs.iter().flatten() {
            victorops.push(victorops_config(c, &global, http_of(&c.http_config)?, base)?);
        }
        let mut pushovers = Vec::new();
        for c in r.pushover_configs.iter().flatten() {
            pushovers.push(pushover_config(c, http_of(&c.http_config)?, base)?);
        }
        let mut incidentios = Vec::new();
        for c in r.incidentio_configs.iter().flatten() {
            incidentios.push(incidentio_config(c, http_of(&c.http_config)?, base)?);
        }
        let mut rocketchats = Vec::new();
        for c in r.rocketchat_configs.iter().flatten() {
            rocketchats.push(rocketchat_config(c, &global, http_of(&c.http_config)?, base)?);
        }
        let mut mattermosts = Vec::new();
        for c in r.mattermost_configs.iter().flatten() {
            mattermosts.push(mattermost_config(c, &global, http_of(&c.http_config)?, base)?);
        }
        let mut sns = Vec::new();
        for c in r.sns_configs.iter().flatten() {
            sns.push(sns_config(c, http_of(&c.http_config)?)?);
        }
        let mut wechats = Vec::new();
        for c in r.wechat_configs.iter().flatten() {
            wechats.push(wechat_config(c, &global, http_of(&c.http_config)?, base)?);
        }
        let mut jiras = Vec::new();
        for c in r.jira_configs.iter().flatten() {
            jiras.push(jira_config(c, &global, http_of(&c.http_config)?)?);
        }
        receivers.insert(
            r.name.clone(),
            Receiver {
                name: r.name.clone(),
                labels: {
                    let mut l = r.labels.clone().unwrap_or_default();
                    l.insert("name".into(), r.name.clone());
                    l
                },
                webhooks,
                emails,
                slacks,
                pagerduties,
                opsgenies,
                telegrams,
                discords,
                webexes,
                msteams,
                victorops,
                pushovers,
                incidentios,
                rocketchats,
                mattermosts,
                sns,
                wechats,
                jiras,
            },
        );
    }

    // Route.
    let Some(root) = &raw.route else {
        return err("no route provided in config");
    };
    if root.continue_ == Some(true) {
        return err("cannot have continue in root route");
    }
    if root.receiver.as_deref().unwrap_or("").is_empty() {
        return err("root route must specify a default receiver");
    }
    if root.match_.as_ref().is_some_and(|m| !m.is_empty())
        || root.match_re.as_ref().is_some_and(|m| !m.is_empty())
        || root.matchers.as_ref().is_some_and(|m| !m.is_empty())
    {
        return err("root route must not have any matchers");
    }
    if root.mute_time_intervals.as_ref().is_some_and(|m| !m.is_empty()) {
        return err("root route must not have any mute time intervals");
    }
    if root.active_time_intervals.as_ref().is_some_and(|m| !m.is_empty()) {
        return err("root route must not have any active time intervals");
    }
    let tree = RouteTree::build(route_spec(root, opts, &names)?);
    let mut warnings = Vec::new();
    for node in &tree.nodes {
        if !receivers.contains_key(&node.receiver) {
            return err(format!("undefined receiver {} used in route", go_quote(&node.receiver)));
        }
        for ti in node.mute_time_intervals.iter().chain(&node.active_time_intervals) {
            if !time_intervals.contains_key(ti) {
                return err(format!("undefined time interval {} used in route", go_quote(ti)));
            }
        }
        if node.repeat_interval < node.group_interval {
            warnings.push(format!(
                "repeat_interval is less than group_interval for route {}; notifications will repeat every group_interval",
                node.key
            ));
        }
    }

    // Inhibit rules (null items are tolerated).
    let mut inhibit_rules = Vec::new();
    for r in raw.inhibit_rules.iter().flatten().flatten() {
        let mut source = legacy_matchers(&r.source_match, &r.source_match_re)?;
        source.extend(matcher_strings(&r.source_matchers, opts)?);
        let mut target = legacy_matchers(&r.target_match, &r.target_match_re)?;
        target.extend(matcher_strings(&r.target_matchers, opts)?);
        let equal = r.equal.clone().unwrap_or_default();
        for l in &equal {
            if !names.is_valid(l) {
                return err(format!("invalid label name {} in equal list", go_quote(l)));
            }
        }
        inhibit_rules.push(InhibitRule {
            name: r.name.clone(),
            source,
            target,
            equal,
        });
    }

    let templates = raw.templates.iter().flatten().map(|t| resolve(base, t)).collect();
    let event_recorder = event_recorder(raw.event_recorder.as_ref(), base)?;
    Ok(Config {
        original: text.to_string(),
        event_recorder,
        raw,
        resolve_timeout,
        route: tree,
        receivers,
        inhibit_rules,
        time_intervals,
        templates,
        warnings,
    })
}

#[cfg(test)]
mod tests;
