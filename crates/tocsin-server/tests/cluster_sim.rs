//! Several replicas in one process on tokio's paused clock, replicating through an in-memory
//! [`Peer`] with link cuts: Alertmanager's cluster timelines (§8.4, §10.2) asserted at exact
//! instants. Membership here is fixed by the test (chitchat's own timing is covered in
//! tocsin-cluster's tests); each test states the positions each side of a partition would compute.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tocsin_core::alert::PostedAlert;
use tocsin_core::claim::Claim;
use tocsin_core::config::{Receiver, load};
use tocsin_core::nflog::{DataValue, Entry};
use tocsin_core::silence::{MeshSilence, Silence};
use tocsin_core::time::{ZERO, is_zero};
use tocsin_notify::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError};
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tocsin_server::peer::{self, Peer};
use tokio::time::Instant;

const LATENCY: Duration = Duration::from_millis(50);
/// A clustered replica replicates its claim and waits this long before it sends.
const SETTLE: f64 = 0.2;

fn at(s: f64) -> Timestamp {
    "2026-01-01T00:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .checked_add(SignedDuration::from_secs_f64(s))
        .unwrap()
}

type Log = Arc<Mutex<Vec<(String, f64, Vec<String>)>>>;

/// How a node's receiver behaves: how long a send takes, and whether it then fails.
#[derive(Clone, Copy, Default)]
struct Receiving {
    takes: Duration,
    fails: bool,
    /// A failure is retryable (a 5xx) rather than fatal (a 4xx).
    retryable: bool,
}

/// Per notification: the node that sent it, and the node named in the receiver data it was
/// given (what the integration kept at the group's previous notification, wherever it was).
type Kepts = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Recorder {
    node: String,
    start: Instant,
    log: Log,
    kepts: Kepts,
    receiving: Receiving,
}

impl Notifier for Recorder {
    fn notify<'a>(&'a self, d: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move {
            let t = ((Instant::now() - self.start).as_secs_f64() * 1000.0).round() / 1000.0;
            let alerts = d
                .alerts
                .iter()
                .map(|a| {
                    format!(
                        "{}{}",
                        &a.labels["alertname"],
                        if is_zero(a.ends_at) { "" } else { " resolved" }
                    )
                })
                .collect();
            self.log.lock().unwrap().push((self.node.clone(), t, alerts));
            let had = match d.receiver_data.get("sent_by") {
                Some(DataValue::Str(s)) => Some(s.clone()),
                _ => None,
            };
            self.kepts.lock().unwrap().push((self.node.clone(), had));
            tokio::time::sleep(self.receiving.takes).await;
            if self.receiving.fails && self.receiving.retryable {
                return Err(NotifyError::retryable(
                    FailureReason::ServerError,
                    "503 Service Unavailable",
                ));
            }
            if self.receiving.fails {
                return Err(NotifyError::fatal(FailureReason::ClientError, "400 Bad Request"));
            }
            // As Slack's message id is kept for update_message.
            Ok(Some(
                [("sent_by".to_string(), DataValue::Str(self.node.clone()))].into(),
            ))
        })
    }
}

/// The in-memory network: who is up and which links are cut.
#[derive(Default)]
struct Net {
    nodes: Mutex<Vec<Weak<App>>>,
    cut: Mutex<HashSet<(usize, usize)>>,
    /// Crashed nodes: nothing reaches them or leaves them, and members no longer list them.
    down: Mutex<HashSet<usize>>,
    /// Each node's current generation (a restart bumps it).
    generations: Mutex<Vec<u64>>,
    /// Nodes whose name an impostor gossips with a newer generation: their peers see that
    /// generation, and pushes to the name reach the impostor.
    impostors: Mutex<HashSet<usize>>,
}

impl Net {
    fn deliver(&self, from: usize, generation: u64, f: impl Fn(&App) + Send + Sync + Clone + 'static) {
        // A process killed by a restart sends nothing more.
        if self.generations.lock().unwrap()[from] != generation {
            return;
        }
        let nodes = self.nodes.lock().unwrap().clone();
        let down = self.down.lock().unwrap().clone();
        let impostors = self.impostors.lock().unwrap().clone();
        for (to, app) in nodes.into_iter().enumerate() {
            if to == from
                || impostors.contains(&to)
                || down.contains(&from)
                || down.contains(&to)
                || self.cut.lock().unwrap().contains(&(from.min(to), from.max(to)))
            {
                continue;
            }
            let f = f.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LATENCY).await;
                if let Some(app) = app.upgrade() {
                    f(&app);
                }
            });
        }
    }
}

