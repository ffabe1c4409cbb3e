//! Property: a dry run shows what is then sent. Over generated routing trees (matchers,
//! `continue`, `group_by`, nesting) and label sets, the requests a dry run renders for an alert
//! (one per route it takes and integration of that route's receiver: webhook, Slack, PagerDuty,
//! Opsgenie, Discord, both Teams, Telegram, Webex, VictorOps, Mattermost, Rocket.Chat,
//! incident.io, Jira and WeChat, each multi-step protocol's every request included) are, byte
//! for byte and to the same endpoints, the requests the receivers get when the alert is posted
//! (secrets redacted alike).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use proptest::prelude::*;
use serde_json::{Value, json};
use tocsin_core::alert::PostedAlert;
use tocsin_core::config::load;
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tower::ServiceExt;

/// (path, body) of each request the stand-in receivers got.
type Got = Arc<Mutex<Vec<(String, String)>>>;

/// Records the request and answers as every integration's judge takes for success (the answer
/// a dry run's capture gives too).
async fn receive(State(got): State<Got>, uri: axum::http::Uri, body: Bytes) -> impl axum::response::IntoResponse {
    got.lock()
        .unwrap()
        .push((uri.path().to_string(), String::from_utf8_lossy(&body).into_owned()));
    let reply = tocsin_notify::capture::accepted();
    ([("content-type", "application/json")], reply.body)
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
fn receiver_yaml(name: &str, sink: &str, kinds: &[usize]) -> String {
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
            _ => format!(
                "  wechat_configs: [{{api_url: '{sink}/{name}/wx/', corp_id: corp, api_secret: 'wx-{name}-secret', to_user: alice}}]\n"
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

fn gen_case(sink: String) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(gen_route(1), 1..4),
        prop::sample::select(vec!["x", "y", ""]),
        prop::sample::select(vec!["x", "y", ""]),
        prop::collection::vec(prop::sample::subsequence((0usize..15).collect::<Vec<_>>(), 1..4), 8),
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
                config.push_str(&receiver_yaml(r, &sink, &kinds[i % kinds.len()]));
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
async fn run_case(case: &Case, got: &Got, sink: &str) -> (Vec<(String, String)>, Vec<(String, String)>) {
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
                shown.push((
                    r["url"].as_str().unwrap().to_string(),
                    r["body"].as_str().unwrap().to_string(),
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
    let origin = tocsin_notify::capture::origin_only(&format!("{sink}/x"));
    let mut sent: Vec<(String, String)> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            // Redacted as the dry run redacts: the URL to its origin, the routing keys.
            let mut b = body.clone();
            for r in 0..16 {
                for kind in ["rk", "vo", "io", "tok", "wx"] {
                    b = b.replace(&format!("{kind}-r{r}-secret"), "<secret>");
                }
            }
            (origin.clone(), b)
        })
        .collect();
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
    let sink = rt.block_on(async {
        let app = Router::new()
            .route("/{*path}", axum::routing::any(receive))
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    // Every integration at once, whatever the generator picks below.
    let every = Case {
        config: format!(
            "route:\n  receiver: r0\n  group_wait: 0s\nreceivers:\n{}",
            receiver_yaml("r0", &sink, &(0..15).collect::<Vec<_>>())
        ),
        labels: [("alertname".to_string(), "Down".to_string())].into(),
    };
    let (shown, sent) = rt.block_on(run_case(&every, &got, &sink));
    // Jira searches, then creates; WeChat fetches its token, then sends.
    assert_eq!(shown.len(), 17, "{shown:#?}");
    assert_eq!(shown, sent);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&gen_case(sink.clone()), |case| {
            let (shown, sent) = rt.block_on(run_case(&case, &got, &sink));
            prop_assert!(!shown.is_empty(), "every alert takes at least the root route");
            prop_assert_eq!(shown, sent, "{}", case.config);
            Ok(())
        })
        .unwrap();
}
