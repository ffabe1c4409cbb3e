//! The integrations against a local receiver: the exact bodies Alertmanager's notifiers send
//! (from the default templates and from configured ones), the URL, method and credentials each
//! config form picks, and how each judges the answer (Slack's `ok`, PagerDuty's and Opsgenie's
//! retry codes, Telegram's JSON).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tocsin_core::alert::Alert;
use tocsin_core::config::{Receiver, load};
use tocsin_core::labels::fingerprint;
use tocsin_core::nflog::{DataValue, NotifyReason};
use tocsin_core::time::ZERO;
use tocsin_notify::integration::{self, Encoder as _};
use tocsin_notify::{Integration, NotifyData, Shared, build_integrations};

/// (path, authorization, content type, body) of each request.
type Got = Arc<Mutex<Vec<(String, Option<String>, Option<String>, Vec<u8>)>>>;
/// Per path: status, content type and body to answer.
type Answers = Arc<Mutex<std::collections::HashMap<String, (u16, &'static str, String)>>>;

async fn receive(
    State((got, answers)): State<(Got, Answers)>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    h: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
    // The path without its leading `/`, with its query; a method other than POST in front.
    let mut name = uri.path_and_query().unwrap().as_str()[1..].to_string();
    if method != axum::http::Method::POST {
        name = format!("{method} {name}");
    }
    got.lock().unwrap().push((
        name.clone(),
        header("authorization"),
        header("content-type"),
        body.to_vec(),
    ));
    let (status, ct, text) = answers
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .unwrap_or((200, "text/plain", "ok".into()));
    (StatusCode::from_u16(status).unwrap(), [("content-type", ct)], text)
}

async fn receiver() -> (String, Got, Answers) {
    let (got, answers) = (Got::default(), Answers::default());
    let app = Router::new()
        .route("/{*path}", axum::routing::any(receive))
        .with_state((got.clone(), answers.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), got, answers)
}

fn integrations(yaml: &str) -> Vec<Integration> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(yaml, dir.path(), &Default::default()).unwrap();
    let r: &Receiver = &cfg.receivers["team-x"];
    let shared = Shared {
        templates: Arc::new(tocsin_template::Template::with_defaults()),
        ..Shared::default()
    };
    build_integrations(r, "Tocsin/test", &shared).unwrap()
}

fn alert(name: &str, instance: &str, resolved: bool) -> Alert {
    let labels: tocsin_core::labels::LabelSet = [
        ("alertname".to_string(), name.to_string()),
        ("instance".to_string(), instance.to_string()),
        ("team".to_string(), "x".to_string()),
    ]
    .into();
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [("summary".to_string(), format!("{instance} is down"))].into(),
        starts_at: "2026-12-07T10:00:00Z".parse().unwrap(),
        ends_at: if resolved {
            "2026-12-07T10:05:00Z".parse().unwrap()
        } else {
            ZERO
        },
        generator_url: "http://prom/graph".into(),
        ..Alert::default()
    }
}

fn data(alerts: Vec<Alert>) -> NotifyData {
    NotifyData {
        receiver: "team-x".into(),
        group_key: r#"{}:{alertname="Down"}"#.into(),
        group_labels: [("alertname".to_string(), "Down".to_string())].into(),
        reason: NotifyReason::FirstNotification,
        external_url: "http://am.example".into(),
        route_labels: Default::default(),
        alerts,
        receiver_data: Default::default(),
    }
}

fn body(got: &Got, i: usize) -> Value {
    serde_json::from_slice(&got.lock().unwrap()[i].3).unwrap()
}

#[tokio::test]
async fn slack_sends_alertmanagers_message_from_the_default_templates() {
    let (url, got, _) = receiver().await;
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  slack_configs:\n  - api_url: {url}/hook\n    channel: '#ops'\n"
    );
    let i = integrations(&yaml);
    assert_eq!((i[0].kind, i[0].send_resolved), ("slack", false));
    let firing = data(vec![alert("Down", "a:9100", false), alert("Down", "b:9100", false)]);
    i[0].notifier.notify(&firing).await.unwrap();
    let (path, auth, ct, _) = got.lock().unwrap()[0].clone();
    assert_eq!(
        (path.as_str(), auth, ct.as_deref()),
        ("hook", None, Some("application/json"))
    );
    assert_eq!(
        body(&got, 0),
        json!({
            "channel": "#ops",
            "username": "Alertmanager",
            "attachments": [{
                "title": "[FIRING:2] Down (x)",
                "title_link": "http://am.example/#/alerts?receiver=team-x",
                "text": "",
                "fallback": "[FIRING:2] Down (x) | http://am.example/#/alerts?receiver=team-x",
                "callback_id": "",
                "footer": "",
                "color": "danger",
                "mrkdwn_in": ["fallback", "pretext", "text"]
            }]
        })
    );
    // Alertmanager's key order (Go encodes struct fields in order) and trailing newline.
    let raw = String::from_utf8(got.lock().unwrap()[0].3.clone()).unwrap();
    assert!(
        raw.starts_with(r##"{"channel":"#ops","username":"Alertmanager","attachments":[{"title":"##),
        "{raw}"
    );
    assert!(raw.ends_with("]}\n"), "{raw}");
}

#[tokio::test]
async fn slack_renders_every_configured_field_and_an_app_token_goes_to_the_app_url() {
    let (url, got, answers) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "xoxb-1\n").unwrap();
    let yaml = format!(
        r#"global:
  slack_app_url: {url}/api
route: {{receiver: team-x}}
receivers:
- name: team-x
  slack_configs:
  - app_token_file: {token}
    send_resolved: true
    channel: '{{{{ .CommonLabels.team }}}}-alerts'
    message_text: '{{{{ len .Alerts.Firing }}}} firing'
    title: '{{{{ .GroupLabels.alertname }}}}'
    color: '#ff0000'
    link_names: true
    short_fields: true
    fields:
    - title: Instances
      value: '{{{{ range .Alerts }}}}{{{{ .Labels.instance }}}} {{{{ end }}}}'
    - title: Runbook
      value: http://runbook
      short: false
    actions:
    - type: button
      text: Silence
      url: '{{{{ .ExternalURL }}}}/#/silences/new'
    - type: button
      text: Ack
      name: ack
      value: '{{{{ .GroupLabels.alertname }}}}'
      confirm:
        text: Sure?
    mrkdwn_in: [text]
"#,
        token = token.display()
    );
    let i = integrations(&yaml);
    answers.lock().unwrap().insert(
        "api".into(),
        (
            200,
            "application/json; charset=utf-8",
            r#"{"ok":true,"ts":"1.2"}"#.into(),
        ),
    );
    i[0].notifier
        .notify(&data(vec![
            alert("Down", "a:9100", false),
            alert("Down", "b:9100", true),
        ]))
        .await
        .unwrap();
    let (path, auth, _, _) = got.lock().unwrap()[0].clone();
    assert_eq!((path.as_str(), auth.as_deref()), ("api", Some("Bearer xoxb-1")));
    assert_eq!(
        body(&got, 0),
        json!({
            "channel": "x-alerts",
            "username": "Alertmanager",
            "link_names": true,
            "text": "1 firing",
            "attachments": [{
                "title": "Down",
                "title_link": "http://am.example/#/alerts?receiver=team-x",
                "text": "",
                "fallback": "[FIRING:1] Down (x) | http://am.example/#/alerts?receiver=team-x",
                "callback_id": "",
                "fields": [
                    {"title": "Instances", "value": "a:9100 b:9100 ", "short": true},
                    {"title": "Runbook", "value": "http://runbook", "short": false}
                ],
                "actions": [
                    {"type": "button", "text": "Silence", "url": "http://am.example/#/silences/new"},
                    {"type": "button", "text": "Ack", "name": "ack", "value": "Down", "confirm": {"text": "Sure?"}}
                ],
                "footer": "",
                "color": "#ff0000",
                "mrkdwn_in": ["text"]
            }]
        })
    );
}