struct SimPeer {
    idx: usize,
    generation: u64,
    name: String,
    position: AtomicUsize,
    net: Arc<Net>,
}

impl Peer for SimPeer {
    fn position(&self) -> usize {
        self.position.load(Ordering::SeqCst)
    }
    fn wait_ready(&self) -> peer::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn is_live(&self, name: &str, generation: u64) -> bool {
        let down = self.net.down.lock().unwrap();
        let generations = self.net.generations.lock().unwrap();
        let impostors = self.net.impostors.lock().unwrap();
        (0..generations.len()).any(|i| {
            format!("n{i}") == name && !down.contains(&i) && !impostors.contains(&i) && generations[i] == generation
        })
    }
    fn broadcast_claim(&self, c: &Claim) {
        let c = c.clone();
        self.net.deliver(self.idx, self.generation, move |app| {
            let _ = app.state.merge_claim(c.clone());
        });
    }
    fn broadcast_nflog(&self, e: &Entry) {
        let e = e.clone();
        self.net.deliver(self.idx, self.generation, move |app| {
            let _ = app.state.merge_nflog(e.clone());
        });
    }
    fn broadcast_silence(&self, m: &MeshSilence) {
        let m = m.clone();
        self.net.deliver(self.idx, self.generation, move |app| {
            let _ = app.state.merge_silence(m.clone());
        });
    }
}

struct Cluster {
    apps: Vec<Arc<App>>,
    peers: Vec<Arc<SimPeer>>,
    net: Arc<Net>,
    log: Log,
    kepts: Kepts,
    start: Instant,
    config: String,
    peer_timeout: Duration,
    receiving: Arc<dyn Fn(usize) -> Receiving>,
}

const CONFIG: &str = "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n";

impl Cluster {
    fn start(n: usize) -> Cluster {
        Self::start_with(n, CONFIG, |_| Receiving::default())
    }

    fn start_with(n: usize, config: &str, receiving: impl Fn(usize) -> Receiving + 'static) -> Cluster {
        Self::start_full(n, config, Duration::from_secs(15), receiving)
    }

    fn start_full(
        n: usize,
        config: &str,
        peer_timeout: Duration,
        receiving: impl Fn(usize) -> Receiving + 'static,
    ) -> Cluster {
        let mut c = Cluster {
            apps: Vec::new(),
            peers: Vec::new(),
            net: Arc::new(Net::default()),
            log: Log::default(),
            kepts: Kepts::default(),
            start: Instant::now(),
            config: config.to_string(),
            peer_timeout,
            receiving: Arc::new(receiving),
        };
        for i in 0..n {
            c.net.generations.lock().unwrap().push(1);
            c.net.nodes.lock().unwrap().push(Weak::new());
            let (app, peer) = c.node(i);
            c.apps.push(app);
            c.peers.push(peer);
        }
        c
    }

    /// Starts node `i` at its current generation, with empty state.
    fn node(&self, i: usize) -> (Arc<App>, Arc<SimPeer>) {
        let (l, start, rcv) = (self.log.clone(), self.start, (self.receiving)(i));
        let kepts = self.kepts.clone();
        let factory: NotifierFactory = Arc::new(move |r: &Receiver, _: &tocsin_notify::Shared| {
            Ok(tocsin_notify::webhooks_with(r, |_| {
                Arc::new(Recorder {
                    node: format!("n{i}"),
                    start,
                    log: l.clone(),
                    kepts: kepts.clone(),
                    receiving: rcv,
                })
            }))
        });
        let config = load(&self.config, std::path::Path::new("."), &Default::default()).unwrap();
        let mut settings = Settings::new("unused.yml");
        settings.peer_timeout = self.peer_timeout;
        let app = App::new(settings, config, factory, Clock::new(at(0.0))).unwrap();
        let peer = Arc::new(SimPeer {
            idx: i,
            generation: self.net.generations.lock().unwrap()[i],
            name: format!("n{i}"),
            position: AtomicUsize::new(i),
            net: self.net.clone(),
        });
        app.set_peer(peer.clone());
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(tx);
        tokio::spawn(app.clone().run_scheduler(rx));
        self.net.nodes.lock().unwrap()[i] = Arc::downgrade(&app);
        (app, peer)
    }

