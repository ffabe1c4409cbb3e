//! Silences against the real binary: alert status (§8.3), bad input, Alertmanager snapshots on
//! disk, restart, and the real `amtool` (skipped with a reason when it is not installed).

#[path = "../../tocsin-notify/tests/support/skip.rs"]
mod skip;
use std::process::Command;

use serde_json::{Value, json};
use tocsin_core::labels::{LabelSet, fingerprint, hash_alert};

mod common;
use common::{get_json, start_in, start_sink, start_tocsin, wait_for};

fn in_hours(h: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(h))
        .unwrap();
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn silence_body(matchers: Value) -> Value {
    json!({"matchers": matchers, "startsAt": in_hours(0), "endsAt": in_hours(2),
           "createdBy": "admin@example.com", "comment": "some comment"})
}

async fn get(c: &reqwest::Client, url: String) -> Value {
    get_json(c, url).await
}

async fn post(c: &reqwest::Client, url: String, body: &Value) -> (u16, String) {
    let r = c.post(url).json(body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn ls(pairs: &[(&str, &str)]) -> LabelSet {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const INHIBIT: &str = "route:\n  receiver: r\n  group_wait: 1s\nreceivers:\n- name: r\ninhibit_rules:\n- source_matchers: [severity=critical]\n  target_matchers: [severity=warning]\n  equal: [alertname]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_status_follows_silences_and_inhibition() {
    let t = start_tocsin(INHIBIT, &[]);
    let c = reqwest::Client::new();
    let alerts = format!("{}/api/v2/alerts", t.base);
    let warning = json!([{"labels": {"alertname": "test1", "severity": "warning"}}]);
    assert_eq!(post(&c, alerts.clone(), &warning).await.0, 200);
    let got = get(&c, alerts.clone()).await;
    assert_eq!(
        got[0]["status"],
        json!({"inhibitedBy": [], "mutedBy": [], "silencedBy": [], "state": "active"})
    );

    let (code, body) = post(
        &c,
        format!("{}/api/v2/silences", t.base),
        &silence_body(json!([{"name": "alertname", "value": "test1", "isRegex": false}])),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    let got = get(&c, alerts.clone()).await;
    let warn_fp = fingerprint(&ls(&[("alertname", "test1"), ("severity", "warning")])).to_string();
    assert_eq!(got[0]["fingerprint"], warn_fp.as_str());
    assert_eq!(
        got[0]["status"],
        json!({"inhibitedBy": [], "mutedBy": [], "silencedBy": [id], "state": "suppressed"})
    );

    let critical = json!([{"labels": {"alertname": "test1", "severity": "critical"}}]);
    assert_eq!(post(&c, alerts.clone(), &critical).await.0, 200);
    let crit_fp = fingerprint(&ls(&[("alertname", "test1"), ("severity", "critical")])).to_string();
    let by_fp = |v: &Value, fp: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|a| a["fingerprint"] == fp)
            .unwrap()
            .clone()
    };
    let got = get(&c, alerts.clone()).await;
    assert_eq!(by_fp(&got, &warn_fp)["status"]["inhibitedBy"], json!([crit_fp]));
    assert_eq!(by_fp(&got, &crit_fp)["status"]["silencedBy"], json!([id]));
    // The silenced filter hides both; the inhibited filter hides the warning only.
    assert_eq!(get(&c, format!("{alerts}?silenced=false")).await, json!([]));

    let r = c
        .delete(format!("{}/api/v2/silence/{id}", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = get(&c, alerts.clone()).await;
    assert_eq!(
        by_fp(&got, &crit_fp)["status"],
        json!({"inhibitedBy": [], "mutedBy": [], "silencedBy": [], "state": "active"})
    );
    assert_eq!(by_fp(&got, &warn_fp)["status"]["state"], "suppressed");
    assert_eq!(by_fp(&got, &warn_fp)["status"]["silencedBy"], json!([]));
    let only_active = get(&c, format!("{alerts}?inhibited=false")).await;
    assert_eq!(only_active.as_array().unwrap().len(), 1);
    // The expired silence is still listed, as expired.
    let s = get(&c, format!("{}/api/v2/silence/{id}", t.base)).await;
    assert_eq!(s["status"]["state"], "expired");
    assert_eq!(
        s["matchers"],
        json!([{"isEqual": true, "isRegex": false, "name": "alertname", "value": "test1"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_silences_are_rejected_and_nothing_is_stored() {
    let t = start_tocsin(INHIBIT, &["--silences.max-silence-size-bytes=200"]);
    let c = reqwest::Client::new();
    let url = format!("{}/api/v2/silences", t.base);
    let m = |name: &str, value: &str, re: bool| json!([{"name": name, "value": value, "isRegex": re}]);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            silence_body(json!([])),
            422,
            r#"{"code":612,"message":"matchers in body should have at least 1 items"}"#,
        ),
        (
            {
                let mut b = silence_body(m("a", "b", false));
                b.as_object_mut().unwrap().remove("createdBy");
                b
            },
            422,
            r#"{"code":602,"message":"createdBy in body is required"}"#,
        ),
        (
            silence_body(m("foo", "", false)),
            400,
            r#""invalid silence: at least one matcher must not match the empty string""#,
        ),
        (
            silence_body(m("foo", ".*", true)),
            400,
            r#""invalid silence: at least one matcher must not match the empty string""#,
        ),
        (
            {
                let mut b = silence_body(m("a", "b", false));
                b["endsAt"] = json!(in_hours(-1));
                b["startsAt"] = json!(in_hours(-2));
                b
            },
            400,
            r#""Failed to create silence: end time can't be in the past""#,
        ),
        (
            {
                let mut b = silence_body(m("a", "b", false));
                b["startsAt"] = json!(in_hours(3));
                b
            },
            400,
            r#""Failed to create silence: start time must be before end time""#,
        ),
        (
            {
                let mut b = silence_body(m("a", "b", false));
                b["id"] = json!("9f3e4f4e-58b5-4d4b-8f2a-0e2f1c3d4b5a");
                b
            },
            404,
            r#""silence not found""#,
        ),
        (silence_body(m("a", &"x".repeat(300), false)), 400, ""),
    ];
    for (body, code, want) in cases {
        let (got_code, got) = post(&c, url.clone(), &body).await;
        assert_eq!(got_code, code, "{body} -> {got}");
        if !want.is_empty() {
            assert_eq!(got, want);
        } else {
            assert!(got.starts_with("\"silence exceeded maximum size: "), "{got}");
        }
    }
    let (code, got) = post(&c, url.clone(), &silence_body(m("a", "(", true))).await;
    assert_eq!(code, 400);
    assert!(
        got.starts_with("\"invalid silence: invalid label matcher 0: error parsing regexp"),
        "{got}"
    );
    assert_eq!(get(&c, url.clone()).await, json!([]), "nothing was stored");
    let unknown = format!("{}/api/v2/silence/9f3e4f4e-58b5-4d4b-8f2a-0e2f1c3d4b5a", t.base);
    assert_eq!(c.get(&unknown).send().await.unwrap().status(), 404);
    assert_eq!(c.delete(&unknown).send().await.unwrap().status(), 404);
    let r = c.get(format!("{}/api/v2/silence/xyz", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"code":601,"message":"silenceID in path must be of type uuid: \"xyz\""}"#
    );
}

// A tiny protobuf writer, following the wire format (not our codec), to build the files
// Alertmanager writes.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn field_bytes(n: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(n << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}
fn field_varint(n: u64, v: u64, out: &mut Vec<u8>) {
    varint(n << 3, out);
    varint(v, out);
}
fn timestamp(secs: i64) -> Vec<u8> {
    let mut t = Vec::new();
    field_varint(1, secs as u64, &mut t);
    t
}
fn delimited(msg: &[u8], out: &mut Vec<u8>) {
    varint(msg.len() as u64, out);
    out.extend_from_slice(msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_snapshots_are_loaded() {
    let (sink, url) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    // silences: one MeshSilence with a regex matcher, written the way Alertmanager 0.25 does
    // (legacy `matchers` field only).
    let mut m = Vec::new();
    field_varint(1, 1, &mut m); // REGEXP
    field_bytes(2, b"job", &mut m);
    field_bytes(3, b"db|cache", &mut m);
    let mut s = Vec::new();
    field_bytes(1, b"5b0e3b2a-7c43-4b0e-9a7e-1f6f7c2d9e10", &mut s);
    field_bytes(2, &m, &mut s);
    field_bytes(3, &timestamp(now - 60), &mut s);
    field_bytes(4, &timestamp(now + 3600), &mut s);
    field_bytes(5, &timestamp(now - 60), &mut s);
    field_bytes(8, b"ops@example.com", &mut s);
    field_bytes(9, b"from alertmanager", &mut s);
    let mut mesh = Vec::new();
    field_bytes(1, &s, &mut mesh);
    field_bytes(2, &timestamp(now + 3600 + 432_000), &mut mesh);
    let mut file = Vec::new();
    delimited(&mesh, &mut file);
    std::fs::write(dir.path().join("data/silences"), &file).unwrap();
    // nflog: group {}:{alertname="snap"} was notified to r/webhook/0 a minute ago.
    let mut recv = Vec::new();
    field_bytes(1, b"r", &mut recv);
    field_bytes(2, b"webhook", &mut recv);
    let mut e = Vec::new();
    field_bytes(1, br#"{}:{alertname="snap"}"#, &mut e);
    field_bytes(2, &recv, &mut e);
    field_bytes(5, &timestamp(now - 60), &mut e);
    let mut packed = Vec::new();
    varint(hash_alert(&ls(&[("alertname", "snap")])), &mut packed);
    field_bytes(6, &packed, &mut e);
    let mut mesh = Vec::new();
    field_bytes(1, &e, &mut mesh);
    field_bytes(2, &timestamp(now + 3600), &mut mesh);
    let mut file = Vec::new();
    delimited(&mesh, &mut file);
    std::fs::write(dir.path().join("data/nflog"), &file).unwrap();

    let cfg = format!(
        "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: {url}/r\n"
    );
    let t = start_in(dir.path(), &cfg, &[]);
    let c = reqwest::Client::new();
    let sil = get(&c, format!("{}/api/v2/silences", t.base)).await;
    assert_eq!(sil[0]["id"], "5b0e3b2a-7c43-4b0e-9a7e-1f6f7c2d9e10");
    assert_eq!(
        sil[0]["matchers"],
        json!([{"isEqual": true, "isRegex": true, "name": "job", "value": "db|cache"}])
    );
    assert_eq!(
        (sil[0]["createdBy"].as_str(), sil[0]["status"]["state"].as_str()),
        (Some("ops@example.com"), Some("active"))
    );
    let batch = json!([{"labels": {"alertname": "snap"}}, {"labels": {"alertname": "other"}},
                       {"labels": {"alertname": "muted", "job": "cache"}}]);
    assert_eq!(post(&c, format!("{}/api/v2/alerts", t.base), &batch).await.0, 200);
    wait_for("the notification for `other`", || {
        sink.got
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, v)| v["groupLabels"]["alertname"] == "other")
            .then_some(())
    })
    .await;
    // The other two groups were decided: `snap` deduplicated, `muted` suppressed.
    common::wait_metric(&c, &t.base, common::DEDUPLICATED, 1.0).await;
    common::wait_metric(
        &c,
        &t.base,
        "alertmanager_notifications_suppressed_total{reason=\"silence\"}",
        1.0,
    )
    .await;
    let names: Vec<String> = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, v)| v["groupLabels"]["alertname"].to_string())
        .collect();
    assert_eq!(
        names,
        ["\"other\""],
        "`snap` was already notified per the nflog, `muted` is silenced"
    );
}

/// After a restart, Prometheus re-sends A (notified before it) and a new B: only B is notified,
/// A's flush deduplicated against the log restored from disk.
async fn resend_a_and_b_and_see_only_b(c: &reqwest::Client, base: &str, sink: &common::Sink) {
    let ab = json!([{"labels": {"alertname": "A"}}, {"labels": {"alertname": "B"}}]);
    assert_eq!(post(c, format!("{base}/api/v2/alerts"), &ab).await.0, 200);
    wait_for("B", || (sink.got.lock().unwrap().len() == 2).then_some(())).await;
    common::wait_metric(c, base, common::DEDUPLICATED, 1.0).await;
    let names: Vec<String> = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, v)| v["groupLabels"]["alertname"].to_string())
        .collect();
    assert_eq!(names, ["\"A\"", "\"B\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_silences_and_log_and_sends_no_duplicate() {
    let (sink, url) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: {url}/r\n"
    );
    let c = reqwest::Client::new();
    let mut t = start_in(dir.path(), &cfg, &[]);
    let a = json!([{"labels": {"alertname": "A"}}]);
    assert_eq!(post(&c, format!("{}/api/v2/alerts", t.base), &a).await.0, 200);
    wait_for("the first notification", || {
        (sink.got.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    let (code, body) = post(
        &c,
        format!("{}/api/v2/silences", t.base),
        &silence_body(json!([{"name": "team", "value": "x", "isRegex": false}])),
    )
    .await;
    assert_eq!(code, 200);
    assert!(t.terminate().success(), "SIGTERM exits 0");
    assert!(std::fs::metadata(dir.path().join("data/silences")).unwrap().len() > 0);

    let t2 = start_in(dir.path(), &cfg, &[]);
    let sil = get(&c, format!("{}/api/v2/silences", t2.base)).await;
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"].clone();
    assert_eq!(sil[0]["id"], id);
    resend_a_and_b_and_see_only_b(&c, &t2.base, &sink).await;
}

/// Runs amtool; returns success and stdout (with stderr appended when it failed). On success
/// stderr only holds amtool's warning that our version differs from its own.
fn amtool(base: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={base}"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text += &String::from_utf8_lossy(&out.stderr);
    }
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_manages_silences_and_alerts() {
    if Command::new("amtool").arg("--version").output().is_err() {
        skip::skip("amtool not found (Debian package prometheus-alertmanager; .ci/run installs it)");
        return;
    }
    let t = start_tocsin(INHIBIT, &[]);
    let (ok, id) = amtool(
        &t.base,
        &[
            "silence",
            "add",
            "alertname=foo",
            "--comment=maintenance",
            "--author=me",
            "--duration=1h",
        ],
    );
    assert!(ok, "{id}");
    let id = id.trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let (ok, out) = amtool(&t.base, &["silence", "query", "-o", "json"]);
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["createdBy"], "me");

    assert!(amtool(&t.base, &["alert", "add", "alertname=foo", "severity=warning"]).0);
    assert!(amtool(&t.base, &["alert", "add", "alertname=bar"]).0);
    // By default amtool asks for active alerts only (silenced=false&inhibited=false).
    let (ok, out) = amtool(&t.base, &["alert", "query", "-o", "json"]);
    assert!(ok, "{out}");
    let active: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(active[0]["labels"]["alertname"], "bar");
    let (ok, out) = amtool(&t.base, &["alert", "query", "--active", "--silenced", "-o", "json"]);
    assert!(ok, "{out}");
    let alerts: Value = serde_json::from_str(&out).unwrap();
    let state = |name: &str| {
        alerts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .unwrap()["status"]["state"]
            .clone()
    };
    assert_eq!(state("foo"), "suppressed");
    assert_eq!(state("bar"), "active");

    assert!(amtool(&t.base, &["silence", "expire", &id]).0);
    let (_, out) = amtool(&t.base, &["silence", "query", "-q"]);
    assert!(!out.contains(&id), "{out}");
    let (_, out) = amtool(&t.base, &["silence", "query", "--expired", "-q"]);
    assert!(out.contains(&id), "{out}");

    // Import: two active silences in amtool's JSON form.
    let file = tempfile::NamedTempFile::new().unwrap();
    let body = json!([
        {"matchers": [{"name": "job", "value": "db", "isRegex": false, "isEqual": true}], "startsAt": in_hours(0),
         "endsAt": in_hours(1), "createdBy": "importer", "comment": "one"},
        {"matchers": [{"name": "job", "value": "web.*", "isRegex": true, "isEqual": true}], "startsAt": in_hours(0),
         "endsAt": in_hours(1), "createdBy": "importer", "comment": "two"}
    ]);
    std::fs::write(file.path(), body.to_string()).unwrap();
    let (ok, out) = amtool(&t.base, &["silence", "import", file.path().to_str().unwrap()]);
    assert!(ok, "{out}");
    let (_, out) = amtool(&t.base, &["silence", "query", "createdBy=importer", "-o", "json"]);
    let imported: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        imported.as_array().map(Vec::len),
        Some(0),
        "amtool filters on matchers, not fields: {out}"
    );
    let (_, out) = amtool(&t.base, &["silence", "query", "-o", "json"]);
    let all: Value = serde_json::from_str(&out).unwrap();
    let comments: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["comment"].as_str().unwrap())
        .collect();
    assert_eq!(comments.len(), 2, "{out}");
    assert!(comments.contains(&"one") && comments.contains(&"two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_alert_request() {
    // §8.3 TestFilterAlertRequest: repeated filter parameters are ANDed.
    let t = start_tocsin(INHIBIT, &[]);
    let c = reqwest::Client::new();
    let url = format!("{}/api/v2/alerts", t.base);
    let batch = json!([{"labels": {"alertname": "test1", "severity": "warning"}},
                       {"labels": {"system": "foo", "severity": "critical"}}]);
    assert_eq!(post(&c, url.clone(), &batch).await.0, 200);
    let got = get(&c, format!("{url}?filter=alertname%3Dtest1&filter=severity%3Dwarning")).await;
    assert_eq!(got.as_array().unwrap().len(), 1);
    assert_eq!(got[0]["labels"], json!({"alertname": "test1", "severity": "warning"}));
    assert_eq!(got[0]["status"]["state"], "active");
    let groups = get(&c, format!("{url}/groups?filter=severity%3Dcritical")).await;
    assert_eq!(groups.as_array().unwrap().len(), 1);
    assert_eq!(groups[0]["alerts"][0]["labels"]["system"], "foo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_in_two_groups_lists_both_receivers_in_each() {
    // `continue` puts each alert into a group on both routes; every listing of the alert names
    // the receivers of all groups holding it, in the order the groups are listed.
    let cfg = "route:\n  receiver: root\n  group_by: [alertname]\n  group_wait: 1h\n  routes:\n  - receiver: team-b\n    matchers: [team=x]\n    continue: true\n  - receiver: team-a\n    matchers: [team=x]\nreceivers:\n- name: root\n- name: team-a\n- name: team-b\n";
    let t = start_tocsin(cfg, &[]);
    let c = reqwest::Client::new();
    let url = format!("{}/api/v2/alerts", t.base);
    let batch = json!([{"labels": {"alertname": "A", "team": "x"}}, {"labels": {"alertname": "B", "team": "x"}},
                       {"labels": {"alertname": "C", "team": "y"}}]);
    assert_eq!(post(&c, url.clone(), &batch).await.0, 200);
    let groups = get(&c, format!("{url}/groups")).await;
    let listed: Vec<(String, String, Vec<String>)> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let recv = g["alerts"][0]["receivers"].as_array().unwrap().iter();
            (
                g["labels"]["alertname"].as_str().unwrap().to_string(),
                g["receiver"]["name"].as_str().unwrap().to_string(),
                recv.map(|r| r["name"].as_str().unwrap().to_string()).collect(),
            )
        })
        .collect();
    let both = || vec!["team-a".to_string(), "team-b".to_string()];
    assert_eq!(
        listed,
        [
            ("A".into(), "team-a".into(), both()),
            ("A".into(), "team-b".into(), both()),
            ("B".into(), "team-a".into(), both()),
            ("B".into(), "team-b".into(), both()),
            ("C".into(), "root".into(), vec!["root".to_string()]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_silence_survives_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "route:\n  receiver: r\nreceivers:\n- name: r\n";
    let c = reqwest::Client::new();
    let mut t = start_in(dir.path(), cfg, &[]);
    let matchers = |v: &str| json!([{"name": "instance", "value": v, "isRegex": false}]);
    let mut ids = Vec::new();
    for v in ["db-1", "db-2"] {
        let (code, body) = post(&c, format!("{}/api/v2/silences", t.base), &silence_body(matchers(v))).await;
        assert_eq!(code, 200, "{body}");
        ids.push(
            serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Many at once (they share fsyncs): every acknowledged one survives too.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (c, url, body) = (
            c.clone(),
            format!("{}/api/v2/silences", t.base),
            silence_body(matchers(&format!("web-{i}"))),
        );
        tasks.push(tokio::spawn(async move { post(&c, url, &body).await }));
    }
    let mut concurrent = Vec::new();
    for task in tasks {
        let (code, body) = task.await.unwrap();
        assert_eq!(code, 200, "{body}");
        concurrent.push(
            serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Expired through the API, then the process is killed before any snapshot.
    let r = c
        .delete(format!("{}/api/v2/silence/{}", t.base, ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.kill();
    assert!(
        !dir.path().join("data/silences").exists(),
        "no snapshot was written before the kill"
    );
    let t2 = start_in(dir.path(), cfg, &[]);
    let state = |id: &str, all: &Value| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"]["state"].as_str().unwrap().to_string())
    };
    let all = get(&c, format!("{}/api/v2/silences", t2.base)).await;
    assert_eq!(state(&ids[0], &all).as_deref(), Some("active"), "{all:#}");
    assert_eq!(state(&ids[1], &all).as_deref(), Some("expired"), "{all:#}");
    for id in &concurrent {
        assert_eq!(state(id, &all).as_deref(), Some("active"), "{id}");
    }
    assert!(
        t2.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("replayed the silence journal")),
        "{:?}",
        t2.logs.lock().unwrap()
    );
    // A graceful stop writes the snapshot and empties the journal.
    let mut t2 = t2;
    assert!(t2.terminate().success());
    assert!(dir.path().join("data/silences").exists());
    assert!(!dir.path().join("data/silences.journal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_survives_a_kill_9_and_is_not_sent_again() {
    let (sink, url) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: {url}/r\n"
    );
    let c = reqwest::Client::new();
    let mut t = start_in(dir.path(), &cfg, &["--data.journal-sync-interval=200ms"]);
    let a = json!([{"labels": {"alertname": "A"}}]);
    assert_eq!(post(&c, format!("{}/api/v2/alerts", t.base), &a).await.0, 200);
    wait_for("the notification", || {
        (sink.got.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    // The log entry is written as it is logged: wait for the journal, then crash.
    wait_for("the journal", || {
        std::fs::metadata(dir.path().join("data/nflog.journal"))
            .ok()
            .filter(|m| m.len() > 0)
    })
    .await;
    t.kill();
    assert!(
        !dir.path().join("data/nflog").exists(),
        "no snapshot was written before the kill"
    );
    let t2 = start_in(dir.path(), &cfg, &[]);
    assert!(
        t2.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("replayed the notification log journal"))
    );
    resend_a_and_b_and_see_only_b(&c, &t2.base, &sink).await;
    // A journal never synced is refused at start.
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args([
            format!("--config.file={}", dir.path().join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.path().join("other").display()),
            "--web.listen-address=127.0.0.1:0".into(),
            "--cluster.listen-address=".into(),
            "--data.journal-sync-interval=0s".into(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data.journal-sync-interval must be more than 0s"),
        "{err}"
    );
}
