//! `tocsin-fuzz`: a mutation fuzzer on stable Rust for everything that takes untrusted bytes.
//!
//! No coverage feedback (that needs nightly's sanitizer instrumentation): each target starts
//! from a corpus of valid inputs and a dictionary of its syntax, and every iteration applies
//! 1–8 random mutations (byte flips, inserts, deletes, duplicated ranges, dictionary tokens,
//! splices of two corpus entries, truncation) or, one time in eight, makes random bytes. A
//! target fails on a panic, on a differential mismatch, or on a property it states (round
//! trips, time budgets). Failing inputs are written to `target/fuzz-crashes/` and printed; the
//! exit code is 1 when any target failed. Bounded: `--secs` per target (default 15).
//!
//! ```sh
//! cargo run --profile chaos --bin tocsin-fuzz -- --secs 600 --target template
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tocsin_core::matchers::{ParseMode, parse_matcher, parse_matchers};
use tocsin_core::snapshot::{decode_nflog, decode_silences, encode_nflog, encode_silences};
use tocsin_proto::cluster::Part;
use tocsin_server::alerts_body::{decode_alerts, decode_items};
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;

/// A target's check of one input: an `Err` (or a panic) is a finding.
type Check = Box<dyn FnMut(&[u8]) -> Result<(), String>>;

/// One target: its name, corpus, dictionary and check.
struct Target {
    name: &'static str,
    corpus: Vec<Vec<u8>>,
    dict: Vec<&'static [u8]>,
    check: Check,
}

fn mutate(rng: &mut StdRng, t: &Target) -> Vec<u8> {
    if rng.random_range(0..8) == 0 {
        let n = rng.random_range(0..256);
        return (0..n).map(|_| rng.random()).collect();
    }
    let mut v = t.corpus[rng.random_range(0..t.corpus.len())].clone();
    for _ in 0..rng.random_range(1..=8) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                v.insert(i, rng.random());
            }
            2 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=16)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, chunk);
            }
            4 | 5 if !t.dict.is_empty() => {
                let tok = t.dict[rng.random_range(0..t.dict.len())];
                let at = rng.random_range(0..=len);
                v.splice(at..at, tok.iter().copied());
            }
            6 => {
                let other = &t.corpus[rng.random_range(0..t.corpus.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => v.truncate(rng.random_range(0..len)),
            _ => {}
        }
    }
    v
}

fn run(t: &mut Target, secs: u64, seed: u64) -> (u64, Vec<Vec<u8>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut found) = (0u64, Vec::new());
    // The corpus itself first: a valid input must pass.
    let mut queue: Vec<Vec<u8>> = t.corpus.clone();
    while Instant::now() < deadline && found.len() < 10 {
        let input = queue.pop().unwrap_or_else(|| mutate(&mut rng, t));
        let check = &mut t.check;
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        runs += 1;
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        eprintln!(
            "tocsin-fuzz: {}: {problem}\n  input ({} bytes): {:?}",
            t.name,
            input.len(),
            String::from_utf8_lossy(&input)
        );
        let dir = std::path::Path::new("target/fuzz-crashes");
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(format!("{}-{}.bin", t.name, found.len())), &input);
        found.push(input);
    }
    (runs, found)
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

fn alerts_body() -> Target {
    let corpus = [
        r#"[{"labels":{"alertname":"A","instance":"h1"},"annotations":{"summary":"s"},"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T01:00:00.5+02:00","generatorURL":"http://p/g"}]"#,
        r#"[{"labels":{"alertname":"B"}},{"labels":{"a":"\u00e9\"\\"}},{"labels":{}}]"#,
        r#"[{"labels":{"alertname":"C"},"startsAt":"","endsAt":null,"generatorURL":null,"extra":[1,{"x":2}]}]"#,
        r#"{"labels":{}}"#,
        "[]",
    ];
    Target {
        name: "alerts_body",
        corpus: corpus.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dict: vec![
            b"\"labels\"",
            b"\"annotations\"",
            b"\"startsAt\"",
            b"\"endsAt\"",
            b"\"generatorURL\"",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"",
            b"\\",
            b"\\u0000",
            b"\\ud800",
            b"null",
            b"true",
            b"1e400",
            b"\"2026-13-01T00:00:00Z\"",
        ],
        // The one-pass scan must decode exactly what the item-by-item path decodes.
        check: Box::new(|b| {
            let fast = decode_alerts(b);
            let slow = decode_items(b);
            if fast != slow {
                return Err(format!("scan and item decoding differ: {fast:?} vs {slow:?}"));
            }
            Ok(())
        }),
    }
}

