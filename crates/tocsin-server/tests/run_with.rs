//! `run_with`: the whole replica in-process on listeners bound by the test, stopped by a future.

use std::time::Duration;

use clap::Parser;
use tocsin_server::flags::Flags;
use tocsin_server::{Listeners, run_with};

mod common;

const CONFIG: &str = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n";

async fn start(
    dir: &std::path::Path,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let config = dir.join("alertmanager.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let flags = Flags::parse_from([
        "tocsin".to_string(),
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join("data").display()),
    ]);
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", web.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(run_with(flags, Listeners { web, cluster: None }, async {
        let _ = rx.await;
    }));
    (base, tx, run)
}

#[tokio::test]
async fn a_replica_runs_on_given_listeners_and_stops_when_its_shutdown_future_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (base, stop, run) = start(dir.path()).await;
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Maintenance", "isRegex": false, "isEqual": true}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "run_with test",
        "comment": "kept across a graceful stop",
    });
    let resp = client
        .post(format!("{base}/api/v2/silences"))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run_with returned within 10 s of its shutdown future")
        .unwrap()
        .unwrap();
    assert!(
        client.get(format!("{base}/-/healthy")).send().await.is_err(),
        "the port is closed"
    );

    // The final snapshot holds the silence: a replica started on the same storage lists it.
    let (base, stop, run) = start(dir.path()).await;
    let listed: serde_json::Value = common::get_json(&client, format!("{base}/api/v2/silences")).await;
    let comments: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["comment"].as_str())
        .collect();
    assert_eq!(comments, ["kept across a graceful stop"]);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