#[tokio::test]
async fn slack_judges_its_answer_as_alertmanager_does() {
    let (url, _, answers) = receiver().await;
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  slack_configs:\n  - api_url: {url}/hook\n    channel: '#ops'\n"
    );
    let i = integrations(&yaml);
    let d = data(vec![alert("Down", "a:9100", false)]);
    let answer = |status, ct, text: &str| {
        answers
            .lock()
            .unwrap()
            .insert("hook".into(), (status, ct, text.to_string()));
    };
    answer(200, "application/json", r#"{"ok":false,"error":"channel_not_found"}"#);
    let e = i[0].notifier.notify(&d).await.unwrap_err();
    assert_eq!(
        e.message,
        r##"channel "#ops": error response from Slack: channel_not_found"##
    );
    assert!(!e.retryable);
    answer(200, "text/html", "invalid_token");
    let e = i[0].notifier.notify(&d).await.unwrap_err();
    assert_eq!(
        e.message,
        r##"channel "#ops": received an error response from Slack: invalid_token"##
    );
    assert!(!e.retryable);
    answer(200, "application/json", "{not json");
    assert!(
        i[0].notifier.notify(&d).await.unwrap_err().retryable,
        "undecodable JSON is retried"
    );
    answer(503, "text/plain", "busy");
    let e = i[0].notifier.notify(&d).await.unwrap_err();
    assert_eq!(e.message, r##"channel "#ops": unexpected status code 503: busy"##);
    assert!(e.retryable);
    answer(429, "text/plain", "");
    assert!(
        !i[0].notifier.notify(&d).await.unwrap_err().retryable,
        "Slack has no retry codes"
    );
    answer(200, "text/plain", "ok");
    i[0].notifier.notify(&d).await.unwrap();
}

#[tokio::test]
async fn slack_update_message_posts_once_then_updates_and_posts_anew_when_the_message_is_gone() {
    let (url, got, answers) = receiver().await;
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  slack_configs:\n  - api_url: {url}/api/chat.postMessage\n    channel: '#ops'\n    update_message: true\n    http_config: {{authorization: {{credentials: xoxb-1}}}}\n"
    );
    let i = integrations(&yaml);
    let answer = |path: &str, text: &str| {
        answers
            .lock()
            .unwrap()
            .insert(path.into(), (200, "application/json; charset=utf-8", text.to_string()));
    };
    // The first notification of the group is posted; Slack's id for it is kept.
    answer(
        "api/chat.postMessage",
        r#"{"ok":true,"channel":"C024BE91L","ts":"1503435956.000247"}"#,
    );
    let mut d = data(vec![alert("Down", "a:9100", false)]);
    let kept = i[0].notifier.notify(&d).await.unwrap().expect("the message id is kept");
    let s = |v: &str| DataValue::Str(v.into());
    assert_eq!(
        kept,
        [
            ("channelId".to_string(), s("C024BE91L")),
            ("threadTs".to_string(), s("1503435956.000247"))
        ]
        .into()
    );
    assert_eq!(path_of(&got, 0).0, "api/chat.postMessage");
    assert!(body(&got, 0).get("ts").is_none());
    // The next one updates that message in place: same body, the kept channel and ts.
    d.receiver_data = kept.clone();
    d.alerts.push(alert("Down", "b:9100", false));
    answer(
        "api/chat.update",
        r#"{"ok":true,"channel":"C024BE91L","ts":"1503435956.000247"}"#,
    );
    assert_eq!(i[0].notifier.notify(&d).await.unwrap(), Some(kept.clone()));
    let (path, auth) = path_of(&got, 1);
    assert_eq!(
        (path.as_str(), auth.as_deref()),
        ("api/chat.update", Some("Bearer xoxb-1"))
    );
    let update = body(&got, 1);
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("C024BE91L"), Some("1503435956.000247"))
    );
    assert_eq!(update["attachments"][0]["title"], "[FIRING:2] Down (x)");
    let raw = String::from_utf8(got.lock().unwrap()[1].3.clone()).unwrap();
    assert!(
        raw.starts_with(r#"{"channel":"C024BE91L","ts":"1503435956.000247","username":"#),
        "Alertmanager's key order: {raw}"
    );
    // The message was deleted in Slack: the notification is posted anew, not lost.
    answer("api/chat.update", r#"{"ok":false,"error":"message_not_found"}"#);
    answer(
        "api/chat.postMessage",
        r#"{"ok":true,"channel":"C024BE91L","ts":"1503436000.000100"}"#,
    );
    let again = i[0].notifier.notify(&d).await.unwrap().unwrap();
    assert_eq!(again["threadTs"], s("1503436000.000100"));
    assert_eq!(path_of(&got, 2).0, "api/chat.update");
    assert_eq!(path_of(&got, 3).0, "api/chat.postMessage");
    assert_eq!(body(&got, 3)["channel"], "#ops");
    assert!(body(&got, 3).get("ts").is_none());
    // An id a peer got wrong (not Slack's shape) is not sent to Slack: the message is posted.
    d.receiver_data = [("channelId".to_string(), s("C1")), ("threadTs".to_string(), s("x\"}"))].into();
    i[0].notifier.notify(&d).await.unwrap();
    assert_eq!(path_of(&got, 4).0, "api/chat.postMessage");
    // A 5xx on the update is retried as an update, not turned into a second message.
    d.receiver_data = again;
    answers
        .lock()
        .unwrap()
        .insert("api/chat.update".into(), (503, "text/plain", "busy".into()));
    assert!(i[0].notifier.notify(&d).await.unwrap_err().retryable);
    assert_eq!(got.lock().unwrap().len(), 6, "no post after a retryable failure");
}

#[tokio::test]
async fn a_failing_slack_template_sends_the_default_text_instead_of_nothing() {
    let (url, got, _) = receiver().await;
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  slack_configs:\n  - api_url: {url}/hook\n    title: '{{{{ template \"nope\" . }}}}'\n"
    );
    let i = integrations(&yaml);
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let b = body(&got, 0);
    assert_eq!(b["attachments"][0]["title"], "[FIRING:1] Down (a:9100 x)");
}

