//! `POST /api/tocsin/v1/dry-run`: what this replica would do with an alert, from its live state,
//! without sending: the routes it takes and their receivers, its group (key, labels, current
//! members), what would mute it (silences, an inhibition, time intervals), whether the
//! notification log would let it notify and why, and the exact request each integration would
//! send (through the integrations' own code, captured instead of sent; secrets redacted, see
//! [`tocsin_notify::capture`]). Optionally against a candidate configuration posted with it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::alert::{Alert, PostedAlert};
use tocsin_core::config::Config;
use tocsin_core::group::GroupAlerts;
use tocsin_core::inhibit::Inhibitor;
use tocsin_core::labels::{LabelSet, hash_alert};
use tocsin_core::nflog::{NotifyReason, ReceiverKey, needs_update};
use tocsin_core::route::{GroupBy, Route};
use tocsin_notify::NotifyData;
use tocsin_notify::capture::Capture;

use crate::api::json_response;
use crate::app::{Active, App};

/// How long one integration's rendering may take.
const RENDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DryRunRequest {
    labels: LabelSet,
    #[serde(default)]
    annotations: LabelSet,
    #[serde(default)]
    starts_at: Option<Timestamp>,
    #[serde(default)]
    ends_at: Option<Timestamp>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    /// A candidate `alertmanager.yml`, instead of the running one.
    #[serde(default)]
    config: Option<String>,
}

fn bad(msg: impl Into<String>) -> Response {
    crate::api::error_string(StatusCode::BAD_REQUEST, msg)
}

/// `POST /api/tocsin/v1/dry-run`.
pub(crate) async fn dry_run(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: DryRunRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("invalid dry-run request: {e}")),
    };
    let Ok(_permit) = app.heavy_reads.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let now = app.clock.now();
    let live = app.active();
    let candidate = req.config.is_some();
    let config: Arc<Config> = match &req.config {
        None => live.config.clone(),
        Some(text) => {
            let base = app.settings.config_path.parent().unwrap_or(std::path::Path::new("."));
            match tocsin_core::config::load(text, base, &app.settings.load) {
                Ok(c) => Arc::new(c),
                Err(e) => return bad(format!("config: {e}")),
            }
        }
    };
    let posted = PostedAlert {
        labels: req.labels,
        annotations: req.annotations,
        starts_at: req.starts_at.unwrap_or(tocsin_core::time::ZERO),
        ends_at: req.ends_at.unwrap_or(tocsin_core::time::ZERO),
        generator_url: req.generator_url,
    };
    let alert =
        match tocsin_core::alert::prepare(posted, now, config.resolve_timeout, app.settings.load.name_validation()) {
            Ok(a) => Arc::new(a),
            Err(e) => return bad(e),
        };
    // The integrations of the receivers the alert routes to, built again to capture instead of
    // send; all of a candidate configuration's, so that one a reload would refuse is refused.
    let receivers: std::collections::HashSet<String> = config
        .route
        .match_routes(&alert.labels)
        .iter()
        .map(|r| r.receiver.clone())
        .collect();
    let capture = Capture::default();
    let dry = match crate::reload::build_active_for(
        (*config).clone(),
        &app.factory,
        &prometheus_client::metrics::counter::Counter::default(),
        Some(capture.clone()),
        |name| candidate || receivers.contains(name),
    ) {
        Ok(a) => a,
        Err(e) => return bad(format!("config: {e}")),
    };
    // A candidate configuration's inhibition rules see the alerts stored now.
    let candidate_inhibitor = candidate.then(|| {
        let mut ih = Inhibitor::new(config.inhibit_rules.clone());
        for a in app.store.list() {
            ih.observe(&a);
        }
        ih.observe(&alert);
        ih
    });
    let mut routes = Vec::new();
    for route in config.route.match_routes(&alert.labels) {
        let r = describe(&app, &dry, route, &alert, candidate_inhibitor.as_ref(), now, &capture).await;
        routes.push(r);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "config": if candidate { "candidate" } else { "active" },
            "alert": {
                "fingerprint": alert.fingerprint.to_string(),
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": alert.starts_at,
                "endsAt": alert.ends_at,
                "status": if alert.resolved_at(now) { "resolved" } else { "firing" },
            },
            "routes": routes,
        }),
    )
}

