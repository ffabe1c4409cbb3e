//! Three replicas joined by the real cluster code (`ClusterPeer`: chitchat membership and the
//! replication rules of `tocsin_cluster::node`) over in-memory gossip and replication, on
//! tokio's paused clock: one notification per group, both sides of a partition notify, and
//! after healing, anti-entropy merges the logs so the next change is notified once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tocsin_cluster::node::{MemoryNet, NodeOptions, Wire};
use tocsin_cluster::{Membership, MembershipConfig, MemoryGossip};
use tocsin_core::alert::PostedAlert;
use tocsin_core::config::{Receiver, load};
use tocsin_core::time::is_zero;
use tocsin_notify::{BoxFuture, Kept, Notifier, NotifyData, NotifyError};
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tocsin_server::cluster::{join_with, replicated_state};
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<(String, f64, Vec<String>)>>>;

struct Recorder {
    node: String,
    start: Instant,
    log: Log,
}

impl Notifier for Recorder {
    fn notify<'a>(&'a self, d: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move {
            let t = (Instant::now() - self.start).as_secs_f64();
            let alerts = d
                .alerts
                .iter()
                .map(|a| {
                    format!(
                        "{}{}",
                        &a.labels["alertname"],
                        if is_zero(a.ends_at) { "" } else { "-" }
                    )
                })
                .collect();
            self.log.lock().unwrap().push((self.node.clone(), t, alerts));
            Ok(None)
        })
    }
}

const CONFIG: &str = "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n";

fn gossip_addr(i: usize) -> SocketAddr {
    format!("127.0.0.1:{}", 19_400 + i).parse().unwrap()
}

struct Replicas {
    apps: Vec<Arc<App>>,
    gossip: MemoryGossip,
    wires: Arc<MemoryNet>,
    log: Log,
    start: Instant,
}

impl Replicas {
    async fn start(n: usize) -> Replicas {
        let (gossip, wires, log, start) = (
            MemoryGossip::default(),
            MemoryNet::new(Duration::from_millis(20)),
            Log::default(),
            Instant::now(),
        );
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        std::mem::forget(_stop);
        let mut apps = Vec::new();
        for i in 0..n {
            let (name, l) = (format!("n{i}"), log.clone());
            let factory: NotifierFactory = Arc::new(move |r: &Receiver, _: &tocsin_notify::Shared| {
                Ok(tocsin_notify::webhooks_with(r, |_| {
                    Arc::new(Recorder {
                        node: name.clone(),
                        start,
                        log: l.clone(),
                    })
                }))
            });
            let config = load(CONFIG, std::path::Path::new("."), &Default::default()).unwrap();
            let mut settings = Settings::new("unused.yml");
            settings.peer_timeout = Duration::from_secs(15);
            let clock = Clock::new("2026-01-01T00:00:00Z".parse().unwrap());
            let app = App::new(settings, config, factory, clock).unwrap();
            let addr = gossip_addr(i).to_string();
            let seeds: Vec<String> = (0..n).filter(|j| *j != i).map(|j| gossip_addr(j).to_string()).collect();
            let membership = Membership::start_in_memory(
                MembershipConfig {
                    node_id: format!("n{i}"),
                    generation: 1,
                    advertise_addr: gossip_addr(i),
                    listen_addr: gossip_addr(i),
                    seeds: seeds.clone(),
                    cluster_label: "sim".into(),
                    gossip_interval: Duration::from_millis(200),
                    grpc_addr: addr.clone(),
                },
                &gossip,
            )
            .await
            .unwrap();
            let state = replicated_state(&app);
            wires.serve(&addr, &state);
            // The wire holds its state weakly, as a server would hold its listener.
            std::mem::forget(state);
            let opts = NodeOptions {
                seeds,
                settle_timeout: Duration::from_secs(5),
                pushpull_interval: Duration::from_secs(10),
            };
            let peer = join_with(&app, membership, Arc::new(wires.wire(&addr)), opts, shutdown.clone());
            app.set_cluster(peer);
            tokio::spawn(app.clone().run_scheduler(shutdown.clone()));
            apps.push(app);
        }
        Replicas {
            apps,
            gossip,
            wires,
            log,
            start,
        }
    }

