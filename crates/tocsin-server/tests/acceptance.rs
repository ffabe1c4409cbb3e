//! Alertmanager's acceptance timelines (§8.2, §8.5) replayed in virtual time.
//!
//! Each test runs one replica in-process on tokio's paused clock, with in-memory notifiers that
//! record when each notification arrived and what it held. Times are seconds after T0; since the
//! clock is virtual, every notification is asserted at its exact instant, where Alertmanager's
//! real-time harness needs tolerance windows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tocsin_core::alert::{Alert, PostedAlert};
use tocsin_core::config::Receiver;
use tocsin_core::labels::LabelSet;
use tocsin_core::time::{ZERO, is_zero};
use tocsin_notify::{BoxFuture, Kept, Notifier, NotifyData, NotifyError};
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tocsin_server::reload::read_config;
use tokio::time::Instant;

const T0: &str = "2026-01-01T00:00:00Z";

fn t0() -> Timestamp {
    T0.parse().unwrap()
}

fn at(secs: f64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs_f64(secs)).unwrap()
}

fn secs(t: Timestamp) -> f64 {
    (t.duration_since(t0()).as_millis_f64()).round() / 1000.0
}

/// Decides, per attempt, what a fake receiver does at a given time.
type Behaviour = Arc<dyn Fn(f64) -> Reply + Send + Sync>;

#[derive(Clone, Copy)]
enum Reply {
    Record,
    /// Answers success without recording (Alertmanager's mock `Func` returning true).
    Swallow,
    /// Takes this long, then records.
    SlowThenRecord(f64),
}

#[derive(Default)]
struct Collector {
    /// (integration name, seconds after T0, alerts as text)
    got: Mutex<Vec<(String, f64, Vec<String>)>>,
}

struct Recorder {
    name: String,
    start: Instant,
    behaviour: Behaviour,
    collector: Arc<Collector>,
}

/// Describes an alert like the acceptance tests' `Alert(...).Active(start, end)`.
fn describe(a: &Alert) -> String {
    let labels = a
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let ann = a
        .annotations
        .get("ann")
        .map(|v| format!(" ann={v}"))
        .unwrap_or_default();
    if is_zero(a.ends_at) {
        format!("{labels}{ann} [{}]", secs(a.starts_at))
    } else {
        format!("{labels}{ann} [{},{}]", secs(a.starts_at), secs(a.ends_at))
    }
}

impl Notifier for Recorder {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move {
            let now = (Instant::now() - self.start).as_secs_f64();
            match (self.behaviour)(now) {
                Reply::Swallow => return Ok(None),
                Reply::SlowThenRecord(d) => tokio::time::sleep(Duration::from_secs_f64(d)).await,
                Reply::Record => {}
            }
            let arrived = ((Instant::now() - self.start).as_secs_f64() * 1000.0).round() / 1000.0;
            let mut alerts: Vec<String> = data.alerts.iter().map(describe).collect();
            alerts.sort();
            self.collector
                .got
                .lock()
                .unwrap()
                .push((self.name.clone(), arrived, alerts));
            Ok(None)
        })
    }
}

struct Harness {
    app: Arc<App>,
    start: Instant,
    collector: Arc<Collector>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a replica; `behaviour(name)` gives each webhook (`receiver/idx`) its behaviour.
    async fn start(config: &str, behaviour: impl Fn(&str) -> Behaviour + Send + Sync + 'static) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alertmanager.yml");
        std::fs::write(&path, config).unwrap();
        let collector = Arc::new(Collector::default());
        let start = Instant::now();
        let c = collector.clone();
        let factory: NotifierFactory = Arc::new(move |r: &Receiver, _: &tocsin_notify::Shared| {
            Ok(tocsin_notify::webhooks_with(r, |i| {
                let name = format!("{}/{i}", r.name);
                Arc::new(Recorder {
                    behaviour: behaviour(&name),
                    name,
                    start,
                    collector: c.clone(),
                })
            }))
        });
        let settings = Settings {
            external_url: "http://tocsin.test".into(),
            ..Settings::new(path.clone())
        };
        let config = read_config(&path, &settings.load).unwrap();
        let app = App::new(settings, config, factory, Clock::new(t0())).unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(_tx);
        tokio::spawn(app.clone().run_scheduler(rx));
        Harness {
            app,
            start,
            collector,
            _dir: dir,
        }
    }