fn group_by(g: &GroupBy) -> Value {
    match g {
        GroupBy::All => json!("..."),
        GroupBy::Labels(names) => json!(names),
    }
}

fn duration(d: Duration) -> String {
    tocsin_core::duration::format_duration(d)
}

/// One route the alert takes, and what would happen on it.
async fn describe(
    app: &App,
    dry: &Active,
    route: &Route,
    alert: &Arc<Alert>,
    candidate_inhibitor: Option<&Inhibitor>,
    now: Timestamp,
    capture: &Capture,
) -> Value {
    let config = &dry.config;
    let mut path = Vec::new();
    let mut at = Some(route.index);
    while let Some(i) = at {
        let r = &config.route.nodes[i];
        let ms: Vec<String> = r.matchers.iter().map(ToString::to_string).collect();
        path.push(json!({"matchers": format!("{{{}}}", ms.join(", ")), "receiver": r.receiver, "continue": r.continue_matching}));
        at = r.parent;
    }
    path.reverse();
    let group_labels = route.group_labels(&alert.labels);
    let group_key = route.group_key(&group_labels);
    // The group as it stands, with this alert in it.
    let mut group = GroupAlerts::default();
    let existing: Vec<String> = {
        let d = app.dispatcher.lock();
        match d.groups.values().find(|g| g.info.key == group_key) {
            Some(g) => {
                for a in g.alerts.iter() {
                    group.insert(a.clone());
                }
                g.alerts.iter().map(|a| a.fingerprint.to_string()).collect()
            }
            None => Vec::new(),
        }
    };
    let exists = !existing.is_empty();
    group.insert(alert.clone());
    let (_, mut alerts) = group.snapshot(now);
    // What mutes the alert itself.
    let inhibited_by = match candidate_inhibitor {
        Some(ih) => ih.inhibited_by(&alert.labels, now),
        None => app.inhibitor.read().inhibited_by(&alert.labels, now),
    };
    let silenced_by: Vec<Value> = {
        let sil = app.state.silences();
        sil.silenced_by(&alert.labels, now)
            .iter()
            .filter_map(|id| sil.get(id))
            .map(|s| json!({"id": s.id, "createdBy": s.created_by, "comment": s.comment, "endsAt": s.ends_at}))
            .collect()
    };
    let muted_by_time = app.muted_by_time(dry, route, now);
    // Every time interval the route names, and whether it is in effect now.
    let intervals: Vec<Value> = route
        .mute_time_intervals
        .iter()
        .map(|n| (n, "mute"))
        .chain(route.active_time_intervals.iter().map(|n| (n, "active")))
        .map(|(name, kind)| {
            let now_in = config
                .time_intervals
                .get(name)
                .is_some_and(|i| tocsin_core::timeinterval::any_contains(i, now));
            json!({"name": name, "kind": kind, "inEffect": now_in})
        })
        .collect();
    // What the flush would send: the group's alerts that nothing mutes.
    {
        let ih = app.inhibitor.read();
        let sil = app.state.silences();
        alerts.retain(|a| {
            let inhibited = match candidate_inhibitor {
                Some(c) => c.inhibited_by(&a.labels, now).is_some(),
                None => ih.inhibited_by(&a.labels, now).is_some(),
            };
            !inhibited && sil.silenced_by(&a.labels, now).is_empty()
        });
    }
    if muted_by_time.is_some() {
        alerts.clear();
    }
    let mut notifications = Vec::new();
    for integ in dry.integrations.get(&route.receiver).into_iter().flatten() {
        let name = format!("{}[{}]", integ.kind, integ.idx);
        let rk = ReceiverKey {
            group_name: route.receiver.clone(),
            integration: integ.kind.to_string(),
            idx: integ.idx,
        };
        let firing: std::collections::HashSet<u64> = alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .map(|a| hash_alert(&a.labels))
            .collect();
        let resolved: std::collections::HashSet<u64> = alerts
            .iter()
            .filter(|a| a.resolved_at(now))
            .map(|a| hash_alert(&a.labels))
            .collect();
        let (decision, last, receiver_data) = app.state.view(&group_key, &rk, |v| {
            (
                needs_update(
                    v.entry,
                    &firing,
                    &resolved,
                    integ.send_resolved,
                    route.repeat_interval,
                    now,
                ),
                v.entry.map(|e| e.timestamp),
                v.entry.map(|e| e.receiver_data.clone()).unwrap_or_default(),
            )
        });
        let to_send: Vec<Alert> = alerts
            .iter()
            .filter(|a| integ.send_resolved || !a.resolved_at(now))
            .cloned()
            .collect();
        let (would, why) = match (&decision, alerts.is_empty()) {
            (_, true) => (false, "every alert of the group is muted".to_string()),
            (Some(r), false) => (true, r.as_str().to_string()),
            (None, false) => (
                false,
                match last {
                    Some(t) => format!("the notification log shows this state notified at {t}"),
                    None => "nothing in the group needs a notification".into(),
                },
            ),
        };
        let mut data = NotifyData {
            receiver: route.receiver.clone(),
            group_key: group_key.clone(),
            group_labels: group_labels.clone(),
            reason: decision.unwrap_or(NotifyReason::FirstNotification),
            external_url: app.settings.external_url.clone(),
            route_labels: Default::default(),
            alerts: to_send,
            receiver_data,
        };
        if let Some(labels) = dry.route_labels.get(route.index).cloned().flatten() {
            let d = data.clone();
            if let Ok((rendered, _)) = tokio::task::spawn_blocking(move || labels.render(&d, now)).await {
                data.route_labels = rendered;
            }
        }
        let mut entry =
            json!({"integration": name, "wouldNotify": would, "why": why, "sendResolved": integ.send_resolved});
        if data.alerts.is_empty() {
            entry["requests"] = json!([]);
        } else {
            capture.take();
            let outcome = tokio::time::timeout(RENDER_TIMEOUT, integ.notifier.notify(&data)).await;
            entry["requests"] = json!(capture.take());
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => entry["error"] = json!(e.message),
                Err(_) => entry["error"] = json!(format!("rendering took longer than {RENDER_TIMEOUT:?}")),
            }
        }
        notifications.push(entry);
    }
    json!({
        "path": path,
        "routeKey": route.key,
        "receiver": route.receiver,
        "groupBy": group_by(&route.group_by),
        "groupWait": duration(route.group_wait),
        "groupInterval": duration(route.group_interval),
        "repeatInterval": duration(route.repeat_interval),
        "groupKey": group_key,
        "groupLabels": group_labels,
        "group": {"exists": exists, "alerts": existing},
        "silencedBy": silenced_by,
        "inhibitedBy": inhibited_by.map(|f| json!({"fingerprint": f.to_string()})),
        "mutedByTime": muted_by_time,
        "timeIntervals": intervals,
        "muted": inhibited_by.is_some() || !silenced_by.is_empty() || muted_by_time.is_some(),
        "notifications": notifications,
    })
}