    /// Kills node `i` and starts it again at once under the same name, without its state (a
    /// StatefulSet pod on a rolling update with an emptyDir). Its old life's sends still reach
    /// the receiver, but nothing it does reaches its peers any more.
    fn restart(&mut self, i: usize) {
        self.net.generations.lock().unwrap()[i] += 1;
        let (app, peer) = self.node(i);
        (self.apps[i], self.peers[i]) = (app, peer);
    }

    async fn until(&self, t: f64) {
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(t)).await;
    }

    /// Posts to the listed replicas at `t`, as Prometheus posts to every replica it can reach.
    async fn push(&self, t: f64, to: &[usize], name: &str, ends: f64) {
        self.until(t).await;
        for &i in to {
            let a = PostedAlert {
                labels: [("alertname".to_string(), name.to_string())].into(),
                starts_at: at(1.0),
                ends_at: if ends > 0.0 { at(ends) } else { ZERO },
                ..PostedAlert::default()
            };
            assert!(self.apps[i].post_alerts(vec![a]).is_empty());
        }
    }

    fn positions(&self, p: &[usize]) {
        for (peer, pos) in self.peers.iter().zip(p) {
            peer.position.store(*pos, Ordering::SeqCst);
        }
    }

    fn cut(&self, a: usize, b: usize) {
        self.net.cut.lock().unwrap().insert((a.min(b), a.max(b)));
    }

    async fn received(&self, t: f64) -> Vec<(String, f64, Vec<String>)> {
        self.until(t).await;
        self.log.lock().unwrap().clone()
    }
}

fn got(node: &str, t: f64, alerts: &[&str]) -> (String, f64, Vec<String>) {
    (node.into(), t, alerts.iter().map(|s| s.to_string()).collect())
}

#[tokio::test(start_paused = true)]
async fn three_replicas_notify_once() {
    // §8.4 TestClusterDeduplication: pushed to all at 1, exactly one notification, from the
    // first replica at 2; the others wait 15s and 30s and find it in the log.
    let c = Cluster::start(3);
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    assert_eq!(c.received(60.0).await, vec![got("n0", 2.0 + SETTLE, &["test1"])]);
}

#[tokio::test(start_paused = true)]
async fn next_replica_sends_one_peer_timeout_later_when_the_first_is_down() {
    // n0 is gone (receives nothing, sends nothing) but still counted at position 0, as until
    // failure detection removes it: n1 sends at 2 + 15s, n2 sees n1's entry at 2 + 30s.
    let c = Cluster::start(3);
    c.push(1.0, &[1, 2], "test1", 0.0).await;
    assert_eq!(c.received(60.0).await, vec![got("n1", 17.0 + SETTLE, &["test1"])]);
}

