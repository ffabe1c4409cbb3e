//! Silences at scale: GET /api/v2/alerts with 10k alerts and 10k silences (through the real
//! router, in-process), GET /api/v2/silences with 10k silences, and the silence creation rate.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tocsin_core::alert::PostedAlert;
use tocsin_core::config::{LoadOptions, load};
use tocsin_core::matchers::{MatchType, Matcher};
use tocsin_core::silence::Silence;
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tower::ServiceExt;

const N: usize = 10_000;

fn app() -> Arc<App> {
    let cfg = "route:\n  receiver: r\n  group_by: [alertname]\n  routes:\n  - matchers: [team=db]\n    receiver: r\nreceivers:\n- name: r\n";
    let config = load(cfg, std::path::Path::new("."), &LoadOptions::default()).unwrap();
    let factory: NotifierFactory = Arc::new(|_, _| Ok(vec![]));
    App::new(
        Settings::new("unused.yml"),
        config,
        factory,
        Clock::new("2026-11-23T18:00:00Z".parse().unwrap()),
    )
    .unwrap()
}

fn silence(i: usize, now: jiff::Timestamp) -> Silence {
    // Silences shaped like real ones: an alertname, usually an instance or a regex on job.
    let mut set = vec![Matcher::new(MatchType::Equal, "alertname", format!("Alert{}", i % 500)).unwrap()];
    if i.is_multiple_of(3) {
        set.push(Matcher::new(MatchType::Regexp, "job", "db|cache").unwrap());
    } else {
        set.push(Matcher::new(MatchType::Equal, "instance", format!("host-{i}")).unwrap());
    }
    Silence {
        matcher_sets: vec![set],
        starts_at: now,
        ends_at: now.checked_add(jiff::SignedDuration::from_hours(2)).unwrap(),
        created_by: "bench".into(),
        comment: "maintenance window".into(),
        ..Silence::default()
    }
}

fn populated() -> Arc<App> {
    let a = app();
    let now = a.clock.now();
    let alerts: Vec<PostedAlert> = (0..N)
        .map(|i| PostedAlert {
            labels: [
                ("alertname".to_string(), format!("Alert{}", i % 500)),
                ("instance".to_string(), format!("host-{i}")),
                ("job".to_string(), ["db", "web", "cache"][i % 3].to_string()),
                ("team".to_string(), ["db", "fe"][i % 2].to_string()),
            ]
            .into(),
            ..PostedAlert::default()
        })
        .collect();
    assert!(a.post_alerts(alerts).is_empty());
    for i in 0..N {
        a.state
            .set_silence(silence(i, now), || format!("00000000-0000-4000-8000-{i:012}"))
            .unwrap();
    }
    a
}

fn get(router: &axum::Router, uri: &str) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().len()
    })
}

fn bench(c: &mut Criterion) {
    let a = populated();
    let router = tocsin_server::api::router(a.clone(), "/");
    let bare = app();
    let bare_alerts: Vec<PostedAlert> = (0..N)
        .map(|i| PostedAlert {
            labels: [
                ("alertname".to_string(), format!("Alert{}", i % 500)),
                ("instance".to_string(), format!("host-{i}")),
            ]
            .into(),
            ..PostedAlert::default()
        })
        .collect();
    assert!(bare.post_alerts(bare_alerts).is_empty());
    let bare_router = tocsin_server::api::router(bare.clone(), "/");
    let mut g = c.benchmark_group("silences_10k");
    g.sample_size(10);
    g.bench_function("get_alerts_10k_alerts_no_silences", |b| {
        b.iter(|| get(&bare_router, "/api/v2/alerts"))
    });
    g.sample_size(20);
    g.bench_function("get_alerts_10k_alerts_10k_silences", |b| {
        b.iter(|| get(&router, "/api/v2/alerts"))
    });
    g.bench_function("get_silences_10k", |b| b.iter(|| get(&router, "/api/v2/silences")));
    g.bench_function("create_1k_silences", |b| {
        b.iter_batched(
            app,
            |fresh| {
                let now = fresh.clock.now();
                for i in 0..1000 {
                    fresh.state.set_silence(silence(i, now), || uuid_like(i)).unwrap();
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

criterion_group!(benches, bench);
criterion_main!(benches);
