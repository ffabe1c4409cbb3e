//! The real `tocsin` binary on 127.0.0.1: alerts posted over HTTP reach a local webhook sink
//! with Alertmanager's payload, bad input is answered precisely and loses nothing, and a broken
//! reload keeps the running configuration. Waits are bounded polls, never fixed sleeps.

use std::process::Command;

use serde_json::{Value, json};
use tocsin_core::labels::{LabelSet, fingerprint};

mod common;
use common::{get_json, start_sink, start_tocsin, wait_for};

fn config(sink: &str) -> String {
    format!(
        r#"route:
  receiver: team.x
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  routes:
  - matchers: ['team="a.b"']
    receiver: team.x
receivers:
- name: team.x
  webhook_configs:
  - url: {sink}/bearer
    max_alerts: 1
    http_config:
      authorization:
        credentials: s3cret
  - url: {sink}/basic
    http_config:
      basic_auth:
        username: user
        password: pass
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_payload_is_alertmanagers_field_for_field() {
    let (sink, url) = start_sink().await;
    let t = start_tocsin(&config(&url), &[]);
    let client = reqwest::Client::new();
    let body = json!([
        {"labels": {"alertname": "A1", "team": "a.b", "instance": "i1"}, "annotations": {"summary": "s"},
         "startsAt": "2026-11-23T18:33:30.712Z", "generatorURL": "http://prom/graph"},
        {"labels": {"alertname": "A1", "team": "a.b", "instance": "i2"}, "annotations": {"summary": "s"},
         "startsAt": "2026-11-23T18:33:31Z"}
    ]);
    let r = client
        .post(format!("{}/api/v2/alerts", t.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let got = wait_for("two webhook calls", || {
        let g = sink.got.lock().unwrap();
        (g.len() >= 2).then(|| g.clone())
    })
    .await;
    let by = |n: &str| got.iter().find(|(name, _, _)| name == n).unwrap().clone();
    let (_, auth, bearer) = by("bearer");
    assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
    let (_, auth, basic) = by("basic");
    assert_eq!(auth.as_deref(), Some("Basic dXNlcjpwYXNz"));

    let fp = |i: &str| {
        let l: LabelSet = [("alertname", "A1"), ("instance", i), ("team", "a.b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        fingerprint(&l).to_string()
    };
    let a1 = json!({"status": "firing", "labels": {"alertname": "A1", "instance": "i1", "team": "a.b"},
        "annotations": {"summary": "s"}, "startsAt": "2026-11-23T18:33:30.712Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph", "fingerprint": fp("i1")});
    let a2 = json!({"status": "firing", "labels": {"alertname": "A1", "instance": "i2", "team": "a.b"},
        "annotations": {"summary": "s"}, "startsAt": "2026-11-23T18:33:31Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "", "fingerprint": fp("i2")});
    let expected = |alerts: Vec<Value>, common: Value, truncated: u64| {
        json!({
            "receiver": "team\\.x",
            "status": "firing",
            "alerts": alerts,
            "notification_reason": "first notification",
            "groupLabels": {"alertname": "A1"},
            "commonLabels": common,
            "commonAnnotations": {"summary": "s"},
            // 0.34: the route's rendered labels, `{}` for a route without any.
            "routeLabels": {},
            "externalURL": "http://tocsin.example:9093",
            "version": "4",
            "groupKey": "{}/{team=\"a.b\"}:{alertname=\"A1\"}",
            "truncatedAlerts": truncated,
        })
    };
    assert_eq!(
        bearer,
        expected(
            vec![a1.clone()],
            json!({"alertname": "A1", "instance": "i1", "team": "a.b"}),
            1
        )
    );
    assert_eq!(
        basic,
        expected(vec![a1, a2], json!({"alertname": "A1", "team": "a.b"}), 0)
    );
    // Field order is Alertmanager's too.
    let raw = sink.raw.lock().unwrap()[0].clone();
    let order = [
        "receiver",
        "status",
        "alerts",
        "notification_reason",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "version",
        "groupKey",
        "truncatedAlerts",
    ];
    let positions: Vec<usize> = order.iter().map(|k| raw.find(&format!("\"{k}\":")).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{raw}");
    assert!(
        raw.starts_with("{\"receiver\":\"team\\\\.x\",\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\","),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_loses_nothing() {
    let (_sink, url) = start_sink().await;
    let t = start_tocsin(&config(&url), &[]);
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        let c = client.clone();
        let u = format!("{}/api/v2/alerts", t.base);
        async move {
            let r = c
                .post(u)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        post(b"[{".to_vec()).await,
        (400, r#"{"code":400,"message":"parsing alerts body from \"\" failed, because EOF while parsing an object at line 1 column 2"}"#.into())
    );
    let mixed = json!([
        {"labels": {"alertname": "good1"}},
        {"labels": {}},
        {"labels": {"": "x"}},
        {"labels": {"alertname": "backwards"}, "startsAt": "2026-11-23T10:00:00Z", "endsAt": "2026-11-23T09:00:00Z"},
        {"annotations": {"a": "b"}},
        {"labels": {"alertname": "good2"}}
    ]);
    let (status, body) = post(serde_json::to_vec(&mixed).unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<String>(&body).unwrap(),
        "alert 1 {}: at least one label pair required; \
         alert 2 {=\"x\"}: invalid label set: invalid name \"\"; \
         alert 3 {alertname=\"backwards\"}: start time must be before end time; \
         alert 4: labels in body is required"
    );
    // The valid alerts of the batch were stored.
    let alerts: Vec<Value> = get_json(&client, format!("{}/api/v2/alerts", t.base)).await;
    let mut names: Vec<&str> = alerts
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["good1", "good2"]);
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert_eq!(alerts[0]["receivers"], json!([{"name": "team.x"}]));
    // Every item well-formed JSON, one rejected by validation: still named by its index and
    // labels, and the others stored.
    let shaped = json!([
        {"labels": {"alertname": "good3"}},
        {"labels": {"alertname": "backwards"}, "startsAt": "2026-11-23T10:00:00Z", "endsAt": "2026-11-23T09:00:00Z"}
    ]);
    let (status, body) = post(serde_json::to_vec(&shaped).unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<String>(&body).unwrap(),
        "alert 1 {alertname=\"backwards\"}: start time must be before end time"
    );
    let alerts: Vec<Value> = get_json(&client, format!("{}/api/v2/alerts", t.base)).await;
    assert!(alerts.iter().any(|a| a["labels"]["alertname"] == "good3"), "{alerts:?}");

    // Oversized bodies: a readable 413, also while the client is still sending 64 MiB (before:
    // the connection was closed under it, a broken pipe).
    let (status, _) = post(vec![b' '; 33 << 20]).await;
    assert_eq!(status, 413);
    let (status, body) = post(vec![b' '; 64 << 20]).await;
    assert_eq!(
        (status, body),
        (
            413,
            r#"{"code":413,"message":"request body of 67108864 bytes exceeds the limit of 33554432 bytes"}"#.into()
        )
    );
    // Bad filter.
    let r = client
        .get(format!("{}/api/v2/alerts?filter=foo", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "\"bad matcher format: foo\"".to_string())
    );
    // Filter that matches.
    let r: Vec<Value> = get_json(
        &client,
        format!("{}/api/v2/alerts?filter=alertname%3D%22good2%22", t.base),
    )
    .await;
    assert_eq!(r.len(), 1);
    // v1 is gone, unknown v2 paths are 404.
    assert_eq!(
        client
            .get(format!("{}/api/v1/alerts", t.base))
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    assert_eq!(
        client
            .get(format!("{}/api/v2/nope", t.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_reload_keeps_serving_the_old_config() {
    let (sink, url) = start_sink().await;
    let t = start_tocsin(&config(&url), &[]);
    let client = reqwest::Client::new();
    std::fs::write(&t.config, "route:\n  receiver: r\n  bogus: 1\nreceivers:\n- name: r\n").unwrap();
    let r = client.post(format!("{}/-/reload", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("failed to reload config: "), "{text}");
    assert!(text.contains("bogus"), "{text}");
    let status: Value = get_json(&client, format!("{}/api/v2/status", t.base)).await;
    assert!(status["config"]["original"].as_str().unwrap().contains("team.x"));
    assert_eq!(status["cluster"], json!({"peers": [], "status": "disabled"}));
    let r = client
        .post(format!("{}/api/v2/alerts", t.base))
        .json(&json!([{"labels": {"alertname": "after-reload", "team": "a.b"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("a notification from the old config", || {
        let g = sink.got.lock().unwrap();
        g.iter()
            .any(|(n, _, v)| n == "basic" && v["groupLabels"]["alertname"] == "after-reload")
            .then_some(())
    })
    .await;
    // A valid file is picked up.
    std::fs::write(&t.config, "route:\n  receiver: other\nreceivers:\n- name: other\n").unwrap();
    let r = client.post(format!("{}/-/reload", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let recv: Value = get_json(&client, format!("{}/api/v2/receivers", t.base)).await;
    // Alertmanager 0.33's shape: labels always hold the name.
    assert_eq!(recv, json!([{"name": "other", "labels": {"name": "other"}}]));
}

#[test]
fn security_settings_that_cannot_be_honoured_refuse_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("am.yml");
    std::fs::write(&path, "route:\n  receiver: r\nreceivers:\n- name: r\n").unwrap();
    let tls = dir.path().join("tls.yml");
    std::fs::write(
        &tls,
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\ntls_client_config:\n  ca_file: ca.crt\n  insecure_skip_verify: true\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.yml");
    for (flag, says) in [
        (
            format!("--web.config.file={}", missing.display()),
            format!("--web.config.file \"{}\"", missing.display()),
        ),
        (
            format!("--cluster.tls-config={}", tls.display()),
            "tls_client_config.insecure_skip_verify is not supported by Tocsin".into(),
        ),
        (
            format!("--cluster.tls-config={}", missing.display()),
            format!("--cluster.tls-config \"{}\"", missing.display()),
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                format!("--config.file={}", path.display()),
                format!("--storage.path={}", dir.path().join("data").display()),
                "--web.listen-address=127.0.0.1:0".into(),
                flag.clone(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: {err}");
        assert!(err.contains(&says), "{err}");
    }
}

#[test]
fn config_check_reports_errors_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, "route:\n  receiver: nobody\nreceivers:\n- name: r\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args([format!("--config.file={}", path.display()), "--config.check".into()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("undefined receiver \\\"nobody\\\" used in route")
            || err.contains("undefined receiver \"nobody\" used in route"),
        "{err}"
    );
    let good = dir.path().join("good.yml");
    std::fs::write(&good, "route:\n  receiver: r\nreceivers:\n- name: r\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args([format!("--config.file={}", good.display()), "--config.check".into()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_prefix_and_json_logs() {
    let t = start_tocsin(
        "route:\n  receiver: default\nreceivers:\n- name: default\n",
        &["--web.route-prefix=/foo/", "--log.format=json"],
    );
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/foo/api/v2/status", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        client
            .get(format!("{}/api/v2/status", t.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = client.get(format!("{}/foo/-/healthy", t.base)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "OK".to_string()));
    assert_eq!(
        client
            .get(format!("{}/foo/-/reload", t.base))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_notifications_and_failures_with_alertmanager_names() {
    let (sink, url) = start_sink().await;
    // The second webhook's path does not exist on the sink: 404, a client error, not retried.
    let cfg = format!(
        "route:\n  receiver: r\n  group_wait: 1s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: {url}/ok\n  - url: {url}/no/such/path\n"
    );
    let t = start_tocsin(&cfg, &["--log.level=debug"]);
    let c = reqwest::Client::new();
    let body = json!([{"labels": {"alertname": "M"}}, {"labels": {}}]);
    assert_eq!(
        c.post(format!("{}/api/v2/alerts", t.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    wait_for("the notification", || {
        (!sink.got.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let scrape = || async {
        let r = c.get(format!("{}/metrics", t.base)).send().await.unwrap();
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        r.text().await.unwrap()
    };
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape().await;
        if text.contains(r#"alertmanager_notifications_failed_total{integration="webhook",reason="clientError"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        r#"alertmanager_notifications_total{integration="webhook"} 2"#,
        r#"alertmanager_notifications_failed_total{integration="webhook",reason="clientError"} 1"#,
        r#"alertmanager_notification_requests_total{integration="webhook"} 2"#,
        r#"alertmanager_notification_requests_failed_total{integration="webhook"} 1"#,
        r#"alertmanager_notifications_total{integration="email"} 0"#,
        r#"alertmanager_notifications_failed_total{integration="slack",reason="rateLimited"} 0"#,
        r#"alertmanager_notifications_failed_total{integration="webhook",reason="authError"} 0"#,
        r#"alertmanager_alerts_received_total{status="resolved",version="v2"} 0"#,
        r#"alertmanager_alerts_received_total{status="firing",version="v2"} 1"#,
        r#"alertmanager_alerts_invalid_total{version="v2"} 1"#,
        r#"alertmanager_alerts{state="active"} 1"#,
        r#"alertmanager_config_last_reload_successful 1"#,
        r#"alertmanager_cluster_enabled 0"#,
        "# EOF",
    ] {
        assert!(has(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("alertmanager_build_info{version=\""), "{text}");
    // HTTP metrics by route pattern, process metrics, maintenance counters (not yet run).
    for prefix in [
        r#"alertmanager_http_request_duration_seconds_count{handler="/api/v2/alerts",method="POST"} 1"#,
        r#"alertmanager_http_response_size_bytes_count{handler="/api/v2/alerts",method="POST"} 1"#,
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
        "alertmanager_nflog_maintenance_total 0",
        "alertmanager_silences_snapshot_size_bytes 0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "missing {prefix:?} in\n{text}"
        );
    }
    // The failed attempt is logged inside its flush and attempt spans.
    let failed = t
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("notify attempt failed"))
        .cloned()
        .expect("a debug line for the failed attempt");
    for field in [
        "group_key={}:{}",
        "receiver=r",
        "integration=webhook",
        "attempt=1",
        "404",
    ] {
        assert!(failed.contains(field), "{field} missing in {failed}");
    }
    assert!(
        text.contains("alertmanager_notification_latency_seconds_bucket{le=\"1.0\",integration=\"webhook\"}"),
        "{text}"
    );
    // A broken reload flips the reload gauge.
    std::fs::write(&t.config, "route: {}\n").unwrap();
    assert_eq!(
        c.post(format!("{}/-/reload", t.base)).send().await.unwrap().status(),
        500
    );
    assert!(
        scrape()
            .await
            .lines()
            .any(|l| l == "alertmanager_config_last_reload_successful 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_send_under_way_finish_and_logs_it() {
    // A receiver that takes 2 s to answer. SIGTERM arrives while it is thinking: the send
    // completes, is written to the notification log on disk, and the process exits 0. Restarted
    // on the same storage and sent the same alert, Tocsin does not notify again.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    let (c2, d2) = (calls.clone(), done.clone());
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::post(move || {
            let (c, d) = (c2.clone(), d2.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                d.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = format!(
        "route:\n  receiver: r\n  group_wait: 0s\n  repeat_interval: 1h\nreceivers:\n- name: r\n  webhook_configs:\n  - url: {url}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let alert = json!([{"labels": {"alertname": "Slow"}}]);
    let mut t = common::start_in(dir.path(), &cfg, &[]);
    c.post(format!("{}/api/v2/alerts", t.base))
        .json(&alert)
        .send()
        .await
        .unwrap();
    wait_for("the send to start", || {
        (calls.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = t.terminate();
        (s, t)
    })
    .await
    .unwrap();
    let (status, _stopped) = status;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the receiver answered before the process exited"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(12), "bounded drain");

    let t = common::start_in(dir.path(), &cfg, &[]);
    c.post(format!("{}/api/v2/alerts", t.base))
        .json(&alert)
        .send()
        .await
        .unwrap();
    // Its flush was decided: deduplicated against the log written at shutdown.
    common::wait_metric(&c, &t.base, common::DEDUPLICATED, 1.0).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the logged send is not repeated after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_open_connections_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_sink, url) = start_sink().await;
    let t = start_tocsin(
        &config(&url),
        &["--web.header-read-timeout=1s", "--web.max-connections=3"],
    );
    let addr = t.base.trim_start_matches("http://").to_string();
    // Three connections that send nothing hold every slot; a fourth is closed on arrival.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(std::time::Duration::from_millis(900), extra.read(&mut buf))
        .await
        .expect("the fourth connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    drop(idle);
    // The slots free once the server sees those connections close (attempts refused until
    // then are counted too).
    let probe = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while probe.get(format!("{}/-/healthy", t.base)).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the slots never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A client sending its headers a byte at a time is cut off after the header timeout
    // (before: still connected after 75 s).
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        for b in b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), trickle)
        .await
        .expect("the trickle ended");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("the server closed the slow connection");
    assert!(
        matches!(closed, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
        "{closed:?} {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "cut off after {:?}",
        started.elapsed()
    );

    // The refusal is counted (retried: slots free as the idle connections close).
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(r) = client.get(format!("{}/metrics", t.base)).send().await {
            let text = r.text().await.unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("tocsin_http_connections_refused_total "))
                .unwrap_or_default()
                .to_string();
            let refused: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            assert!(refused >= 1.0, "{line}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/metrics never answered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_alertname_limit_refuses_new_alerts_of_a_full_name_and_keeps_the_rest() {
    let (_sink, url) = start_sink().await;
    let t = start_tocsin(&config(&url), &["--alerts.per-alertname-limit=2"]);
    let c = reqwest::Client::new();
    let alert = |name: &str, instance: &str| json!({"labels": {"alertname": name, "instance": instance}});
    let r = c
        .post(format!("{}/api/v2/alerts", t.base))
        .json(&json!([
            alert("A", "1"),
            alert("A", "2"),
            alert("A", "3"),
            alert("B", "1")
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Alertmanager's 400 body for rejected alerts: one JSON string.
    let body: String = r.json().await.unwrap();
    assert!(
        body.contains("alert 2 {alertname=\"A\", instance=\"3\"}: alert limit reached for alertname \"A\": 2 alerts stored (--alerts.per-alertname-limit)"),
        "{body}"
    );
    let stored: Value = common::get_json(&c, format!("{}/api/v2/alerts", t.base)).await;
    let mut got: Vec<String> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}{}",
                a["labels"]["alertname"].as_str().unwrap(),
                a["labels"]["instance"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, ["A1", "A2", "B1"], "the rest of the batch is stored");
    // A stored alert is always let in again (Prometheus re-sends every evaluation).
    let r = c
        .post(format!("{}/api/v2/alerts", t.base))
        .json(&json!([alert("A", "1")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        common::metric(&c, &t.base, "alertmanager_alerts_limited_total").await,
        1.0
    );
    assert_eq!(
        common::metric(&c, &t.base, "alertmanager_alerts_per_alert_limit").await,
        2.0
    );
    assert_eq!(
        common::metric(&c, &t.base, "alertmanager_alerts_invalid_total{version=\"v2\"}").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_over_tocsins_bounds_are_refused_by_name_and_a_full_store_still_takes_resolves() {
    let (_sink, url) = start_sink().await;
    let t = start_tocsin(
        &config(&url),
        &[
            "--alerts.max-alerts=2",
            "--alerts.max-labels=3",
            "--alerts.max-label-bytes=40",
        ],
    );
    let c = reqwest::Client::new();
    let batch = json!([
        {"labels": {"alertname": "A1"}},
        {"labels": {"alertname": "Many", "a": "1", "b": "2", "c": "3"}},
        {"labels": {"alertname": "Long", "text": "x".repeat(40)}},
        {"labels": {"alertname": "A2"}},
        {"labels": {"alertname": "A3"}},
    ]);
    let r = common::post_alerts(&c, &t.base, &batch).await;
    assert_eq!(r.status(), 400);
    let body: String = r.json().await.unwrap();
    for says in [
        "4 labels, more than --alerts.max-labels=3",
        "labels of 57 bytes, more than --alerts.max-label-bytes=40",
        "alert 4 {alertname=\"A3\"}: the alert store is full: 2 alerts stored (--alerts.max-alerts)",
    ] {
        assert!(body.contains(says), "{says:?} in {body}");
    }
    let stored: Value = common::get_json(&c, format!("{}/api/v2/alerts", t.base)).await;
    assert_eq!(stored.as_array().unwrap().len(), 2, "A1 and A2 stored");
    // Full, and still a resolve of a stored alert is taken.
    let now = jiff::Timestamp::now().to_string();
    let r = c
        .post(format!("{}/api/v2/alerts", t.base))
        .json(&json!([{"labels": {"alertname": "A1"}, "endsAt": now}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (reason, n) in [("store_full", 1.0), ("too_many_labels", 1.0), ("labels_too_large", 1.0)] {
        let series = format!("tocsin_alerts_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(common::metric(&c, &t.base, &series).await, n, "{series}");
    }
    assert_eq!(
        common::metric(&c, &t.base, "alertmanager_alerts_invalid_total{version=\"v2\"}").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrapes_are_fresh_one_after_another_and_shared_when_concurrent() {
    let (_sink, url) = start_sink().await;
    let t = start_tocsin(&config(&url), &[]);
    let c = reqwest::Client::new();
    let active = "alertmanager_alerts{state=\"active\"}";
    for n in 1..=3 {
        let r = c
            .post(format!("{}/api/v2/alerts", t.base))
            .json(&json!([{"labels": {"alertname": format!("M{n}")}}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A scrape right after a change sees it: bodies are reused only by concurrent scrapes.
        assert_eq!(common::metric(&c, &t.base, active).await, f64::from(n));
    }
    let scrapes = (0..32).map(|_| {
        let (c, base) = (c.clone(), t.base.clone());
        tokio::spawn(async move { common::metric(&c, &base, "alertmanager_alerts{state=\"active\"}").await })
    });
    for s in scrapes {
        assert_eq!(s.await.unwrap(), 3.0);
    }
}

/// Sends the headers of a POST announcing `len` bytes and `first` bytes of its body; returns
/// the connection (the rest never comes).
async fn slow_upload(addr: &str, len: usize, first: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // An answer may come before everything is written (503 at once): stop writing then.
    let _ = s.write_all(&vec![b' '; first]).await;
    s
}

/// Reads an HTTP answer's status line (or "" when the connection closed without one).
async fn status_line(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), s.read(&mut buf))
        .await
        .expect("an answer within 15 s")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_are_bounded_in_memory_and_time() {
    let (_sink, url) = start_sink().await;
    let t = start_tocsin(&config(&url), &["--web.body-read-timeout=5s"]);
    let addr = t.base.trim_start_matches("http://").to_string();
    let c = reqwest::Client::new();
    let rss = "process_resident_memory_bytes";
    let before = common::metric(&c, &t.base, rss).await;
    // 200 clients each announce a 32 MiB body, send 1 MiB of it and stall. The default
    // --web.request-memory (1 GiB) holds 32 of them; the others are answered 503 at once.
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(slow_upload(&addr, 32 << 20, 1 << 20).await);
    }
    let peak = common::metric(&c, &t.base, rss).await;
    eprintln!(
        "RSS growth with 200 slow 32 MiB uploads: {:.0} MiB",
        (peak - before) / 1048576.0
    );
    let mut statuses = std::collections::HashMap::<String, usize>::new();
    for s in &mut conns {
        let line = status_line(s).await;
        let code = line.split(' ').nth(1).unwrap_or("closed").to_string();
        *statuses.entry(code).or_default() += 1;
    }
    // (Exactly 168 and 32 unless a held upload timed out, freeing its room, before all 200
    // had arrived.)
    let (busy, cut) = (
        statuses.get("503").copied().unwrap_or(0),
        statuses.get("408").copied().unwrap_or(0),
    );
    assert_eq!(busy + cut, 200, "every upload answered 503 or 408: {statuses:?}");
    assert!(busy >= 100 && cut >= 32, "{statuses:?}");
    assert!(
        peak - before < 256.0 * 1024.0 * 1024.0,
        "RSS grew by {} MiB with 200 slow 32 MiB uploads",
        (peak - before) / 1048576.0
    );
    assert_eq!(
        common::metric(&c, &t.base, "tocsin_http_bodies_refused_total{reason=\"memory\"}").await,
        busy as f64
    );
    assert_eq!(
        common::metric(&c, &t.base, "tocsin_http_bodies_refused_total{reason=\"timeout\"}").await,
        cut as f64
    );
    // And the replica serves as before.
    let r = c
        .post(format!("{}/api/v2/alerts", t.base))
        .json(&json!([{"labels": {"alertname": "After"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_labels_and_receiver_matchers_filter_the_api() {
    let (_sink, url) = start_sink().await;
    let cfg = format!(
        "route:\n  receiver: a\n  group_wait: 1h\n  routes:\n  - matchers: [team=\"b\"]\n    receiver: b\nreceivers:\n- name: a\n  labels: {{team: a, tier: \"1\"}}\n  webhook_configs:\n  - url: {url}/a\n- name: b\n  labels: {{team: b}}\n  webhook_configs:\n  - url: {url}/b\n"
    );
    let t = start_tocsin(&cfg, &[]);
    let c = reqwest::Client::new();
    let recv: Value = get_json(
        &c,
        format!("{}/api/v2/receivers?receiver_matchers=team%3D%22a%22", t.base),
    )
    .await;
    assert_eq!(
        recv,
        json!([{"name": "a", "labels": {"name": "a", "team": "a", "tier": "1"}}])
    );
    let r = common::post_alerts(
        &c,
        &t.base,
        &json!([{"labels": {"alertname": "X", "team": "a"}}, {"labels": {"alertname": "Y", "team": "b"}}]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect()
    };
    let alerts: Value = get_json(&c, format!("{}/api/v2/alerts?receiver_matchers=team%3D%22b%22", t.base)).await;
    assert_eq!(names(&alerts), ["Y"]);
    let alerts: Value = get_json(
        &c,
        format!(
            "{}/api/v2/alerts?receiver_matchers=tier%3D%221%22&receiver_matchers=name%3D%22a%22",
            t.base
        ),
    )
    .await;
    assert_eq!(names(&alerts), ["X"], "repeated matchers are ANDed");
    let groups: Value = get_json(
        &c,
        format!("{}/api/v2/alerts/groups?receiver_matchers=team%3D%22b%22", t.base),
    )
    .await;
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["receiver"]["name"], "b");
    let r = c
        .get(format!("{}/api/v2/receivers?receiver_matchers=%3D%3D", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg: String = r.json().await.unwrap();
    assert!(msg.starts_with("failed to parse receiver_matchers param: "), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_from_environment_sends_through_the_environments_proxy() {
    // The sink stands in for the proxy: it is asked for the absolute URL.
    let (sink, proxy) = start_sink().await;
    let cfg = "route:\n  receiver: r\n  group_wait: 0s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://hook.internal.test/via-env\n    http_config:\n      proxy_from_environment: true\n";
    let dir = tempfile::tempdir().unwrap();
    let t = common::start_in_env(
        dir.path(),
        cfg,
        &[],
        &[
            ("HTTP_PROXY", proxy.as_str()),
            ("http_proxy", proxy.as_str()),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    let c = reqwest::Client::new();
    let r = common::post_alerts(&c, &t.base, &json!([{"labels": {"alertname": "ViaEnv"}}])).await;
    assert_eq!(r.status(), 200);
    wait_for("the notification through the proxy", || {
        sink.got
            .lock()
            .unwrap()
            .iter()
            .any(|(name, _, _)| name == "via-env")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_label_makes_the_alerts_of_an_ha_pair_one_alert() {
    let (sink, url) = start_sink().await;
    let config = format!(
        "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: {url}/hook\n"
    );
    let t = start_tocsin(
        &config,
        &["--alerts.drop-label=replica", "--alerts.drop-label=prometheus_replica"],
    );
    let c = reqwest::Client::new();
    // The same rule evaluated by both Prometheus servers of a pair.
    for replica in ["a", "b"] {
        let r = common::post_alerts(
            &c,
            &t.base,
            &json!([{"labels": {"alertname": "Down", "instance": "db-1", "replica": replica, "prometheus_replica": replica}}]),
        )
        .await;
        assert!(r.status().is_success());
    }
    // A label set that was only the dropped label is invalid, as an empty one is.
    let r = common::post_alerts(&c, &t.base, &json!([{"labels": {"replica": "a"}}])).await;
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    let alerts: Value = get_json(&c, format!("{}/api/v2/alerts", t.base)).await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["labels"], json!({"alertname": "Down", "instance": "db-1"}));
    let want: LabelSet = [("alertname", "Down"), ("instance", "db-1")].into_iter().collect();
    assert_eq!(alerts[0]["fingerprint"], fingerprint(&want).to_string());
    let got = wait_for("the notification", || sink.got.lock().unwrap().first().cloned()).await;
    assert_eq!(got.2["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(
        got.2["alerts"][0]["labels"],
        json!({"alertname": "Down", "instance": "db-1"})
    );
    // Shown in the status and in the start-up log.
    let status: Value = get_json(&c, format!("{}/api/v2/status", t.base)).await;
    assert_eq!(
        status["tocsin"]["droppedLabels"],
        json!(["prometheus_replica", "replica"])
    );
    assert!(
        t.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("--alerts.drop-label") && l.contains("prometheus_replica")),
        "{:?}",
        t.logs.lock().unwrap()
    );
    // `alertname` cannot be dropped.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("am.yml");
    std::fs::write(&path, "route:\n  receiver: r\nreceivers:\n- name: r\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args([
            format!("--config.file={}", path.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            "--web.listen-address=127.0.0.1:0".into(),
            "--cluster.listen-address=".into(),
            "--alerts.drop-label=alertname".into(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--alerts.drop-label=alertname would drop every alert's name")
    );
}
