//! tocsin-bench: drives any Alertmanager-compatible server over HTTP and prints a table, with
//! ratios when it runs several servers in one invocation.
//!
//! Each `--server NAME=BINARY` is started fresh on free 127.0.0.1 ports with a temporary
//! config and storage (`tocsin` or an Alertmanager binary: both take the same flags), measured,
//! and stopped. Figures: ingest rate of distinct alerts (batches over several connections; the
//! median of several runs, each into a fresh server) with POST latency p50/p99, GET
//! /api/v2/alerts and /alerts/groups latency (median of runs), server RSS per stored alert,
//! server CPU per 1k alerts re-sent in steady state (every alert re-posted each interval with a
//! new `endsAt`, as Prometheus does), silence creation rate, RSS per silence, GET
//! /api/v2/silences latency, start-up time with the silences on disk, and notifications/s when
//! many single-alert groups fall due at once (into a built-in webhook sink). The generator's and
//! the sink's own ceilings are measured first, so they are known not to be the bottleneck. Every
//! loop is bounded in count, and every request has a timeout.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    name = "tocsin-bench",
    about = "Benchmarks Alertmanager-compatible servers side by side"
)]
struct Args {
    /// `NAME=PATH` of a server binary to start and measure (repeatable; the first is the baseline).
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    /// Distinct alerts to ingest.
    #[arg(long, default_value_t = 100_000)]
    alerts: usize,
    /// Alerts per POST.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Steady state: rounds of re-sending every stored alert.
    #[arg(long, default_value_t = 3)]
    resend_rounds: u32,
    /// Steady state: seconds between the starts of two re-send rounds.
    #[arg(long, default_value_t = 10)]
    resend_interval: u64,
    /// Silences to create.
    #[arg(long, default_value_t = 10_000)]
    silences: usize,
    /// Single-alert groups that fall due at once for the notification figure.
    #[arg(long, default_value_t = 10_000)]
    groups: usize,
    /// Runs of each GET (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Ingest runs per server, each into a fresh server: the first before the other figures, the
    /// rest after them (the median rate is reported, latencies are pooled). One run of Tocsin's
    /// takes a fraction of a second, so a burst of other work on a shared machine could decide it.
    #[arg(long, default_value_t = 3)]
    ingest_runs: usize,
    /// Only the flood figure: POST latency while other clients read `/metrics` and
    /// `/api/v2/alerts` in a loop, over `--alerts` stored alerts.
    #[arg(long)]
    flood_only: bool,
    /// Seconds the flood lasts.
    #[arg(long, default_value_t = 10)]
    flood_secs: u64,
}