/// `POST /api/tocsin/v1/receivers/{name}/test` (optional body: the test alert's `labels` and
/// `annotations`): sends one test notification through each of the receiver's integrations, one
/// attempt each, all at once, and reports each outcome within [`RENDER_TIMEOUT`]. Nothing is logged in the
/// notification log; each outcome is recorded as an event.
pub(crate) async fn test_receiver(
    State(app): State<Arc<App>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct TestRequest {
        #[serde(default)]
        labels: LabelSet,
        #[serde(default)]
        annotations: LabelSet,
    }
    let req: TestRequest = if body.is_empty() {
        TestRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad(format!("invalid test request: {e}")),
        }
    };
    let active = app.active();
    let integrations = match active.integrations.get(&name) {
        Some(i) => i.clone(),
        None => {
            let Some(r) = active.config.receivers.get(&name) else {
                return crate::api::error_string(StatusCode::NOT_FOUND, format!("receiver {name:?} not found"));
            };
            // A receiver no route uses yet is built for the test.
            let shared = match crate::reload::load_templates(&active.config.templates) {
                Ok(t) => tocsin_notify::Shared {
                    templates: Arc::new(t),
                    ..tocsin_notify::Shared::default()
                },
                Err(e) => return crate::api::error_string(StatusCode::INTERNAL_SERVER_ERROR, e),
            };
            match (app.factory)(r, &shared) {
                Ok(i) => i,
                Err(e) => return crate::api::error_string(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
    };
    let now = app.clock.now();
    let mut labels = req.labels;
    if labels.is_empty() {
        labels = [
            ("alertname".to_string(), "TestAlert".to_string()),
            ("instance".to_string(), "Tocsin".to_string()),
        ]
        .into();
    }
    let mut annotations = req.annotations;
    if annotations.is_empty() {
        annotations = [
            ("summary".to_string(), "Notification test".to_string()),
            (
                "description".to_string(),
                format!("A test notification sent by Tocsin through receiver {name}."),
            ),
        ]
        .into();
    }
    let alert = Alert {
        fingerprint: tocsin_core::labels::fingerprint(&labels),
        labels: labels.clone(),
        annotations,
        starts_at: now,
        ends_at: tocsin_core::time::ZERO,
        ..Alert::default()
    };
    let group_labels: LabelSet = labels
        .get("alertname")
        .map(|v| [("alertname".to_string(), v.to_string())].into())
        .unwrap_or_default();
    let group_key = format!(
        "{{}}/{{tocsin_test=\"true\"}}:{}",
        tocsin_core::labels::labels_to_string(&group_labels)
    );
    let data = NotifyData {
        receiver: name.clone(),
        group_key: group_key.clone(),
        group_labels: group_labels.clone(),
        reason: NotifyReason::FirstNotification,
        external_url: app.settings.external_url.clone(),
        route_labels: Default::default(),
        alerts: vec![alert.clone()],
        receiver_data: Default::default(),
    };
    // The integrations at once: the answer comes within RENDER_TIMEOUT however many there are.
    let data = Arc::new(data);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, integ) in integrations.iter().enumerate() {
        let (notifier, data) = (integ.notifier.clone(), data.clone());
        tasks.spawn(async move {
            let started = tokio::time::Instant::now();
            let outcome = tokio::time::timeout(RENDER_TIMEOUT, notifier.notify(&data)).await;
            let error = match outcome {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.message),
                Err(_) => Some(format!("no answer within {RENDER_TIMEOUT:?}")),
            };
            (i, error, started.elapsed())
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                return crate::api::error_string(StatusCode::INTERNAL_SERVER_ERROR, format!("receiver test: {e}"));
            }
        }
    }
    outcomes.sort_by_key(|o| o.0);
    let mut results = Vec::new();
    let mut all_ok = true;
    for (i, error, took) in outcomes {
        let integ = &integrations[i];
        all_ok &= error.is_none();
        let label = format!("{}[{}]", integ.kind, integ.idx);
        let mut e = tocsin_core::events::Event::new(if error.is_none() {
            tocsin_core::events::Kind::Notification
        } else {
            tocsin_core::events::Kind::NotificationFailed
        });
        e.group_key.clone_from(&group_key);
        e.receiver.clone_from(&name);
        e.integration.clone_from(&label);
        e.labels = group_labels.clone();
        e.reason = match &error {
            None => "receiver test".into(),
            Some(m) => format!("receiver test: {m}"),
        };
        app.record(e);
        results.push(json!({
            "integration": label,
            "ok": error.is_none(),
            "error": error,
            "durationSeconds": took.as_secs_f64(),
        }));
    }
    json_response(
        StatusCode::OK,
        &json!({"receiver": name, "ok": all_ok, "alert": {"labels": alert.labels, "annotations": alert.annotations}, "integrations": results}),
    )
}