#[tokio::test]
async fn pagerduty_v2_sends_alertmanagers_event_and_resolves_it() {
    let (url, got, answers) = receiver().await;
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  pagerduty_configs:\n  - routing_key: '{{{{ .CommonLabels.team }}}}-key'\n    url: {url}/enqueue\n"
    );
    let i = integrations(&yaml);
    assert_eq!((i[0].kind, i[0].send_resolved), ("pagerduty", true));
    answers.lock().unwrap().insert(
        "enqueue".into(),
        (202, "application/json", r#"{"status":"success"}"#.into()),
    );
    let a = alert("Down", "a:9100", false);
    i[0].notifier.notify(&data(vec![a.clone()])).await.unwrap();
    let b = body(&got, 0);
    // SHA-256 of the group key, hex (`printf '{}:{alertname="Down"}' | sha256sum`).
    let expected_dedup = "af94c9e8f6a3043625e36c6f472fe6be85ac23a9117184ee4cb7b4ad7401a47e";
    assert_eq!(
        b,
        json!({
            "routing_key": "x-key",
            "dedup_key": expected_dedup,
            "event_action": "trigger",
            "payload": {
                "summary": "[FIRING:1] Down (a:9100 x)",
                "source": "Alertmanager",
                "severity": "error",
                "custom_details": {
                    "firing": [{
                        "status": "firing",
                        "labels": {"alertname": "Down", "instance": "a:9100", "team": "x"},
                        "annotations": {"summary": "a:9100 is down"},
                        "startsAt": "2026-12-07T10:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prom/graph",
                        "fingerprint": a.fingerprint.to_string()
                    }],
                    "num_firing": 1,
                    "num_resolved": 0,
                    "resolved": []
                }
            },
            "client": "Alertmanager",
            "client_url": "http://am.example/#/alerts?receiver=team-x"
        })
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", true)]))
        .await
        .unwrap();
    let b = body(&got, 1);
    assert_eq!(b["event_action"], "resolve");
    assert_eq!(b["dedup_key"], expected_dedup);
    assert_eq!(b["payload"]["custom_details"]["num_resolved"], 1);
}

#[tokio::test]
async fn pagerduty_details_images_links_and_the_size_limit() {
    let (url, got, _) = receiver().await;
    let yaml = format!(
        r#"route: {{receiver: team-x}}
receivers:
- name: team-x
  pagerduty_configs:
  - routing_key: k
    url: {url}/enqueue
    severity: '{{{{ if eq .Status "firing" }}}}critical{{{{ end }}}}'
    class: disk
    component: '{{{{ .GroupLabels.alertname }}}}'
    group: prod
    images:
    - src: '{{{{ .ExternalURL }}}}/img.png'
      alt: graph
    - src: ''
    links:
    - href: http://runbook
      text: runbook
    - text: no href
    details:
      firing: overridden
      big: '{{{{ .CommonAnnotations.blob }}}}'
      yes_word: 'yes'
      hex: '0x1F'
      nested:
        team: '{{{{ .CommonLabels.team }}}}'
        list: ['{{{{ len .Alerts }}}}', 2]
"#
    );
    let i = integrations(&yaml);
    let mut a = alert("Down", "a:9100", false);
    a.annotations = [("blob".to_string(), "small".to_string())].into();
    i[0].notifier.notify(&data(vec![a.clone()])).await.unwrap();
    let b = body(&got, 0);
    assert_eq!(b["payload"]["severity"], "critical");
    assert_eq!(
        (
            &b["payload"]["class"],
            &b["payload"]["component"],
            &b["payload"]["group"]
        ),
        (&json!("disk"), &json!("Down"), &json!("prod"))
    );
    assert_eq!(
        b["images"],
        json!([{"src": "http://am.example/img.png", "alt": "graph", "href": ""}])
    );
    assert_eq!(b["links"], json!([{"href": "http://runbook", "text": "runbook"}]));
    let d = &b["payload"]["custom_details"];
    assert_eq!(d["firing"], "overridden", "a configured key replaces the default");
    assert_eq!(
        (&d["big"], &d["yes_word"], &d["hex"]),
        (&json!("small"), &json!(true), &json!(31))
    );
    assert_eq!(d["nested"], json!({"team": "x", "list": [1, 2]}));
    // Over 512,000 bytes encoded: the details are replaced, the event still goes out.
    a.annotations = [("blob".to_string(), "z".repeat(600_000))].into();
    i[0].notifier.notify(&data(vec![a])).await.unwrap();
    let raw = got.lock().unwrap()[1].3.clone();
    assert!(raw.len() < 10_000, "{}", raw.len());
    let b: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        b["payload"]["custom_details"],
        json!({"error": "Custom details have been removed because the original event exceeds the maximum size of 512KB"})
    );
}

#[test]
fn pagerduty_v1_sends_a_service_key_event_to_its_fixed_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("svc");
    std::fs::write(&key, "svc-{{ .CommonLabels.team }}\n").unwrap();
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  pagerduty_configs:\n  - service_key_file: {}\n    severity: critical\n",
        key.display()
    );
    let cfg = load(&yaml, dir.path(), &Default::default()).unwrap();
    let pd = &cfg.receivers["team-x"].pagerduties[0];
    assert!(pd.v1);
    let enc = tocsin_notify::pagerduty::Pagerduty(pd.clone());
    let fields = integration::compile(&enc, &tocsin_template::Template::with_defaults()).unwrap();
    let now = "2026-12-07T11:00:00Z".parse().unwrap();
    let encode = |d: NotifyData| integration::encode(&enc, &fields, &d, &enc.secrets().unwrap(), now);
    let (sent, errors) = encode(data(vec![alert("Down", "a:9100", false)])).unwrap();
    assert_eq!(sent[0].url, None, "the configured endpoint: v1's fixed URL");
    let raw = sent[0].body.clone();
    assert!(errors.is_empty());
    let raw = String::from_utf8(raw).unwrap();
    // Alertmanager's v1 struct writes an empty event_action and a null payload.
    assert!(
        raw.starts_with(r#"{"service_key":"svc-x","incident_key":"af94c9e8f6a3043625e36c6f472fe6be85ac23a9117184ee4cb7b4ad7401a47e","event_type":"trigger","description":"[FIRING:1] Down (a:9100 x)","event_action":"","payload":null,"client":"Alertmanager","client_url":"http://am.example/#/alerts?receiver=team-x","details":{"#),
        "{raw}"
    );
    assert!(!raw.contains("critical"), "v1 has no severity: {raw}");
    // Resolved: no client fields.
    let (sent, _) = encode(data(vec![alert("Down", "a:9100", true)])).unwrap();
    let b: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(b["event_type"], "resolve");
    assert!(b.get("client").is_none(), "{b}");
    // A key that renders empty is refused: an event with no key pages no one.
    std::fs::write(dir.path().join("svc"), "{{ .CommonLabels.nope }}").unwrap();
    let e = encode(data(vec![alert("Down", "a:9100", false)])).err().unwrap();
    assert_eq!(e, "service key cannot be empty");
}