fn matchers() -> Target {
    let corpus = [
        r#"{alertname="A",severity=~"crit|page",team!="x",env!~"dev.*"}"#,
        r#"alertname=A, "utf8 ☃"="v\n""#,
        r#"foo=bar"#,
        r#"{}"#,
        r#"{a=~"("}"#,
    ];
    Target {
        name: "matchers",
        corpus: corpus.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dict: vec![
            b"=",
            b"!=",
            b"=~",
            b"!~",
            b"{",
            b"}",
            b",",
            b"\"",
            b"\\",
            b"(",
            b")",
            b"|",
            b".*",
            b"\xe2\x98\x83",
        ],
        check: Box::new(|b| {
            let Some(s) = text(b) else { return Ok(()) };
            for mode in [ParseMode::Fallback, ParseMode::Utf8Strict, ParseMode::Classic] {
                let _ = parse_matchers(s, mode);
                let _ = parse_matcher(s, mode);
            }
            Ok(())
        }),
    }
}

fn config() -> Target {
    let corpus = [
        "route:\n  receiver: r\n  group_by: [alertname]\n  routes:\n  - matchers: ['a=\"b\"']\n    receiver: r\n    continue: true\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\ninhibit_rules:\n- source_matchers: [a=b]\n  target_matchers: [c=d]\n  equal: [x]\ntime_intervals:\n- name: t\n  time_intervals:\n  - weekdays: ['monday:friday']\n    times: [{start_time: '09:00', end_time: '17:00'}]\n",
        "global:\n  resolve_timeout: 5m\n  smtp_smarthost: 'localhost:25'\nroute:\n  receiver: e\nreceivers:\n- name: e\n  email_configs:\n  - to: a@b\n    from: c@d\n",
        "route: {receiver: x}\nreceivers: [{name: x}]\n",
        "route:\n  receiver: h\nreceivers:\n- name: h\n  labels: {team: a}\n  webhook_configs:\n  - url: https://hook/\n    http_config:\n      oauth2:\n        client_id: c\n        client_secret: s\n        token_url: https://idp/token\n        scopes: [a]\n        endpoint_params: {x: y}\n      http_headers:\n        X-Org: {values: [a], secrets: [b], files: [f]}\n      proxy_url: http://p:3128\n      no_proxy: 10.0.0.0/8\n      proxy_connect_header: {X-T: [a]}\n      tls_config: {server_name: hook.test, min_version: TLS13}\n",
        // Every integration's keys.
        include_str!("../../../examples/integrations/chat.yml"),
        include_str!("../../../examples/integrations/paging.yml"),
        include_str!("../../../examples/integrations/tickets-and-cloud.yml"),
    ];
    Target {
        name: "config",
        corpus: corpus.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dict: vec![
            b"\n  ",
            b"- ",
            b": ",
            b"{{ range . }}{{ end }}",
            b"&a ",
            b"*a",
            b"<<: *a",
            b"!!binary ",
            b"'",
            b"\"",
            b"[",
            b"]",
            b"~",
            b"group_interval: 0s",
            b"repeat_interval: 1y",
            b"matchers: ['=~(']",
            b"payload: {a: '{{ .Alerts | toJson }}'}",
            b"summary: {template: x, enable_update: false}",
            b"labels: {a: '{{ len .Alerts }}'}",
            b"sigv4: {region: r, access_key: a, secret_key: s}",
        ],
        check: Box::new(|b| {
            let Some(s) = text(b) else { return Ok(()) };
            let _ = tocsin_core::config::load(s, std::path::Path::new("/nonexistent"), &Default::default());
            Ok(())
        }),
    }
}