#[tokio::test(start_paused = true)]
async fn partition_sends_once_per_side_and_no_duplicate_after_healing() {
    let c = Cluster::start(3);
    // n0 is cut off from n1 and n2; each side ranks what it sees.
    c.cut(0, 1);
    c.cut(0, 2);
    c.positions(&[0, 0, 1]);
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    c.until(40.0).await;
    // Heal: links back, one membership again, and an anti-entropy exchange of the logs.
    c.net.cut.lock().unwrap().clear();
    c.positions(&[0, 1, 2]);
    for (i, a) in c.apps.iter().enumerate() {
        let entries: Vec<Entry> = a.state.nflog().entries().cloned().collect();
        for (j, b) in c.apps.iter().enumerate() {
            if i != j {
                for e in &entries {
                    let _ = b.state.merge_nflog(e.clone());
                }
            }
        }
    }
    // A new alert joins the group: only the first replica notifies, once.
    c.push(50.5, &[0, 1, 2], "test2", 0.0).await;
    let mut all = c.received(120.0).await;
    all.sort_by_key(|(n, t, _)| (t.to_bits(), n.clone()));
    assert_eq!(
        all,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 2.0 + SETTLE, &["test1"]),
            got("n0", 51.0 + SETTLE, &["test1", "test2"])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn phantom_members_sorted_first_delay_by_their_count_and_one_replica_notifies() {
    // An attacker gossips two members named to sort before every replica, with nothing behind
    // them: every position grows by two. n0 (now third) sends at 2 + 2 × 15 s; n1 and n2 find
    // its entry. Delayed by the phantoms' count of peer timeouts, never silenced, once.
    let c = Cluster::start(3);
    c.positions(&[2, 3, 4]);
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    assert_eq!(c.received(120.0).await, vec![got("n0", 32.0 + SETTLE, &["test1"])]);
    // The attacker stops; once the failure detector drops the phantoms, no delay is left: the
    // group's next tick (every second from its flush at 32.2) sends at once.
    c.positions(&[0, 1, 2]);
    c.push(121.0, &[0, 1, 2], "test2", 0.0).await;
    let all = c.received(240.0).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1], got("n0", 122.2 + SETTLE, &["test1", "test2"]));
}

