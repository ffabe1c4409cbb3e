//! The serde layer: `alertmanager.yml` exactly as written, strict about unknown keys.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;

/// A secret string; serialises as `<secret>` like Alertmanager.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// A URL whose password is replaced by `xxxxx` when re-marshalled (`proxy_url`, as Go's
/// `url.Redacted` shows it): /api/v2/status must not hand out proxy credentials.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedactedUrl(pub String);

impl RedactedUrl {
    /// The URL with its password, if any, replaced.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return self.0.clone();
        };
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:xxxxx@{host}{tail}"),
            None => self.0.clone(),
        }
    }
}

impl std::fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for RedactedUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// A YAML value we accept but do not interpret (shown as `<redacted>` when re-marshalled).
#[derive(Clone, Debug, Default)]
pub struct Opaque;

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Opaque)
    }
}

impl Serialize for Opaque {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Top level of `alertmanager.yml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<RawGlobal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RawRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibit_rules: Option<Vec<Option<RawInhibitRule>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<Vec<RawReceiver>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_intervals: Option<Vec<RawTimeIntervalSet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_time_intervals: Option<Vec<RawTimeIntervalSet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<RawTracing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_recorder: Option<RawEventRecorder>,
}

/// `event_recorder:` (0.33).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventRecorder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_outputs: Option<Vec<RawFileOutput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_outputs: Option<Vec<RawEventWebhook>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_outputs: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_outputs: Option<Vec<RawStdoutOutput>>,
}

/// A `stdout_outputs` item: no keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdoutOutput {}

/// `tracing:` (accepted; Tocsin does not export traces).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<RawTlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Secret>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<PromDuration>,
}

macro_rules! opt_fields {
    ($(#[$m:meta])* pub struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

opt_fields! {
    /// `global:`.
    pub struct RawGlobal {
        resolve_timeout: PromDuration,
        http_config: RawHttpConfig,
        smtp_from: String,
        smtp_hello: String,
        smtp_smarthost: String,
        smtp_auth_username: String,
        smtp_auth_password: Secret,
        smtp_auth_password_file: String,
        smtp_auth_secret: Secret,
        smtp_auth_secret_file: String,
        smtp_auth_identity: String,
        smtp_require_tls: bool,
        smtp_tls_config: RawTlsConfig,
        smtp_force_implicit_tls: bool,
        slack_api_url: Secret,
        slack_api_url_file: String,
        slack_app_token: Secret,
        slack_app_token_file: String,
        slack_app_url: String,
        pagerduty_url: String,
        opsgenie_api_url: String,
        opsgenie_api_key: Secret,
        opsgenie_api_key_file: String,
        wechat_api_url: String,
        wechat_api_secret: Secret,
        wechat_api_secret_file: String,
        wechat_api_corp_id: String,
        victorops_api_url: String,
        victorops_api_key: Secret,
        victorops_api_key_file: String,
        telegram_api_url: String,
        telegram_bot_token: Secret,
        telegram_bot_token_file: String,
        webex_api_url: String,
        rocketchat_api_url: String,
        rocketchat_token: Secret,
        rocketchat_token_file: String,
        rocketchat_token_id: Secret,
        rocketchat_token_id_file: String,
        jira_api_url: String,
        mattermost_webhook_url: Secret,
        mattermost_webhook_url_file: String,
    }
}

opt_fields! {
    /// Prometheus' common `http_config`.
    pub struct RawHttpConfig {
        basic_auth: RawBasicAuth,
        authorization: RawAuthorization,
        oauth2: RawOAuth2,
        bearer_token: Secret,
        bearer_token_file: String,
        proxy_url: RedactedUrl,
        no_proxy: String,
        proxy_from_environment: bool,
        proxy_connect_header: BTreeMap<String, Vec<Secret>>,
        tls_config: RawTlsConfig,
        follow_redirects: bool,
        enable_http2: bool,
        http_headers: BTreeMap<String, RawHeader>,
    }
}

opt_fields! {
    /// `threading:` of an email config (0.30).
    pub struct RawThreading {
        enabled: bool,
        thread_by_date: String,
    }
}

opt_fields! {
    /// `oauth2:` (client credentials).
    pub struct RawOAuth2 {
        client_id: String,
        client_secret: Secret,
        client_secret_file: String,
        scopes: Vec<String>,
        token_url: String,
        endpoint_params: BTreeMap<String, String>,
        tls_config: RawTlsConfig,
        proxy_url: RedactedUrl,
        no_proxy: String,
        proxy_from_environment: bool,
        proxy_connect_header: BTreeMap<String, Vec<Secret>>,
    }
}

opt_fields! {
    /// One `http_headers:` entry: values sent as they are, secrets (shown redacted), and files
    /// read at each request.
    pub struct RawHeader {
        values: Vec<String>,
        secrets: Vec<Secret>,
        files: Vec<String>,
    }
}

opt_fields! {
    /// `basic_auth:`.
    pub struct RawBasicAuth {
        username: String,
        username_file: String,
        password: Secret,
        password_file: String,
    }
}

opt_fields! {
    /// `authorization:`.
    pub struct RawAuthorization {
        r#type: String,
        credentials: Secret,
        credentials_file: String,
    }
}

opt_fields! {
    /// `tls_config:`.
    pub struct RawTlsConfig {
        ca: String,
        ca_file: String,
        cert: String,
        cert_file: String,
        key: Secret,
        key_file: String,
        server_name: String,
        insecure_skip_verify: bool,
        min_version: String,
        max_version: String,
    }
}

/// `route:` and its children.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_re: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matchers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_time_intervals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_time_intervals: Option<Vec<String>>,
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RawRoute>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// One `inhibit_rules:` item.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInhibitRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_match: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_match_re: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_matchers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_match: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_match_re: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_matchers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equal: Option<Vec<String>>,
}

/// A named list of time intervals.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeIntervalSet {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub time_intervals: Vec<RawTimeInterval>,
}

opt_fields! {
    /// One time interval spec.
    pub struct RawTimeInterval {
        times: Vec<RawTimeRange>,
        weekdays: Vec<String>,
        days_of_month: Vec<String>,
        months: Vec<String>,
        years: Vec<String>,
        location: String,
    }
}

/// `{start_time, end_time}`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeRange {
    pub start_time: String,
    pub end_time: String,
}

opt_fields! {
    /// `webhook_configs` item.
    pub struct RawWebhookConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        url: Secret,
        url_file: String,
        max_alerts: u64,
        timeout: PromDuration,
        payload: serde_json::Value,
    }
}

opt_fields! {
    /// An `event_recorder` `file_outputs` item.
    pub struct RawFileOutput {
        path: String,
    }
}

opt_fields! {
    /// An `event_recorder` `webhook_outputs` item.
    pub struct RawEventWebhook {
        url: Secret,
        http_config: RawHttpConfig,
        timeout: PromDuration,
        workers: i64,
        max_retries: i64,
        retry_backoff: PromDuration,
        batch: bool,
        batch_max_events: i64,
        batch_max_bytes: i64,
        batch_flush_interval: PromDuration,
    }
}

opt_fields! {
    /// `email_configs` item.
    pub struct RawEmailConfig {
        send_resolved: bool,
        to: String,
        from: String,
        hello: String,
        smarthost: String,
        auth_username: String,
        auth_password: Secret,
        auth_password_file: String,
        auth_secret: Secret,
        auth_secret_file: String,
        auth_identity: String,
        headers: BTreeMap<String, String>,
        html: String,
        text: String,
        require_tls: bool,
        force_implicit_tls: bool,
        tls_config: RawTlsConfig,
        threading: RawThreading,
    }
}

opt_fields! {
    /// `slack_configs` item.
    pub struct RawSlackConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_url: Secret,
        api_url_file: String,
        app_token: Secret,
        app_token_file: String,
        app_url: String,
        channel: String,
        username: String,
        color: String,
        title: String,
        title_link: String,
        pretext: String,
        text: String,
        message_text: String,
        fields: Vec<RawSlackField>,
        short_fields: bool,
        footer: String,
        fallback: String,
        callback_id: String,
        icon_emoji: String,
        icon_url: String,
        image_url: String,
        thumb_url: String,
        link_names: bool,
        mrkdwn_in: Vec<String>,
        actions: Vec<RawSlackAction>,
        update_message: bool,
        timeout: PromDuration,
    }
}

opt_fields! {
    /// A Slack attachment field.
    pub struct RawSlackField {
        title: String,
        value: String,
        short: bool,
    }
}

opt_fields! {
    /// A Slack attachment action (a button).
    pub struct RawSlackAction {
        r#type: String,
        text: String,
        url: String,
        style: String,
        name: String,
        value: String,
        confirm: RawSlackConfirm,
    }
}

opt_fields! {
    /// A Slack action's confirmation dialog.
    pub struct RawSlackConfirm {
        text: String,
        title: String,
        ok_text: String,
        dismiss_text: String,
    }
}

opt_fields! {
    /// `pagerduty_configs` item.
    pub struct RawPagerdutyConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        routing_key: Secret,
        routing_key_file: String,
        service_key: Secret,
        service_key_file: String,
        url: String,
        client: String,
        client_url: String,
        description: String,
        details: BTreeMap<String, serde_json::Value>,
        images: Vec<RawPagerdutyImage>,
        links: Vec<RawPagerdutyLink>,
        source: String,
        severity: String,
        class: String,
        component: String,
        group: String,
        timeout: PromDuration,
    }
}

opt_fields! {
    /// A PagerDuty image.
    pub struct RawPagerdutyImage {
        src: String,
        alt: String,
        href: String,
    }
}

opt_fields! {
    /// A PagerDuty link.
    pub struct RawPagerdutyLink {
        href: String,
        text: String,
    }
}

opt_fields! {
    /// `opsgenie_configs` item.
    pub struct RawOpsgenieConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_key: Secret,
        api_key_file: String,
        api_url: String,
        message: String,
        description: String,
        source: String,
        details: BTreeMap<String, String>,
        entity: String,
        responders: Vec<RawOpsgenieResponder>,
        actions: String,
        tags: String,
        note: String,
        priority: String,
        update_alerts: bool,
    }
}

opt_fields! {
    /// An Opsgenie responder.
    pub struct RawOpsgenieResponder {
        id: String,
        name: String,
        username: String,
        r#type: String,
    }
}

opt_fields! {
    /// `telegram_configs` item.
    pub struct RawTelegramConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_url: String,
        bot_token: Secret,
        bot_token_file: String,
        chat_id: i64,
        chat_id_file: String,
        message_thread_id: i64,
        message: String,
        disable_notifications: bool,
        parse_mode: String,
    }
}

opt_fields! {
    /// `discord_configs` item.
    pub struct RawDiscordConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        webhook_url: Secret,
        webhook_url_file: String,
        content: String,
        title: String,
        message: String,
        username: String,
        avatar_url: String,
    }
}

opt_fields! {
    /// `webex_configs` item.
    pub struct RawWebexConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_url: String,
        room_id: String,
        message: String,
    }
}

opt_fields! {
    /// `msteams_configs` item.
    pub struct RawMsteamsConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        webhook_url: Secret,
        webhook_url_file: String,
        title: String,
        summary: String,
        text: String,
    }
}

opt_fields! {
    /// `msteamsv2_configs` item.
    pub struct RawMsteamsV2Config {
        send_resolved: bool,
        http_config: RawHttpConfig,
        webhook_url: Secret,
        webhook_url_file: String,
        title: String,
        text: String,
    }
}

opt_fields! {
    /// `victorops_configs` item.
    pub struct RawVictoropsConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_key: Secret,
        api_key_file: String,
        api_url: String,
        routing_key: String,
        message_type: String,
        state_message: String,
        entity_display_name: String,
        monitoring_tool: String,
        custom_fields: BTreeMap<String, String>,
    }
}

opt_fields! {
    /// `pushover_configs` item.
    pub struct RawPushoverConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        user_key: Secret,
        user_key_file: String,
        token: Secret,
        token_file: String,
        title: String,
        message: String,
        url: String,
        url_title: String,
        device: String,
        sound: String,
        priority: String,
        retry: PromDuration,
        expire: PromDuration,
        ttl: PromDuration,
        html: bool,
        monospace: bool,
    }
}

opt_fields! {
    /// `incidentio_configs` item.
    pub struct RawIncidentioConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        url: Secret,
        url_file: String,
        alert_source_token: Secret,
        alert_source_token_file: String,
        max_alerts: u64,
        timeout: PromDuration,
    }
}

opt_fields! {
    /// `rocketchat_configs` item.
    pub struct RawRocketchatConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_url: String,
        token_id: Secret,
        token_id_file: String,
        token: Secret,
        token_file: String,
        channel: String,
        color: String,
        title: String,
        title_link: String,
        text: String,
        fields: Vec<RawRocketchatField>,
        short_fields: bool,
        emoji: String,
        icon_url: String,
        image_url: String,
        thumb_url: String,
        link_names: bool,
        actions: Vec<RawRocketchatAction>,
    }
}

opt_fields! {
    /// A Rocket.Chat attachment field.
    pub struct RawRocketchatField {
        short: bool,
        title: String,
        value: String,
    }
}

opt_fields! {
    /// A Rocket.Chat action (only `text`, `url` and `msg` are sent).
    pub struct RawRocketchatAction {
        r#type: String,
        text: String,
        url: String,
        imageurl: String,
        iswebview: bool,
        webviewheightratio: String,
        msg: String,
        msginchatwindow: bool,
        msgprocessingtype: String,
    }
}

opt_fields! {
    /// `mattermost_configs` item.
    pub struct RawMattermostConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        webhook_url: Secret,
        webhook_url_file: String,
        channel: String,
        username: String,
        text: String,
        fallback: String,
        color: String,
        pretext: String,
        author_name: String,
        author_link: String,
        author_icon: String,
        title: String,
        title_link: String,
        fields: Vec<RawSlackField>,
        thumb_url: String,
        footer: String,
        footer_icon: String,
        image_url: String,
        icon_url: String,
        icon_emoji: String,
        attachments: Vec<RawMattermostAttachment>,
        r#type: String,
        props: RawMattermostProps,
        priority: RawMattermostPriority,
    }
}

opt_fields! {
    /// A Mattermost attachment.
    pub struct RawMattermostAttachment {
        fallback: String,
        color: String,
        pretext: String,
        text: String,
        author_name: String,
        author_link: String,
        author_icon: String,
        title: String,
        title_link: String,
        fields: Vec<RawSlackField>,
        thumb_url: String,
        footer: String,
        footer_icon: String,
        image_url: String,
    }
}

opt_fields! {
    /// Mattermost `props`.
    pub struct RawMattermostProps {
        card: String,
    }
}

opt_fields! {
    /// Mattermost `priority`.
    pub struct RawMattermostPriority {
        priority: String,
        requested_ack: bool,
        persistent_notifications: bool,
    }
}

opt_fields! {
    /// `sns_configs` item.
    pub struct RawSnsConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_url: String,
        sigv4: RawSigv4,
        topic_arn: String,
        phone_number: String,
        target_arn: String,
        subject: String,
        message: String,
        attributes: BTreeMap<String, String>,
        use_aws_http_client: bool,
    }
}

opt_fields! {
    /// Prometheus' common `sigv4` settings.
    pub struct RawSigv4 {
        region: String,
        access_key: String,
        secret_key: Secret,
        profile: String,
        role_arn: String,
        external_id: String,
    }
}

opt_fields! {
    /// `wechat_configs` item.
    pub struct RawWechatConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_secret: Secret,
        api_secret_file: String,
        corp_id: String,
        api_url: String,
        message: String,
        to_user: String,
        to_party: String,
        to_tag: String,
        agent_id: String,
        message_type: String,
    }
}

opt_fields! {
    /// `jira_configs` item.
    pub struct RawJiraConfig {
        send_resolved: bool,
        http_config: RawHttpConfig,
        api_url: String,
        api_type: String,
        project: String,
        summary: RawJiraText,
        description: RawJiraText,
        labels: Vec<String>,
        priority: String,
        issue_type: String,
        reopen_transition: String,
        resolve_transition: String,
        wont_fix_resolution: String,
        reopen_duration: PromDuration,
        fields: BTreeMap<String, serde_json::Value>,
    }
}

/// Jira's `summary` or `description`: a template, or `{template, enable_update}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawJiraText {
    /// The template.
    Text(String),
    /// The template and whether an update sends it.
    Full {
        /// The template (default: the integration's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        /// Whether an update of an existing issue sends it (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enable_update: Option<bool>,
    },
}

/// One `receivers:` item.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_configs: Option<Vec<RawWebhookConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_configs: Option<Vec<RawEmailConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty_configs: Option<Vec<RawPagerdutyConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opsgenie_configs: Option<Vec<RawOpsgenieConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechat_configs: Option<Vec<RawWechatConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_configs: Option<Vec<RawSlackConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victorops_configs: Option<Vec<RawVictoropsConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushover_configs: Option<Vec<RawPushoverConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns_configs: Option<Vec<RawSnsConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram_configs: Option<Vec<RawTelegramConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord_configs: Option<Vec<RawDiscordConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webex_configs: Option<Vec<RawWebexConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msteams_configs: Option<Vec<RawMsteamsConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msteamsv2_configs: Option<Vec<RawMsteamsV2Config>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jira_configs: Option<Vec<RawJiraConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidentio_configs: Option<Vec<RawIncidentioConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocketchat_configs: Option<Vec<RawRocketchatConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mattermost_configs: Option<Vec<RawMattermostConfig>>,
}

#[cfg(test)]
mod redaction_tests {
    use super::RedactedUrl;

    #[test]
    fn proxy_passwords_are_redacted() {
        let r = |s: &str| RedactedUrl(s.into()).redacted();
        assert_eq!(r("http://bob:s3cret@proxy:3128/"), "http://bob:xxxxx@proxy:3128/");
        assert_eq!(r("http://bob@proxy:3128"), "http://bob@proxy:3128");
        assert_eq!(r("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
        assert_eq!(r("socks5://u:p@h"), "socks5://u:xxxxx@h");
    }
}
