//! The event history against the binary: what a replica records for alerts, notifications,
//! silences and mutes, the query API's filters, paging and errors, and that events survive a
//! restart.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

const CONFIG: &str = r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
receivers:
- name: hook
  webhook_configs:
  - url: SINK/hook
"#;

async fn events(c: &reqwest::Client, base: &str, query: &str) -> Value {
    common::get_json(c, format!("{base}/api/tocsin/v1/events?{query}")).await
}

fn types(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_says_what_was_sent_what_was_muted_and_survives_a_restart() {
    let (sink, url) = common::start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("SINK", &url);
    let mut t = common::start_in(dir.path(), &config, &["--cluster.peer-name=tocsin-a"]);
    let c = reqwest::Client::new();
    let r = common::post_alerts(&c, &t.base, &json!([{"labels": {"alertname": "Down", "team": "db"}}])).await;
    assert!(r.status().is_success());
    common::wait_for("the webhook", || sink.got.lock().unwrap().first().cloned()).await;
    // A silence, then an alert it mutes.
    let id = common::create_silence(
        &c,
        &t.base,
        &json!({"matchers": [{"name": "alertname", "value": "Quiet", "isRegex": false}],
                "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                "createdBy": "ops", "comment": "maintenance"}),
    )
    .await;
    common::post_alerts(&c, &t.base, &json!([{"labels": {"alertname": "Quiet"}}])).await;
    common::wait_for_async("the mute", async || {
        types(&events(&c, &t.base, "type=silence_muted_alert").await).len() == 1
    })
    .await;
    let all = events(&c, &t.base, "").await;
    assert_eq!(
        types(&all),
        [
            "silence_muted_alert",
            "alert_grouped",
            "alert_created",
            "silence_created",
            "notification",
            "alert_grouped",
            "alert_created",
            "alertmanager_startup_event"
        ],
        "{all:#}"
    );
    let ids: Vec<u64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let sent = &all["events"][4];
    assert_eq!(sent["replica"], "tocsin-a");
    assert_eq!(sent["receiver"], "hook");
    assert_eq!(sent["integration"], "webhook[0]");
    assert_eq!(sent["groupKey"], r#"{}:{alertname="Down"}"#);
    assert_eq!(sent["reason"], "first notification");
    assert_eq!(sent["alerts"][0]["status"], "firing");
    let fp = sent["alerts"][0]["fingerprint"].as_str().unwrap().to_string();
    let webhook = sink.got.lock().unwrap()[0].2.clone();
    assert_eq!(
        webhook["alerts"][0]["fingerprint"],
        fp.as_str(),
        "the fingerprint the receiver got"
    );
    // The alert entered its group: key, receiver, group labels.
    let grouped = &all["events"][5];
    assert_eq!(grouped["groupKey"], r#"{}:{alertname="Down"}"#);
    assert_eq!(grouped["receiver"], "hook");
    assert_eq!(grouped["labels"], json!({"alertname": "Down"}));
    assert_eq!(grouped["alerts"][0]["fingerprint"], fp.as_str());
    let muted = &all["events"][0];
    assert_eq!(
        (muted["silenceId"].as_str(), muted["labels"]["alertname"].as_str()),
        (Some(id.as_str()), Some("Quiet"))
    );
    assert!(
        all["events"][3]["reason"]
            .as_str()
            .unwrap()
            .contains("by ops: maintenance")
    );
    // Filters: by alert, by matcher, by group (its history), and pages.
    let by_fp = events(&c, &t.base, &format!("fingerprint={fp}")).await;
    assert_eq!(types(&by_fp), ["notification", "alert_grouped", "alert_created"]);
    let by_label = events(&c, &t.base, "filter=team%3D%22db%22&type=alert_created").await;
    assert_eq!(types(&by_label), ["alert_created"]);
    let key = "%7B%7D%3A%7Balertname%3D%22Down%22%7D";
    let history: Value = common::get_json(&c, format!("{}/api/tocsin/v1/groups/{key}/history", t.base)).await;
    assert_eq!(types(&history), ["notification"]);
    let first = events(&c, &t.base, "limit=2").await;
    assert_eq!(first["next"], ids[1]);
    let second = events(&c, &t.base, &format!("limit=2&before={}", ids[1])).await;
    assert_eq!(second["events"][0]["id"], ids[2]);
    let last = events(&c, &t.base, &format!("limit=10&before={}", ids[1])).await;
    assert_eq!(last["next"], Value::Null);
    // Bad parameters say what is wrong.
    for (q, msg) in [
        ("type=nope", "type: unknown event type \"nope\""),
        ("limit=0", "limit: a number from 1 to 1000"),
        ("since=yesterday", "since: not an RFC 3339 time"),
        ("filter=%7B", "filter: "),
    ] {
        let r = c
            .get(format!("{}/api/tocsin/v1/events?{q}", t.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        let text: String = r.json().await.unwrap();
        assert!(text.contains(msg), "{q}: {text}");
    }
    // A restart keeps the history; ids go on.
    assert!(t.terminate().success());
    let t = common::start_in(dir.path(), &config, &["--cluster.peer-name=tocsin-a"]);
    // Events reach the disk within a few tens of milliseconds.
    common::wait_for_async("the start-up event", async || {
        types(&events(&c, &t.base, "limit=1").await) == ["alertmanager_startup_event"]
    })
    .await;
    let after = events(&c, &t.base, "limit=3").await;
    assert_eq!(
        types(&after),
        [
            "alertmanager_startup_event",
            "alertmanager_shutdown_event",
            "silence_muted_alert"
        ]
    );
    assert!(after["events"][0]["id"].as_u64().unwrap() > ids[0]);
    let m = common::metric(&c, &t.base, "tocsin_events_recorded_total").await;
    assert!(m >= 1.0, "{m}");
    assert!(common::metric(&c, &t.base, "tocsin_event_log_bytes").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_recorder_outputs_export_events_with_the_feature_flag() {
    let (sink, url) = common::start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}event_recorder:\n  file_outputs:\n  - path: exported.jsonl\n  webhook_outputs:\n  - url: {url}/events\n    batch: true\n    batch_flush_interval: 50ms\n",
        CONFIG.replace("SINK", &url)
    );
    let mut t = common::start_in(dir.path(), &config, &["--enable-feature=event-recorder"]);
    let c = reqwest::Client::new();
    common::post_alerts(&c, &t.base, &json!([{"labels": {"alertname": "Exported"}}])).await;
    // The file (beside the config), one JSON event per line.
    let file = dir.path().join("exported.jsonl");
    let lines = common::wait_for("the exported notification", || {
        let text = std::fs::read_to_string(&file).ok()?;
        text.contains(r#""type":"notification""#).then_some(text)
    })
    .await;
    let kinds: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds[..2], ["alertmanager_startup_event", "alert_created"], "{lines}");
    // The webhook, in batches (JSON arrays).
    let batches = common::wait_for("the webhook output", || {
        let got = sink.got.lock().unwrap();
        let events: Vec<Value> = got
            .iter()
            .filter(|(p, _, _)| p == "events")
            .flat_map(|(_, _, v)| v.as_array().unwrap().clone())
            .collect();
        events.iter().any(|e| e["type"] == "notification").then_some(events)
    })
    .await;
    assert_eq!(batches[0]["type"], "alertmanager_startup_event");
    assert!(t.terminate().success());
    // Without the flag the outputs stay off, and the start-up log says so.
    let _ = std::fs::remove_file(&file);
    let t = common::start_in(dir.path(), &config, &[]);
    common::wait_for("the warning", || {
        t.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("--enable-feature=event-recorder is not set"))
            .then_some(())
    })
    .await;
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_webhook_that_never_answers_is_tried_max_retries_times_then_given_up() {
    let (sink, url) = common::start_sink().await;
    // The receiver takes each request and never answers within the output's timeout.
    sink.delays
        .lock()
        .unwrap()
        .insert("events".into(), std::time::Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}event_recorder:\n  webhook_outputs:\n  - url: {url}/events\n    timeout: 200ms\n    max_retries: 3\n    retry_backoff: 50ms\n",
        CONFIG.replace("SINK", &url)
    );
    let t = common::start_in(dir.path(), &config, &["--enable-feature=event-recorder"]);
    let c = reqwest::Client::new();
    // The start-up event: 3 attempts (0.2 s each, 50 ms and 100 ms between), then given up.
    common::wait_metric(&c, &t.base, "tocsin_event_output_errors_total", 1.0).await;
    let startups = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, e)| p == "events" && e["type"] == "alertmanager_startup_event")
        .count();
    assert_eq!(startups, 3, "max_retries attempts in all, then nothing more");
    // Delivery is not held up by the output: the alert is notified meanwhile.
    common::post_alerts(&c, &t.base, &json!([{"labels": {"alertname": "StillNotified"}}])).await;
    common::wait_for("the notification", || {
        sink.got
            .lock()
            .unwrap()
            .iter()
            .any(|(p, _, _)| p == "hook")
            .then_some(())
    })
    .await;
}
