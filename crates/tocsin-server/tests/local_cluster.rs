//! The newcomer's path, end to end: `examples/webhook-sink.py` and `examples/local-cluster.sh`
//! (three replicas on fixed local ports with `examples/tocsin.yml`), an alert posted to all three,
//! exactly one notification printed by the sink, and Ctrl-C-style termination stopping every
//! replica. Skipped, with the reason printed, when one of the example's ports is taken.
#[path = "../../tocsin-notify/tests/support/skip.rs"]
mod skip;

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Kills (SIGTERM, then SIGKILL) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PORTS: [u16; 7] = [5001, 9093, 9094, 9095, 9194, 9195, 9196];

fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_example_notifies_once_and_stops_cleanly() {
    if let Some(p) = PORTS.iter().find(|p| !port_free(**p)) {
        skip::skip(&format!("port {p} is in use and the example uses fixed ports"));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut sink = Command::new("python3")
        .arg(root.join("examples/webhook-sink.py"))
        .arg("5001")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let (out, p2) = (sink.stdout.take().unwrap(), printed.clone());
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            p2.lock().unwrap().push(l);
        }
    });
    let _sink = Proc(sink);
    let script = Command::new("bash")
        .arg(root.join("examples/local-cluster.sh"))
        .arg("--cluster.peer-timeout=2s")
        .env("TOCSIN", env!("CARGO_BIN_EXE_tocsin"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut cluster = Proc(script);

    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in 9093..=9095 {
        loop {
            let s: Option<Value> = match c.get(format!("http://127.0.0.1:{port}/api/v2/status")).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            let ready = s.as_ref().is_some_and(|s| {
                s["cluster"]["status"] == "ready" && s["cluster"]["peers"].as_array().map(Vec::len) == Some(3)
            });
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica on {port} never saw 3 ready members: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let alert = json!([{"labels": {"alertname": "Demo", "severity": "page"}}]);
    for port in 9093..=9095 {
        let r = c
            .post(format!("http://127.0.0.1:{port}/api/v2/alerts"))
            .json(&alert)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while printed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the sink printed nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once the two replicas that did not send have each found the group notified (the sender's
    // next flush is a group_interval away), no notification is still to come.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut quiet = 0;
        for port in 9093..=9095 {
            let base = format!("http://127.0.0.1:{port}");
            quiet += usize::from(common::metric(&c, &base, common::DEDUPLICATED).await >= 1.0);
        }
        if quiet >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the other replicas never decided");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = printed.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("[FIRING] receiver=local-sink"), "{lines:?}");
    assert!(lines[0].ends_with(": Demo=firing"), "{lines:?}");

    // Stopping the script stops every replica.
    let _ = Command::new("kill").arg(cluster.0.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "local-cluster.sh did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for port in [9093, 9094, 9095] {
        assert!(port_free(port), "a replica still listens on {port}");
    }
}