fn snapshots() -> Target {
    use tocsin_core::nflog::{Entry, ReceiverKey};
    let t = |s| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
    let entries: Vec<Entry> = (0..3)
        .map(|i| Entry {
            group_key: format!("{{}}:{{alertname=\"A{i}\"}}"),
            receiver: ReceiverKey {
                group_name: "r".into(),
                integration: "webhook".into(),
                idx: i,
            },
            timestamp: t(i as i64),
            firing_alerts: vec![1, 2, u64::MAX],
            resolved_alerts: vec![3],
            expires_at: t(3600),
            receiver_data: Default::default(),
        })
        .collect();
    let nflog = encode_nflog(entries.iter());
    let mut sil = tocsin_core::silence::Silence {
        id: "00000000-0000-0000-0000-000000000001".into(),
        matcher_sets: vec![parse_matchers("{a=\"b\",c=~\"d.*\"}", ParseMode::Fallback).unwrap()],
        starts_at: t(0),
        ends_at: t(60),
        updated_at: t(0),
        created_by: "fuzz".into(),
        comment: "c".into(),
        ..Default::default()
    };
    sil.annotations.insert("k".into(), "v".into());
    let silences = encode_silences(
        [tocsin_core::silence::MeshSilence {
            silence: sil,
            expires_at: t(120),
        }]
        .iter(),
    );
    Target {
        name: "snapshots",
        corpus: vec![nflog, silences],
        dict: vec![
            b"\x00",
            b"\xff\xff\xff\xff\x0f",
            b"\x0a",
            b"\x12",
            b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        ],
        // Both decoders take any bytes; what one decodes encodes and decodes to the same records.
        check: Box::new(|b| {
            let n = decode_nflog(b);
            let again = decode_nflog(&encode_nflog(n.records.iter()));
            if again.records != n.records {
                return Err("nflog records do not survive a re-encoding".into());
            }
            let s = decode_silences(b);
            let again = decode_silences(&encode_silences(s.records.iter()));
            if again.records != s.records {
                return Err("silences do not survive a re-encoding".into());
            }
            Ok(())
        }),
    }
}

fn blank_app() -> Arc<App> {
    let config = tocsin_core::config::load(
        "route:\n  receiver: r\nreceivers:\n- name: r\n",
        std::path::Path::new("."),
        &Default::default(),
    )
    .unwrap();
    let factory: NotifierFactory = Arc::new(|_, _| Ok(vec![]));
    App::new(Settings::new("unused.yml"), config, factory, Clock::system()).unwrap()
}

fn grpc_parts(rt: &'static tokio::runtime::Runtime) -> Target {
    let app = rt.block_on(async { blank_app() });
    let state = tocsin_server::cluster::replicated_state(&app);
    let snaps = snapshots();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for (key, data) in [("nfl", &snaps.corpus[0]), ("sil", &snaps.corpus[1])] {
        let mut v = key.as_bytes().to_vec();
        v.push(0);
        v.extend_from_slice(data);
        corpus.push(v);
    }
    let mut claim = b"clm\0".to_vec();
    let pb = tocsin_proto::cluster::Claim {
        group_key: "{}:{}".into(),
        group_name: "r".into(),
        integration: "webhook".into(),
        idx: 0,
        sender: "peer".into(),
        created_ms: 1_800_000_000_000,
        deadline_ms: i64::MAX,
        released: false,
        generation: 1,
    };
    claim.extend_from_slice(&tocsin_proto::Message::encode_to_vec(&pb));
    corpus.push(claim);
    Target {
        name: "grpc_parts",
        corpus,
        dict: vec![
            b"nfl\0",
            b"sil\0",
            b"clm\0",
            b"\x08",
            b"\x10",
            b"\x1a",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        ],
        // A peer's record: `key NUL data`. Merging must not panic, whatever it holds.
        check: Box::new(move |b| {
            let (key, data) = match b.iter().position(|c| *c == 0) {
                Some(i) => (String::from_utf8_lossy(&b[..i]).into_owned(), b[i + 1..].to_vec()),
                None => (String::new(), b.to_vec()),
            };
            let part = Part { key, data };
            let _ = rt.block_on(async { state.merge(&part) });
            Ok(())
        }),
    }
}