#[tokio::test]
async fn pagerduty_judges_answers_with_its_retry_codes() {
    use tocsin_notify::pagerduty::judge;
    use tocsin_notify::sender::Reply;
    let reply = |status, body: &str| Reply {
        status,
        content_type: Some("application/json".into()),
        body: body.as_bytes().to_vec(),
        ..Reply::default()
    };
    assert!(judge(&reply(202, ""), false).is_ok());
    let e = judge(&reply(429, ""), false).unwrap_err();
    assert!(e.retryable, "v2 retries 429");
    assert_eq!(e.message, "unexpected status code 429");
    assert!(!judge(&reply(429, ""), true).unwrap_err().retryable, "v1 does not");
    assert!(judge(&reply(403, ""), true).unwrap_err().retryable, "v1 retries 403");
    assert!(!judge(&reply(403, ""), false).unwrap_err().retryable);
    let e = judge(
        &reply(400, r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#),
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "unexpected status code 400: Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters)"
    );
    assert!(!e.retryable);
    assert!(judge(&reply(502, "<html>"), false).unwrap_err().retryable);
}

fn single(url: &str, integration: &str) -> Vec<Integration> {
    integrations(
        &format!("route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  {integration}\n").replace("URL", url),
    )
}

fn path_of(got: &Got, i: usize) -> (String, Option<String>) {
    let g = got.lock().unwrap();
    (g[i].0.clone(), g[i].1.clone())
}

#[tokio::test]
async fn discord_posts_one_embed_colored_by_status() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        "discord_configs: [{webhook_url: 'URL/discord', username: tocsin, avatar_url: 'http://img/a.png'}]",
    );
    assert_eq!((i[0].kind, i[0].send_resolved), ("discord", true));
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    assert_eq!(
        body(&got, 0),
        json!({
            "content": "",
            "embeds": [{
                "title": "[FIRING:1] Down (a:9100 x)",
                // discord.default.message, as Alertmanager's renders it (blank lines included).
                "description": "\n\nAlerts Firing:\nLabels:\n - alertname = Down\n - instance = a:9100\n - team = x\nAnnotations:\n - summary = a:9100 is down\nSource: http://prom/graph\n\n\n\n",
                "color": 10038562
            }],
            "username": "tocsin",
            "avatar_url": "http://img/a.png"
        })
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", true)]))
        .await
        .unwrap();
    assert_eq!(body(&got, 1)["embeds"][0]["color"], 3066993);
    // A title over 256 characters is cut, its last one an ellipsis.
    let i = single(
        &url,
        "discord_configs: [{webhook_url: 'URL/discord', title: '{{ range $i := 300 }}x{{ end }}'}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let title = body(&got, 2)["embeds"][0]["title"].as_str().unwrap().to_string();
    assert_eq!(title.chars().count(), 256);
    assert!(title.ends_with("x…"));
}

#[tokio::test]
async fn teams_cards_legacy_and_workflows() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        "msteams_configs: [{webhook_url: 'URL/v1'}]\n  msteamsv2_configs: [{webhook_url: 'URL/v2', title: 'T {{ .Status }}', text: 'body'}]",
    );
    assert_eq!((i[0].kind, i[1].kind), ("msteams", "msteamsv2"));
    let d = data(vec![alert("Down", "a:9100", false)]);
    i[0].notifier.notify(&d).await.unwrap();
    let b = body(&got, 0);
    assert_eq!(
        (&b["@context"], &b["type"], &b["title"], &b["summary"], &b["themeColor"]),
        (
            &json!("http://schema.org/extensions"),
            &json!("MessageCard"),
            &json!("[FIRING:1] Down (a:9100 x)"),
            &json!("[FIRING:1] Down (a:9100 x)"),
            &json!("8C1A1A")
        )
    );
    assert!(b["text"].as_str().unwrap().starts_with("\n\n# Alerts Firing:\n"), "{b}");
    i[1].notifier.notify(&d).await.unwrap();
    assert_eq!(
        body(&got, 1),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": [
                        {"type": "TextBlock", "text": "T firing", "weight": "Bolder", "size": "Medium", "wrap": true, "style": "heading", "color": "Attention"},
                        {"type": "TextBlock", "text": "body", "wrap": true}
                    ],
                    "msteams": {"width": "full"}
                }
            }]
        })
    );
}

#[tokio::test]
async fn webex_posts_markdown_to_the_room_with_the_bot_token() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        "webex_configs: [{api_url: 'URL/messages', room_id: '{{ .CommonLabels.team }}-room', http_config: {authorization: {credentials: bot}}}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    assert_eq!(path_of(&got, 0), ("messages".into(), Some("Bearer bot".into())));
    let b = body(&got, 0);
    assert_eq!(b["roomId"], "x-room");
    assert!(b["markdown"].as_str().unwrap().contains("Alerts Firing:"), "{b}");
    let e = load(
        "route: {receiver: r}\nreceivers:\n- name: r\n  webex_configs: [{room_id: x}]\n",
        std::path::Path::new("."),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(e.0, "missing webex_configs.http_config.authorization");
}

#[tokio::test]
async fn telegram_sends_to_the_bot_api_and_reads_its_answer() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        "telegram_configs: [{api_url: 'URL', bot_token: 'T0K', chat_id: -1001, message_thread_id: 7, message: '<b>{{ .CommonLabels.team }}</b> {{ .CommonAnnotations.summary }}'}]",
    );
    answers.lock().unwrap().insert(
        "botT0K/sendMessage".into(),
        (200, "application/json", r#"{"ok":true,"result":{}}"#.into()),
    );
    let mut a = alert("Down", "a:9100", false);
    a.annotations = [("summary".to_string(), "5 < 6 & more".to_string())].into();
    i[0].notifier.notify(&data(vec![a.clone()])).await.unwrap();
    assert_eq!(path_of(&got, 0).0, "botT0K/sendMessage");
    // Every value a string; HTML mode escapes what the template prints, not the template.
    assert_eq!(
        body(&got, 0),
        json!({
            "chat_id": "-1001",
            "disable_web_page_preview": "true",
            "message_thread_id": "7",
            "parse_mode": "HTML",
            "text": "<b>x</b> 5 &lt; 6 &amp; more"
        })
    );
    answers.lock().unwrap().insert(
        "botT0K/sendMessage".into(),
        (
            400,
            "application/json",
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#.into(),
        ),
    );
    let e = i[0].notifier.notify(&data(vec![a])).await.unwrap_err();
    assert_eq!(e.message, "telegram: Bad Request: chat not found (400)");
    assert!(e.retryable, "Alertmanager retries every Telegram failure");
}

#[tokio::test]
async fn opsgenie_creates_updates_and_closes_by_alias() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        r#"opsgenie_configs:
  - api_key: '{{ .CommonLabels.team }}-key'
    api_url: 'URL/'
    update_alerts: true
    details: {team: overridden, runbook: 'http://rb/{{ .GroupLabels.alertname }}'}
    responders:
    - {name: 'ops,db', type: teams}
    - {username: 'alice', type: user}
    - {name: '{{ "" }}', type: '{{ "" }}'}
    tags: ' a, b,,c '
    priority: P2"#,
    );
    answers.lock().unwrap().insert(
        "v2/alerts".into(),
        (
            202,
            "application/json",
            r#"{"result":"Request will be processed"}"#.into(),
        ),
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let alias = "af94c9e8f6a3043625e36c6f472fe6be85ac23a9117184ee4cb7b4ad7401a47e";
    let paths: Vec<(String, Option<String>)> = (0..3).map(|k| path_of(&got, k)).collect();
    assert_eq!(
        paths,
        [
            ("v2/alerts".to_string(), Some("GenieKey x-key".to_string())),
            (
                format!("PUT v2/alerts/{alias}/message?identifierType=alias"),
                Some("GenieKey x-key".to_string())
            ),
            (
                format!("PUT v2/alerts/{alias}/description?identifierType=alias"),
                Some("GenieKey x-key".to_string())
            ),
        ]
    );
    let b = body(&got, 0);
    assert_eq!(b["alias"], alias);
    assert_eq!(b["message"], "[FIRING:1] Down (a:9100 x)");
    assert_eq!(
        b["details"],
        json!({"alertname": "Down", "instance": "a:9100", "team": "overridden", "runbook": "http://rb/Down"})
    );
    assert_eq!(
        b["responders"],
        json!([{"name": "ops", "type": "team"}, {"name": "db", "type": "team"}, {"username": "alice", "type": "user"}])
    );
    assert_eq!(b["tags"], json!(["a", " b", "c"]));
    assert_eq!(b["priority"], "P2");
    assert_eq!(b["source"], "http://am.example/#/alerts?receiver=team-x");
    assert_eq!(body(&got, 1), json!({"message": "[FIRING:1] Down (a:9100 x)"}));
    // Resolved: one close request.
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", true)]))
        .await
        .unwrap();
    assert_eq!(
        path_of(&got, 3).0,
        format!("v2/alerts/{alias}/close?identifierType=alias")
    );
    assert_eq!(
        body(&got, 3),
        json!({"source": "http://am.example/#/alerts?receiver=team-x"})
    );
    // 429 is retried; a 422 is final.
    answers
        .lock()
        .unwrap()
        .insert("v2/alerts".into(), (429, "text/plain", "slow".into()));
    let e = i[0]
        .notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap_err();
    assert!(e.retryable);
    answers
        .lock()
        .unwrap()
        .insert("v2/alerts".into(), (422, "text/plain", "bad".into()));
    let e = i[0]
        .notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.retryable, e.message.as_str()),
        (false, "unexpected status code 422: bad")
    );
}