    async fn until(&self, t: f64) {
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(t)).await;
    }

    fn positions(&self) -> Vec<usize> {
        self.apps.iter().map(|a| a.peer().position()).collect()
    }

    fn post(&self, to: &[usize], name: &str) {
        for &i in to {
            let a = PostedAlert {
                labels: [("alertname".to_string(), name.to_string())].into(),
                ..PostedAlert::default()
            };
            assert!(self.apps[i].post_alerts(vec![a]).is_empty());
        }
    }

    /// Cuts node 0 off from the others: gossip and replication, both ways.
    async fn isolate_first(&self, n: usize) {
        for j in 1..n {
            self.gossip.cut(gossip_addr(0), gossip_addr(j)).await;
            let (a, b) = (gossip_addr(0).to_string(), gossip_addr(j).to_string());
            self.wires.cut(&a, &b);
            self.wires.cut(&b, &a);
        }
    }

    async fn heal(&self, n: usize) {
        for j in 1..n {
            self.gossip.heal(gossip_addr(0), gossip_addr(j)).await;
        }
        self.wires.heal();
    }

    fn sent(&self) -> Vec<(String, Vec<String>)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _, a)| (n.clone(), a.clone()))
            .collect()
    }
}

async fn wait_positions(r: &Replicas, want: &[usize], within: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(within);
    while r.positions() != want {
        assert!(
            Instant::now() < deadline,
            "positions {:?}, want {want:?}",
            r.positions()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn got(node: &str, alerts: &[&str]) -> (String, Vec<String>) {
    (node.into(), alerts.iter().map(|s| s.to_string()).collect())
}

#[tokio::test(start_paused = true)]
async fn real_cluster_peers_notify_once_split_under_a_partition_and_merge_after_healing() {
    let r = Replicas::start(3).await;
    wait_positions(&r, &[0, 1, 2], 10.0).await;
    for a in &r.apps {
        a.peer().wait_ready().await;
    }
    let t0 = (Instant::now() - r.start).as_secs_f64();
    r.post(&[0, 1, 2], "first");
    r.until(t0 + 60.0).await;
    assert_eq!(r.sent(), vec![got("n0", &["first"])], "one notification, from n0");
    let at = r.log.lock().unwrap()[0].1 - t0;
    assert!(
        (1.2..1.3).contains(&at),
        "sent {at:.3}s after the post: group_wait + the claim settle"
    );

    // n0 is cut off: after failure detection each side ranks what it sees, and a new alert in
    // the group is notified on both sides (duplicates, never silence).
    r.isolate_first(3).await;
    wait_positions(&r, &[0, 0, 1], 60.0).await;
    r.post(&[0, 1, 2], "second");
    let t1 = (Instant::now() - r.start).as_secs_f64();
    r.until(t1 + 60.0).await;
    let mut during = r.sent()[1..].to_vec();
    during.sort();
    assert_eq!(
        during,
        vec![got("n0", &["first", "second"]), got("n1", &["first", "second"])]
    );

    // Healed: one ranking again, anti-entropy merges the logs, and the next change is
    // notified once.
    r.heal(3).await;
    wait_positions(&r, &[0, 1, 2], 60.0).await;
    let t2 = (Instant::now() - r.start).as_secs_f64();
    r.until(t2 + 12.0).await;
    r.post(&[0, 1, 2], "third");
    r.until(t2 + 80.0).await;
    assert_eq!(r.sent()[3..], [got("n0", &["first", "second", "third"])]);
}

/// A record as an outsider on the replication port would push it.
fn part<M: tocsin_proto::Message>(key: &str, m: &M) -> tocsin_proto::cluster::Part {
    tocsin_proto::cluster::Part {
        key: key.into(),
        data: m.encode_to_vec(),
    }
}

#[tokio::test(start_paused = true)]
async fn records_forged_by_an_outsider_neither_mute_nor_stall_the_cluster() {
    use tocsin_core::nflog::{Entry, ReceiverKey};
    use tocsin_core::silence::{MeshSilence, Silence};
    use tocsin_core::snapshot::{entry_to_pb, silence_to_pb};

    let r = Replicas::start(3).await;
    wait_positions(&r, &[0, 1, 2], 10.0).await;
    for a in &r.apps {
        a.peer().wait_ready().await;
    }
    let far: jiff::Timestamp = "9999-01-01T00:00:00Z".parse().unwrap();
    let now = r.apps[0].clock.now();
    let group_key = "{}:{}".to_string();
    let rk = ReceiverKey {
        group_name: "r".into(),
        integration: "webhook".into(),
        idx: 0,
    };
    // Issue 17's forgeries: a silence without matchers, one of everything dated 9999, a "sent"
    // log entry from 9999, a claim by a live member that never ends, and garbage.
    let mute_all = MeshSilence {
        silence: Silence {
            id: "forged-1".into(),
            matcher_sets: vec![vec![]],
            starts_at: now,
            ends_at: far,
            updated_at: now,
            ..Silence::default()
        },
        expires_at: far,
    };
    let mut mute_valid = mute_all.clone();
    mute_valid.silence.id = "forged-2".into();
    mute_valid.silence.updated_at = far;
    mute_valid.silence.matcher_sets =
        vec![tocsin_core::matchers::parse_matchers("alertname=~\".+\"", Default::default()).unwrap()];
    let sent = Entry {
        group_key: group_key.clone(),
        receiver: rk.clone(),
        timestamp: far,
        firing_alerts: vec![],
        resolved_alerts: vec![],
        expires_at: far,
        receiver_data: Default::default(),
    };
    let claim = tocsin_proto::cluster::Claim {
        group_key: group_key.clone(),
        group_name: rk.group_name.clone(),
        integration: rk.integration.clone(),
        idx: rk.idx,
        sender: "n1".into(),
        generation: 1,
        created_ms: now.as_millisecond(),
        deadline_ms: far.as_millisecond(),
        released: false,
    };
    // The outsider serves nothing of interest, but is a process on the network.
    struct Outsider;
    impl tocsin_cluster::replication::Replicated for Outsider {
        fn full_state(&self) -> Vec<tocsin_proto::cluster::Part> {
            vec![]
        }
        fn merge(&self, _: &tocsin_proto::cluster::Part) -> bool {
            false
        }
        fn digest(&self) -> u64 {
            0
        }
    }
    let outsider_state: Arc<dyn tocsin_cluster::replication::Replicated> = Arc::new(Outsider);
    r.wires.serve("10.6.6.6:1", &outsider_state);
    let outsider = r.wires.wire("10.6.6.6:1");
    let forged = vec![
        part("sil", &silence_to_pb(&mute_all)),
        part("sil", &silence_to_pb(&mute_valid)),
        part("nfl", &entry_to_pb(&sent)),
        part("clm", &claim),
        tocsin_proto::cluster::Part {
            key: "sil".into(),
            data: vec![0xff, 0xff, 0xff],
        },
    ];
    let merged = outsider
        .push(&gossip_addr(0).to_string(), forged)
        .await
        .expect("the wire is open");
    assert_eq!(merged, 1, "only the claim is taken, capped");
    let refused = |state: &'static str, reason: &'static str| {
        r.apps[0]
            .metrics
            .refused
            .get_or_create(&tocsin_server::metrics::RefusedLabels { state, reason })
            .get()
    };
    assert_eq!(
        [
            refused("silences", "invalid"),
            refused("silences", "future_timestamp"),
            refused("nflog", "future_timestamp"),
            refused("silences", "undecodable"),
        ],
        [1, 1, 1, 1]
    );
    assert_eq!(r.apps[0].state.silences().len(), 0, "no forged silence is stored");

    // The alert is notified, by n0, once: n0 waits on the forged claim of n1 only until the cap
    // (the longest flush budget, 10 s, and 1 s) from when it received it; without the cap it
    // would wait until its tick and two budgets.
    let t0 = (Instant::now() - r.start).as_secs_f64();
    r.post(&[0, 1, 2], "first");
    r.until(t0 + 60.0).await;
    assert_eq!(r.sent(), vec![got("n0", &["first"])]);
    let at = r.log.lock().unwrap()[0].1 - t0;
    assert!(
        at <= 11.5,
        "sent {at:.3}s after the post, the forged claim capped at 11 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_answering_does_not_stop_repair_between_the_others() {
    use tocsin_core::silence::Silence;
    let r = Replicas::start(3).await;
    wait_positions(&r, &[0, 1, 2], 10.0).await;
    for a in &r.apps {
        a.peer().wait_ready().await;
    }
    let addr = |i: usize| gossip_addr(i).to_string();
    let silence = |name: &str| Silence {
        matcher_sets: vec![
            tocsin_core::matchers::parse_matchers(&format!("alertname={name}"), Default::default()).unwrap(),
        ],
        starts_at: r.apps[0].clock.now(),
        ends_at: r.apps[0].clock.now() + jiff::SignedDuration::from_hours(1),
        created_by: "ops".into(),
        comment: name.into(),
        ..Silence::default()
    };
    // n2 gets a change n1 misses, so that n1's repair turns to n2; then n2 stops answering
    // (a process that accepts a sync and stops reading). Every repair n1 tries with n2 hangs.
    r.wires.lose_pushes(&addr(2), &addr(1));
    r.apps[2]
        .state
        .set_silence(silence("OnTwo"), || "on-two".into())
        .unwrap();
    r.wires.stall(&addr(2));
    let t0 = Instant::now();
    while Instant::now() - t0 < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A change on n0 whose push to n1 is lost reaches n1 by repair all the same, within the
    // digest patience and a gossip round or two (before: never — n1's digest and anti-entropy
    // loops were stuck, one peer after another, on n2).
    r.wires.lose_pushes(&addr(0), &addr(1));
    r.apps[0]
        .state
        .set_silence(silence("OnZero"), || "on-zero".into())
        .unwrap();
    let t1 = Instant::now();
    while r.apps[1].state.silences().get("on-zero").is_none() {
        assert!(
            Instant::now() - t1 < Duration::from_secs(8),
            "n1 never got n0's silence"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_history_question_to_a_peer_that_does_not_answer_costs_at_most_the_ask_timeout() {
    use tocsin_core::events::{Event, Kind};
    let r = Replicas::start(3).await;
    wait_positions(&r, &[0, 1, 2], 10.0).await;
    for a in &r.apps {
        a.peer().wait_ready().await;
    }
    let seen = Instant::now();
    while r.apps[0].cluster().unwrap().members().len() < 3 {
        assert!(
            Instant::now() - seen < Duration::from_secs(30),
            "n0 never listed three members"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for a in &r.apps {
        let mut e = Event::new(Kind::Notification);
        e.group_key = "{}:{}".into();
        a.record(e);
    }
    // n2 accepts the question and never answers.
    r.wires.stall(&gossip_addr(2).to_string());
    let t0 = Instant::now();
    let answers = r.apps[0]
        .cluster()
        .unwrap()
        .ask_all("history", br#"{"query":null,"group_key":"{}:{}"}"#)
        .await;
    let took = Instant::now() - t0;
    assert!(
        took <= tocsin_cluster::node::ASK_TIMEOUT + Duration::from_millis(100),
        "{took:?}"
    );
    assert_eq!(answers.len(), 2, "{answers:?}");
    let (name, one) = &answers[0];
    let events: Vec<Event> = one
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| serde_json::from_slice(i).unwrap())
        .collect();
    assert_eq!(
        (name.as_str(), events.len(), events[0].replica.as_str()),
        ("n1", 1, "n1")
    );
    let (name, two) = &answers[1];
    assert_eq!(name, "n2");
    assert!(two.as_ref().unwrap_err().contains("no answer within 3s"), "{two:?}");
}