    async fn sleep_until(&self, t: f64) {
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(t)).await;
    }

    /// Posts alerts at time `t` (seconds after T0).
    async fn push(&self, t: f64, alerts: Vec<PostedAlert>) {
        self.sleep_until(t).await;
        let rejected = self.app.post_alerts(alerts);
        assert!(rejected.is_empty(), "{rejected:?}");
    }

    /// Runs until `t` and returns what each integration received, in order.
    async fn received(&self, until: f64) -> Vec<(String, f64, Vec<String>)> {
        self.sleep_until(until).await;
        self.collector.got.lock().unwrap().clone()
    }
}

/// Builds a posted alert; `start`/`end` ≤ 0 are sent as absent (the server fills them in).
fn alert(labels: &[(&str, &str)], start: f64, end: f64) -> PostedAlert {
    PostedAlert {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<LabelSet>(),
        starts_at: if start > 0.0 { at(start) } else { ZERO },
        ends_at: if end > 0.0 { at(end) } else { ZERO },
        ..PostedAlert::default()
    }
}

fn with_ann(mut a: PostedAlert, v: &str) -> PostedAlert {
    a.annotations.insert("ann", v);
    a
}

fn record(_: &str) -> Behaviour {
    Arc::new(|_| Reply::Record)
}

fn got(name: &str, t: f64, alerts: &[&str]) -> (String, f64, Vec<String>) {
    let mut v: Vec<String> = alerts.iter().map(|s| s.to_string()).collect();
    v.sort();
    (name.to_string(), t, v)
}

const WEBHOOK: &str = "  webhook_configs:\n  - url: http://127.0.0.1:1/\n";

