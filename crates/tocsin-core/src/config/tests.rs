use super::*;

fn load_str(s: &str) -> Result<Config, ConfigError> {
    load(s, Path::new("/etc/tocsin"), &LoadOptions::default())
}

#[test]
fn minimal_config_gets_alertmanager_defaults() {
    let c = load_str("route:\n  receiver: r\nreceivers:\n- name: r\n").unwrap();
    let root = c.route.root();
    assert_eq!(root.group_wait, Duration::from_secs(30));
    assert_eq!(root.group_interval, Duration::from_secs(300));
    assert_eq!(root.repeat_interval, Duration::from_secs(4 * 3600));
    assert_eq!(c.resolve_timeout, Duration::from_secs(300));
    assert_eq!(root.key, "{}");
}

#[test]
fn merge_keys_and_relative_files_work() {
    let yaml = r#"
defaults: &d
  group_wait: 1s
route:
  receiver: r
  routes:
  - <<: *d
    matchers: ['team="a"']
receivers:
- name: r
  webhook_configs:
  - url_file: secrets/url
"#;
    // `defaults` is not an Alertmanager key, so the anchor must live elsewhere: use a route.
    assert!(load_str(yaml).unwrap_err().0.contains("defaults"));
    let yaml = r#"
route:
  receiver: r
  group_wait: &gw 7s
  routes:
  - matchers: ['team="a"']
    group_wait: *gw
    <<: {group_interval: 9s}
receivers:
- name: r
  webhook_configs:
  - url_file: secrets/url
"#;
    let c = load_str(yaml).unwrap();
    assert_eq!(c.route.nodes[1].group_wait, Duration::from_secs(7));
    assert_eq!(c.route.nodes[1].group_interval, Duration::from_secs(9));
    assert_eq!(
        c.receivers["r"].webhooks[0].url,
        SecretSource::File("/etc/tocsin/secrets/url".into())
    );
}

