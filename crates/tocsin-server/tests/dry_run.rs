//! `POST /api/tocsin/v1/dry-run` against the binary: the route, group and mutes it reports, the
//! requests it renders (the same bytes the receiver then gets), the log's verdict, a candidate
//! configuration, and its errors.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

fn config(sink: &str) -> String {
    format!(
        r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  routes:
  - matchers: ['team="db"']
    receiver: db
    group_by: [alertname, team]
receivers:
- name: hook
  webhook_configs:
  - url: {sink}/hook
- name: db
  webhook_configs:
  - url: {sink}/db
  email_configs:
  - to: db@example.org
    from: tocsin@example.org
    smarthost: 127.0.0.1:1
    require_tls: false
  pagerduty_configs:
  - routing_key: rk-0123456789
    url: {sink}/pd
"#
    )
}

async fn dry_run(c: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    c.post(format!("{base}/api/tocsin/v1/dry-run"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn ok(c: &reqwest::Client, base: &str, body: &Value) -> Value {
    let r = dry_run(c, base, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn request<'a>(route: &'a Value, integration: &str) -> &'a Value {
    route["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["integration"] == integration)
        .unwrap_or_else(|| panic!("no {integration} in {route:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_the_route_the_mutes_and_the_bytes_that_are_then_sent() {
    let (sink, url) = common::start_sink().await;
    let t = common::start_tocsin(&config(&url), &[]);
    let c = reqwest::Client::new();
    let alert = json!({"labels": {"alertname": "Down", "team": "db"},
        "annotations": {"summary": "db is down"}, "startsAt": "2026-12-07T10:00:00Z"});
    let d = ok(&c, &t.base, &alert).await;
    assert_eq!(d["config"], "active");
    let route = &d["routes"][0];
    assert_eq!(d["routes"].as_array().unwrap().len(), 1);
    assert_eq!(route["receiver"], "db");
    assert_eq!(route["path"][1]["matchers"], r#"{team="db"}"#);
    assert_eq!(route["groupKey"], r#"{}/{team="db"}:{alertname="Down", team="db"}"#);
    assert_eq!(route["group"]["exists"], false);
    assert_eq!(route["muted"], false);
    let hook = request(route, "webhook[0]");
    assert_eq!(
        (hook["wouldNotify"].as_bool(), hook["why"].as_str()),
        (Some(true), Some("first notification"))
    );
    let rendered = hook["requests"][0]["body"].as_str().unwrap().to_string();
    assert_eq!(hook["requests"][0]["url"], format!("{url}/<secret>"));
    let email = request(route, "email[0]");
    let msg = email["requests"][0]["body"].as_str().unwrap();
    assert!(msg.contains("Subject: [FIRING:1] Down db \r\n"), "{msg}");
    assert!(msg.contains("To: db@example.org"), "{msg}");
    let pd = request(route, "pagerduty[0]");
    let pd_body: Value = serde_json::from_str(pd["requests"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(pd_body["routing_key"], "<secret>", "a secret is never shown");
    assert_eq!(pd_body["payload"]["summary"], "[FIRING:1] Down db ");
    assert!(sink.raw.lock().unwrap().is_empty(), "a dry run sends nothing");
    // The same alert posted: the receiver gets the bytes the dry run showed.
    common::post_alerts(&c, &t.base, &json!([alert])).await;
    let got = common::wait_for("the webhook", || {
        sink.got
            .lock()
            .unwrap()
            .iter()
            .position(|(p, _, _)| p == "db")
            .map(|i| sink.raw.lock().unwrap()[i].clone())
    })
    .await;
    assert_eq!(got, rendered);
    common::wait_for("pagerduty", || {
        sink.got.lock().unwrap().iter().any(|(p, _, _)| p == "pd").then_some(())
    })
    .await;
    // Now the log says it was sent, and the group holds it.
    let again = ok(&c, &t.base, &alert).await;
    let route = &again["routes"][0];
    assert_eq!(route["group"]["alerts"].as_array().unwrap().len(), 1);
    let hook = request(route, "webhook[0]");
    assert_eq!(hook["wouldNotify"], false);
    assert!(
        hook["why"]
            .as_str()
            .unwrap()
            .starts_with("the notification log shows this state notified at"),
        "{hook}"
    );
    // A silence mutes it, by id.
    let now = jiff::Timestamp::now();
    let id = common::create_silence(
        &c,
        &t.base,
        &json!({"matchers": [{"name": "team", "value": "db", "isRegex": false}],
            "startsAt": now.to_string(),
            "endsAt": now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap().to_string(),
            "createdBy": "ops", "comment": "migration"}),
    )
    .await;
    let muted = ok(&c, &t.base, &alert).await;
    let route = &muted["routes"][0];
    assert_eq!(
        (route["muted"].as_bool(), route["silencedBy"][0]["id"].as_str()),
        (Some(true), Some(id.as_str()))
    );
    assert_eq!(request(route, "webhook[0]")["why"], "every alert of the group is muted");
    // A candidate configuration: who would be paged after this reload?
    let candidate = config(&url).replace("receiver: db\n", "receiver: hook\n");
    let mut body = alert.clone();
    body["config"] = json!(candidate);
    let c2 = ok(&c, &t.base, &body).await;
    assert_eq!(
        (c2["config"].as_str(), c2["routes"][0]["receiver"].as_str()),
        (Some("candidate"), Some("hook"))
    );
    // ... and one that mutes the route with a time interval: which intervals apply now.
    let candidate = config(&url).replace(
        "    receiver: db\n",
        "    receiver: db\n    mute_time_intervals: [always]\n    active_time_intervals: [never]\n",
    ) + "time_intervals:\n- name: always\n  time_intervals: [{weekdays: ['sunday:saturday']}]\n- name: never\n  time_intervals: [{months: ['february'], days_of_month: ['30']}]\n";
    body["config"] = json!(candidate);
    let c3 = ok(&c, &t.base, &body).await;
    let route = &c3["routes"][0];
    // Outside its only active interval, the route is muted by that first.
    assert_eq!(route["mutedByTime"], json!(["never"]));
    assert_eq!(
        route["timeIntervals"],
        json!([{"name": "always", "kind": "mute", "inEffect": true}, {"name": "never", "kind": "active", "inEffect": false}])
    );
    assert_eq!(request(route, "webhook[0]")["why"], "every alert of the group is muted");
    // Errors say what is wrong.
    for (body, msg) in [
        (json!({"labels": {"alertname": "x"}, "config": "route: {}"}), "config: "),
        (
            json!({"annotations": {}}),
            "invalid dry-run request: missing field `labels`",
        ),
        (json!({"labels": {}}), "at least one label pair required"),
    ] {
        let r = dry_run(&c, &t.base, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let text: String = r.json().await.unwrap();
        assert!(text.contains(msg), "{body}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_test_sends_through_each_integration_and_reports_each_outcome() {
    let (sink, url) = common::start_sink().await;
    let t = common::start_tocsin(&config(&url), &[]);
    let c = reqwest::Client::new();
    let test = async |name: &str| {
        let r = c
            .post(format!("{}/api/tocsin/v1/receivers/{name}/test", t.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let (status, hook) = test("hook").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (hook["ok"].as_bool(), hook["integrations"][0]["integration"].as_str()),
        (Some(true), Some("webhook[0]"))
    );
    let got = common::wait_for("the test notification", || sink.got.lock().unwrap().first().cloned()).await;
    assert_eq!(got.0, "hook");
    assert_eq!(got.2["alerts"][0]["labels"]["alertname"], "TestAlert");
    assert_eq!(got.2["alerts"][0]["annotations"]["summary"], "Notification test");
    // One integration failing does not hide the others' outcomes.
    let (_, db) = test("db").await;
    assert_eq!(db["ok"], false);
    let outcome: Vec<(String, bool)> = db["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["integration"].as_str().unwrap().to_string(),
                i["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            ("webhook[0]".to_string(), true),
            ("email[0]".to_string(), false),
            ("pagerduty[0]".to_string(), true)
        ],
        "Alertmanager's order of integrations"
    );
    let email_error = db["integrations"][1]["error"].as_str().unwrap();
    assert!(email_error.contains("127.0.0.1:1"), "{email_error}");
    // The outcomes are in the event history.
    common::wait_for_async("the failed test's event", async || {
        let events: Value = common::get_json(
            &c,
            format!("{}/api/tocsin/v1/events?receiver=db&type=notification_failed", t.base),
        )
        .await;
        let failed = events["events"].as_array().unwrap();
        failed.len() == 1 && failed[0]["reason"].as_str().unwrap().starts_with("receiver test: ")
    })
    .await;
    let (status, missing) = test("nobody").await;
    assert_eq!(
        (status, missing.as_str()),
        (StatusCode::NOT_FOUND, Some("receiver \"nobody\" not found"))
    );
}

/// Runs `tocsin <args>` (a command talking to a replica); (exit success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_asks_a_replica_what_it_did_and_would_do() {
    let (sink, url) = common::start_sink().await;
    let t = common::start_tocsin(&config(&url), &["--cluster.peer-name=replica-a"]);
    let c = reqwest::Client::new();
    let at = format!("--alertmanager.url={}", t.base);
    let (ok, out, err) = cli(&["dry-run", &at, "alertname=Down", "team=db", "--annotation=summary=down"]);
    assert!(ok, "{err}");
    assert!(out.contains("receiver  db"), "{out}");
    assert!(
        out.contains(r#"group     {}/{team="db"}:{alertname="Down", team="db"} (new)"#),
        "{out}"
    );
    assert!(out.contains("webhook[0]  would notify: first notification"), "{out}");
    // A candidate configuration from a file.
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("next.yml");
    std::fs::write(&candidate, config(&url).replace("receiver: db\n", "receiver: hook\n")).unwrap();
    let (_, out, _) = cli(&[
        "dry-run",
        &at,
        "alertname=Down",
        "team=db",
        "--config.file",
        candidate.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routes"][0]["receiver"], "hook");
    // What happened, and a group's history.
    common::post_alerts(&c, &t.base, &json!([{"labels": {"alertname": "Down", "team": "db"}}])).await;
    common::wait_for("the notification", || sink.got.lock().unwrap().first().cloned()).await;
    common::wait_for_async("the notification events", async || {
        let out = cli(&["events", &at, "--type=notification"]).1;
        out.contains("replica-a  notification") && out.contains("pagerduty[0]") && out.contains("webhook[0]")
    })
    .await;
    let (ok, out, _) = cli(&["history", &at, r#"{}/{team="db"}:{alertname="Down", team="db"}"#]);
    assert!(ok);
    // Webhook and PagerDuty delivered; the email (to a closed port) is still being retried.
    assert_eq!(
        out.lines().filter(|l| l.contains("  notification  ")).count(),
        2,
        "{out}"
    );
    assert!(out.contains("integration=webhook[0]"), "{out}");
    // A receiver test's outcome is the exit code.
    let (ok, out, _) = cli(&["test-receiver", &at, "hook"]);
    assert!(ok, "{out}");
    assert_eq!(out, "webhook[0]  ok\n");
    let (ok, out, _) = cli(&["test-receiver", &at, "db"]);
    assert!(!ok);
    assert!(out.contains("email[0]  failed: "), "{out}");
    // Errors name what is wrong.
    let (ok, _, err) = cli(&["events", &at, "--type=nope"]);
    assert!(!ok);
    assert!(
        err.contains("400 Bad Request: type: unknown event type \"nope\""),
        "{err}"
    );
    let (ok, _, err) = cli(&["dry-run", &at, "novalue"]);
    assert!(!ok && err.contains("\"novalue\": expected name=value"), "{err}");
}

/// A receiver whose integration never answers: never delivers, never fails.
struct Hangs;

impl tocsin_notify::Notifier for Hangs {
    fn notify<'a>(
        &'a self,
        _: &'a tocsin_notify::NotifyData,
    ) -> tocsin_notify::BoxFuture<'a, Result<tocsin_notify::Kept, tocsin_notify::NotifyError>> {
        Box::pin(std::future::pending())
    }
}

/// A receiver that takes every notification at once.
struct Takes;

impl tocsin_notify::Notifier for Takes {
    fn notify<'a>(
        &'a self,
        _: &'a tocsin_notify::NotifyData,
    ) -> tocsin_notify::BoxFuture<'a, Result<tocsin_notify::Kept, tocsin_notify::NotifyError>> {
        Box::pin(async { Ok(None) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_receiver_test_answers_within_ten_seconds_however_many_integrations_hang() {
    use std::sync::Arc;
    use tower::ServiceExt;
    let config = tocsin_core::config::load(
        "route: {receiver: r}\nreceivers:\n- name: r\n  webhook_configs: [{url: 'http://127.0.0.1:1/a'}, {url: 'http://127.0.0.1:1/b'}, {url: 'http://127.0.0.1:1/c'}]\n",
        std::path::Path::new("."),
        &Default::default(),
    )
    .unwrap();
    let factory: tocsin_server::app::NotifierFactory = Arc::new(|_, _| {
        let integration = |idx, notifier: Arc<dyn tocsin_notify::Notifier>| tocsin_notify::Integration {
            kind: "webhook",
            idx,
            send_resolved: true,
            timeout: None,
            notifier,
            in_flight: Arc::new(tokio::sync::Semaphore::new(tocsin_notify::MAX_IN_FLIGHT)),
        };
        Ok(vec![
            integration(0, Arc::new(Hangs)),
            integration(1, Arc::new(Hangs)),
            integration(2, Arc::new(Takes)),
        ])
    });
    let app = tocsin_server::app::App::new(
        tocsin_server::app::Settings::new("unused.yml"),
        config,
        factory,
        tocsin_server::clock::Clock::system(),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let resp = tocsin_server::api::router(app, "/")
        .oneshot(
            axum::http::Request::post("/api/tocsin/v1/receivers/r/test")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    // Two hanging integrations cost one bound, not two: they are tried at once.
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(10));
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["ok"], false, "{body:#}");
    let results = body["integrations"].as_array().unwrap();
    for (i, r) in results.iter().enumerate().take(2) {
        assert_eq!(r["integration"], format!("webhook[{i}]"));
        assert_eq!(r["error"], "no answer within 10s", "{body:#}");
        assert_eq!(r["durationSeconds"], 10.0);
    }
    assert_eq!(results[2]["ok"], true, "{body:#}");
    assert_eq!(results[2]["durationSeconds"], 0.0);
}
