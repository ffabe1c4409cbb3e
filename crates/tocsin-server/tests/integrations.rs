//! Slack, PagerDuty, Opsgenie, Discord, Webex, Telegram, VictorOps and WeChat, Tocsin beside
//! Alertmanager 0.25 (Debian's `prometheus-alertmanager`):
//! the same configuration and the same alert posted to both, and what each receiver gets
//! compared field by field (skipped with a reason when Alertmanager is not installed; failing
//! under CI=true).

#[path = "../../tocsin-notify/tests/support/skip.rs"]
mod skip;

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// The receivers' paths, after `tocsin-` or `am-`.
const PATHS: [&str; 8] = ["slack", "pd", "og", "discord", "webex", "tg", "vo", "wx"];

type Got = Arc<Mutex<HashMap<String, Vec<Value>>>>;

async fn receive(State(got): State<Got>, uri: axum::http::Uri, body: Bytes) -> impl IntoResponse {
    // `/tocsin-tg/botT0K/sendMessage` is recorded as `tocsin-tg`.
    let name = uri.path()[1..].split('/').next().unwrap().to_string();
    let v: Value = serde_json::from_slice(&body).unwrap();
    got.lock().unwrap().entry(name.clone()).or_default().push(v);
    if name.ends_with("-pd") {
        (
            StatusCode::ACCEPTED,
            r#"{"status":"success","message":"Event processed"}"#,
        )
    } else if name.ends_with("-wx") {
        (StatusCode::OK, r#"{"errcode":0,"errmsg":"ok"}"#)
    } else if name.ends_with("-tg") {
        (
            StatusCode::OK,
            r#"{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1001,"type":"group"}}}"#,
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(sink: &str, who: &str) -> String {
    format!(
        r#"route:
  receiver: team-x
  group_by: [alertname]
  group_wait: 2s
  group_interval: 2s
receivers:
- name: team-x
  slack_configs:
  - api_url: {sink}/{who}-slack
    channel: '#ops'
    send_resolved: true
    short_fields: true
    fields:
    - title: Instances
      value: '{{{{ range .Alerts }}}}{{{{ .Labels.instance }}}} {{{{ end }}}}'
    actions:
    - type: button
      text: Runbook
      url: 'http://runbook/{{{{ .GroupLabels.alertname }}}}'
  pagerduty_configs:
  - routing_key: '0123456789abcdef0123456789abcdef'
    url: {sink}/{who}-pd
    severity: '{{{{ .CommonLabels.severity }}}}'
    class: disk
    links:
    - href: 'http://runbook/{{{{ .GroupLabels.alertname }}}}'
      text: runbook
  opsgenie_configs:
  - api_key: genie
    api_url: {sink}/{who}-og/
    details: {{runbook: 'http://runbook/{{{{ .GroupLabels.alertname }}}}'}}
    responders: [{{name: ops, type: team}}]
    tags: 'disk,storage'
    priority: P1
  discord_configs:
  - webhook_url: {sink}/{who}-discord
  webex_configs:
  - api_url: {sink}/{who}-webex
    room_id: room-1
    http_config:
      authorization: {{credentials: bot}}
  telegram_configs:
  - api_url: {sink}/{who}-tg
    bot_token: T0K
    chat_id: -1001
  wechat_configs:
  - api_url: {sink}/{who}-wx/
    send_resolved: true
    corp_id: corp
    api_secret: sec
    to_user: alice
  victorops_configs:
  - api_key: K3Y
    api_url: {sink}/{who}-vo/
    routing_key: '{{{{ .CommonLabels.team }}}}'
    custom_fields: {{runbook: 'http://runbook/{{{{ .GroupLabels.alertname }}}}'}}
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_send_what_alertmanager_sends() {
    if !std::path::Path::new(ALERTMANAGER).exists() {
        skip::skip("Alertmanager 0.25 not found (Debian package prometheus-alertmanager; .ci/run installs it)");
        return;
    }
    let got = Got::default();
    let app = Router::new()
        .route(
            "/{*path}",
            post(receive).get(|| async { r#"{"errcode":0,"access_token":"TOK","expires_in":7200}"# }),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    // Both under the external URL the harness gives Tocsin.
    let tocsin = common::start_in(dir.path(), &config(&sink, "tocsin"), &[]);
    let am_dir = tempfile::tempdir().unwrap();
    std::fs::write(am_dir.path().join("am.yml"), config(&sink, "am")).unwrap();
    let port = free_port();
    let _am = Killed(
        Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", am_dir.path().join("am.yml").display()))
            .arg(format!("--storage.path={}", am_dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--web.external-url=http://tocsin.example:9093/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    common::wait_for_async("Alertmanager to serve", async || {
        c.get(format!("{am}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    // Recent: an alert that started more than group_wait ago is flushed at once, and
    // Alertmanager may then flush the batch's first alert alone.
    let starts = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap()
        .to_string();
    let starts = starts.as_str();
    let alert = |instance: &str, ends: Option<&str>| {
        let mut a = json!({
            "labels": {"alertname": "DiskFull", "instance": instance, "severity": "critical", "team": "storage"},
            "annotations": {"summary": format!("disk on {instance} is > 95% <full> & rising")},
            "startsAt": starts,
            "generatorURL": "http://prometheus/graph?g0.expr=disk"
        });
        if let Some(e) = ends {
            a["endsAt"] = json!(e);
        }
        a
    };
    let post_both = async |batch: Value| {
        for base in [tocsin.base.as_str(), am.as_str()] {
            let r = common::post_alerts(&c, base, &batch).await;
            assert!(r.status().is_success(), "{base}: {}", r.status());
        }
    };
    // Both wait for the same number of requests on each path.
    let wait = |n: usize| {
        let got = got.clone();
        async move {
            let seen = || {
                let g = got.lock().unwrap();
                let counts: Vec<String> = g.iter().map(|(k, v)| format!("{k}={}", v.len())).collect();
                counts.join(" ")
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while !{
                let g = got.lock().unwrap();
                PATHS
                    .iter()
                    .flat_map(|p| [format!("tocsin-{p}"), format!("am-{p}")])
                    .all(|p| g.get(&p).is_some_and(|v| v.len() >= n))
            } {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{n} notification(s) on every path; got {}",
                    seen()
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    post_both(json!([alert("db-1", None), alert("db-2", None)])).await;
    wait(1).await;
    let now = jiff::Timestamp::now().to_string();
    post_both(json!([alert("db-1", Some(&now)), alert("db-2", Some(&now))])).await;
    wait(2).await;

    let g = got.lock().unwrap();
    for k in 0..2 {
        // Slack: the whole message.
        assert_eq!(g["tocsin-slack"][k], g["am-slack"][k], "Slack message {k}");
        // PagerDuty: everything but the custom details, whose defaults Alertmanager 0.30 changed
        // from text lists to JSON (`toJson`): Tocsin sends 0.30's.
        let strip = |v: &Value| {
            let mut v = v.clone();
            v["payload"].as_object_mut().unwrap().remove("custom_details");
            v
        };
        assert_eq!(strip(&g["tocsin-pd"][k]), strip(&g["am-pd"][k]), "PagerDuty event {k}");
        for p in ["discord", "webex", "tg", "vo", "wx"] {
            assert_eq!(
                g[&format!("tocsin-{p}")][k],
                g[&format!("am-{p}")][k],
                "{p} message {k}"
            );
        }
    }
    assert_eq!(g["tocsin-pd"][1]["event_action"], "resolve");
    let details = &g["tocsin-pd"][0]["payload"]["custom_details"];
    assert_eq!(details["num_firing"], 2);
    assert_eq!(details["firing"][1]["labels"]["instance"], "db-2");
    assert_eq!(g["tocsin-slack"][1]["attachments"][0]["color"], "good");
    // Opsgenie: the alert created, then closed (a body of its source only).
    assert_eq!(g["tocsin-og"][0], g["am-og"][0], "Opsgenie alert");
    assert_eq!(g["tocsin-og"][1], g["am-og"][1], "Opsgenie close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_labels_reach_the_payload_and_the_groups_api() {
    let (sink, url) = common::start_sink().await;
    let config = format!(
        r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  labels:
    team: '{{{{ .CommonLabels.team }}}}'
    tier: one
  routes:
  - matchers: ['severity="page"']
    labels:
      tier: two
      count: '{{{{ len .Alerts }}}}'
      broken: '{{{{ index .Alerts 99 }}}}'
      both: '{{{{ routeLabels "team" }}}}-{{{{ routeLabels "tier" }}}}'
receivers:
- name: hook
  webhook_configs:
  - url: {url}/hook
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let t = common::start_in(dir.path(), &config, &[]);
    let c = reqwest::Client::new();
    let r = common::post_alerts(
        &c,
        &t.base,
        &json!([{"labels": {"alertname": "Down", "severity": "page", "team": "db"}}]),
    )
    .await;
    assert!(r.status().is_success());
    let body = common::wait_for("the webhook", || sink.got.lock().unwrap().first().map(|g| g.2.clone())).await;
    // The child's labels over the root's; a label whose template fails is left out.
    assert_eq!(
        body["routeLabels"],
        json!({"both": "db-two", "count": "1", "team": "db", "tier": "two"})
    );
    let groups: Value = common::get_json(&c, format!("{}/api/v2/alerts/groups", t.base)).await;
    assert_eq!(
        groups[0]["routeLabels"],
        json!({"both": "db-two", "count": "1", "team": "db", "tier": "two"})
    );
    // A bad label name is refused at load with Alertmanager's message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("--config.check")
        .arg(format!("--config.file={}", {
            let p = dir.path().join("bad.yml");
            std::fs::write(&p, "route: {receiver: r, labels: {'': x}}\nreceivers: [{name: r}]\n").unwrap();
            p.display().to_string()
        }))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("invalid label name \"\" in route labels"), "{text}");
}

/// (API method, body) of each call to the Slack stand-in.
type SlackCalls = Arc<Mutex<Vec<(String, Value)>>>;

/// A Slack Web API stand-in: each `chat.postMessage` gets a new message timestamp; each
/// `chat.update` answers with the timestamp it was given. Records (method, body).
async fn slack_api(State(got): State<SlackCalls>, uri: axum::http::Uri, body: Bytes) -> impl IntoResponse {
    let v: Value = serde_json::from_slice(&body).unwrap();
    let method = uri.path().rsplit('/').next().unwrap().to_string();
    let mut got = got.lock().unwrap();
    let ts = match v["ts"].as_str() {
        Some(ts) if method == "chat.update" => ts.to_string(),
        _ => format!("1700000000.{:06}", got.len() + 1),
    };
    got.push((method, v));
    (
        [("content-type", "application/json; charset=utf-8")],
        json!({"ok": true, "channel": "C024BE91L", "ts": ts}).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_update_message_edits_the_groups_message_even_after_a_restart() {
    let got = SlackCalls::default();
    let app = Router::new()
        .route("/api/{method}", post(slack_api))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = format!(
        r#"route:
  receiver: chat
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
receivers:
- name: chat
  slack_configs:
  - api_url: http://{addr}/api/chat.postMessage
    channel: '#ops'
    update_message: true
    send_resolved: true
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let post_alerts = async |t: &common::Tocsin, instances: &[&str]| {
        let alerts: Vec<Value> = instances
            .iter()
            .map(|i| json!({"labels": {"alertname": "Down", "instance": i}}))
            .collect();
        assert!(
            common::post_alerts(&c, &t.base, &json!(alerts))
                .await
                .status()
                .is_success()
        );
    };
    let nth =
        async |n: usize| common::wait_for(&format!("Slack call {n}"), || got.lock().unwrap().get(n - 1).cloned()).await;
    let mut t = common::start_in(dir.path(), &config, &[]);
    post_alerts(&t, &["a"]).await;
    let (method, first) = nth(1).await;
    assert_eq!(
        (method.as_str(), first["channel"].as_str()),
        ("chat.postMessage", Some("#ops"))
    );
    assert!(first.get("ts").is_none());
    // A second alert in the group: the same message is edited.
    post_alerts(&t, &["a", "b"]).await;
    let (method, second) = nth(2).await;
    assert_eq!(method, "chat.update");
    assert_eq!(
        (second["channel"].as_str(), second["ts"].as_str()),
        (Some("C024BE91L"), Some("1700000000.000001"))
    );
    assert_eq!(second["attachments"][0]["title"], "[FIRING:2] Down ");
    // The message id is in the notification log, which a restart reads back from disk.
    assert!(t.terminate().success());
    let t = common::start_in(dir.path(), &config, &[]);
    post_alerts(&t, &["a", "b", "c"]).await;
    let (method, third) = nth(3).await;
    assert_eq!(
        (method.as_str(), third["ts"].as_str()),
        ("chat.update", Some("1700000000.000001"))
    );
    assert_eq!(third["attachments"][0]["title"], "[FIRING:3] Down ");
    assert_eq!(got.lock().unwrap().len(), 3);
}