#[tokio::test]
async fn victorops_posts_to_key_and_routing_key_and_recovers() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        "victorops_configs: [{api_key: K3Y, api_url: 'URL/alert', routing_key: '{{ .CommonLabels.team }}-team', message_type: WARNING, custom_fields: {runbook: 'http://rb/{{ .GroupLabels.alertname }}'}}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    assert_eq!(path_of(&got, 0).0, "alert/K3Y/x-team");
    let b = body(&got, 0);
    assert_eq!(b["message_type"], "WARNING");
    assert_eq!(
        b["entity_id"],
        "af94c9e8f6a3043625e36c6f472fe6be85ac23a9117184ee4cb7b4ad7401a47e"
    );
    assert_eq!(b["entity_display_name"], "[FIRING:1] Down (a:9100 x)");
    assert_eq!(b["monitoring_tool"], "Alertmanager");
    assert_eq!(b["runbook"], "http://rb/Down");
    // Keys sorted, as Go writes a map.
    let raw = String::from_utf8(got.lock().unwrap()[0].3.clone()).unwrap();
    assert!(raw.starts_with(r#"{"entity_display_name":"#), "{raw}");
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", true)]))
        .await
        .unwrap();
    assert_eq!(body(&got, 1)["message_type"], "RECOVERY");
    let e = load(
        "route: {receiver: r}\nreceivers:\n- name: r\n  victorops_configs: [{api_key: k, routing_key: r, custom_fields: {entity_id: x}}]\n",
        std::path::Path::new("."),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.0,
        "victorOps config contains custom field entity_id which cannot be used as it conflicts with the fixed/static fields"
    );
}

#[test]
fn pushover_puts_every_parameter_in_the_query_string() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user");
    std::fs::write(&user, "u5er\n").unwrap();
    let yaml = format!(
        "route: {{receiver: team-x}}\nreceivers:\n- name: team-x\n  pushover_configs:\n  - token: t0k\n    user_key_file: {}\n    html: true\n    sound: siren\n    ttl: 1h\n",
        user.display()
    );
    let cfg = load(&yaml, dir.path(), &Default::default()).unwrap();
    let enc = tocsin_notify::oncall::Pushover(cfg.receivers["team-x"].pushovers[0].clone());
    let fields = integration::compile(&enc, &tocsin_template::Template::with_defaults()).unwrap();
    let mut a = alert("Down", "a:9100", false);
    a.annotations = [("summary".to_string(), "5 < 6".to_string())].into();
    let (sent, errors) = integration::encode(
        &enc,
        &fields,
        &data(vec![a]),
        &enc.secrets().unwrap(),
        "2026-12-07T11:00:00Z".parse().unwrap(),
    )
    .unwrap();
    assert!(errors.is_empty());
    assert_eq!((sent[0].content_type, sent[0].body.len()), ("text/plain", 0));
    let url = reqwest::Url::parse(sent[0].url.as_deref().unwrap()).unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some("https://api.pushover.net/1/messages.json")
    );
    let q: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "device",
            "expire",
            "html",
            "message",
            "priority",
            "retry",
            "sound",
            "title",
            "token",
            "ttl",
            "url",
            "url_title",
            "user"
        ],
        "sorted, as Go encodes url.Values"
    );
    let get = |k: &str| q.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(
        get("user"),
        "u5er\n",
        "key files are not trimmed, as Alertmanager reads them"
    );
    assert_eq!(
        (get("priority"), get("retry"), get("expire"), get("ttl")),
        ("2".into(), "60".into(), "3600".into(), "3600".into())
    );
    assert!(
        get("message").contains("5 &lt; 6"),
        "the HTML message escapes values: {}",
        get("message")
    );
    assert_eq!(get("title"), "[FIRING:1] Down (a:9100 x)");
}

#[tokio::test]
async fn mattermost_builds_its_attachment_from_the_top_level_fields() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        "mattermost_configs: [{webhook_url: 'URL/mm', channel: ops, fields: [{title: Team, value: '{{ .CommonLabels.team }}', short: true}], priority: {priority: URGENT, requested_ack: true, persistent_notifications: true}}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let b = body(&got, 0);
    assert!(b.get("text").is_none(), "the text goes in the attachment: {b}");
    assert_eq!(b["channel"], "ops");
    assert_eq!(b["username"], "Alertmanager");
    let a = &b["attachments"][0];
    assert_eq!(a["title"], "[FIRING:1] Down (a:9100 x)");
    assert_eq!(a["color"], "danger");
    assert_eq!(a["fields"], json!([{"short": true, "title": "Team", "value": "x"}]));
    assert!(a["text"].as_str().unwrap().contains("# Alerts Firing:"), "{a}");
    assert_eq!(
        b["priority"],
        json!({"priority": "urgent", "requested_ack": true, "persistent_notifications": true})
    );
    // With attachments of its own: the text goes top-level, the top-level fields are not used.
    let i = single(
        &url,
        "mattermost_configs: [{webhook_url: 'URL/mm', attachments: [{title: mine}], priority: {priority: loud, requested_ack: true}}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let b = body(&got, 1);
    assert!(b["text"].as_str().unwrap().contains("# Alerts Firing:"));
    assert_eq!(b["attachments"], json!([{"title": "mine"}]));
    assert_eq!(
        b["priority"],
        json!({"priority": "standard"}),
        "an unknown priority is standard, without the ack"
    );
}

#[tokio::test]
async fn rocketchat_sends_its_tokens_and_reads_success() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        "rocketchat_configs: [{api_url: 'URL/', token: t0k, token_id: u1d, channel: '#ops', actions: [{text: Ack, url: 'http://ack'}]}]",
    );
    assert!(!i[0].send_resolved);
    answers.lock().unwrap().insert(
        "api/v1/chat.postMessage".into(),
        (200, "application/json", r#"{"success":true}"#.into()),
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    assert_eq!(path_of(&got, 0).0, "api/v1/chat.postMessage");
    let b = body(&got, 0);
    assert_eq!(b["channel"], "#ops");
    let a = &b["attachments"][0];
    assert_eq!(
        (&a["title"], &a["color"]),
        (&json!("[FIRING:1] Down (a:9100 x)"), &json!("red"))
    );
    assert_eq!(
        a["actions"],
        json!([{"type": "button", "text": "Ack", "url": "http://ack", "is_webview": false, "msg_in_chat_window": false}])
    );
    answers.lock().unwrap().insert(
        "api/v1/chat.postMessage".into(),
        (
            200,
            "application/json",
            r#"{"success":false,"error":"error-not-allowed"}"#.into(),
        ),
    );
    let e = i[0]
        .notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        r##"channel "#ops": error response from Rocketchat: error-not-allowed"##
    );
    assert!(!e.retryable);
}

