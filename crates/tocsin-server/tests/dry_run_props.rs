//! Property: a dry run shows what is then sent. Over generated routing trees (matchers,
//! `continue`, `group_by`, nesting) and label sets, the requests a dry run renders for an alert
//! (one per route it takes and integration of that route's receiver: webhook, Slack, PagerDuty,
//! Opsgenie, Discord, both Teams, Telegram, Webex, VictorOps, Mattermost, Rocket.Chat,
//! incident.io, Jira, WeChat, SNS, Pushover and email, each multi-step protocol's every request
//! included) are, byte for byte and to the same endpoints, the requests the receivers get when
//! the alert is posted (secrets redacted alike).
//!
//! The stand-ins: one HTTP server for every integration whose URL is configurable; for Pushover,
//! whose endpoint is fixed, an HTTP proxy that answers the CONNECT itself and terminates TLS
//! with a certificate for api.pushover.net from a CA made per run; for email, an SMTP server.
//! An email's `Date`, `Message-ID` and MIME boundary are made at sending, so they are compared
//! as placeholders.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tocsin_core::alert::PostedAlert;
use tocsin_core::config::load;
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tower::ServiceExt;

/// A request as a dry run shows it: (URL as redacted, query parameters of a bodiless request,
/// body).
type Shown = (String, Option<String>, String);

/// What the stand-in receivers got, as the dry run would show it (see [`redact`]).
type Got = Arc<Mutex<Vec<Shown>>>;

/// The secrets of the generated receivers (`<kind>-r<n>-secret`) replaced as a dry run replaces
/// them.
fn redact(s: &str) -> String {
    let mut s = s.to_string();
    for r in 0..16 {
        for kind in ["rk", "vo", "io", "tok", "wx", "po", "pu"] {
            s = s.replace(&format!("{kind}-r{r}-secret"), "<secret>");
        }
    }
    s
}

/// Records the request and answers as every integration's judge takes for success (the answer
/// a dry run's capture gives too). `shown` is the URL as the dry run redacts it.
async fn receive(
    State((got, shown)): State<(Got, String)>,
    uri: axum::http::Uri,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let query = match uri.query() {
        Some(q) if body.is_empty() => {
            let mut out = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                out.append_pair(&k, &redact(&v));
            }
            Some(out.finish())
        }
        _ => None,
    };
    got.lock()
        .unwrap()
        .push((shown, query, redact(&String::from_utf8_lossy(&body))));
    let reply = tocsin_notify::capture::accepted();
    ([("content-type", "application/json")], reply.body)
}

