//! `tocsin events|history|dry-run|test-receiver`: amtool-style commands for the `/api/tocsin/v1`
//! API of a running replica (`--alertmanager.url`, default `http://localhost:9093`). Text by
//! default, the API's JSON with `-o json`.

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// The commands, as the first argument of `tocsin`.
pub const COMMANDS: [&str; 4] = ["events", "history", "dry-run", "test-receiver"];

#[derive(Parser, Debug)]
#[command(name = "tocsin", about = "Ask a running Tocsin what it did and what it would do")]
struct Cli {
    /// The replica's URL (its --web.external-url).
    #[arg(long = "alertmanager.url", default_value = "http://localhost:9093", global = true)]
    url: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text", global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// This replica's events, newest first.
    Events {
        #[command(flatten)]
        filters: Filters,
        /// Only events of this group.
        #[arg(long = "group-key")]
        group_key: Option<String>,
        /// Events before this id (the previous page's `next`).
        #[arg(long)]
        before: Option<u64>,
    },
    /// A group's notifications and the decisions around them, on every live replica.
    History {
        /// The group key, as the API shows it.
        group_key: String,
        #[command(flatten)]
        filters: Filters,
    },
    /// What the replica would do with an alert, without sending.
    DryRun {
        /// The alert's labels, `name=value`.
        #[arg(required = true)]
        labels: Vec<String>,
        /// An annotation, `name=value` (repeatable).
        #[arg(long = "annotation")]
        annotations: Vec<String>,
        /// A candidate configuration file to route with instead of the running one.
        #[arg(long = "config.file")]
        config: Option<String>,
    },
    /// Sends a test notification through each integration of a receiver.
    TestReceiver {
        /// The receiver's name.
        name: String,
    },
}

#[derive(clap::Args, Debug)]
struct Filters {
    /// Event type (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
    /// A label matcher (repeatable), as the API's `filter`.
    #[arg(long)]
    filter: Vec<String>,
    /// Only this receiver's events.
    #[arg(long)]
    receiver: Option<String>,
    /// Only events naming this alert.
    #[arg(long)]
    fingerprint: Option<String>,
    /// At or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Events per page (1–1000).
    #[arg(long)]
    limit: Option<usize>,
}