#[tokio::test]
async fn incidentio_sends_the_webhook_body_as_version_1_with_the_token() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        "incidentio_configs: [{url: 'URL/alert-source', alert_source_token: s3cret, max_alerts: 1}]",
    );
    let d = data(vec![alert("Down", "a:9100", false), alert("Down", "b:9100", false)]);
    i[0].notifier.notify(&d).await.unwrap();
    assert_eq!(path_of(&got, 0), ("alert-source".into(), Some("Bearer s3cret".into())));
    let b = body(&got, 0);
    assert_eq!((&b["version"], &b["truncatedAlerts"]), (&json!("1"), &json!(1)));
    assert_eq!(b["groupKey"], r#"{}:{alertname="Down"}"#);
    assert_eq!(b["alerts"].as_array().unwrap().len(), 1);
    answers.lock().unwrap().insert(
        "alert-source".into(),
        (
            422,
            "application/json",
            r#"{"message":"invalid","errors":["a","b"]}"#.into(),
        ),
    );
    let e = i[0].notifier.notify(&d).await.unwrap_err();
    assert_eq!(e.message, "unexpected status code 422: invalid: a, b");
}

#[tokio::test]
async fn sns_publishes_a_signed_query_api_request() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        "sns_configs: [{api_url: 'URL/sns', sigv4: {region: eu-west-1, access_key: AKID, secret_key: SECRET}, topic_arn: 'arn:aws:sns:eu-west-1:1:alerts.fifo', attributes: {team: '{{ .CommonLabels.team }}'}}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let (path, auth, ct, raw) = got.lock().unwrap()[0].clone();
    assert_eq!(
        (path.as_str(), ct.as_deref()),
        ("sns", Some("application/x-www-form-urlencoded"))
    );
    let auth = auth.unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"), "{auth}");
    assert!(
        auth.contains("/eu-west-1/sns/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="),
        "{auth}"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("Action").as_deref(), Some("Publish"));
    assert_eq!(get("TopicArn").as_deref(), Some("arn:aws:sns:eu-west-1:1:alerts.fifo"));
    assert_eq!(get("Subject").as_deref(), Some("[FIRING:1] Down (a:9100 x)"));
    assert!(get("Message").unwrap().contains("Alerts Firing:"));
    assert_eq!(get("MessageAttributes.entry.1.Name").as_deref(), Some("team"));
    assert_eq!(get("MessageAttributes.entry.1.Value.StringValue").as_deref(), Some("x"));
    let hash = "af94c9e8f6a3043625e36c6f472fe6be85ac23a9117184ee4cb7b4ad7401a47e";
    assert_eq!(
        get("MessageGroupId").as_deref(),
        Some(hash),
        "a FIFO topic's ids are the group's hash"
    );
    assert_eq!(get("MessageDeduplicationId").as_deref(), Some(hash));
    // A profile or an STS role needs the AWS SDK's credential chain: refused, never ignored.
    let e = load(
        "route: {receiver: r}\nreceivers:\n- name: r\n  sns_configs: [{topic_arn: t, sigv4: {region: r, role_arn: 'arn:aws:iam::1:role/x'}}]\n",
        std::path::Path::new("."),
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.0.contains("sigv4.role_arn is not supported by Tocsin yet"), "{}", e.0);
}