/// The stand-in for Pushover: an HTTP proxy that takes the CONNECT to api.pushover.net:443
/// itself and serves the tunnel with a certificate from its own CA (written to `ca_file`).
async fn pushover_proxy(got: Got, ca_file: &std::path::Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["api.pushover.net".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(ca_file, ca.pem()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = Router::new()
        .route("/{*path}", axum::routing::any(receive))
        .with_state((got, "https://api.pushover.net/<secret>".to_string()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let mut tcp = BufReader::new(tcp);
                let mut line = String::new();
                let mut head = Vec::new();
                while tcp.read_line(&mut line).await.unwrap_or(0) > 0 && line != "\r\n" {
                    head.push(std::mem::take(&mut line));
                }
                assert!(
                    head.first()
                        .is_some_and(|l| l.starts_with("CONNECT api.pushover.net:443 ")),
                    "{head:?}"
                );
                let mut tcp = tcp.into_inner();
                tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// An email's parts made at sending (date, message id, MIME boundary) as placeholders.
fn steady_email(msg: &str) -> String {
    let mut out = msg.to_string();
    if let Some(b) = msg.split("boundary=\"").nth(1).and_then(|r| r.split('"').next()) {
        out = out.replace(b, "BOUNDARY");
    }
    out.split("\r\n")
        .map(|l| {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("date:") {
                "Date: DATE"
            } else if lower.starts_with("message-id:") {
                "Message-ID: ID"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The stand-in for email: an SMTP server that takes every message and records it (its dots
/// unstuffed) as the dry run shows it.
async fn smtp_server(got: Got) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let got = got.clone();
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            w.write_all(b"354 go on\r\n").await.unwrap();
                            let mut msg = Vec::new();
                            loop {
                                let mut l = Vec::new();
                                if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if l == b".\r\n" {
                                    break;
                                }
                                let l = l.strip_prefix(b".").unwrap_or(&l);
                                msg.extend_from_slice(l);
                            }
                            let msg = String::from_utf8_lossy(&msg);
                            let msg = msg.strip_suffix("\r\n").unwrap_or(&msg);
                            got.lock().unwrap().push((
                                format!("smtp://127.0.0.1:{port}"),
                                None,
                                steady_email(&redact(msg)),
                            ));
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(answer).await.unwrap();
                }
            });
        }
    });
    port
}

/// Where the stand-ins listen.
#[derive(Clone, Debug)]
struct Sinks {
    http: String,
    proxy: String,
    ca_file: String,
    smtp: u16,
}

/// A generated route: a matcher on `a` or `b`, `continue`, its group_by, and maybe one child.
#[derive(Clone, Debug)]
struct GenRoute {
    label: &'static str,
    op: &'static str,
    value: &'static str,
    cont: bool,
    group_by: Option<&'static str>,
    child: Option<Box<GenRoute>>,
}

fn gen_route(depth: u32) -> BoxedStrategy<GenRoute> {
    let leaf = (
        prop::sample::select(vec!["a", "b"]),
        prop::sample::select(vec!["=", "!=", "=~"]),
        prop::sample::select(vec!["x", "y", "x|y", ""]),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["[alertname]", "[a, b]", "['...']", "[]"])),
    );
    if depth == 0 {
        leaf.prop_map(|(label, op, value, cont, group_by)| GenRoute {
            label,
            op,
            value,
            cont,
            group_by,
            child: None,
        })
        .boxed()
    } else {
        (leaf, prop::option::of(gen_route(depth - 1)))
            .prop_map(|((label, op, value, cont, group_by), child)| GenRoute {
                label,
                op,
                value,
                cont,
                group_by,
                child: child.map(Box::new),
            })
            .boxed()
    }
}

/// The YAML of a route and its child, receivers numbered from `n`.
fn route_yaml(r: &GenRoute, indent: &str, n: &mut usize, receivers: &mut Vec<String>) -> String {
    let name = format!("r{}", *n);
    *n += 1;
    receivers.push(name.clone());
    let mut y = format!(
        "{indent}- matchers: ['{}{}\"{}\"']\n{indent}  receiver: {name}\n{indent}  continue: {}\n",
        r.label, r.op, r.value, r.cont
    );
    if let Some(g) = r.group_by {
        y.push_str(&format!("{indent}  group_by: {g}\n"));
    }
    if let Some(c) = &r.child {
        y.push_str(&format!("{indent}  routes:\n"));
        y.push_str(&route_yaml(c, &format!("{indent}  "), n, receivers));
    }
    y
}

/// Each receiver's integrations, all at the stand-in (`/<receiver>/<integration>`).
fn receiver_yaml(name: &str, sinks: &Sinks, kinds: &[usize]) -> String {
    let sink = &sinks.http;
    let mut y = format!("- name: {name}\n");
    for k in kinds {
        y.push_str(&match k {
            0 => format!("  webhook_configs: [{{url: '{sink}/{name}/webhook', send_resolved: true}}]\n"),
            1 => format!("  slack_configs: [{{api_url: '{sink}/{name}/slack', channel: '#c'}}]\n"),
            2 => format!("  pagerduty_configs: [{{routing_key: 'rk-{name}-secret', url: '{sink}/{name}/pd'}}]\n"),
            3 => format!("  opsgenie_configs: [{{api_key: 'ok-{name}', api_url: '{sink}/{name}/og/'}}]\n"),
            4 => format!("  discord_configs: [{{webhook_url: '{sink}/{name}/discord'}}]\n"),
            5 => format!("  msteamsv2_configs: [{{webhook_url: '{sink}/{name}/teams'}}]\n"),
            6 => format!("  msteams_configs: [{{webhook_url: '{sink}/{name}/teams1'}}]\n"),
            7 => format!("  telegram_configs: [{{api_url: '{sink}/{name}/tg', bot_token: 'tok-{name}-secret', chat_id: -1001}}]\n"),
            8 => format!(
                "  webex_configs: [{{api_url: '{sink}/{name}/webex', room_id: room, http_config: {{authorization: {{credentials: t}}}}}}]\n"
            ),
            9 => format!("  victorops_configs: [{{api_key: 'vo-{name}-secret', routing_key: team, api_url: '{sink}/{name}/vo/'}}]\n"),
            10 => format!("  mattermost_configs: [{{webhook_url: '{sink}/{name}/mm'}}]\n"),
            11 => format!("  rocketchat_configs: [{{api_url: '{sink}/{name}/rc/', token: t, token_id: i, channel: '#c'}}]\n"),
            12 => format!("  incidentio_configs: [{{url: '{sink}/{name}/incident', alert_source_token: 'io-{name}-secret'}}]\n"),
            13 => format!(
                "  jira_configs: [{{api_url: '{sink}/{name}/rest/api/2', project: OPS, issue_type: Bug, http_config: {{basic_auth: {{username: u, password: p}}}}}}]\n"
            ),
            14 => format!(
                "  wechat_configs: [{{api_url: '{sink}/{name}/wx/', corp_id: corp, api_secret: 'wx-{name}-secret', to_user: alice}}]\n"
            ),
            15 => format!(
                "  sns_configs: [{{api_url: '{sink}/{name}/sns', sigv4: {{region: eu-west-1, access_key: a, secret_key: s}}, topic_arn: 'arn:aws:sns:eu-west-1:1:t'}}]\n"
            ),
            16 => format!(
                "  pushover_configs: [{{token: 'po-{name}-secret', user_key: 'pu-{name}-secret', http_config: {{proxy_url: '{}', tls_config: {{ca_file: '{}'}}}}}}]\n",
                sinks.proxy, sinks.ca_file
            ),
            _ => format!(
                "  email_configs: [{{to: 'oncall-{name}@example.org', from: 'tocsin@example.org', smarthost: '127.0.0.1:{}', require_tls: false}}]\n",
                sinks.smtp
            ),
        });
    }
    y
}

#[derive(Debug)]
struct Case {
    config: String,
    labels: BTreeMap<String, String>,
}

/// How many integration kinds [`receiver_yaml`] knows.
const KINDS: usize = 18;

fn gen_case(sinks: Sinks) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(gen_route(1), 1..4),
        prop::sample::select(vec!["x", "y", ""]),
        prop::sample::select(vec!["x", "y", ""]),
        prop::collection::vec(prop::sample::subsequence((0..KINDS).collect::<Vec<_>>(), 1..4), 8),
    )
        .prop_map(move |(routes, a, b, kinds)| {
            let (mut n, mut receivers) = (1, vec!["r0".to_string()]);
            let mut tree = String::new();
            for r in &routes {
                tree.push_str(&route_yaml(r, "  ", &mut n, &mut receivers));
            }
            let mut config = format!(
                "route:\n  receiver: r0\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1h\n  routes:\n{tree}receivers:\n"
            );
            for (i, r) in receivers.iter().enumerate() {
                config.push_str(&receiver_yaml(r, &sinks, &kinds[i % kinds.len()]));
            }
            let mut labels: BTreeMap<String, String> = [("alertname".to_string(), "Down".to_string())].into();
            for (k, v) in [("a", a), ("b", b)] {
                if !v.is_empty() {
                    labels.insert(k.into(), v.into());
                }
            }
            Case { config, labels }
        })
}