impl Filters {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&'static str, String)> = Vec::new();
        q.extend(self.types.iter().map(|t| ("type", t.clone())));
        q.extend(self.filter.iter().map(|f| ("filter", f.clone())));
        let opt = [
            ("receiver", self.receiver.clone()),
            ("fingerprint", self.fingerprint.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
        ];
        q.extend(opt.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        q
    }
}

/// Runs a command given its arguments (`tocsin <command> …`); the process's exit code.
pub async fn main(args: Vec<String>) -> std::process::ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    match run(cli).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tocsin: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a command; whether what it checked is good (a receiver test's outcome).
async fn run(cli: Cli) -> Result<bool, String> {
    let base = cli.url.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let (value, ok) = match &cli.command {
        Command::Events {
            filters,
            group_key,
            before,
        } => {
            let mut q = filters.pairs();
            q.extend(group_key.clone().map(|g| ("group_key", g)));
            q.extend(before.map(|b| ("before", b.to_string())));
            let v = send(client.get(format!("{base}/api/tocsin/v1/events?{}", query(&q)))).await?;
            (v, true)
        }
        Command::History { group_key, filters } => {
            let key: String = url::form_urlencoded::byte_serialize(group_key.as_bytes()).collect();
            // A path segment: `+` would read as itself there.
            let key = key.replace('+', "%20");
            let url = format!("{base}/api/tocsin/v1/groups/{key}/history");
            let v = send(client.get(format!("{url}?{}", query(&filters.pairs())))).await?;
            (v, true)
        }
        Command::DryRun {
            labels,
            annotations,
            config,
        } => {
            let mut body = json!({"labels": pairs(labels)?, "annotations": pairs(annotations)?});
            if let Some(path) = config {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                body["config"] = json!(text);
            }
            let v = send(client.post(format!("{base}/api/tocsin/v1/dry-run")).json(&body)).await?;
            (v, true)
        }
        Command::TestReceiver { name } => {
            let key: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            let v = send(client.post(format!("{base}/api/tocsin/v1/receivers/{key}/test"))).await?;
            let ok = v["ok"].as_bool().unwrap_or(false);
            (v, ok)
        }
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default()),
        Output::Text => print!("{}", text(&cli.command, &value)),
    }
    Ok(ok)
}

/// A query string.
fn query(pairs: &[(&str, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// `name=value` arguments as a JSON object.
fn pairs(args: &[String]) -> Result<Value, String> {
    let mut m = serde_json::Map::new();
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("{a:?}: expected name=value"))?;
        m.insert(k.to_string(), json!(v));
    }
    Ok(Value::Object(m))
}

async fn send(req: reqwest::RequestBuilder) -> Result<Value, String> {
    let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{status}: {}", e.without_url()))?;
    if !status.is_success() {
        let msg = body.as_str().map_or_else(|| body.to_string(), String::from);
        return Err(format!("{status}: {msg}"));
    }
    Ok(body)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A command's answer as text.
fn text(cmd: &Command, v: &Value) -> String {
    let mut out = String::new();
    match cmd {
        Command::Events { .. } | Command::History { .. } => {
            for e in v["events"].as_array().into_iter().flatten() {
                let alerts = e["alerts"].as_array().map_or(0, Vec::len);
                let mut line = format!("{}  {}  {}", s(&e["time"]), s(&e["replica"]), s(&e["type"]));
                for (k, f) in [
                    ("receiver", "receiver"),
                    ("integration", "integration"),
                    ("group", "groupKey"),
                    ("silence", "silenceId"),
                    ("peer", "peer"),
                ] {
                    if !s(&e[f]).is_empty() {
                        line.push_str(&format!("  {k}={}", s(&e[f])));
                    }
                }
                if alerts > 0 {
                    line.push_str(&format!("  alerts={alerts}"));
                }
                if !s(&e["reason"]).is_empty() {
                    line.push_str(&format!("  reason={:?}", s(&e["reason"])));
                }
                out.push_str(&line);
                out.push('\n');
            }
            for r in v["replicas"].as_array().into_iter().flatten() {
                if let Some(err) = r["error"].as_str() {
                    out.push_str(&format!("(replica {} did not answer: {err})\n", s(&r["name"])));
                }
            }
            match &v["next"] {
                Value::Null => {}
                Value::Number(n) => out.push_str(&format!("(more: --before={n})\n")),
                n => out.push_str(&format!("(more: --until={})\n", s(n))),
            }
        }
        Command::DryRun { .. } => {
            let routes = v["routes"].as_array().cloned().unwrap_or_default();
            out.push_str(&format!(
                "alert {} ({}), {} route(s), {} configuration\n",
                s(&v["alert"]["fingerprint"]),
                s(&v["alert"]["status"]),
                routes.len(),
                s(&v["config"])
            ));
            for r in &routes {
                let path: Vec<&str> = r["path"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| s(&p["matchers"]))
                    .collect();
                out.push_str(&format!("\nroute {}\n", path.join(" > ")));
                out.push_str(&format!("  receiver  {}\n", s(&r["receiver"])));
                out.push_str(&format!("  group     {}", s(&r["groupKey"])));
                let members = r["group"]["alerts"].as_array().map_or(0, Vec::len);
                out.push_str(&if r["group"]["exists"] == true {
                    format!(" ({members} alert(s) now)\n")
                } else {
                    " (new)\n".to_string()
                });
                for sil in r["silencedBy"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "  silenced  by {} ({}: {})\n",
                        s(&sil["id"]),
                        s(&sil["createdBy"]),
                        s(&sil["comment"])
                    ));
                }
                if let Some(f) = r["inhibitedBy"]["fingerprint"].as_str() {
                    out.push_str(&format!("  inhibited by alert {f}\n"));
                }
                if let Some(t) = r["mutedByTime"].as_array() {
                    let names: Vec<&str> = t.iter().map(s).collect();
                    out.push_str(&format!("  muted     by time intervals {}\n", names.join(", ")));
                }
                for n in r["notifications"].as_array().into_iter().flatten() {
                    let verdict = if n["wouldNotify"] == true {
                        "would notify"
                    } else {
                        "quiet"
                    };
                    out.push_str(&format!("  {}  {verdict}: {}\n", s(&n["integration"]), s(&n["why"])));
                    for req in n["requests"].as_array().into_iter().flatten() {
                        out.push_str(&format!(
                            "    {} {} ({}, {} bytes)\n",
                            s(&req["method"]),
                            s(&req["url"]),
                            s(&req["contentType"]),
                            s(&req["body"]).len()
                        ));
                    }
                    if let Some(e) = n["error"].as_str() {
                        out.push_str(&format!("    error: {e}\n"));
                    }
                }
            }
        }
        Command::TestReceiver { .. } => {
            for i in v["integrations"].as_array().into_iter().flatten() {
                let result = match i["error"].as_str() {
                    None => "ok".to_string(),
                    Some(e) => format!("failed: {e}"),
                };
                out.push_str(&format!("{}  {result}\n", s(&i["integration"])));
            }
        }
    }
    out
}
