//! tocsin-bench: drives any Alertmanager-compatible server over HTTP and prints a table, with
//! ratios when it runs several servers in one invocation.
//!
//! Each `--server NAME=BINARY` is started fresh on free 127.0.0.1 ports with a temporary
//! config and storage (`tocsin` or an Alertmanager binary: both take the same flags), measured,
//! and stopped. Figures: ingest rate of distinct alerts (batches over several connections) with
//! POST latency p50/p99, GET /api/v2/alerts and /alerts/groups latency (median of runs), server
//! RSS per stored alert, silence creation rate and GET /api/v2/silences latency. The generator's
//! own ceiling is measured first against a built-in null server, so it is known not to be the
//! bottleneck. Every loop is bounded in count, and every request has a timeout.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Silences to create.
    #[arg(long, default_value_t = 10_000)]
    silences: usize,
    /// Runs of each GET (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

const CONFIG: &str = "route:\n  receiver: blackhole\n  group_by: [alertname, cluster]\n  group_wait: 1h\n  group_interval: 1h\n  repeat_interval: 24h\nreceivers:\n- name: blackhole\n";

/// One row of the table: figure name and value per server.
struct Row {
    figure: &'static str,
    unit: &'static str,
    /// Lower is better (latencies, bytes), or higher (rates).
    lower_better: bool,
    values: Vec<f64>,
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start(binary: &str, client: &reqwest::Client) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("alertmanager.yml");
    std::fs::write(&cfg, CONFIG)?;
    let port = free_port()?;
    let child = Command::new(binary)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/-/ready", server.base)).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("{binary} did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64()
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

/// Posts `total` distinct alerts in batches over `conns` connections; returns (alerts/s, sorted latencies).
async fn ingest(client: &reqwest::Client, base: &str, total: usize, size: usize, conns: usize) -> (f64, Vec<Duration>) {
    let ends = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let batches: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..total.div_ceil(size))
            .map(|b| batch(b * size, size.min(total - b * size), &ends))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, batches, next) = (
            client.clone(),
            format!("{base}/api/v2/alerts"),
            batches.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = batches.get(i) else { return lat };
                let t = Instant::now();
                let ok = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    eprintln!("a POST failed");
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

/// Median latency of `runs` GETs; also checks the body is a JSON array of the expected length.
async fn get_median(client: &reqwest::Client, url: &str, runs: usize, expect: Option<usize>) -> anyhow::Result<f64> {
    let mut lat = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let body = client.get(url).send().await?.bytes().await?;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let null = null_server().await?;
    let (ceiling, _) = ingest(&client, &null, args.alerts, args.batch, args.connections).await;
    eprintln!("generator ceiling against a null server: {ceiling:.0} alerts/s");

    let names: Vec<(String, String)> = args
        .servers
        .iter()
        .map(|s| s.split_once('=').map(|(n, p)| (n.to_string(), p.to_string())))
        .collect::<Option<_>>()
        .context("--server wants NAME=PATH")?;
    let mut rows = vec![
        Row {
            figure: "ingest, distinct alerts",
            unit: "alerts/s",
            lower_better: false,
            values: vec![],
        },
        Row {
            figure: "POST /api/v2/alerts p50",
            unit: "ms",
            lower_better: true,
            values: vec![],
        },
        Row {
            figure: "POST /api/v2/alerts p99",
            unit: "ms",
            lower_better: true,
            values: vec![],
        },
        Row {
            figure: "GET /api/v2/alerts",
            unit: "ms",
            lower_better: true,
            values: vec![],
        },
        Row {
            figure: "GET /api/v2/alerts/groups",
            unit: "ms",
            lower_better: true,
            values: vec![],
        },
        Row {
            figure: "RSS per stored alert",
            unit: "bytes",
            lower_better: true,
            values: vec![],
        },
        Row {
            figure: "silence creation",
            unit: "silences/s",
            lower_better: false,
            values: vec![],
        },
        Row {
            figure: "GET /api/v2/silences",
            unit: "ms",
            lower_better: true,
            values: vec![],
        },
    ];
    for (name, path) in &names {
        eprintln!("measuring {name} ({path})");
        let server = start(path, &client).await?;
        let pid = server.child.id();
        let rss0 = rss(pid);
        let (rate, lat) = ingest(&client, &server.base, args.alerts, args.batch, args.connections).await;
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
        let sil_rate = create_silences(&client, &server.base, args.silences, args.connections).await;
        let get_sil = get_median(
            &client,
            &format!("{}/api/v2/silences", server.base),
            args.runs,
            Some(args.silences),
        )
        .await?;
        for (row, v) in rows.iter_mut().zip([
            rate,
            quantile(&lat, 0.5) * 1e3,
            quantile(&lat, 0.99) * 1e3,
            get_alerts * 1e3,
            groups * 1e3,
            (rss1 - rss0).max(0.0) / args.alerts as f64,
            sil_rate,
            get_sil * 1e3,
        ]) {
            row.values.push(v);
        }
    }
    println!(
        "{} alerts in batches of {} over {} connections, {} silences; generator ceiling {ceiling:.0} alerts/s",
        args.alerts, args.batch, args.connections, args.silences
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