fn query(rt: &'static tokio::runtime::Runtime) -> Target {
    use tower::ServiceExt;
    let router = rt.block_on(async { tocsin_server::api::router(blank_app(), "/") });
    let corpus = [
        "/api/v2/alerts?filter=alertname%3D%22A%22&silenced=false&inhibited=true&active=true&receiver=r.*",
        "/api/v2/alerts/groups?filter=%7Ba%3D~%22b%22%7D&muted=false",
        "/api/v2/silences?filter=a%3Db&state=active",
        "/api/v2/silence/00000000-0000-0000-0000-000000000001",
        "/api/v2/receivers?receiver_matchers=name%3D~%22r.*%22&receiver_matchers=team!%3D%22x%22",
        "/api/v2/alerts?receiver_matchers=%7Bname%3D%22r%22%7D",
    ];
    Target {
        name: "query",
        corpus: corpus.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dict: vec![
            b"&",
            b"=",
            b"%",
            b"%22",
            b"%7B",
            b"%7D",
            b"%3D",
            b"filter=",
            b"silenced=",
            b"?",
            b"/",
            b"%ff",
            b"+",
        ],
        // Any path and query: an answer, never a 500.
        check: Box::new(move |b| {
            let Some(s) = text(b) else { return Ok(()) };
            let Ok(req) = axum::http::Request::get(s).body(axum::body::Body::empty()) else {
                return Ok(());
            };
            let resp = rt.block_on(router.clone().oneshot(req)).map_err(|e| e.to_string())?;
            if resp.status().is_server_error() && resp.status() != axum::http::StatusCode::SERVICE_UNAVAILABLE {
                return Err(format!("{} answered {}", s, resp.status()));
            }
            Ok(())
        }),
    }
}

fn template() -> Target {
    use tocsin_template::data::{Alert, Data};
    use tocsin_template::{Options, Template};
    let corpus = [
        "{{ range .Alerts }}{{ .Labels.alertname }} {{ .Annotations.summary | toUpper }}{{ end }}",
        "{{ define \"x\" }}{{ template \"x\" . }}{{ end }}{{ template \"x\" . }}",
        "{{ $s := \"ab\" }}{{ range 30 }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}{{ len $s }}",
        "{{ range 10000000000 }}x{{ end }}",
        "{{ (((((1))))) }}{{ if and .Status (eq .Status \"firing\") }}f{{ else }}r{{ end }}",
        "{{ template \"email.default.html\" . }}",
    ];
    let data = Data {
        status: "firing".into(),
        alerts: vec![Alert {
            status: "firing".into(),
            labels: [("alertname".to_string(), "A".to_string())].into(),
            ..Alert::default()
        }],
        ..Data::default()
    }
    .to_value();
    Target {
        name: "template",
        corpus: corpus.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dict: vec![
            b"{{",
            b"}}",
            b"(",
            b")",
            b"|",
            b"range ",
            b"end",
            b"template ",
            b"define ",
            b"$x := ",
            b"printf ",
            b"\"%s%s\"",
            b".Alerts",
            b"1e9",
            b"index ",
            b"slice ",
            b"-}}",
            b"{{-",
        ],
        // Parse, then execute in text and HTML mode: no panic, and the work budgets end every
        // render within seconds.
        check: Box::new(move |b| {
            let Some(src) = text(b) else { return Ok(()) };
            let mut t = Template::with_defaults();
            if t.parse("fuzz", src).is_err() {
                return Ok(());
            }
            for html in [false, true] {
                let opts = Options {
                    html,
                    now: jiff::Timestamp::UNIX_EPOCH,
                };
                let start = Instant::now();
                let _ = t.execute("fuzz", &data, &opts);
                if start.elapsed() > Duration::from_secs(10) {
                    return Err(format!(
                        "a render took {:?}: the budgets did not stop it",
                        start.elapsed()
                    ));
                }
            }
            Ok(())
        }),
    }
}

