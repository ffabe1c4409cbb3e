//! Micro-benchmarks of the pure hot paths: fingerprinting, route matching, the silence and
//! inhibition checks of one alert, the dedup decision and merging replicated log entries.
//! Run with `cargo bench -p tocsin-core --bench hot_paths`; numbers go to docs/performance.md.

use std::collections::HashSet;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use tocsin_core::alert::Alert;
use tocsin_core::config::{LoadOptions, load};
use tocsin_core::inhibit::Inhibitor;
use tocsin_core::labels::{LabelSet, NameValidation, fingerprint, hash_alert};
use tocsin_core::matchers::{MatchType, Matcher};
use tocsin_core::nflog::{Entry, Nflog, ReceiverKey, needs_update};
use tocsin_core::silence::{Limits, MeshSilence, Silence, Silences};

/// A mid-sized site's routing tree (shared with the server's ingest benchmark).
const CONFIG: &str = include_str!("routes.yml");

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn labels(i: usize) -> LabelSet {
    let teams = ["db", "storage", "frontend", "backend"];
    let sev = ["critical", "warning", "info"];
    [
        ("alertname", format!("Alert{}", i % 50)),
        ("cluster", format!("c{}", i % 7)),
        ("instance", format!("10.0.{}.{}:9100", i / 250, i % 250)),
        ("job", "node".to_string()),
        ("team", teams[i % 4].to_string()),
        ("severity", sev[i % 3].to_string()),
        ("env", "prod".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn alert(i: usize) -> Alert {
    let l = labels(i);
    Alert {
        fingerprint: fingerprint(&l),
        labels: l,
        starts_at: t(0),
        ends_at: t(3600),
        updated_at: t(0),
        ..Alert::default()
    }
}

fn routing(c: &mut Criterion) {
    let config = load(CONFIG, std::path::Path::new("."), &LoadOptions::default()).unwrap();
    let alerts: Vec<LabelSet> = (0..1000).map(labels).collect();
    c.bench_function("fingerprint/1000_label_sets", |b| {
        b.iter(|| alerts.iter().map(|l| fingerprint(l).0).fold(0, u64::wrapping_add));
    });
    c.bench_function("route_match/1000_alerts", |b| {
        b.iter(|| alerts.iter().map(|l| config.route.match_routes(l).len()).sum::<usize>());
    });
    c.bench_function("route_group_key/1000_alerts", |b| {
        b.iter(|| {
            alerts
                .iter()
                .map(|l| {
                    let r = &config.route.match_routes(l)[0];
                    r.group_key(&r.group_labels(l)).len()
                })
                .sum::<usize>()
        });
    });
}

fn suppression(c: &mut Criterion) {
    let alerts: Vec<Alert> = (0..1000).map(alert).collect();
    // 1,000 silences on instances, a third of them with a regex matcher.
    let mut silences = Silences::new(Duration::from_secs(3600), Limits::default(), NameValidation::Utf8);
    for i in 0..1000 {
        let value = format!("10.0.{}.{}:9100", i / 250, i % 250);
        let m = if i % 3 == 0 {
            Matcher::new(
                MatchType::Regexp,
                "instance",
                format!("{}|10\\.9\\.9\\.9:.*", regex_escape(&value)),
            )
        } else {
            Matcher::new(MatchType::Equal, "instance", value)
        }
        .unwrap();
        let s = Silence {
            id: format!("s{i}"),
            matcher_sets: vec![vec![m, Matcher::new(MatchType::Equal, "job", "node").unwrap()]],
            starts_at: t(0),
            ends_at: t(7200),
            updated_at: t(0),
            ..Silence::default()
        };
        silences.merge(
            MeshSilence {
                silence: s,
                expires_at: t(10_000),
            },
            t(1),
        );
    }
    c.bench_function("silenced_by/1000_alerts_1000_silences", |b| {
        b.iter(|| {
            alerts
                .iter()
                .map(|a| silences.silenced_by(&a.labels, t(60)).len())
                .sum::<usize>()
        });
    });
    let config = load(CONFIG, std::path::Path::new("."), &LoadOptions::default()).unwrap();
    let mut inhibitor = Inhibitor::new(config.inhibit_rules.clone());
    for a in &alerts {
        inhibitor.observe(a);
    }
    c.bench_function("inhibited_by/1000_alerts_333_sources", |b| {
        b.iter(|| {
            alerts
                .iter()
                .filter(|a| inhibitor.inhibited_by(&a.labels, t(60)).is_some())
                .count()
        });
    });
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

fn receiver() -> ReceiverKey {
    ReceiverKey {
        group_name: "team-x".into(),
        integration: "webhook".into(),
        idx: 0,
    }
}

fn entry(g: usize, ts: i64) -> Entry {
    Entry {
        group_key: format!("{{}}:{{alertname=\"Alert{g}\", cluster=\"c1\"}}"),
        receiver: receiver(),
        timestamp: t(ts),
        firing_alerts: (0..10).map(|i| hash_alert(&labels(g * 10 + i))).collect(),
        resolved_alerts: vec![],
        expires_at: t(ts + 3600),
        receiver_data: Default::default(),
    }
}

fn dedup(c: &mut Criterion) {
    let e = entry(1, 0);
    let same: HashSet<u64> = e.firing_alerts.iter().copied().collect();
    let mut more = same.clone();
    more.insert(42);
    let resolved = HashSet::new();
    let repeat = Duration::from_secs(4 * 3600);
    c.bench_function("needs_update/10_firing_unchanged", |b| {
        b.iter(|| needs_update(Some(&e), &same, &resolved, false, repeat, t(60)));
    });
    c.bench_function("needs_update/10_firing_one_new", |b| {
        b.iter(|| needs_update(Some(&e), &more, &resolved, false, repeat, t(60)));
    });
    // A peer's full state: 10k entries merged into a log that holds older versions of them.
    let mut base = Nflog::default();
    for g in 0..10_000 {
        base.merge(entry(g, 0), t(1));
    }
    let incoming: Vec<Entry> = (0..10_000).map(|g| entry(g, 30)).collect();
    c.bench_function("nflog_merge/10k_newer_entries", |b| {
        b.iter_batched(
            || (base.clone(), incoming.clone()),
            |(mut log, entries)| entries.into_iter().filter(|e| log.merge(e.clone(), t(31))).count(),
            BatchSize::LargeInput,
        );
    });
}

criterion_group!(benches, routing, suppression, dedup);
criterion_main!(benches);
