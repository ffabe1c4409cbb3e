//! Helpers shared by the real-binary suites: a webhook sink and a `tocsin` child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;

/// (path name, Authorization header, decoded body) of one webhook call.
pub type Call = (String, Option<String>, Value);

#[derive(Clone, Default)]
pub struct Sink {
    pub got: Arc<Mutex<Vec<Call>>>,
    pub raw: Arc<Mutex<Vec<String>>>,
    /// How long to hold the answer to a path (a slow receiver); the call is recorded at once.
    pub delays: Arc<Mutex<std::collections::HashMap<String, Duration>>>,
}

async fn receive(
    State(s): State<Sink>,
    axum::extract::Path(name): axum::extract::Path<String>,
    h: HeaderMap,
    body: Bytes,
) {
    let auth = h.get("authorization").map(|v| v.to_str().unwrap().to_string());
    s.raw.lock().unwrap().push(String::from_utf8(body.to_vec()).unwrap());
    let delay = s.delays.lock().unwrap().get(&name).copied();
    s.got
        .lock()
        .unwrap()
        .push((name, auth, serde_json::from_slice(&body).unwrap()));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

pub async fn start_sink() -> (Sink, String) {
    let sink = Sink::default();
    let app = Router::new().route("/{name}", post(receive)).with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sink, format!("http://{addr}"))
}

/// A running `tocsin`, killed on drop.
pub struct Tocsin {
    pub child: Child,
    pub base: String,
    pub config: PathBuf,
    pub dir: Option<tempfile::TempDir>,
    /// Every line the process wrote to stderr so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Tocsin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tocsin` with its config and storage under `dir` (kept by the caller for restarts).
pub fn start_in(dir: &Path, config: &str, extra: &[&str]) -> Tocsin {
    start_in_env(dir, config, extra, &[])
}

/// [`start_in`] with environment variables set for the process.
pub fn start_in_env(dir: &Path, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Tocsin {
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .envs(env.iter().copied())
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .args([
            "--web.listen-address=127.0.0.1:0",
            "--web.external-url=http://tocsin.example:9093/",
        ])
        .args(if extra.iter().any(|a| a.starts_with("--cluster.listen-address")) {
            vec![]
        } else {
            vec!["--cluster.listen-address="]
        })
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Find the bound port the way Alertmanager's acceptance harness does.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let kept = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line.clone());
            if !line.contains("Listening on") {
                continue;
            }
            // logfmt (`address=host:port`) or JSON (`"address":"host:port"`).
            let addr = if line.starts_with('{') {
                serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["address"].as_str().map(String::from))
            } else {
                line.split("address=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(String::from)
            };
            let _ = tx.send(addr);
        }
    });
    let Ok(Some(addr)) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("tocsin did not log its address");
    };
    Tocsin {
        child,
        base: format!("http://{addr}"),
        config: path,
        dir: None,
        logs,
    }
}

/// Starts `tocsin` in a fresh temporary directory.
pub fn start_tocsin(config: &str, extra: &[&str]) -> Tocsin {
    let dir = tempfile::tempdir().unwrap();
    let mut t = start_in(dir.path(), config, extra);
    t.dir = Some(dir);
    t
}

impl Tocsin {
    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "tocsin did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process (Prometheus, a helper) killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus evaluating the repository's always-firing example rule every second and
/// alerting as `alerting` (the YAML of its `alerting:` section, indented by two) says; it
/// re-sends every second (the first send can race its discovery of the Alertmanagers).
pub struct Prometheus {
    _dir: tempfile::TempDir,
    _process: Guard,
}

pub fn start_prometheus(alerting: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prometheus/rules.yml");
    let cfg = format!(
        "global:\n  evaluation_interval: 1s\nalerting:\n{alerting}rule_files: ['{}']\n",
        rules.display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let process = Guard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    Prometheus {
        _dir: dir,
        _process: process,
    }
}

/// Creates a silence through a replica's API; returns its id.
pub async fn create_silence(c: &reqwest::Client, base: &str, body: &Value) -> String {
    let r: Value = c
        .post(format!("{base}/api/v2/silences"))
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["silenceID"].as_str().unwrap().to_string()
}

/// POSTs a JSON body to a replica's alerts endpoint.
pub async fn post_alerts(c: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    c.post(format!("{base}/api/v2/alerts")).json(body).send().await.unwrap()
}

/// Waits (bounded, 20 s) until an async condition holds.
pub async fn wait_for_async(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GETs a URL and decodes its JSON body.
pub async fn get_json<T: serde::de::DeserializeOwned>(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> T {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Reads one series of a replica's /metrics, e.g.
/// `tocsin_notifications_deduplicated_total{integration="webhook"}` (0 when absent).
pub async fn metric(c: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (bounded) until a series of a replica's /metrics reaches `at_least`: the event that
/// proves an absence (a decision was taken), instead of a fixed sleep.
pub async fn wait_metric(c: &reqwest::Client, base: &str, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(c, base, series).await;
        if v >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {v} < {at_least} on {base}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The deduplicated-notification counter of the webhook integration.
pub const DEDUPLICATED: &str = "tocsin_notifications_deduplicated_total{integration=\"webhook\"}";