/// What receivers answer, judged by every integration: the first two bytes are the status, the
/// third picks the content type, the rest is the body (up to the 64 KiB a reply keeps); and
/// the same bytes as a `Retry-After` value and as a rendered PagerDuty detail or webhook
/// payload leaf. Nothing may panic; a retryable error's wait must come from the reply.
fn replies() -> Target {
    use tocsin_notify::integration::Encoder as _;
    use tocsin_notify::sender::{Reply, parse_retry_after};
    let yaml = "route: {receiver: r}\nreceivers:\n- name: r\n  telegram_configs: [{bot_token: t, chat_id: 1}]\n  rocketchat_configs: [{token: t, token_id: i}]\n  incidentio_configs: [{url: 'http://h/', alert_source_token: t}]\n  opsgenie_configs: [{api_key: k}]\n  mattermost_configs: [{webhook_url: 'http://h/'}]\n";
    let cfg = tocsin_core::config::load(yaml, std::path::Path::new("."), &Default::default()).unwrap();
    let r = &cfg.receivers["r"];
    let telegram = tocsin_notify::chat::Telegram(r.telegrams[0].clone());
    let rocketchat = tocsin_notify::chat::Rocketchat(r.rocketchats[0].clone());
    let incidentio = tocsin_notify::oncall::Incidentio(r.incidentios[0].clone());
    let opsgenie = tocsin_notify::opsgenie::Opsgenie(r.opsgenies[0].clone());
    let mattermost = tocsin_notify::chat::Mattermost(r.mattermosts[0].clone());
    let corpus = [
        &b"\x00\xc8jok"[..],
        b"\x00\xc8j{\"ok\":true,\"ts\":\"1.2\"}",
        b"\x00\xc8j{\"ok\":false,\"error\":\"channel_not_found\"}",
        b"\x01\x90j{\"status\":\"invalid event\",\"message\":\"m\",\"errors\":[\"a\",\"b\"]}",
        b"\x01\xadt120",
        b"\x01\xf7tMon, 07 Dec 2026 10:00:30 GMT",
        b"\x00\xc8j{\"success\":true}",
        b"\x00\xc8j{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\"}",
        b"\x00\xc8j[{\"a\":1},null,0x1F,yes]",
    ];
    Target {
        name: "replies",
        corpus: corpus.iter().map(|b| b.to_vec()).collect(),
        dict: vec![
            b"{", b"}", b"\"ok\":", b"true", b"null", b"[", b"]", b",", b"\"", b"0x", b"-", b".5e9",
        ],
        check: Box::new(move |b| {
            let status = u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]);
            let content_type = match b.get(2) {
                Some(b'j') => Some("application/json; charset=utf-8".to_string()),
                Some(_) => Some("text/plain".to_string()),
                None => None,
            };
            let body = b.get(3..).unwrap_or(&[]);
            let text = String::from_utf8_lossy(body).into_owned();
            let now: jiff::Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
            let reply = Reply {
                status,
                content_type,
                body: body[..body.len().min(tocsin_notify::sender::REPLY_BYTES)].to_vec(),
                retry_after: parse_retry_after(&text, now),
            };
            let sent = tocsin_notify::integration::Encoded::json(&()).map_err(|e| e.to_string())?;
            let _ = reply.quoted();
            let _ = tocsin_notify::sender::check_status(status, &reply.quoted(), &[429]).map_err(|e| reply.annotate(e));
            let _ = tocsin_notify::slack::judge(&reply, "#c");
            let _ = tocsin_notify::pagerduty::judge(&reply, status % 2 == 0);
            let _ = telegram.judge(&reply, &sent);
            let _ = rocketchat.judge(&reply, &sent);
            let _ = incidentio.judge(&reply, &sent);
            let _ = opsgenie.judge(&reply, &sent);
            let _ = mattermost.judge(&reply, &sent);
            let _ = tocsin_notify::pagerduty::interpret(&text);
            if let Err(e) = tocsin_notify::sender::check_status(status, "", &[]).map_err(|e| reply.annotate(e))
                && e.retry_after.is_some()
                && e.retry_after != reply.retry_after
            {
                return Err("a retryable error's wait is not the reply's Retry-After".into());
            }
            Ok(())
        }),
    }
}

fn main() {
    let mut secs = 15u64;
    let mut only: Option<String> = None;
    let mut seed = std::process::id() as u64 ^ jiff::Timestamp::now().as_second() as u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs N"),
            "--target" => only = args.next(),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed N"),
            _ => {
                eprintln!("usage: tocsin-fuzz [--secs N per target] [--target NAME] [--seed N]");
                std::process::exit(2);
            }
        }
    }
    // The query target's router runs on this runtime for the whole process.
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    ));
    let mut targets = vec![
        alerts_body(),
        matchers(),
        config(),
        snapshots(),
        grpc_parts(rt),
        query(rt),
        template(),
        replies(),
    ];
    if let Some(o) = &only {
        targets.retain(|t| t.name == o);
        assert!(!targets.is_empty(), "no target named {o}");
    }
    let mut failed = 0;
    for t in &mut targets {
        let (runs, found) = run(t, secs, seed);
        println!(
            "tocsin-fuzz: {:<12} {runs:>9} runs in {secs} s, {} finding(s) (seed {seed})",
            t.name,
            found.len()
        );
        failed += usize::from(!found.is_empty());
    }
    println!("{} targets, {failed} failed", targets.len());
    std::process::exit(i32::from(failed > 0));
}
