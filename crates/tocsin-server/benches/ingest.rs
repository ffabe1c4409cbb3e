//! Ingest hot path: decode a POST /api/v2/alerts body of 100 alerts, then validate, store
//! (sharded, merged), feed the inhibitor and route into aggregation groups.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tocsin_core::alert::{Alert, prepare};
use tocsin_core::config::{LoadOptions, load};
use tocsin_core::labels::NameValidation;
use tocsin_server::alerts_body::decode_alerts;
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tocsin_server::dispatch::Dispatcher;

/// The routing tree shared with the tocsin-core hot-path benchmarks.
const CONFIG: &str = include_str!("../../tocsin-core/benches/routes.yml");

fn body(n: usize, tag: usize) -> Vec<u8> {
    let teams = ["db", "storage", "frontend", "backend"];
    let sev = ["critical", "warning", "info"];
    let alerts: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"labels":{{"alertname":"Alert{}","cluster":"c{}","instance":"10.0.{}.{}:9100","job":"node","team":"{}","severity":"{}","env":"prod","batch":"{tag}"}},"annotations":{{"summary":"something is wrong on instance {}","runbook":"https://runbooks.example/alert"}},"startsAt":"2026-11-23T18:33:30.712Z","endsAt":"2026-11-23T18:43:30.712Z","generatorURL":"http://prometheus.example:9090/graph?g0.expr=up%3D%3D0"}}"#,
                i % 10,
                i % 3,
                i / 250,
                i % 250,
                teams[i % 4],
                sev[i % 3],
                i
            )
        })
        .collect();
    format!("[{}]", alerts.join(",")).into_bytes()
}

fn app() -> Arc<App> {
    let config = load(CONFIG, std::path::Path::new("."), &LoadOptions::default()).unwrap();
    let factory: NotifierFactory = Arc::new(|_, _| Ok(vec![]));
    let settings = Settings {
        external_url: "http://bench".into(),
        ..Settings::new("unused.yml")
    };
    App::new(
        settings,
        config,
        factory,
        Clock::new("2026-11-23T18:35:00Z".parse().unwrap()),
    )
    .unwrap()
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest_100_alerts");
    g.throughput(criterion::Throughput::Elements(100));
    let resend = body(100, 0);
    let a = app();
    // Decoding alone: half of a POST's CPU.
    g.bench_function("decode", |b| {
        b.iter(|| {
            let batch = decode_alerts(&resend).unwrap();
            assert_eq!(batch.valid.len(), 100);
            batch.valid
        })
    });
    // Steady state: Prometheus re-sends the same firing alerts (merge path).
    g.bench_function("resend", |b| {
        b.iter(|| {
            let batch = decode_alerts(&resend).unwrap();
            assert!(batch.errors.is_empty());
            assert!(a.post_alerts(batch.valid).is_empty());
        })
    });
    // New alerts into an empty replica (insert path, new groups).
    g.bench_function("new", |b| {
        b.iter_batched(
            || (app(), body(100, 1)),
            |(a, body)| {
                let batch = decode_alerts(&body).unwrap();
                assert!(a.post_alerts(batch.valid).is_empty());
                a
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Group insert alone: 1,000 stored alerts routed into their aggregation groups, as every POST
/// does after storing (routes matched, group key written, the group's alert map updated).
fn group_insert(c: &mut Criterion) {
    let config = load(CONFIG, std::path::Path::new("."), &LoadOptions::default()).unwrap();
    let now: jiff::Timestamp = "2026-11-23T18:35:00Z".parse().unwrap();
    let alerts: Vec<Arc<Alert>> = decode_alerts(&body(1000, 0))
        .unwrap()
        .valid
        .into_iter()
        .map(|p| Arc::new(prepare(p, now, config.resolve_timeout, NameValidation::Utf8).unwrap()))
        .collect();
    let at = tokio::time::Instant::now();
    let mut g = c.benchmark_group("group_insert_1000_alerts");
    g.throughput(criterion::Throughput::Elements(1000));
    // Steady state: every alert is already in its group and is replaced there.
    let mut d = Dispatcher::default();
    d.insert(&config.route, &alerts, at, now, None);
    g.bench_function("existing_groups", |b| {
        b.iter(|| assert!(!d.insert(&config.route, &alerts, at, now, None)));
    });
    // Into an empty dispatcher: groups created (labels, key, timer) as alerts first arrive.
    g.bench_function("new_groups", |b| {
        b.iter_batched(
            Dispatcher::default,
            |mut d| {
                assert!(d.insert(&config.route, &alerts, at, now, None));
                d
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, ingest, group_insert);
criterion_main!(benches);