/// Runs one case: the dry run's requests, then what the receivers got for the posted alert.
async fn run_case(case: &Case, got: &Got) -> (Vec<Shown>, Vec<Shown>) {
    let config = load(&case.config, std::path::Path::new("."), &Default::default()).expect(&case.config);
    let factory: NotifierFactory = Arc::new(|r, shared| tocsin_notify::build_integrations(r, "Tocsin/test", shared));
    let app = App::new(Settings::new("unused.yml"), config, factory, Clock::system()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(app.clone().run_scheduler(rx));
    let labels: Value = json!(case.labels);
    let resp = tocsin_server::api::router(app.clone(), "/")
        .oneshot(
            axum::http::Request::post("/api/tocsin/v1/dry-run")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({"labels": labels, "startsAt": "2026-12-07T10:00:00Z"}).to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    let dry: Value = serde_json::from_slice(&bytes).unwrap();
    let mut shown = Vec::new();
    for route in dry["routes"].as_array().unwrap() {
        for n in route["notifications"].as_array().unwrap() {
            for r in n["requests"].as_array().unwrap() {
                let body = r["body"].as_str().unwrap();
                let body = if r["method"] == "SMTP" {
                    steady_email(body)
                } else {
                    body.to_string()
                };
                shown.push((
                    r["url"].as_str().unwrap().to_string(),
                    r["query"].as_str().map(str::to_string),
                    body,
                ));
            }
        }
    }
    got.lock().unwrap().clear();
    let posted = PostedAlert {
        labels: case.labels.clone().into_iter().collect(),
        starts_at: "2026-12-07T10:00:00Z".parse().unwrap(),
        ..PostedAlert::default()
    };
    assert!(app.post_alerts(vec![posted]).is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < shown.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing more arrives: every flush (all started at the post, group_wait 0s) has ended.
    assert_eq!(app.drain(Duration::from_secs(20)).await, 0);
    let _ = tx.send(true);
    let _ = scheduler.await;
    let mut sent = got.lock().unwrap().clone();
    sent.sort();
    shown.sort();
    (shown, sent)
}

#[test]
fn a_dry_run_renders_exactly_what_is_then_sent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let got = Got::default();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("pushover-ca.pem");
    let sinks = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{*path}", axum::routing::any(receive))
            .with_state((got.clone(), tocsin_notify::capture::origin_only(&format!("{http}/x"))));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sinks {
            http,
            proxy: pushover_proxy(got.clone(), &ca_file).await,
            ca_file: ca_file.display().to_string(),
            smtp: smtp_server(got.clone()).await,
        }
    });
    // Every integration at once, whatever the generator picks below.
    let every = Case {
        config: format!(
            "route:\n  receiver: r0\n  group_wait: 0s\nreceivers:\n{}",
            receiver_yaml("r0", &sinks, &(0..KINDS).collect::<Vec<_>>())
        ),
        labels: [("alertname".to_string(), "Down".to_string())].into(),
    };
    let (shown, sent) = rt.block_on(run_case(&every, &got));
    // Jira searches, then creates; WeChat fetches its token, then sends.
    assert_eq!(shown.len(), KINDS + 2, "{shown:#?}");
    assert_eq!(shown, sent);
    let pushover = shown
        .iter()
        .find(|s| s.0.starts_with("https://api.pushover.net"))
        .unwrap();
    let params = pushover.1.as_deref().unwrap();
    for p in [
        "token=%3Csecret%3E",
        "user=%3Csecret%3E",
        "title=%5BFIRING%3A1%5D++%28Down%29",
    ] {
        assert!(
            params.split('&').any(|kv| kv.starts_with(p)),
            "the dry run shows Pushover's parameters: {params}"
        );
    }
    let email = shown.iter().find(|s| s.0.starts_with("smtp://")).unwrap();
    assert!(email.2.contains("\r\nTo: oncall-r0@example.org\r\n"), "{}", email.2);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&gen_case(sinks.clone()), |case| {
            let (shown, sent) = rt.block_on(run_case(&case, &got));
            prop_assert!(!shown.is_empty(), "every alert takes at least the root route");
            prop_assert_eq!(shown, sent, "{}", case.config);
            Ok(())
        })
        .unwrap();
}