#[tokio::test(start_paused = true)]
async fn merge_alerts_keeps_earliest_start_and_latest_annotations() {
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1ms\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    let a = [("alertname", "test")];
    h.push(1.0, vec![alert(&a, 1.1, 0.0)]).await;
    h.push(1.2, vec![alert(&a, 1.0, 0.0)]).await;
    h.push(2.1, vec![with_ann(alert(&a, 2.0, 0.0), "v1")]).await;
    h.push(3.6, vec![with_ann(alert(&a, 1.5, 0.0), "v2")]).await;
    h.push(4.6, vec![with_ann(alert(&a, 3.0, 4.5), "v2")]).await;
    h.push(
        4.8,
        vec![with_ann(alert(&a, 2.9, 4.8), "v3"), with_ann(alert(&a, 2.9, 4.1), "v3")],
    )
    .await;
    h.push(5.3, vec![alert(&a, 5.0, 0.0)]).await;
    assert_eq!(
        h.received(6.5).await,
        vec![
            got("r/0", 2.0, &["alertname=test [1]"]),
            got("r/0", 3.0, &["alertname=test ann=v1 [1]"]),
            got("r/0", 4.0, &["alertname=test ann=v2 [1]"]),
            got("r/0", 5.0, &["alertname=test ann=v3 [1,4.8]"]),
            // The group was emptied and destroyed at 5 (Alertmanager ≥ 0.34); the new alert
            // opens a new group whose group_wait ends at 6.3.
            got("r/0", 6.3, &["alertname=test [5]"]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn alerts_of_one_post_share_an_equal_generator_url() {
    let cfg = format!("route:\n  receiver: r\nreceivers:\n- name: r\n{WEBHOOK}");
    let h = Harness::start(&cfg, record).await;
    let with_url = |name: &str, url: &str| PostedAlert {
        generator_url: url.into(),
        ..alert(&[("alertname", name)], 0.0, 0.0)
    };
    h.push(
        1.0,
        vec![
            with_url("a", "http://prom/graph?g0.expr=up"),
            with_url("b", "http://prom/graph?g0.expr=up"),
            with_url("c", "http://prom/graph?g0.expr=down"),
            with_url("d", "http://prom/graph?g0.expr=up"),
        ],
    )
    .await;
    let stored = h.app.store.list();
    let url = |name: &str| {
        stored
            .iter()
            .find(|x| x.labels.get("alertname") == Some(name))
            .map(|x| x.generator_url.clone())
            .unwrap()
    };
    // Each keeps its own value; consecutive equal ones are one allocation.
    assert_eq!(&*url("a"), "http://prom/graph?g0.expr=up");
    assert_eq!(&*url("c"), "http://prom/graph?g0.expr=down");
    assert_eq!(&*url("d"), "http://prom/graph?g0.expr=up");
    assert!(Arc::ptr_eq(&url("a"), &url("b")));
}

#[tokio::test(start_paused = true)]
async fn repeat_then_resolve() {
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1ms\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    let a = [("alertname", "test")];
    h.push(1.0, vec![alert(&a, 1.0, 0.0)]).await;
    h.push(3.5, vec![alert(&a, 1.0, 3.0)]).await;
    assert_eq!(
        h.received(4.5).await,
        vec![
            got("r/0", 2.0, &["alertname=test [1]"]),
            got("r/0", 3.0, &["alertname=test [1]"]),
            got("r/0", 4.0, &["alertname=test [1,3]"]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_logs_per_integration() {
    // The second webhook swallows everything before 4.5: the log still says it was notified, so
    // it is next notified by the repeat at the t=6 tick, like the first.
    let cfg = "route:\n  receiver: r\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 3s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n  - url: http://127.0.0.1:2/\n";
    let h = Harness::start(cfg, |name| -> Behaviour {
        if name == "r/1" {
            Arc::new(|t| if t < 4.5 { Reply::Swallow } else { Reply::Record })
        } else {
            record(name)
        }
    })
    .await;
    h.push(1.0, vec![alert(&[("alertname", "test1")], 0.0, 0.0)]).await;
    let mut got_all = h.received(6.5).await;
    got_all.sort_by_key(|a| (a.0.clone(), a.1.to_bits()));
    assert_eq!(
        got_all,
        vec![
            got("r/0", 2.0, &["alertname=test1 [1]"]),
            got("r/0", 6.0, &["alertname=test1 [1]"]),
            got("r/1", 6.0, &["alertname=test1 [1]"]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn batching_waits_for_group_interval_and_repeat() {
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 4900ms\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    let n = |s| [("alertname", s)];
    h.push(1.1, vec![alert(&n("test1"), 1.0, 0.0)]).await;
    h.push(1.7, vec![alert(&n("test5"), 1.0, 0.0)]).await;
    h.push(
        3.3,
        vec![
            alert(&n("test2"), 1.5, 0.0),
            alert(&n("test3"), 1.5, 0.0),
            alert(&n("test4"), 1.6, 0.0),
        ],
    )
    .await;
    let all = [
        "alertname=test1 [1]",
        "alertname=test2 [1.5]",
        "alertname=test3 [1.5]",
        "alertname=test4 [1.6]",
        "alertname=test5 [1]",
    ];
    assert_eq!(
        h.received(9.5).await,
        vec![
            got("r/0", 2.1, &["alertname=test1 [1]", "alertname=test5 [1]"]),
            got("r/0", 4.1, &all),
            got("r/0", 9.1, &all),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn resolved_after_resolve_timeout() {
    let cfg = format!(
        "global:\n  resolve_timeout: 10s\nroute:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 5s\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    let l = |v| [("alertname", "test"), ("lbl", v)];
    h.push(
        1.0,
        vec![
            alert(&l("v1"), 0.0, 0.0),
            alert(&l("v2"), 0.0, 0.0),
            alert(&l("v3"), 0.0, 0.0),
        ],
    )
    .await;
    assert_eq!(
        h.received(13.0).await,
        vec![
            got(
                "r/0",
                2.0,
                &[
                    "alertname=test,lbl=v1 [1]",
                    "alertname=test,lbl=v2 [1]",
                    "alertname=test,lbl=v3 [1]"
                ]
            ),
            got(
                "r/0",
                12.0,
                &[
                    "alertname=test,lbl=v1 [1,11]",
                    "alertname=test,lbl=v2 [1,11]",
                    "alertname=test,lbl=v3 [1,11]"
                ]
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn resolved_filter_per_integration() {
    let cfg = "global:\n  resolve_timeout: 10s\nroute:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 5s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n    send_resolved: true\n  - url: http://127.0.0.1:2/\n    send_resolved: false\n";
    let h = Harness::start(cfg, record).await;
    let l = |v| [("alertname", "test"), ("lbl", v)];
    h.push(1.0, vec![alert(&l("v1"), 0.0, 0.0), alert(&l("v2"), 0.0, 0.0)])
        .await;
    h.push(3.0, vec![alert(&l("v1"), 1.0, 4.0), alert(&l("v3"), 0.0, 0.0)])
        .await;
    h.push(8.0, vec![alert(&l("v3"), 3.0, 0.0)]).await;
    let mut all = h.received(12.5).await;
    all.sort_by_key(|a| (a.0.clone(), a.1.to_bits()));
    assert_eq!(
        all,
        vec![
            got("r/0", 2.0, &["alertname=test,lbl=v1 [1]", "alertname=test,lbl=v2 [1]"]),
            got(
                "r/0",
                7.0,
                &[
                    "alertname=test,lbl=v1 [1,4]",
                    "alertname=test,lbl=v2 [1]",
                    "alertname=test,lbl=v3 [3]"
                ]
            ),
            got(
                "r/0",
                12.0,
                &["alertname=test,lbl=v2 [1,11]", "alertname=test,lbl=v3 [3]"]
            ),
            got("r/1", 2.0, &["alertname=test,lbl=v1 [1]", "alertname=test,lbl=v2 [1]"]),
            got("r/1", 7.0, &["alertname=test,lbl=v2 [1]", "alertname=test,lbl=v3 [3]"]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn reload_restarts_timers_without_duplicates() {
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 6s\n  repeat_interval: 10m\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    h.push(1.0, vec![alert(&[("alertname", "test1")], 0.0, 0.0)]).await;
    h.sleep_until(3.0).await;
    h.app.reload().await.unwrap();
    h.push(4.0, vec![alert(&[("alertname", "test2")], 0.0, 0.0)]).await;
    assert_eq!(
        h.received(9.5).await,
        vec![
            got("r/0", 2.0, &["alertname=test1 [1]"]),
            got("r/0", 9.0, &["alertname=test1 [1]", "alertname=test2 [4]"]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn broken_reload_keeps_the_running_config() {
    let cfg =
        format!("route:\n  receiver: r\n  group_wait: 1s\n  group_interval: 6s\nreceivers:\n- name: r\n{WEBHOOK}");
    let h = Harness::start(&cfg, record).await;
    h.push(1.0, vec![alert(&[("alertname", "test1")], 0.0, 0.0)]).await;
    h.sleep_until(1.5).await;
    std::fs::write(
        &h.app.settings.config_path,
        "route:\n  receiver: nobody\nreceivers:\n- name: r\n",
    )
    .unwrap();
    let err = h.app.reload().await.unwrap_err();
    assert_eq!(err, "undefined receiver \"nobody\" used in route");
    // The old config still routes and notifies with its own timers.
    h.push(3.0, vec![alert(&[("alertname", "test2")], 0.0, 0.0)]).await;
    assert_eq!(
        h.received(8.5).await,
        vec![
            got("r/0", 2.0, &["alertname=test1 [1]"]),
            got("r/0", 8.0, &["alertname=test1 [1]", "alertname=test2 [3]"]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_webhook_is_retried_within_the_flush() {
    // Like TestWebhookTimeout: attempts before t=3 take 1s against a 500ms timeout and are
    // retried with backoff; the first attempt after t=3 is fast and is the only delivery.
    let cfg = "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1m\n  repeat_interval: 1m\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n    timeout: 500ms\n";
    let h = Harness::start(cfg, |_| -> Behaviour {
        Arc::new(|t| {
            if t < 3.0 {
                Reply::SlowThenRecord(1.0)
            } else {
                Reply::Record
            }
        })
    })
    .await;
    h.push(1.0, vec![alert(&[("alertname", "test1")], 0.0, 0.0)]).await;
    let got_all = h.received(10.0).await;
    assert_eq!(got_all.len(), 1, "{got_all:?}");
    let (_, t, alerts) = &got_all[0];
    assert!((3.0..4.0).contains(t), "delivered at {t}");
    assert_eq!(alerts, &vec!["alertname=test1 [1]".to_string()]);
}

const INHIBIT_CFG: &str = "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1s\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\ninhibit_rules:\n- source_matchers: [alertname=JobDown]\n  target_matchers: [alertname=InstanceDown]\n  equal: [job, zone]\n";

#[tokio::test(start_paused = true)]
async fn inhibiting_follows_the_source_alert() {
    let h = Harness::start(INHIBIT_CFG, record).await;
    let l = |n, z| [("alertname", n), ("job", "testjob"), ("zone", z)];
    h.push(
        1.0,
        vec![
            alert(&l("test1", "aa"), 0.0, 0.0),
            alert(&l("InstanceDown", "aa"), 0.0, 0.0),
            alert(&l("InstanceDown", "ab"), 0.0, 0.0),
        ],
    )
    .await;
    h.push(2.2, vec![alert(&l("JobDown", "aa"), 0.0, 0.0)]).await;
    h.push(3.6, vec![alert(&l("JobDown", "aa"), 2.2, 3.6)]).await;
    let id_aa = "alertname=InstanceDown,job=testjob,zone=aa [1]";
    let id_ab = "alertname=InstanceDown,job=testjob,zone=ab [1]";
    let t1 = "alertname=test1,job=testjob,zone=aa [1]";
    assert_eq!(
        h.received(4.5).await,
        vec![
            got("r/0", 2.0, &[t1, id_aa, id_ab]),
            got("r/0", 3.0, &[t1, id_ab, "alertname=JobDown,job=testjob,zone=aa [2.2]"]),
            got(
                "r/0",
                4.0,
                &[t1, id_aa, id_ab, "alertname=JobDown,job=testjob,zone=aa [2.2,3.6]"]
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn always_inhibited_target_is_resolved_with_its_source() {
    let h = Harness::start(INHIBIT_CFG, record).await;
    let l = |n| [("alertname", n), ("job", "testjob"), ("zone", "aa")];
    h.push(
        1.0,
        vec![alert(&l("InstanceDown"), 1.0, 0.0), alert(&l("JobDown"), 1.0, 0.0)],
    )
    .await;
    h.push(
        2.6,
        vec![alert(&l("InstanceDown"), 1.0, 2.6), alert(&l("JobDown"), 1.0, 2.6)],
    )
    .await;
    assert_eq!(
        h.received(3.5).await,
        vec![
            got("r/0", 2.0, &["alertname=JobDown,job=testjob,zone=aa [1]"]),
            got(
                "r/0",
                3.0,
                &[
                    "alertname=InstanceDown,job=testjob,zone=aa [1,2.6]",
                    "alertname=JobDown,job=testjob,zone=aa [1,2.6]"
                ]
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn empty_inhibition_rule_is_tolerated() {
    let cfg = format!("route:\n  receiver: r\n  group_wait: 1s\nreceivers:\n- name: r\n{WEBHOOK}inhibit_rules:\n-\n");
    let h = Harness::start(&cfg, record).await;
    h.push(1.0, vec![alert(&[("alertname", "test1")], 0.0, 0.0)]).await;
    assert_eq!(h.received(2.5).await, vec![got("r/0", 2.0, &["alertname=test1 [1]"])]);
}

#[tokio::test(start_paused = true)]
async fn time_intervals_mute_and_activate_routes() {
    // T0 is Thursday 2026-01-01 00:00 UTC.
    let cfg = "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 1s\n  routes:\n  - matchers: [team=muted]\n    receiver: r\n    mute_time_intervals: [thursdays]\n  - matchers: [team=office]\n    receiver: r\n    active_time_intervals: [office-hours]\n  - matchers: [team=night]\n    receiver: r\n    active_time_intervals: [night]\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\ntime_intervals:\n- name: thursdays\n  time_intervals:\n  - weekdays: [thursday]\n- name: office-hours\n  time_intervals:\n  - times: [{start_time: '09:00', end_time: '17:00'}]\n- name: night\n  time_intervals:\n  - times: [{start_time: '00:00', end_time: '06:00'}]\n";
    let h = Harness::start(cfg, record).await;
    h.push(
        1.0,
        vec![
            alert(&[("alertname", "a"), ("team", "muted")], 0.0, 0.0),
            alert(&[("alertname", "b"), ("team", "office")], 0.0, 0.0),
            alert(&[("alertname", "c"), ("team", "night")], 0.0, 0.0),
        ],
    )
    .await;
    assert_eq!(
        h.received(5.0).await,
        vec![got("r/0", 2.0, &["alertname=c,team=night [1]"])]
    );
    // The API shows the muted groups' alerts as suppressed with the interval names.
    let groups = h.app.dispatcher().groups.len();
    assert_eq!(groups, 3);
}

fn silence(matchers: &str, start: f64, end: f64) -> tocsin_core::silence::Silence {
    tocsin_core::silence::Silence {
        matcher_sets: vec![tocsin_core::matchers::parse_matchers(matchers, Default::default()).unwrap()],
        starts_at: at(start),
        ends_at: at(end),
        created_by: "admin@example.com".into(),
        comment: "some comment".into(),
        ..Default::default()
    }
}

impl Harness {
    /// Creates a silence at time `t`; returns its id.
    async fn silence_at(&self, t: f64, s: tocsin_core::silence::Silence) -> String {
        self.sleep_until(t).await;
        self.app.state.set_silence(s, || format!("sil-{t}")).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn silencing_mutes_only_while_active() {
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1ms\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    h.push(
        1.0,
        vec![
            alert(&[("alertname", "test1")], 1.0, 0.0),
            alert(&[("alertname", "test2")], 1.0, 0.0),
        ],
    )
    .await;
    h.silence_at(2.3, silence("alertname=test1", 2.5, 4.5)).await;
    let both = ["alertname=test1 [1]", "alertname=test2 [1]"];
    assert_eq!(
        h.received(5.5).await,
        vec![
            got("r/0", 2.0, &both),
            got("r/0", 3.0, &["alertname=test2 [1]"]),
            got("r/0", 4.0, &["alertname=test2 [1]"]),
            got("r/0", 5.0, &both),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn deleting_a_silence_releases_its_alerts() {
    let cfg = format!(
        "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1ms\nreceivers:\n- name: r\n{WEBHOOK}"
    );
    let h = Harness::start(&cfg, record).await;
    h.push(
        1.0,
        vec![
            alert(&[("alertname", "test1")], 1.0, 0.0),
            alert(&[("alertname", "test2")], 1.0, 0.0),
        ],
    )
    .await;
    // Created at 1.3, starting at 1.5: pending at creation, active before the first flush.
    let id = h.silence_at(1.3, silence("alertname=~\".+\"", 1.5, 100.0)).await;
    h.sleep_until(3.5).await;
    h.app.state.expire_silence(&id).unwrap();
    assert_eq!(
        h.received(4.5).await,
        vec![got("r/0", 4.0, &["alertname=test1 [1]", "alertname=test2 [1]"])]
    );
}