/// POST latencies (sorted) of batches of 10 stored alerts re-sent one after another for
/// `secs`, while 4 clients GET `/metrics` and 4 GET `/api/v2/alerts` in a loop; also returns
/// how many GETs were answered.
async fn flood(client: &reqwest::Client, base: &str, alerts: usize, secs: u64) -> (Vec<Duration>, usize) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gets = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for i in 0..8 {
        let url = if i % 2 == 0 {
            format!("{base}/metrics")
        } else {
            format!("{base}/api/v2/alerts")
        };
        let (client, stop, gets) = (client.clone(), stop.clone(), gets.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                    gets.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let bodies = batches(alerts, 10);
    let url = format!("{base}/api/v2/alerts");
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0;
    while Instant::now() < end {
        let t = Instant::now();
        let ok = client
            .post(&url)
            .header("content-type", "application/json")
            .body(bodies[i % bodies.len()].clone())
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            eprintln!("a POST during the flood failed");
        }
        lat.push(t.elapsed());
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    lat.sort();
    (lat, gets.load(Ordering::Relaxed))
}

const CONFIG: &str = "route:\n  receiver: blackhole\n  group_by: [alertname, cluster]\n  group_wait: 1h\n  group_interval: 1h\n  repeat_interval: 24h\nreceivers:\n- name: blackhole\n";

/// Group wait of the notification phase: long enough for every server to have ingested all
/// the groups before the first falls due, so the figure measures sending, not ingest.
const NOTIFY_GROUP_WAIT: Duration = Duration::from_secs(5);

fn notify_config(sink: &str) -> String {
    format!(
        "route:\n  receiver: sink\n  group_by: [instance]\n  group_wait: {}s\n  group_interval: 1h\n  repeat_interval: 24h\nreceivers:\n- name: sink\n  webhook_configs:\n  - url: '{sink}/notify'\n    send_resolved: false\n",
        NOTIFY_GROUP_WAIT.as_secs()
    )
}

/// One row of the table: figure name and value per server.
struct Row {
    figure: &'static str,
    unit: &'static str,
    /// Lower is better (latencies, bytes), or higher (rates).
    lower_better: bool,
    values: Vec<f64>,
}

impl Row {
    fn new(figure: &'static str, unit: &'static str, lower_better: bool) -> Self {
        Row {
            figure,
            unit,
            lower_better,
            values: vec![],
        }
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGTERM and wait (bounded) for a clean exit, so that the server writes its snapshots.
    fn terminate(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("server did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `binary` with `config` and storage in `dir`; returns once /-/ready answers 200, with
/// the time that took.
async fn start(binary: &str, client: &reqwest::Client, dir: &Path, config: &str) -> anyhow::Result<(Server, Duration)> {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(&cfg, config)?;
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = started + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/-/ready", server.base)).send().await
            && r.status().is_success()
        {
            return Ok((server, started.elapsed()));
        }
        if Instant::now() > deadline {
            bail!("{binary} did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resident set size of a process in bytes.
fn rss(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/PID/stat, in USER_HZ ticks (100 per second on Linux); the command
    // name (field 2) may hold spaces, so count from its closing parenthesis.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks / 100.0)
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64()
}

fn ends_in(d: jiff::SignedDuration) -> String {
    jiff::Timestamp::now()
        .checked_add(d)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Distinct alerts shaped like Prometheus' (several labels, annotations, a generator URL).
fn batch(start: usize, n: usize, ends: &str) -> Vec<u8> {
    let alerts: Vec<Value> = (start..start + n)
        .map(|i| {
            json!({
                "labels": {"alertname": format!("Alert{}", i % 500), "cluster": format!("c{}", i % 20),
                           "instance": format!("host-{i}:9100"), "job": "node", "severity": "warning"},
                "annotations": {"summary": format!("instance host-{i} is unhappy"), "runbook": "https://runbooks.example/node"},
                "endsAt": ends,
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            })
        })
        .collect();
    serde_json::to_vec(&alerts).unwrap_or_default()
}

/// The POST bodies for `total` distinct alerts.
fn batches(total: usize, size: usize) -> Vec<Vec<u8>> {
    let ends = ends_in(jiff::SignedDuration::from_hours(2));
    (0..total.div_ceil(size))
        .map(|b| batch(b * size, size.min(total - b * size), &ends))
        .collect()
}

/// POSTs every body to `url` over `conns` connections; returns the elapsed time and the sorted
/// latencies.
async fn post_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    conns: usize,
) -> (Duration, Vec<Duration>) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, bodies, next) = (client.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { return lat };
                let t = Instant::now();
                let ok = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    eprintln!("a POST to {url} failed");
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    all.sort();
    (elapsed, all)
}

/// Posts `total` distinct alerts in batches over `conns` connections; returns (alerts/s, sorted latencies).
async fn ingest(client: &reqwest::Client, base: &str, total: usize, size: usize, conns: usize) -> (f64, Vec<Duration>) {
    let (elapsed, lat) = post_all(client, &format!("{base}/api/v2/alerts"), batches(total, size), conns).await;
    (total as f64 / elapsed.as_secs_f64(), lat)
}

/// Steady state: re-sends all `total` alerts once per interval for `rounds` rounds, each round
/// with a later `endsAt` as Prometheus sends them; returns server CPU-ms per 1,000 alerts re-sent.
async fn resend_cpu(client: &reqwest::Client, server: &Server, a: &Args) -> f64 {
    let pid = server.child.id();
    let url = format!("{}/api/v2/alerts", server.base);
    let interval = Duration::from_secs(a.resend_interval);
    let cpu0 = cpu_seconds(pid);
    for _ in 0..a.resend_rounds {
        let round = Instant::now();
        let (took, _) = post_all(client, &url, batches(a.alerts, a.batch), a.connections).await;
        if took > interval {
            eprintln!("a re-send round took {took:?}, longer than the interval");
        }
        tokio::time::sleep(interval.saturating_sub(round.elapsed())).await;
    }
    let cpu = cpu_seconds(pid) - cpu0;
    cpu * 1e3 / (a.alerts as f64 * f64::from(a.resend_rounds) / 1e3)
}

/// Median latency of `runs` GETs (until the last byte arrived); also checks the body is a JSON
/// array of the expected length. The chunks are appended to one buffer kept across runs: a fresh
/// buffer per run made the client fault in tens of megabytes of pages and copy them once more
/// while the server was still writing, on the same two cores.
async fn get_median(client: &reqwest::Client, url: &str, runs: usize, expect: Option<usize>) -> anyhow::Result<f64> {
    let mut lat = Vec::new();
    let mut body = Vec::new();
    for _ in 0..runs {
        body.clear();
        let t = Instant::now();
        let mut resp = client.get(url).send().await?.error_for_status()?;
        while let Some(chunk) = resp.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        lat.push(t.elapsed());
        if let Some(n) = expect {
            let v: Value = serde_json::from_slice(&body)?;
            let got = v.as_array().map_or(0, Vec::len);
            if got != n {
                bail!("{url}: expected {n} items, got {got}");
            }
        }
    }
    lat.sort();
    Ok(quantile(&lat, 0.5))
}

async fn create_silences(client: &reqwest::Client, base: &str, n: usize, conns: usize) -> f64 {
    let now = jiff::Timestamp::now();
    let end = now.checked_add(jiff::SignedDuration::from_hours(2)).unwrap_or(now);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, next) = (client.clone(), format!("{base}/api/v2/silences"), next.clone());
        let (s, e) = (now.to_string(), end.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let body = json!({"matchers": [{"name": "instance", "value": format!("host-{i}:9100"), "isRegex": false},
                                               {"name": "alertname", "value": format!("Alert{}", i % 500), "isRegex": false}],
                                  "startsAt": s, "endsAt": e, "createdBy": "bench", "comment": "load"});
                if !client.post(&url).json(&body).send().await.is_ok_and(|r| r.status().is_success()) {
                    eprintln!("a silence POST failed");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// A null server: answers 200 to every POST, to measure the generator's own ceiling.
async fn null_server() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(|_: axum::body::Bytes| async { "" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// Arrival times of the webhook notifications the sink received.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<Instant>>>);

impl Sink {
    fn count(&self) -> usize {
        self.0.lock().map_or(0, |v| v.len())
    }

    fn take(&self) -> Vec<Instant> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// A webhook sink on 127.0.0.1 that records when each notification arrived.
async fn webhook_sink() -> anyhow::Result<(String, Sink)> {
    let sink = Sink::default();
    let got = sink.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |_: axum::body::Bytes| {
            let got = got.clone();
            async move {
                if let Ok(mut v) = got.0.lock() {
                    v.push(Instant::now());
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, sink))
}

/// The sink's own ceiling: single-alert webhook payloads posted over 64 connections.
async fn sink_ceiling(client: &reqwest::Client, base: &str, sink: &Sink, n: usize) -> f64 {
    let body = serde_json::to_vec(&json!({
        "version": "4", "status": "firing", "receiver": "sink", "groupKey": "{}:{instance=\"host-1:9100\"}",
        "truncatedAlerts": 0, "groupLabels": {"instance": "host-1:9100"},
        "commonLabels": {"alertname": "Alert1", "instance": "host-1:9100", "job": "node"},
        "commonAnnotations": {"summary": "instance host-1 is unhappy"}, "externalURL": "http://localhost:9093",
        "alerts": [{"status": "firing", "labels": {"alertname": "Alert1", "instance": "host-1:9100", "job": "node"},
                    "annotations": {"summary": "instance host-1 is unhappy"}, "startsAt": "2026-12-02T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0123456789abcdef"}]
    }))
    .unwrap_or_default();
    let (elapsed, _) = post_all(client, &format!("{base}/notify"), vec![body; n], 64).await;
    sink.take();
    n as f64 / elapsed.as_secs_f64()
}

/// Posts `groups` alerts that each form their own group, then measures notifications/s from the
/// moment the first group fell due (first POST + group_wait) until the last notification.
async fn notifications(client: &reqwest::Client, base: &str, sink: &Sink, a: &Args) -> anyhow::Result<f64> {
    sink.take();
    let first_post = Instant::now();
    let (took, _) = post_all(
        client,
        &format!("{base}/api/v2/alerts"),
        batches(a.groups, a.batch),
        a.connections,
    )
    .await;
    if took > NOTIFY_GROUP_WAIT {
        eprintln!("posting the groups took {took:?}, longer than group_wait");
    }
    let deadline = first_post + NOTIFY_GROUP_WAIT + Duration::from_secs(300);
    while sink.count() < a.groups {
        if Instant::now() > deadline {
            bail!("only {} of {} notifications within 300 s", sink.count(), a.groups);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut got = sink.take();
    got.sort_unstable();
    let last = got.last().copied().unwrap_or(first_post);
    let due = first_post + NOTIFY_GROUP_WAIT;
    // Where the time went: a slow start (groups still falling due, connections opening) or the
    // steady rate.
    let at = |q: usize| {
        got[got.len().saturating_sub(1) * q / 100]
            .saturating_duration_since(due)
            .as_secs_f64()
            * 1e3
    };
    if !got.is_empty() {
        eprintln!(
            "    notifications after the first group fell due: first {:.1} ms, 10% {:.1} ms, half {:.1} ms, 90% {:.1} ms, last {:.1} ms",
            at(0),
            at(10),
            at(50),
            at(90),
            at(100)
        );
    }
    Ok(a.groups as f64 / last.saturating_duration_since(due).as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .build()?;
    let null = null_server().await?;
    let (ceiling, _) = ingest(&client, &null, args.alerts, args.batch, args.connections).await;
    eprintln!("generator ceiling against a null server: {ceiling:.0} alerts/s");
    let (sink_base, sink) = webhook_sink().await?;
    let sink_max = sink_ceiling(&client, &sink_base, &sink, args.groups).await;
    eprintln!("webhook sink ceiling: {sink_max:.0} notifications/s");

    let names: Vec<(String, String)> = args
        .servers
        .iter()
        .map(|s| s.split_once('=').map(|(n, p)| (n.to_string(), p.to_string())))
        .collect::<Option<_>>()
        .context("--server wants NAME=PATH")?;
    let mut rows = vec![
        Row::new("ingest, distinct alerts", "alerts/s", false),
        Row::new("POST /api/v2/alerts p50", "ms", true),
        Row::new("POST /api/v2/alerts p99", "ms", true),
        Row::new("GET /api/v2/alerts", "ms", true),
        Row::new("GET /api/v2/alerts/groups", "ms", true),
        Row::new("RSS per stored alert", "bytes", true),
        Row::new("CPU per 1k re-sent alerts", "CPU-ms", true),
        Row::new("silence creation", "silences/s", false),
        Row::new("RSS per silence", "bytes", true),
        Row::new("GET /api/v2/silences", "ms", true),
        Row::new("start-up, empty storage", "ms", true),
        Row::new("start-up, silences on disk", "ms", true),
        Row::new("notifications, groups due at once", "notifications/s", false),
        Row::new("notifications, share of the sink's ceiling just before", "%", false),
    ];
    if args.flood_only {
        println!("| server | POST p50 ms | POST p99 ms | POST max ms | GETs answered |");
        println!("|---|---|---|---|---|");
        for (name, path) in &names {
            let dir = tempfile::tempdir()?;
            let (server, _) = start(path, &client, dir.path(), CONFIG).await?;
            ingest(&client, &server.base, args.alerts, args.batch, args.connections).await;
            let (lat, gets) = flood(&client, &server.base, args.alerts, args.flood_secs).await;
            let max = lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
            println!(
                "| {name} | {:.1} | {:.1} | {max:.1} | {gets} |",
                quantile(&lat, 0.5) * 1e3,
                quantile(&lat, 0.99) * 1e3
            );
            server.terminate()?;
        }
        return Ok(());
    }
    for (name, path) in &names {
        eprintln!("measuring {name} ({path})");
        let dir = tempfile::tempdir()?;
        let (server, startup_empty) = start(path, &client, dir.path(), CONFIG).await?;
        let pid = server.child.id();
        let rss0 = rss(pid);
        let rss_fresh = rss0;
        let (rate, mut lat) = ingest(&client, &server.base, args.alerts, args.batch, args.connections).await;
        let mut rates = vec![rate];
        let rss1 = rss(pid);
        let alerts_url = format!("{}/api/v2/alerts", server.base);
        let get_alerts = get_median(&client, &alerts_url, args.runs, Some(args.alerts)).await?;
        let groups = get_median(
            &client,
            &format!("{}/api/v2/alerts/groups", server.base),
            args.runs,
            None,
        )
        .await?;
        eprintln!("  steady re-send");
        let resend = resend_cpu(&client, &server, &args).await;
        let sil_rate = create_silences(&client, &server.base, args.silences, args.connections).await;
        let silences_url = format!("{}/api/v2/silences", server.base);
        let get_sil = get_median(&client, &silences_url, args.runs, Some(args.silences)).await?;
        server.terminate()?;
        let (server, startup_silences) = start(path, &client, dir.path(), CONFIG).await?;
        // RSS per silence: a fresh process holding only the silences (loaded from disk) against
        // the fresh empty one. Measured in the running process, a runtime with a garbage
        // collector hides it in the heap it grew for 100k alerts.
        let rss_silences = rss(server.child.id());
        get_median(
            &client,
            &format!("{}/api/v2/silences", server.base),
            1,
            Some(args.silences),
        )
        .await
        .context("silences after a restart")?;
        drop(server);

        eprintln!("  notifications");
        // The ceiling again, right before this server's step: on a shared machine the CPU left to
        // the two processes drifts over the minutes one server's measurement takes.
        let sink_near = sink_ceiling(&client, &sink_base, &sink, args.groups).await;
        eprintln!("    webhook sink ceiling just before: {sink_near:.0} notifications/s");
        let ndir = tempfile::tempdir()?;
        let (server, _) = start(path, &client, ndir.path(), &notify_config(&sink_base)).await?;
        let notify_rate = notifications(&client, &server.base, &sink, &args).await?;
        drop(server);
        for _ in 1..args.ingest_runs {
            let idir = tempfile::tempdir()?;
            let (server, _) = start(path, &client, idir.path(), CONFIG).await?;
            let (rate, more) = ingest(&client, &server.base, args.alerts, args.batch, args.connections).await;
            rates.push(rate);
            lat.extend(more);
            drop(server);
        }
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        eprintln!("  ingest runs: {} alerts/s", runs.join(", "));
        rates.sort_by(f64::total_cmp);
        lat.sort();
        for (row, v) in rows.iter_mut().zip([
            rates[rates.len() / 2],
            quantile(&lat, 0.5) * 1e3,
            quantile(&lat, 0.99) * 1e3,
            get_alerts * 1e3,
            groups * 1e3,
            (rss1 - rss0).max(0.0) / args.alerts as f64,
            resend,
            sil_rate,
            (rss_silences - rss_fresh).max(0.0) / args.silences as f64,
            get_sil * 1e3,
            startup_empty.as_secs_f64() * 1e3,
            startup_silences.as_secs_f64() * 1e3,
            notify_rate,
            100.0 * notify_rate / sink_near,
        ]) {
            row.values.push(v);
        }
    }
    println!(
        "{} alerts in batches of {} over {} connections, re-sent {} times every {} s; {} silences; {} groups; generator ceiling {ceiling:.0} alerts/s, webhook sink ceiling {sink_max:.0} notifications/s",
        args.alerts, args.batch, args.connections, args.resend_rounds, args.resend_interval, args.silences, args.groups
    );
    let mut header = "| figure | unit |".to_string();
    for (n, _) in &names {
        header.push_str(&format!(" {n} |"));
    }
    for (n, _) in names.iter().skip(1) {
        header.push_str(&format!(" {} vs {n} |", names[0].0));
    }
    println!("{header}");
    println!("|{}", "---|".repeat(2 + names.len() * 2 - 1));
    for r in &rows {
        let mut line = format!("| {} | {} |", r.figure, r.unit);
        for v in &r.values {
            line.push_str(&format!(" {} |", fmt(*v)));
        }
        for v in r.values.iter().skip(1) {
            // How many times better the first server is.
            let ratio = if r.lower_better {
                v / r.values[0]
            } else {
                r.values[0] / v
            };
            line.push_str(&format!(" {ratio:.1}× |"));
        }
        println!("{line}");
    }
    Ok(())
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