#[test]
fn the_re_marshalled_config_hides_proxy_passwords() {
    // /api/v2/status shows the configuration re-marshalled from `raw`.
    let yaml = "route:\n  receiver: r\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://hook/\n    http_config:\n      proxy_url: http://ops:hunter2@proxy:3128\n";
    let c = load_str(yaml).unwrap();
    assert_eq!(
        c.receivers["r"].webhooks[0].http.proxy_url.as_deref(),
        Some("http://ops:hunter2@proxy:3128"),
        "the proxy is used with its password"
    );
    let shown = serde_saphyr::to_string(&c.raw).unwrap();
    assert!(shown.contains("http://ops:xxxxx@proxy:3128"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn basic_auth_username_file_is_read_relative_to_the_config() {
    let yaml = "route:\n  receiver: r\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://hook/\n    http_config:\n      basic_auth:\n        username_file: user.txt\n        password: p\n";
    let c = load(yaml, Path::new("/etc/tocsin"), &LoadOptions::default()).unwrap();
    let (user, _) = c.receivers["r"].webhooks[0].http.basic_auth.clone().unwrap();
    assert_eq!(user, SecretSource::File("/etc/tocsin/user.txt".into()));
    let both = yaml.replace(
        "username_file: user.txt",
        "username: a\n        username_file: user.txt",
    );
    let e = load(&both, Path::new("."), &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("at most one of basic_auth username & username_file must be configured"),
        "{e}"
    );
}

#[test]
fn http_headers_are_read_and_reserved_ones_refused() {
    let yaml = "route:\n  receiver: r\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://hook/\n    http_config:\n      http_headers:\n        X-Scope-OrgID:\n          values: [team-a]\n          secrets: [s3cret]\n          files: [token.txt]\n";
    let c = load(yaml, Path::new("/etc/tocsin"), &LoadOptions::default()).unwrap();
    let h = &c.receivers["r"].webhooks[0].http.headers;
    assert_eq!(
        h,
        &vec![(
            "X-Scope-OrgID".to_string(),
            vec![
                SecretSource::Inline("team-a".into()),
                SecretSource::Inline("s3cret".into()),
                SecretSource::File("/etc/tocsin/token.txt".into()),
            ]
        )]
    );
    let reserved = yaml.replace("X-Scope-OrgID", "user-agent");
    let e = load(&reserved, Path::new("."), &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("setting header \"User-Agent\" is not allowed"),
        "{e}"
    );
}

#[test]
fn proxy_settings_follow_prometheus_rules() {
    let base =
        "route:\n  receiver: r\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://hook/\n    http_config:\n";
    let load_with = |extra: &str| load(&format!("{base}{extra}"), Path::new("."), &LoadOptions::default());
    let c = load_with("      proxy_url: http://proxy:3128\n      no_proxy: 10.0.0.0/8,internal.test\n      proxy_connect_header:\n        X-Token: [a, b]\n").unwrap();
    let h = &c.receivers["r"].webhooks[0].http;
    assert_eq!(h.no_proxy.as_deref(), Some("10.0.0.0/8,internal.test"));
    assert_eq!(
        h.proxy_connect_headers,
        vec![
            ("X-Token".to_string(), "a".to_string()),
            ("X-Token".to_string(), "b".to_string())
        ]
    );
    assert!(
        load_with("      proxy_from_environment: true\n").unwrap().receivers["r"].webhooks[0]
            .http
            .proxy_from_environment
    );
    for (extra, says) in [
        (
            "      no_proxy: a\n",
            "if no_proxy is configured, proxy_url must also be configured",
        ),
        (
            "      proxy_from_environment: true\n      proxy_url: http://p:1\n",
            "if proxy_from_environment is configured, proxy_url must not be configured",
        ),
        (
            "      proxy_connect_header:\n        X: [a]\n",
            "if proxy_connect_header is configured, proxy_url must also be configured",
        ),
    ] {
        let e = load_with(extra).unwrap_err();
        assert!(e.to_string().contains(says), "{extra}: {e}");
    }
}

#[test]
fn oauth2_client_credentials_are_read() {
    let base = "route:\n  receiver: r\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://hook/\n    http_config:\n      oauth2:\n        client_id: tocsin\n        token_url: https://idp.example/token\n";
    let load_with = |extra: &str| {
        load(
            &format!("{base}{extra}"),
            Path::new("/etc/tocsin"),
            &LoadOptions::default(),
        )
    };
    let c = load_with(
        "        client_secret_file: secret\n        scopes: [a, b]\n        endpoint_params: {audience: x}\n",
    )
    .unwrap();
    let o = c.receivers["r"].webhooks[0].http.oauth2.clone().unwrap();
    assert_eq!(o.client_secret, SecretSource::File("/etc/tocsin/secret".into()));
    assert_eq!((o.scopes.len(), o.endpoint_params["audience"].as_str()), (2, "x"));
    let e = load_with("").unwrap_err();
    assert!(
        e.to_string()
            .contains("oauth2 client_secret or client_secret_file must be configured"),
        "{e}"
    );
    let e = load_with("        client_secret: s\n      bearer_token: t\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("at most one of basic_auth, oauth2, bearer_token"),
        "{e}"
    );
}

fn receiver_with(integration: &str, global: &str) -> Result<Config, ConfigError> {
    load_str(&format!(
        "global:\n  {global}\nroute:\n  receiver: r\nreceivers:\n- name: r\n  {integration}\n"
    ))
}

#[test]
fn slack_configs_are_validated_with_alertmanagers_messages() {
    let e = |i: &str| receiver_with(i, "resolve_timeout: 5m").unwrap_err().0;
    assert_eq!(
        e("slack_configs: [{channel: x}]"),
        "no Slack API URL nor App token set either inline or in a file"
    );
    assert_eq!(
        e("slack_configs: [{api_url: 'http://h/', app_token: t}]"),
        "at most one of api_url/api_url_file & app_token/app_token_file must be configured"
    );
    assert_eq!(
        e("slack_configs: [{api_url: 'http://h/', api_url_file: f}]"),
        "at most one of api_url & api_url_file must be configured"
    );
    assert_eq!(
        e("slack_configs: [{api_url: 'http://h/', fields: [{title: t}]}]"),
        "missing value in Slack field configuration"
    );
    assert_eq!(
        e("slack_configs: [{api_url: 'http://h/', actions: [{type: button, text: t}]}]"),
        "missing name or url in Slack action configuration"
    );
    assert_eq!(
        e("slack_configs: [{app_token: t, http_config: {authorization: {credentials: c}}}]"),
        "http authorization can't be set when using Slack App tokens"
    );
    assert_eq!(
        e("slack_configs: [{api_url: 'ftp://h/'}]"),
        "unsupported scheme \"ftp\" for URL"
    );
    // update_message: only with a chat.postMessage URL given inline, as Alertmanager requires
    // (which also takes no other host), and then messages are updated beside it.
    for bad in [
        "{api_url: 'https://hooks.slack.com/services/X', update_message: true}",
        "{api_url_file: /dev/null, update_message: true}",
        "{update_message: true}",
        "{app_token: t, update_message: true}",
        "{api_url: 'https://slack.com/api/chat.postMessage?x=1', update_message: true}",
    ] {
        assert_eq!(
            e(&format!("slack_configs: [{bad}]")),
            "update_message can only be used with bot tokens. api_url must be set to https://slack.com/api/chat.postMessage",
            "{bad}"
        );
    }
    let update = |api: &str| {
        let i = format!("slack_configs: [{{api_url: '{api}', update_message: true}}]");
        let c = receiver_with(&i, "resolve_timeout: 5m").unwrap();
        c.receivers["r"].slacks[0].update_url.clone()
    };
    assert_eq!(
        update("https://slack.com/api/chat.postMessage").as_deref(),
        Some("https://slack.com/api/chat.update")
    );
    assert_eq!(
        update("http://127.0.0.1:9/slack/api/chat.postMessage").as_deref(),
        Some("http://127.0.0.1:9/slack/api/chat.update")
    );
    // The globals: an API URL, or an app token with the app URL.
    let c = receiver_with(
        "slack_configs: [{channel: x}]",
        "slack_api_url: 'https://hooks.slack.com/services/X'",
    )
    .unwrap();
    let s = &c.receivers["r"].slacks[0];
    assert_eq!(s.url, SecretSource::Inline("https://hooks.slack.com/services/X".into()));
    assert!(!s.send_resolved);
    assert_eq!(s.mrkdwn_in, ["fallback", "pretext", "text"]);
    assert_eq!(s.title, r#"{{ template "slack.default.title" . }}"#);
    let c = receiver_with("slack_configs: [{channel: x}]", "slack_app_token: xoxb").unwrap();
    let s = &c.receivers["r"].slacks[0];
    assert_eq!(
        s.url,
        SecretSource::Inline("https://slack.com/api/chat.postMessage".into())
    );
    assert_eq!(s.app_token, Some(SecretSource::Inline("xoxb".into())));
}

#[test]
fn pagerduty_configs_are_validated_with_alertmanagers_messages() {
    let e = |i: &str| receiver_with(i, "resolve_timeout: 5m").unwrap_err().0;
    assert_eq!(
        e("pagerduty_configs: [{severity: x}]"),
        "missing service or routing key in PagerDuty config"
    );
    assert_eq!(
        e("pagerduty_configs: [{routing_key: a, routing_key_file: b}]"),
        "at most one of routing_key & routing_key_file must be configured"
    );
    let c = receiver_with(
        "pagerduty_configs: [{routing_key: k, details: {firing: mine, extra: 1}}]",
        "pagerduty_url: 'http://pd.local/enqueue'",
    )
    .unwrap();
    let p = &c.receivers["r"].pagerduties[0];
    assert!(!p.v1 && p.send_resolved);
    assert_eq!(p.url, "http://pd.local/enqueue");
    assert_eq!(p.source, p.client, "source defaults to the client template");
    let keys: Vec<&str> = p.details.keys().map(String::as_str).collect();
    assert_eq!(keys, ["extra", "firing", "num_firing", "num_resolved", "resolved"]);
    assert_eq!(p.details["firing"], serde_json::json!("mine"));
    assert_eq!(p.details["extra"], serde_json::json!(1));
    // `/api/v2/status` shows the keys as secrets.
    let shown = serde_json::to_string(&c.raw).unwrap();
    assert!(shown.contains(r#""routing_key":"<secret>""#), "{shown}");
}

#[test]
fn chat_integrations_and_opsgenie_are_validated_with_alertmanagers_messages() {
    let e = |i: &str| receiver_with(i, "resolve_timeout: 5m").unwrap_err().0;
    assert_eq!(
        e("discord_configs: [{title: x}]"),
        "one of webhook_url or webhook_url_file must be configured"
    );
    assert_eq!(
        e("msteamsv2_configs: [{webhook_url: 'http://h/', webhook_url_file: f}]"),
        "at most one of webhook_url & webhook_url_file must be configured"
    );
    assert_eq!(
        e("telegram_configs: [{bot_token: t}]"),
        "missing chat_id or chat_id_file on telegram_config"
    );
    assert_eq!(
        e("telegram_configs: [{chat_id: 1}]"),
        "missing bot_token or bot_token_file on telegram_config"
    );
    assert_eq!(
        e("telegram_configs: [{bot_token: t, chat_id: 1, parse_mode: BBCode}]"),
        "unknown parse_mode on telegram_config, must be Markdown, MarkdownV2, HTML or empty string"
    );
    assert_eq!(e("webex_configs: [{message: x}]"), "missing room_id on webex_config");
    assert_eq!(
        e("opsgenie_configs: [{message: x}]"),
        "no global OpsGenie API Key set either inline or in a file"
    );
    assert_eq!(
        e("opsgenie_configs: [{api_key: k, responders: [{name: ops, type: squad}]}]"),
        "opsGenieConfig responder { ops  squad} type does not match valid options ^(team|teams|user|escalation|schedule)$"
    );
    assert_eq!(
        e("opsgenie_configs: [{api_key: k, responders: [{type: team}]}]"),
        "opsGenieConfig responder {   team} has to have at least one of id, username or name specified"
    );
    // Globals and defaults.
    let c = receiver_with(
        "telegram_configs: [{chat_id: 5}]\n  opsgenie_configs: [{api_url: 'http://og.local'}]",
        "telegram_bot_token: tok\n  opsgenie_api_key: key",
    )
    .unwrap();
    let r = &c.receivers["r"];
    assert_eq!(r.telegrams[0].bot_token, SecretSource::Inline("tok".into()));
    assert_eq!(r.telegrams[0].api_url, "https://api.telegram.org");
    assert_eq!(r.telegrams[0].parse_mode, "HTML");
    assert_eq!(r.opsgenies[0].api_url, "http://og.local/", "a trailing / is added");
    assert_eq!(r.opsgenies[0].api_key, SecretSource::Inline("key".into()));
}

#[test]
fn on_call_integrations_are_validated_with_alertmanagers_messages() {
    let e = |i: &str| receiver_with(i, "resolve_timeout: 5m").unwrap_err().0;
    assert_eq!(
        e("victorops_configs: [{api_key: k}]"),
        "missing Routing key in VictorOps config"
    );
    assert_eq!(
        e("victorops_configs: [{routing_key: r}]"),
        "no global VictorOps API Key set"
    );
    assert_eq!(
        e("pushover_configs: [{token: t}]"),
        "one of user_key or user_key_file must be configured"
    );
    assert_eq!(
        e("pushover_configs: [{token: t, user_key: u, html: true, monospace: true}]"),
        "at most one of monospace & html must be configured"
    );
    assert_eq!(
        e("incidentio_configs: [{alert_source_token: t}]"),
        "one of url or url_file must be configured"
    );
    assert_eq!(
        e(
            "incidentio_configs: [{url: 'http://h/', alert_source_token: t, http_config: {authorization: {credentials: c}}}]"
        ),
        "cannot specify alert_source_token or alert_source_token_file when using http_config.authorization"
    );
    assert_eq!(
        e("rocketchat_configs: [{token: t}]"),
        "no global Rocketchat TokenID set either inline or in a file"
    );
    assert_eq!(
        e("mattermost_configs: [{channel: x}]"),
        "missing webhook_url or webhook_url_file on mattermost_config"
    );
    assert_eq!(
        e("mattermost_configs: [{webhook_url: 'http://h/', fields: [{title: t}]}]"),
        "missing value in Mattermost field configuration"
    );
    let c = receiver_with(
        "victorops_configs: [{routing_key: r}]\n  rocketchat_configs: [{channel: c}]",
        "victorops_api_key: vk\n  rocketchat_token: t\n  rocketchat_token_id: i",
    )
    .unwrap();
    let r = &c.receivers["r"];
    assert_eq!(
        r.victorops[0].api_url,
        "https://alert.victorops.com/integrations/generic/20131114/alert/"
    );
    assert_eq!(r.rocketchats[0].url, "https://open.rocket.chat/api/v1/chat.postMessage");
    assert!(!r.rocketchats[0].send_resolved);
}

#[test]
fn wechat_configs_are_validated_with_alertmanagers_messages() {
    let e = |i: &str| receiver_with(i, "resolve_timeout: 5m").unwrap_err().0;
    assert_eq!(
        e("wechat_configs: [{corp_id: c, api_secret: s, message_type: html}]"),
        "weChat message type \"html\" does not match valid options ^(text|markdown)$"
    );
    assert_eq!(
        e("wechat_configs: [{corp_id: c}]"),
        "no global Wechat Api Secret set either inline or in a file"
    );
    assert_eq!(e("wechat_configs: [{api_secret: s}]"), "no global Wechat CorpID set");
    let c = receiver_with(
        "wechat_configs: [{to_user: a}]",
        "wechat_api_secret: s\n  wechat_api_corp_id: c",
    )
    .unwrap();
    let w = &c.receivers["r"].wechats[0];
    assert_eq!(
        (w.api_url.as_str(), w.message_type.as_str()),
        ("https://qyapi.weixin.qq.com/cgi-bin/", "text")
    );
}

#[test]
fn jira_configs_are_validated_with_alertmanagers_messages() {
    let e = |i: &str| receiver_with(i, "resolve_timeout: 5m").unwrap_err().0;
    assert_eq!(e("jira_configs: [{issue_type: Bug}]"), "missing project in jira_config");
    assert_eq!(e("jira_configs: [{project: P}]"), "missing issue_type in jira_config");
    assert_eq!(
        e("jira_configs: [{project: P, issue_type: Bug, api_type: server}]"),
        "unknown api_type on jira_config, must be auto, cloud or datacenter"
    );
    assert_eq!(
        e("jira_configs: [{project: P, issue_type: Bug}]"),
        "no global Jira Cloud URL set"
    );
    let c = receiver_with(
        "jira_configs: [{project: P, issue_type: Bug, summary: {template: 'S', enable_update: false}, description: 'D'}]",
        "jira_api_url: 'https://x.atlassian.net/rest/api/2'",
    )
    .unwrap();
    let j = &c.receivers["r"].jiras[0];
    assert_eq!(
        (j.summary.clone(), j.description.clone()),
        (("S".into(), false), ("D".into(), true))
    );
    assert_eq!(j.api_type, "auto");
}

#[test]
fn global_secrets_given_twice_are_refused_even_when_unused() {
    // As Alertmanager: the globals are checked before any receiver.
    let e = |g: &str| receiver_with("webhook_configs: [{url: 'http://h/'}]", g).unwrap_err().0;
    assert_eq!(
        e("rocketchat_token: a\n  rocketchat_token_file: b"),
        "at most one of rocketchat_token & rocketchat_token_file must be configured"
    );
    assert_eq!(
        e("slack_api_url: 'http://h/'\n  slack_app_token: t"),
        "at most one of slack_app_token/slack_app_token_file & slack_api_url/slack_api_url_file must be configured"
    );
}

#[test]
fn event_recorder_outputs_are_validated_with_alertmanagers_messages() {
    let e = |er: &str| {
        load_str(&format!(
            "route: {{receiver: r}}\nreceivers: [{{name: r}}]\nevent_recorder:\n{er}"
        ))
        .unwrap_err()
        .0
    };
    assert_eq!(
        e("  file_outputs: [{}]\n"),
        "event_recorder file output requires a path"
    );
    assert_eq!(
        e("  webhook_outputs: [{}]\n"),
        "event_recorder webhook output requires a url"
    );
    assert_eq!(
        e("  webhook_outputs: [{url: /x}]\n"),
        "event_recorder webhook output requires an absolute http(s) url"
    );
    assert_eq!(
        e("  webhook_outputs: [{url: 'http://h/', batch_max_events: 5}]\n"),
        "event_recorder webhook batch settings require batch: true"
    );
    assert_eq!(
        e("  webhook_outputs: [{url: 'http://h/', batch: true, batch_max_bytes: -1}]\n"),
        "event_recorder webhook batch settings cannot be negative"
    );
    assert!(
        e("  kafka_outputs: [{brokers: [b:9092], topic: t}]\n").contains("kafka_outputs is not supported by Tocsin")
    );
    assert!(e("  stdout_outputs: [{x: 1}]\n").contains("unknown field"));
    let c = load_str(
        "route: {receiver: r}\nreceivers: [{name: r}]\nevent_recorder:\n  file_outputs: [{path: ev.jsonl}]\n  stdout_outputs: [{}]\n  webhook_outputs: [{url: 'http://h/e', batch: true}]\n",
    )
    .unwrap();
    let er = &c.event_recorder;
    assert_eq!((er.files.len(), er.stdout, er.webhooks.len()), (1, 1, 1));
    let w = &er.webhooks[0];
    assert_eq!(
        (
            w.timeout,
            w.workers,
            w.max_retries,
            w.retry_backoff,
            w.batch_max_events,
            w.batch_max_bytes,
            w.batch_flush_interval
        ),
        (
            Duration::from_secs(10),
            4,
            3,
            Duration::from_millis(500),
            100,
            1 << 20,
            Duration::from_millis(100)
        ),
        "Alertmanager's defaults"
    );
}