#[tokio::test]
async fn wechat_fetches_a_token_keeps_it_and_drops_it_when_expired() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        "wechat_configs: [{api_url: 'URL/cgi-bin/', corp_id: corp, api_secret: '{{ .CommonLabels.team }}-sec', to_user: alice, message: 'hi {{ .GroupLabels.alertname }}'}]",
    );
    assert!(!i[0].send_resolved);
    let token_path = "GET cgi-bin/gettoken?corpid=corp&corpsecret=x-sec";
    let send_path = "cgi-bin/message/send?access_token=TOK";
    let answer = |path: &str, body: &str| {
        answers
            .lock()
            .unwrap()
            .insert(path.to_string(), (200, "application/json", body.to_string()));
    };
    answer(token_path, r#"{"errcode":0,"access_token":"TOK","expires_in":7200}"#);
    answer(send_path, r#"{"errcode":0,"errmsg":"ok"}"#);
    let d = data(vec![alert("Down", "a:9100", false)]);
    i[0].notifier.notify(&d).await.unwrap();
    i[0].notifier.notify(&d).await.unwrap();
    let paths: Vec<String> = got.lock().unwrap().iter().map(|g| g.0.clone()).collect();
    assert_eq!(paths, [token_path, send_path, send_path], "the token is kept");
    assert_eq!(
        body(&got, 1),
        json!({"text": {"content": "hi Down"}, "touser": "alice", "safe": "0", "msgtype": "text", "markdown": {"content": ""}})
    );
    // An expired token: retried, and the next attempt fetches a new one.
    answer(send_path, r#"{"errcode":42001,"errmsg":"access_token expired"}"#);
    let e = i[0].notifier.notify(&d).await.unwrap_err();
    assert_eq!((e.retryable, e.message.as_str()), (true, "access_token expired"));
    answer(send_path, r#"{"errcode":0,"errmsg":"ok"}"#);
    i[0].notifier.notify(&d).await.unwrap();
    let n = got.lock().unwrap().iter().filter(|g| g.0 == token_path).count();
    assert_eq!(n, 2);
    // Any other error code is final.
    answer(
        send_path,
        r#"{"errcode":60020,"errmsg":"not allow to access from your ip"}"#,
    );
    assert!(!i[0].notifier.notify(&d).await.unwrap_err().retryable);
}

#[tokio::test]
async fn a_webhook_payload_and_url_are_templates() {
    let (url, got, _) = receiver().await;
    let i = single(
        &url,
        r#"webhook_configs:
  - url: 'URL/hooks/{{ .CommonLabels.team }}'
    max_alerts: 1
    payload:
      '{{ .GroupLabels.alertname }}_count': '{{ len .Alerts }}'
      summary: '{{ .CommonAnnotations.summary }}'
      alerts: '{{ .Alerts | toJson }}'
      fixed: 3
      flag: 'true'
      empty: ''
      nested: {receiver: '{{ .Receiver }}', list: ['{{ .Status }}', 2]}"#,
    );
    i[0].notifier
        .notify(&data(vec![
            alert("Down", "a:9100", false),
            alert("Down", "b:9100", false),
        ]))
        .await
        .unwrap();
    assert_eq!(path_of(&got, 0).0, "hooks/x");
    let b = body(&got, 0);
    assert_eq!(
        b["Down_count"], 1,
        "max_alerts applies before rendering; the count reads as a number"
    );
    assert_eq!(b["summary"], "a:9100 is down");
    assert_eq!(
        b["alerts"][0]["labels"]["instance"], "a:9100",
        "toJson's output is inserted as JSON"
    );
    assert_eq!(
        (&b["fixed"], &b["flag"], &b["empty"]),
        (&json!(3), &json!(true), &Value::Null)
    );
    assert_eq!(b["nested"], json!({"receiver": "team-x", "list": ["firing", 2]}));
    // A payload template that fails: the standard body goes out instead of none.
    let i = single(
        &url,
        "webhook_configs: [{url: 'URL/hooks/std', payload: {a: '{{ template \"nope\" . }}'}}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let b = body(&got, 1);
    assert_eq!((&b["version"], &b["receiver"]), (&json!("4"), &json!("team-x")));
    // A URL that renders empty is an error, not a request.
    let i = single(&url, "webhook_configs: [{url: '{{ .CommonLabels.nope }}'}]");
    let e = i[0]
        .notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.retryable, e.message.as_str()),
        (false, "the webhook URL rendered empty")
    );
}

#[tokio::test]
async fn jira_creates_updates_and_transitions_the_groups_issue() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        "jira_configs: [{api_url: 'URL/rest/api/2', project: OPS, issue_type: Bug, labels: ['{{ .CommonLabels.team }}', alertmanager], resolve_transition: Done, reopen_transition: Reopen, reopen_duration: 1h, fields: {customfield_10001: '{{ len .Alerts }}', components: [{name: '{{ .CommonLabels.team }}'}]}}]",
    );
    let answer = |path: &str, status: u16, body: &str| {
        answers
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, "application/json", body.to_string()));
    };
    let hash = "af94c9e8f6a3043625e36c6f472fe6be85ac23a9117184ee4cb7b4ad7401a47e";
    // Firing, no issue yet: search, then create.
    answer("rest/api/2/search", 200, r#"{"issues":[]}"#);
    answer("rest/api/2/issue", 201, r#"{"key":"OPS-1"}"#);
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let names = |from: usize| -> Vec<String> { got.lock().unwrap()[from..].iter().map(|g| g.0.clone()).collect() };
    assert_eq!(names(0), ["rest/api/2/search", "rest/api/2/issue"]);
    assert_eq!(
        body(&got, 0),
        json!({
            "fields": ["status"],
            "jql": format!("(resolutiondate is EMPTY OR resolutiondate >= -60m) and project=\"OPS\" and labels=\"ALERT{{{hash}}}\" order by status ASC,resolutiondate DESC"),
            "maxResults": 2
        })
    );
    let created = body(&got, 1);
    assert_eq!(
        created["fields"]["labels"],
        json!([format!("ALERT{{{hash}}}"), "alertmanager", "x"])
    );
    assert_eq!(created["fields"]["summary"], "[FIRING:1] Down (a:9100 x)");
    assert_eq!(created["fields"]["project"], json!({"key": "OPS"}));
    assert_eq!(created["fields"]["issuetype"], json!({"name": "Bug"}));
    assert_eq!(created["fields"]["customfield_10001"], 1);
    assert_eq!(created["fields"]["components"], json!([{"name": "x"}]));
    assert!(
        created["fields"]["description"]
            .as_str()
            .unwrap()
            .contains("# Alerts Firing:")
    );
    assert!(created["fields"].get("priority").is_none(), "no severity: no priority");
    // Resolved with the issue open: search (open issues only), update, resolve transition.
    answer(
        "rest/api/2/search",
        200,
        r#"{"issues":[{"key":"OPS-1","fields":{"status":{"name":"Open","statusCategory":{"key":"new"}}}}]}"#,
    );
    answer("PUT rest/api/2/issue/OPS-1", 204, "");
    answer(
        "GET rest/api/2/issue/OPS-1/transitions",
        200,
        r#"{"transitions":[{"id":"11","name":"Start"},{"id":"31","name":"Done"}]}"#,
    );
    answer("rest/api/2/issue/OPS-1/transitions", 204, "");
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", true)]))
        .await
        .unwrap();
    assert_eq!(
        names(2),
        [
            "rest/api/2/search",
            "PUT rest/api/2/issue/OPS-1",
            "GET rest/api/2/issue/OPS-1/transitions",
            "rest/api/2/issue/OPS-1/transitions"
        ]
    );
    assert!(
        body(&got, 2)["jql"]
            .as_str()
            .unwrap()
            .starts_with("statusCategory != Done and ")
    );
    assert_eq!(body(&got, 3)["fields"]["summary"], "[RESOLVED] Down (a:9100 x)");
    assert_eq!(body(&got, 5), json!({"transition": {"id": "31"}}));
    // Resolved and no issue: nothing is created.
    answer("rest/api/2/search", 200, r#"{"issues":[]}"#);
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", true)]))
        .await
        .unwrap();
    assert_eq!(names(6), ["rest/api/2/search"]);
    // A transition that does not exist is an error naming it.
    answer(
        "rest/api/2/search",
        200,
        r#"{"issues":[{"key":"OPS-1","fields":{"status":{"statusCategory":{"key":"done"}}}}]}"#,
    );
    let e = i[0]
        .notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap_err();
    assert_eq!(e.message, "can't find transition Reopen for issue OPS-1");
    // 429 is retried.
    answer("rest/api/2/search", 429, "slow down");
    assert!(
        i[0].notifier
            .notify(&data(vec![alert("Down", "a:9100", false)]))
            .await
            .unwrap_err()
            .retryable
    );
}

#[tokio::test]
async fn jira_cloud_searches_with_the_v3_endpoint_and_v3_descriptions_are_json() {
    let (url, got, answers) = receiver().await;
    answers.lock().unwrap().insert(
        "rest/api/3/search/jql".into(),
        (200, "application/json", r#"{"issues":[]}"#.into()),
    );
    let i = single(
        &url,
        "jira_configs: [{api_url: 'URL/rest/api/2/', api_type: cloud, project: OPS, issue_type: Bug}]",
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let names: Vec<String> = got.lock().unwrap().iter().map(|g| g.0.clone()).collect();
    assert_eq!(names, ["rest/api/3/search/jql", "rest/api/2/issue"]);
    // API v3 takes a document: the default (Markdown) description is refused, as Alertmanager does.
    let i = single(
        &url,
        "jira_configs: [{api_url: 'URL/rest/api/3', project: OPS, issue_type: Bug}]",
    );
    answers.lock().unwrap().insert(
        "rest/api/3/search".into(),
        (200, "application/json", r#"{"issues":[]}"#.into()),
    );
    let e = i[0]
        .notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap_err();
    assert_eq!(e.message, "description template: invalid JSON for API v3");
}

/// For each integration reachable at a local URL: its resolved notification, and its
/// judgement of a 503 (retried) and a 400 (final).
#[tokio::test]
async fn every_integration_sends_resolves_retries_5xx_and_stops_on_4xx() {
    let (url, got, answers) = receiver().await;
    // (integration config, the path it posts to, a success answer, what says "resolved")
    type Check = fn(&str, &Value) -> bool;
    type Answer = (u16, &'static str, &'static str);
    type Case = (&'static str, &'static str, Answer, Check);
    let cases: Vec<Case> = vec![
        (
            "slack_configs: [{api_url: 'URL/slack', send_resolved: true}]",
            "slack",
            (200, "text/plain", "ok"),
            |_, b| b["attachments"][0]["color"] == "good",
        ),
        (
            "pagerduty_configs: [{routing_key: k, url: 'URL/pd'}]",
            "pd",
            (202, "application/json", "{}"),
            |_, b| b["event_action"] == "resolve",
        ),
        (
            "opsgenie_configs: [{api_key: k, api_url: 'URL/og/'}]",
            "og/v2/alerts",
            (202, "application/json", "{}"),
            |p, _| p.ends_with("/close?identifierType=alias"),
        ),
        (
            "victorops_configs: [{api_key: k, routing_key: r, api_url: 'URL/vo/'}]",
            "vo/k/r",
            (200, "application/json", "{}"),
            |_, b| b["message_type"] == "RECOVERY",
        ),
        (
            "discord_configs: [{webhook_url: 'URL/discord'}]",
            "discord",
            (204, "text/plain", ""),
            |_, b| b["embeds"][0]["color"] == 3066993,
        ),
        (
            "msteams_configs: [{webhook_url: 'URL/teams'}]",
            "teams",
            (200, "text/plain", "1"),
            |_, b| b["themeColor"] == "2DC72D",
        ),
        (
            "msteamsv2_configs: [{webhook_url: 'URL/teams2'}]",
            "teams2",
            (202, "text/plain", ""),
            |_, b| b["attachments"][0]["content"]["body"][0]["color"] == "Good",
        ),
        (
            "webex_configs: [{api_url: 'URL/webex', room_id: r, http_config: {authorization: {credentials: t}}}]",
            "webex",
            (200, "application/json", "{}"),
            |_, b| b["markdown"].as_str().unwrap_or("").contains("Alerts Resolved:"),
        ),
        (
            "mattermost_configs: [{webhook_url: 'URL/mm'}]",
            "mm",
            (200, "text/plain", "ok"),
            |_, b| b["attachments"][0]["color"] == "good",
        ),
        (
            "rocketchat_configs: [{api_url: 'URL/', token: t, token_id: i, send_resolved: true}]",
            "api/v1/chat.postMessage",
            (200, "application/json", r#"{"success":true}"#),
            |_, b| b["attachments"][0]["color"] == "green",
        ),
        (
            "incidentio_configs: [{url: 'URL/inc', alert_source_token: t}]",
            "inc",
            (202, "application/json", "{}"),
            |_, b| b["status"] == "resolved",
        ),
    ];
    for (config, path, ok, resolved) in cases {
        let i = single(&url, config);
        let kind = i[0].kind;
        let set = |status: u16, ct: &'static str, body: &str| {
            answers
                .lock()
                .unwrap()
                .insert(path.to_string(), (status, ct, body.to_string()));
        };
        set(ok.0, ok.1, ok.2);
        let from = got.lock().unwrap().len();
        i[0].notifier
            .notify(&data(vec![alert("Down", "a:9100", true)]))
            .await
            .unwrap();
        let (p, _, _, raw) = got.lock().unwrap()[from..].last().cloned().unwrap();
        let b: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        assert!(resolved(&p, &b), "{kind}: not a resolve: {p} {b}");
        // Opsgenie closes at another path; the judgement is the same there.
        let path_now = if kind == "opsgenie" {
            p.clone()
        } else {
            path.to_string()
        };
        for (status, retryable) in [(503, true), (400, false)] {
            answers
                .lock()
                .unwrap()
                .insert(path_now.clone(), (status, "text/plain", "no".to_string()));
            let e = i[0]
                .notifier
                .notify(&data(vec![alert("Down", "a:9100", true)]))
                .await
                .unwrap_err();
            assert_eq!(e.retryable, retryable, "{kind} on {status}: {}", e.message);
        }
    }
}

/// Where Alertmanager cuts a field, Tocsin cuts it the same way.
#[tokio::test]
async fn fields_are_cut_where_alertmanager_cuts_them() {
    let (url, got, answers) = receiver().await;
    let long = |n: usize| format!("{{{{ range $i := {n} }}}}x{{{{ end }}}}");
    let last = || -> Value { serde_json::from_slice(&got.lock().unwrap().last().unwrap().3).unwrap() };
    let count = |v: &Value| v.as_str().unwrap().chars().count();
    let firing = || data(vec![alert("Down", "a:9100", false)]);

    let i = single(
        &url,
        &format!("slack_configs: [{{api_url: 'URL/s', title: '{}'}}]", long(2000)),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    assert_eq!(count(&last()["attachments"][0]["title"]), 1024);

    answers
        .lock()
        .unwrap()
        .insert("og/v2/alerts".into(), (202, "application/json", "{}".into()));
    let i = single(
        &url,
        &format!(
            "opsgenie_configs: [{{api_key: k, api_url: 'URL/og/', message: '{}'}}]",
            long(500)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    let m = last()["message"].as_str().unwrap().to_string();
    assert_eq!((m.chars().count(), m.ends_with('…')), (130, true));

    let i = single(
        &url,
        &format!(
            "victorops_configs: [{{api_key: k, routing_key: r, api_url: 'URL/vo/', state_message: '{}'}}]",
            long(30000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    assert_eq!(count(&last()["state_message"]), 20480);

    let i = single(
        &url,
        &format!(
            "pagerduty_configs: [{{routing_key: k, url: 'URL/pd', description: '{}'}}]",
            long(3000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    assert_eq!(count(&last()["payload"]["summary"]), 1024);

    answers.lock().unwrap().insert(
        "botT/sendMessage".into(),
        (200, "application/json", r#"{"ok":true}"#.into()),
    );
    let i = single(
        &url,
        &format!(
            "telegram_configs: [{{api_url: 'URL', bot_token: T, chat_id: 1, parse_mode: '', message: '{}'}}]",
            long(5000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    assert_eq!(count(&last()["text"]), 4096);
    // In HTML mode a message too long to cut safely is replaced by Alertmanager's notice.
    let i = single(
        &url,
        &format!(
            "telegram_configs: [{{api_url: 'URL', bot_token: T, chat_id: 1, message: '{}'}}]",
            long(5000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    assert!(
        last()["text"]
            .as_str()
            .unwrap()
            .starts_with("Alertmanager notification could not be sent")
    );

    let i = single(
        &url,
        &format!(
            "discord_configs: [{{webhook_url: 'URL/d', content: '{}', message: '{}'}}]",
            long(3000),
            long(5000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    let b = last();
    assert_eq!(
        (count(&b["content"]), count(&b["embeds"][0]["description"])),
        (2000, 4096)
    );

    let i = single(
        &url,
        &format!(
            "webex_configs: [{{api_url: 'URL/w', room_id: r, http_config: {{authorization: {{credentials: t}}}}, message: '{}'}}]",
            "{{ range $i := 4000 }}é{{ end }}"
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    let md = last()["markdown"].as_str().unwrap().to_string();
    assert!(md.len() <= 7439 && md.ends_with('…'), "{}", md.len());

    let i = single(
        &url,
        &format!(
            "mattermost_configs: [{{webhook_url: 'URL/m', text: '{}', attachments: [{{title: t}}]}}]",
            long(20000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    assert_eq!(count(&last()["text"]), 16383);

    // SNS: an SMS is cut at 1,600 bytes and says so in an attribute.
    let i = single(
        &url,
        &format!(
            "sns_configs: [{{api_url: 'URL/sns', sigv4: {{region: r, access_key: a, secret_key: s}}, phone_number: '+15550100', message: '{}'}}]",
            long(2000)
        ),
    );
    i[0].notifier.notify(&firing()).await.unwrap();
    let raw = got.lock().unwrap().last().unwrap().3.clone();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("Message").unwrap().len(), 1600);
    assert_eq!(get("MessageAttributes.entry.1.Name").as_deref(), Some("truncated"));
    assert_eq!(
        get("MessageAttributes.entry.1.Value.StringValue").as_deref(),
        Some("true")
    );
}

#[tokio::test]
async fn jira_updates_leave_out_what_enable_update_keeps_out() {
    let (url, got, answers) = receiver().await;
    let i = single(
        &url,
        "jira_configs: [{api_url: 'URL/rest/api/2', project: OPS, issue_type: Bug, summary: {template: 'S {{ .Status }}', enable_update: false}}]",
    );
    answers.lock().unwrap().insert(
        "rest/api/2/search".into(),
        (
            200,
            "application/json",
            r#"{"issues":[{"key":"OPS-7","fields":{"status":{"statusCategory":{"key":"new"}}}}]}"#.into(),
        ),
    );
    answers
        .lock()
        .unwrap()
        .insert("PUT rest/api/2/issue/OPS-7".into(), (204, "text/plain", String::new()));
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    let put = body(&got, 1);
    assert!(put["fields"].get("summary").is_none(), "{put}");
    assert!(
        put["fields"]["description"]
            .as_str()
            .unwrap()
            .contains("# Alerts Firing:")
    );
    // A new issue gets the summary.
    answers.lock().unwrap().insert(
        "rest/api/2/search".into(),
        (200, "application/json", r#"{"issues":[]}"#.into()),
    );
    i[0].notifier
        .notify(&data(vec![alert("Down", "a:9100", false)]))
        .await
        .unwrap();
    assert_eq!(body(&got, 3)["fields"]["summary"], "S firing");
}