#[tokio::test(start_paused = true)]
async fn a_name_taken_over_costs_one_duplicate_at_most_and_no_silence() {
    // An impostor gossips as n1 with a newer generation: n0 and n2 send their pushes to the
    // impostor, so n1 never learns of n0's notification and sends its own at 2 + 15 s (one
    // duplicate, as a replica cut off would); n2 holds both entries and stays quiet.
    let c = Cluster::start(3);
    c.net.impostors.lock().unwrap().insert(1);
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    assert_eq!(
        c.received(120.0).await,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 17.0 + SETTLE, &["test1"])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_claimant_whose_name_is_taken_over_does_not_hold_its_peers() {
    // n0's receiver takes 20 s; an impostor gossips as n0, so its claim names a generation its
    // peers no longer see: n1 does not wait on it and sends at 2 + 15 s (one duplicate); n2
    // finds n1's entry. Without the impostor n1 would wait on the claim and send nothing.
    let c = Cluster::start_with(3, SLOW_CONFIG, slow(false));
    c.net.impostors.lock().unwrap().insert(0);
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    assert_eq!(
        c.received(120.0).await,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 17.0 + SETTLE, &["test1"])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn alert_resolved_during_the_wait_is_not_sent_as_firing() {
    // Upstream #2447/#4008: Alertmanager's second replica decides from the snapshot taken before
    // its wait and re-sends "firing" for an alert that has meanwhile resolved. n0 is down; the
    // alert resolves at 10, during n1's wait (2 → 17): nothing is sent at all, since nothing
    // firing was ever notified.
    let c = Cluster::start(3);
    c.push(1.0, &[1, 2], "test1", 0.0).await;
    c.push(10.0, &[1, 2], "test1", 10.0).await;
    assert_eq!(c.received(80.0).await, vec![]);
}

#[tokio::test(start_paused = true)]
async fn silence_created_on_one_replica_mutes_on_all() {
    let c = Cluster::start(3);
    c.until(0.5).await;
    let s = Silence {
        matcher_sets: vec![tocsin_core::matchers::parse_matchers("alertname=test1", Default::default()).unwrap()],
        starts_at: at(0.5),
        ends_at: at(3600.0),
        created_by: "ops".into(),
        comment: "maintenance".into(),
        ..Silence::default()
    };
    let id = c.apps[2].state.set_silence(s, || "sil-1".into()).unwrap();
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    c.push(1.0, &[0, 1, 2], "other", 0.0).await;
    assert_eq!(c.received(60.0).await, vec![got("n0", 2.0 + SETTLE, &["other"])]);
    for a in &c.apps {
        assert!(a.state.silences().get(&id).is_some());
    }
    // Expiring it on n1 releases the alert everywhere: n0 notifies at its next tick.
    c.apps[1].state.expire_silence(&id).unwrap();
    let all = c.received(120.0).await;
    assert_eq!(all.last().unwrap(), &got("n0", 61.0 + SETTLE, &["other", "test1"]));
    assert_eq!(all.len(), 2);
}

/// As [`CONFIG`], with a group interval long enough for a slow send to finish within it.
const SLOW_CONFIG: &str = "route:\n  receiver: r\n  group_by: []\n  group_wait: 1s\n  group_interval: 1m\n  repeat_interval: 1h\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n";

fn slow(fails: bool) -> impl Fn(usize) -> Receiving {
    move |_| Receiving {
        takes: Duration::from_secs(20),
        fails,
        retryable: false,
    }
}

#[tokio::test(start_paused = true)]
async fn receiver_slower_than_the_peer_timeout_is_notified_once() {
    // n0 starts sending at 2 and its receiver answers at 22. Alertmanager's n1 finds no log
    // entry at 17 and sends again; here n1 sees n0's claim, waits, and finds the entry at 22.
    let c = Cluster::start_with(3, SLOW_CONFIG, slow(false));
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    assert_eq!(c.received(120.0).await, vec![got("n0", 2.0 + SETTLE, &["test1"])]);
    for a in &c.apps {
        assert_eq!(a.state.nflog().len(), 1, "every replica holds n0's entry");
    }
}

#[tokio::test(start_paused = true)]
async fn claimant_that_crashes_mid_send_does_not_block_delivery() {
    // n0 crashes at 5 while its slow send is in flight: its claim dies with its membership, and
    // n1 sends at its usual time, 2 + 15s (n0's receiver may or may not have got it: fail-open).
    let c = Cluster::start_with(3, SLOW_CONFIG, slow(false));
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    c.until(5.0).await;
    c.net.down.lock().unwrap().insert(0);
    c.positions(&[0, 0, 1]);
    let all = c.received(120.0).await;
    assert_eq!(
        all,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 17.0 + SETTLE, &["test1"])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn what_an_integration_kept_reaches_the_replica_that_sends_next() {
    // n0 posts the group's message and keeps its id (as Slack's update_message does); n0 then
    // crashes, a new alert joins the group, and n1, sending in its place (at the end of the
    // wait its position gave its flush at 2), is given that id to update the message rather
    // than post a second one.
    let c = Cluster::start(3);
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    c.until(5.0).await;
    c.net.down.lock().unwrap().insert(0);
    c.positions(&[0, 0, 1]);
    c.push(6.0, &[1, 2], "test2", 0.0).await;
    let all = c.received(60.0).await;
    assert_eq!(
        all,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 17.0 + SETTLE, &["test1", "test2"])
        ]
    );
    assert_eq!(
        *c.kepts.lock().unwrap(),
        vec![("n0".to_string(), None), ("n1".to_string(), Some("n0".to_string()))]
    );
}

#[tokio::test(start_paused = true)]
async fn claimant_restarted_mid_send_under_its_name_does_not_block_delivery() {
    // n0 is killed at 5 during its 20 s send and comes back at once as n0, generation 2, still
    // at position 0. Its old claim names generation 1: n1 sends at its usual 2 + 15 s. (Before,
    // liveness was checked by name and n1 waited for the claim's deadline, 2 + 60 s.)
    let mut c = Cluster::start_with(3, SLOW_CONFIG, slow(false));
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    c.until(5.0).await;
    c.restart(0);
    let all = c.received(120.0).await;
    assert_eq!(
        all,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 17.0 + SETTLE, &["test1"])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_claimant_whose_receiver_refuses_releases_after_one_attempt() {
    // The operator's case: n0's receiver answers 503 at once, every time; the others' work.
    // n0 releases its claim at its first failed attempt, so n1 delivers at its position wait
    // (2 + 15 s), and n0 stops retrying once n1's entry arrives. Before, n0 retried for the
    // whole flush budget while n1 and n2 waited on its claim: nothing reached the receiver.
    let c = Cluster::start_with(3, SLOW_CONFIG, |i| Receiving {
        takes: Duration::ZERO,
        fails: i == 0,
        retryable: true,
    });
    c.push(1.0, &[0, 1, 2], "test1", 0.0).await;
    let all = c.received(120.0).await;
    let delivered: Vec<_> = all.iter().filter(|(n, _, _)| n != "n0").cloned().collect();
    assert_eq!(delivered, vec![got("n1", 17.0 + SETTLE, &["test1"])]);
    let last_try = all
        .iter()
        .filter(|(n, _, _)| n == "n0")
        .map(|(_, t, _)| *t)
        .fold(0.0, f64::max);
    assert!(last_try <= 17.05 + 3.0, "n0 kept retrying until {last_try}");
}

/// Every group is its own alert; group_interval equals the peer timeout, as in the operator's
/// test of resolved duplicates.
const FAST_CONFIG: &str = "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 2s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n    send_resolved: true\n";

#[tokio::test(start_paused = true)]
async fn resolved_once_per_group_when_group_interval_equals_the_peer_timeout() {
    // 50 groups on 3 replicas at peer_timeout 2 s, resolved at a moment that falls in the middle
    // of the replicas' waits. Each group: one firing and one resolved notification. Before, the
    // replica at position 1 judged the resolve that arrived during its wait at the same instant
    // position 0 sent it at its next tick: two or three resolved notifications per group.
    let c = Cluster::start_full(3, FAST_CONFIG, Duration::from_secs(2), |_| Receiving::default());
    for round in 0..5 {
        let t = 1.0 + 20.0 * f64::from(round);
        let names: Vec<String> = (0..50).map(|g| format!("g{g}")).collect();
        for (k, n) in names.iter().enumerate() {
            c.push(t + 0.01 * k as f64, &[0, 1, 2], n, 0.0).await;
        }
        for (k, n) in names.iter().enumerate() {
            c.push(t + 7.3 + 0.013 * k as f64, &[0, 1, 2], n, t + 7.3).await;
        }
    }
    let all = c.received(200.0).await;
    for g in 0..50 {
        let name = format!("g{g}");
        let firing = all.iter().filter(|(_, _, a)| a == &vec![name.clone()]).count();
        let resolved = all
            .iter()
            .filter(|(_, _, a)| a == &vec![format!("{name} resolved")])
            .count();
        assert_eq!((firing, resolved), (5, 5), "{name}: {all:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn failed_send_releases_the_claim_at_once() {
    // n0's receiver rejects the notification at 22; n1, waiting on n0's claim since 17, sends as
    // soon as the release arrives (22 + 50 ms of network), not at the claim's deadline (62).
    let c = Cluster::start_with(2, SLOW_CONFIG, |i| Receiving {
        takes: Duration::from_secs(20),
        fails: i == 0,
        retryable: false,
    });
    c.push(1.0, &[0, 1], "test1", 0.0).await;
    let all = c.received(30.0).await;
    assert_eq!(
        all,
        vec![
            got("n0", 2.0 + SETTLE, &["test1"]),
            got("n1", 22.0 + 2.0 * SETTLE + 0.05, &["test1"])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn cluster_notifies_exactly_what_a_single_instance_does() {
    // §8.4 TestClusterVSInstance: alerts test1-<t> pushed at t = 0, 2, 4, 6, 8 to every member of
    // a one-replica and a three-replica cluster; each is notified within [t, t + 5] and both
    // receivers get the same alerts, the cluster no duplicates.
    let by_name = CONFIG.replace("group_by: []", "group_by: [alertname]");
    let single = Cluster::start_with(1, &by_name, |_| Receiving::default());
    let three = Cluster::start_with(3, &by_name, |_| Receiving::default());
    for t in [0.0, 2.0, 4.0, 6.0, 8.0] {
        let name = format!("test1-{t}");
        single.push(t, &[0], &name, 0.0).await;
        three.push(t, &[0, 1, 2], &name, 0.0).await;
    }
    let mut seen = Vec::new();
    for c in [&single, &three] {
        let mut alerts = Vec::new();
        for (node, at, names) in c.received(60.0).await {
            assert_eq!(node, "n0", "the first replica sends every group");
            for n in names {
                let pushed: f64 = n.trim_start_matches("test1-").parse().unwrap();
                assert!((pushed..=pushed + 5.0).contains(&at), "{n} notified at {at}");
                alerts.push(n);
            }
        }
        alerts.sort();
        seen.push(alerts);
    }
    assert_eq!(seen[0].len(), 5);
    assert_eq!(seen[0], seen[1]);
}
