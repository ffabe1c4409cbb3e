//! The chaos simulation: a seeded scenario, its run in virtual time, and the history checker.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::net::SocketAddr;
use tocsin_cluster::node::{MemoryNet, NodeOptions};
use tocsin_cluster::replication::Replicated;
use tocsin_cluster::{Membership, MembershipConfig, MemoryGossip};
use tocsin_core::alert::PostedAlert;
use tocsin_core::claim::Claim;
use tocsin_core::config::{Receiver, load};
use tocsin_core::nflog::Entry;
use tocsin_core::silence::{MeshSilence, Silence};
use tocsin_core::time::{ZERO, is_zero};
use tocsin_notify::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError};
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tocsin_server::cluster::{ClusterPeer, join_with, replicated_state};
use tocsin_server::peer::{self, Peer};
use tokio::time::Instant;

/// How long a replica goes unheard before its peers count it dead: the simulated membership's
/// delay, and the bound the checker allows real peers too (chitchat's phi-accrual detector at a
/// 200 ms gossip interval broke no rule with it over 300 `--real-peers` seeds).
pub const FAILURE_DETECTION: f64 = 5.0;
/// How often Prometheus posts every alert to every replica it reaches.
pub const POST_EVERY: f64 = 5.0;
/// How often each replica pulls its peers' full state.
pub const ANTI_ENTROPY_EVERY: f64 = 10.0;
/// One-way network latency between replicas.
pub const LATENCY: Duration = Duration::from_millis(40);
/// How often the simulated membership is recomputed.
const VIEW_EVERY: f64 = 0.25;
/// The longest a slow receiver takes to answer: less than the least flush budget (10 s), past
/// which the sender gives up on a request its receiver may still accept (a duplicate that
/// Alertmanager shares).
const SLOWEST: f64 = 9.0;

/// How one replica's receiver behaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// Answers at once.
    Fast,
    /// Answers after this many seconds.
    Slow(f64),
    /// Refuses every request with a 503.
    Failing,
    /// Refuses with a 503 during these windows (seconds), answers at once otherwise.
    Flapping(Vec<(f64, f64)>),
}

impl Behaviour {
    fn delivers(&self) -> bool {
        matches!(self, Behaviour::Fast | Behaviour::Slow(_))
    }
}

/// One alert: its group and the intervals (seconds) during which it fires.
#[derive(Clone, Debug)]
pub struct AlertPlan {
    /// `alertname`.
    pub name: String,
    /// The `grp` label, grouped by.
    pub group: String,
    /// Firing intervals `[start, end)`, sorted, disjoint.
    pub firing: Vec<(f64, f64)>,
}

/// A fault injected at a time.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Links from `a` to `b` drop everything between the two times (both directions unless
    /// `one_way`).
    Partition {
        /// Sides: each pair (a in side 0, b in side 1) is cut.
        side: Vec<usize>,
        /// Start.
        from: f64,
        /// Heal.
        until: f64,
        /// Only messages from `side` to the rest are dropped.
        one_way: bool,
    },
    /// `node` reloads its (unchanged) configuration at `at`: its notifications in flight are
    /// cancelled and its groups rebuilt, their timers restarted (§3.2).
    Reload {
        /// Replica.
        node: usize,
        /// When.
        at: f64,
    },
    /// `node`'s wall clock steps by `by` seconds at `at` (NTP, a resume from suspend); its timers
    /// do not move.
    ClockStep {
        /// Replica.
        node: usize,
        /// When.
        at: f64,
        /// Seconds, either sign.
        by: f64,
    },
    /// An outsider on the cluster port pushes forged records to `node` at `at`: a silence
    /// without matchers, one of every alert dated 9999, a "sent" log entry dated 9999 for every
    /// group, and a claim on every group in the name of `node`'s next live peer, never ending.
    Forge {
        /// Replica.
        node: usize,
        /// When.
        at: f64,
    },
    /// `count` members that no process runs, named to sort before every replica, join the
    /// gossip from `from` until `until` (an attacker on an unauthenticated gossip port, or one
    /// holding a stolen certificate): every replica's position grows by `count` until the
    /// failure detector drops them.
    Phantom {
        /// Phantoms.
        count: usize,
        /// Join.
        from: f64,
        /// The attacker stops.
        until: f64,
    },
    /// An impostor gossips under `node`'s name with a newer generation from `at` until `until`:
    /// its peers take the impostor's address for `node`'s (their pushes to `node` are lost) and
    /// judge the real `node`'s claims stale.
    Takeover {
        /// The replica whose name is taken.
        node: usize,
        /// Start.
        at: f64,
        /// The impostor stops.
        until: f64,
    },
    /// `node` dies at `at` and restarts at `restart` under its name (a new generation), with its
    /// nflog and silences when `disk`.
    Kill {
        /// Replica.
        node: usize,
        /// Death.
        at: f64,
        /// Restart.
        restart: f64,
        /// Keeps its state.
        disk: bool,
    },
}

impl Fault {
    fn window(&self) -> (f64, f64) {
        match self {
            Fault::Partition { from, until, .. } => (*from, *until),
            Fault::Kill { at, restart, .. } => (*at, *restart),
            Fault::Reload { at, .. } => (*at, *at),
            // A forged claim holds its group for at most the claim cap.
            Fault::Forge { at, .. } => (*at, *at + 30.0),
            // Peers see an attacker's member until their failure detector drops it.
            Fault::Phantom { from, until, .. } => (*from, *until + FAILURE_DETECTION),
            Fault::Takeover { at, until, .. } => (*at, *until + FAILURE_DETECTION),
            // A stepped clock stays stepped: the replica's records and judgements of time are
            // skewed for the rest of the run.
            Fault::ClockStep { at, .. } => (*at, f64::INFINITY),
        }
    }
}

/// A silence of one alert, created through one replica's API.
#[derive(Clone, Debug, PartialEq)]
pub struct SilencePlan {
    /// The `alertname` it matches.
    pub alert: String,
    /// Created on this replica (or the next one alive) at `from`, starting at once.
    pub node: usize,
    /// Created.
    pub from: f64,
    /// Ends: by its `endsAt`, or expired through `expire_on`'s API at that time.
    pub until: f64,
    /// Expired through this replica (or the next one alive) rather than by its end time.
    pub expire_on: Option<usize>,
}

/// Everything one seed decides.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Replicas.
    pub n: usize,
    /// `--cluster.peer-timeout`, seconds.
    pub peer_timeout: f64,
    /// `group_wait`, seconds.
    pub group_wait: f64,
    /// `group_interval`, seconds.
    pub group_interval: f64,
    /// Per replica.
    pub receivers: Vec<Behaviour>,
    /// The alerts.
    pub alerts: Vec<AlertPlan>,
    /// The faults.
    pub faults: Vec<Fault>,
    /// Silences created and ended during the run.
    pub silences: Vec<SilencePlan>,
    /// When the schedule ends; the run goes on for [`Scenario::tail`] more with no fault.
    pub duration: f64,
    /// Run real `ClusterPeer`s (chitchat membership, `tocsin_cluster::node` replication) over
    /// in-memory gossip and wires instead of the simulated membership and replication.
    pub real_peers: bool,
}

/// The generation an impostor gossips with: newer than any real life.
const IMPOSTOR_GENERATION: u64 = 1_000_000;

fn in_window(f: &Fault, t: f64) -> bool {
    let (a, b) = f.window();
    a <= t && t < b
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl Scenario {
    /// The scenario of a seed.
    pub fn generate(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(3..=5);
        let duration = 300.0;
        // One replica always delivers and is never killed: without it, silence would be right.
        let anchor = rng.random_range(0..n);
        let receivers = (0..n)
            .map(|i| {
                if i == anchor {
                    return if rng.random_bool(0.7) {
                        Behaviour::Fast
                    } else {
                        Behaviour::Slow(round(rng.random_range(0.5..SLOWEST)))
                    };
                }
                match rng.random_range(0..10) {
                    0..=4 => Behaviour::Fast,
                    5..=6 => Behaviour::Slow(round(rng.random_range(0.5..SLOWEST))),
                    7 => Behaviour::Failing,
                    _ => {
                        let mut windows = Vec::new();
                        let mut t = rng.random_range(0.0..60.0);
                        while t < duration {
                            let len = rng.random_range(1.0..40.0);
                            windows.push((round(t), round(t + len)));
                            t += len + rng.random_range(5.0..80.0);
                        }
                        Behaviour::Flapping(windows)
                    }
                }
            })
            .collect();
        let groups = rng.random_range(1..=4);
        let mut alerts = Vec::new();
        for k in 0..rng.random_range(1..=6) {
            let mut firing = Vec::new();
            let mut t = rng.random_range(0.0..40.0);
            while t < duration - 10.0 {
                let len = rng.random_range(3.0..150.0);
                firing.push((round(t), round((t + len).min(duration))));
                t += len + rng.random_range(3.0..100.0);
            }
            alerts.push(AlertPlan {
                name: format!("a{k}"),
                group: format!("g{}", rng.random_range(0..groups)),
                firing,
            });
        }
        let mut faults = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let from = round(rng.random_range(10.0..duration - 20.0));
            let until = round((from + rng.random_range(2.0..90.0)).min(duration));
            if rng.random_bool(0.5) {
                let mut side: Vec<usize> = (0..n).filter(|_| rng.random_bool(0.4)).collect();
                if side.is_empty() || side.len() == n {
                    side = vec![rng.random_range(0..n)];
                }
                faults.push(Fault::Partition {
                    side,
                    from,
                    until,
                    one_way: rng.random_bool(0.3),
                });
            } else {
                let node = (anchor + rng.random_range(1..n)) % n;
                let overlaps = faults
                    .iter()
                    .any(|f| matches!(f, Fault::Kill { node: m, .. } if *m == node));
                if !overlaps {
                    faults.push(Fault::Kill {
                        node,
                        at: from,
                        restart: round((from + rng.random_range(0.0..40.0)).min(duration)),
                        disk: rng.random_bool(0.5),
                    });
                }
            }
        }
        let (peer_timeout, group_wait, group_interval) = (
            round(rng.random_range(1.0..4.0)),
            round(rng.random_range(0.5..4.0)),
            round(rng.random_range(2.0..12.0)),
        );
        // Drawn after everything above, so that a seed's alerts, receivers and kills stay the
        // ones earlier versions of the simulation ran.
        for _ in 0..rng.random_range(0..=2) {
            if rng.random_bool(0.5) {
                faults.push(Fault::Reload {
                    node: rng.random_range(0..n),
                    at: round(rng.random_range(10.0..duration - 20.0)),
                });
            }
        }
        if rng.random_bool(0.3) {
            // Forward up to an hour (a resume from suspend); back only a little (NTP slews large
            // corrections): a clock behind Prometheus' misjudges every resolve by the step.
            let by = if rng.random_bool(0.7) {
                round(rng.random_range(1.0..3600.0))
            } else {
                -round(rng.random_range(0.5..2.0))
            };
            faults.push(Fault::ClockStep {
                node: rng.random_range(0..n),
                at: round(rng.random_range(10.0..duration - 20.0)),
                by,
            });
        }
        let mut silences = Vec::new();
        if rng.random_bool(0.2) {
            faults.push(Fault::Forge {
                node: rng.random_range(0..n),
                at: round(rng.random_range(5.0..duration - 20.0)),
            });
        }
        for _ in 0..rng.random_range(0..=2) {
            let from = round(rng.random_range(10.0..duration - 30.0));
            silences.push(SilencePlan {
                alert: alerts[rng.random_range(0..alerts.len())].name.clone(),
                node: rng.random_range(0..n),
                from,
                until: round((from + rng.random_range(5.0..120.0)).min(duration)),
                expire_on: rng.random_bool(0.5).then(|| rng.random_range(0..n)),
            });
        }
        // Attackers in the gossip, drawn from a stream of their own so that every seed keeps the
        // rest of its scenario (the seeds docs/clustering.md cites still replay their faults).
        let mut attacker = StdRng::seed_from_u64(seed ^ 0x6a09_e667_f3bc_c908);
        if attacker.random_bool(0.15) {
            let from = round(attacker.random_range(5.0..duration - 40.0));
            faults.push(Fault::Phantom {
                count: attacker.random_range(1..=2),
                from,
                until: round((from + attacker.random_range(10.0..150.0)).min(duration)),
            });
        }
        if attacker.random_bool(0.15) {
            let at = round(attacker.random_range(5.0..duration - 40.0));
            faults.push(Fault::Takeover {
                node: attacker.random_range(0..n),
                at,
                until: round((at + attacker.random_range(10.0..150.0)).min(duration)),
            });
        }
        Scenario {
            seed,
            n,
            peer_timeout,
            group_wait,
            group_interval,
            receivers,
            alerts,
            faults,
            silences,
            duration,
            real_peers: false,
        }
    }

    /// The longest a firing state may wait for its notification: the group's first wait and one
    /// interval, every position's wait (phantom members' included), failure detection, the
    /// slowest receiver, and one post.
    pub fn bound(&self) -> f64 {
        self.group_wait
            + self.group_interval
            + (self.n + self.phantoms()) as f64 * self.peer_timeout
            + FAILURE_DETECTION
            + SLOWEST
            + POST_EVERY
            + ANTI_ENTROPY_EVERY
    }

    /// The most phantom members the scenario's attackers add (if all at once).
    fn phantoms(&self) -> usize {
        self.faults
            .iter()
            .map(|f| match f {
                Fault::Phantom { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    /// The phantom members in every replica's view at `t`, and the forged generation each
    /// replica's name is seen with (by the simulated membership).
    fn attackers_at(&self, t: f64) -> (usize, Vec<Option<u64>>) {
        let mut impostors = vec![None; self.n];
        let mut phantoms = 0;
        for f in &self.faults {
            match f {
                Fault::Phantom { count, .. } if in_window(f, t) => phantoms += count,
                Fault::Takeover { node, .. } if in_window(f, t) => impostors[*node] = Some(IMPOSTOR_GENERATION),
                _ => {}
            }
        }
        (phantoms, impostors)
    }

    /// How long the run goes on after the schedule, with every fault healed.
    pub fn tail(&self) -> f64 {
        2.0 * self.bound()
    }

    fn config(&self) -> String {
        format!(
            "route:\n  receiver: r\n  group_by: [grp]\n  group_wait: {}ms\n  group_interval: {}ms\n  repeat_interval: 1h\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n    send_resolved: true\n",
            (self.group_wait * 1000.0) as u64,
            (self.group_interval * 1000.0) as u64
        )
    }

    fn firing_at(&self, alert: &AlertPlan, t: f64) -> Option<(f64, f64)> {
        alert.firing.iter().copied().find(|(s, e)| *s <= t && t < *e)
    }
}

/// The start of the run under way (for log timestamps in virtual seconds).
pub static RUN_START: Mutex<Option<Instant>> = Mutex::new(None);

/// Prints log timestamps as virtual seconds since the run's start.
pub struct VirtualTime;

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let start = RUN_START.lock().unwrap_or_else(Instant::now);
        write!(w, "{:8.3}", (Instant::now() - start).as_secs_f64())
    }
}

/// One request a receiver got.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// Seconds since the start.
    pub t: f64,
    /// The replica that sent it.
    pub node: usize,
    /// The `grp` label.
    pub group: String,
    /// Alert names notified firing.
    pub firing: Vec<String>,
    /// Alert names notified resolved.
    pub resolved: Vec<String>,
    /// The receiver refused it.
    pub refused: bool,
    /// The same notification as this replica's last, refused, request for the group: a retry,
    /// whose content was decided at the first attempt.
    pub retry: bool,
}

/// The simulated network and membership.
struct Net {
    start: Instant,
    alive: Vec<bool>,
    generation: Vec<u64>,
    /// Directed links that drop everything: (from, to).
    /// How many partitions cut each directed link (they may overlap).
    cut: HashMap<(usize, usize), u32>,
    /// How many symmetric partitions cut gossip between each pair (lower index first).
    gossip_cut: HashMap<(usize, usize), u32>,
    apps: Vec<Weak<App>>,
    /// Silences (by index) whose creation a replica refused.
    refused_silences: Vec<usize>,
    /// Silences (by index) whose expiry a replica refused (it had not learnt of them).
    unexpired_silences: Vec<usize>,
    /// Per observer: when each peer was last heard and at which generation.
    heard: Vec<Vec<(f64, u64)>>,
    /// Per replica: the generation an impostor gossips its name with, while one does.
    impostors: Vec<Option<u64>>,
    history: Vec<Received>,
}

impl Net {
    fn now(&self) -> f64 {
        (Instant::now() - self.start).as_secs_f64()
    }

    fn up(&self, from: usize, to: usize) -> bool {
        self.alive[from] && self.alive[to] && !self.cut.contains_key(&(from, to))
    }

    fn live_in_view(&self, observer: usize, j: usize, now: f64) -> bool {
        j == observer || now - self.heard[observer][j].0 <= FAILURE_DETECTION
    }
}

type SharedNet = Arc<Mutex<Net>>;

struct SimPeer {
    idx: usize,
    generation: u64,
    name: String,
    position: AtomicUsize,
    net: SharedNet,
}

impl SimPeer {
    fn send(&self, f: impl Fn(&App) + Send + Sync + Clone + 'static) {
        let net = self.net.lock();
        if net.generation[self.idx] != self.generation || !net.alive[self.idx] {
            return;
        }
        for to in 0..net.apps.len() {
            // A push to a replica whose name an impostor took goes to the impostor's address.
            if to == self.idx || !net.up(self.idx, to) || net.impostors[to].is_some() {
                continue;
            }
            let (f, shared, target_gen) = (f.clone(), self.net.clone(), net.generation[to]);
            tokio::spawn(async move {
                tokio::time::sleep(LATENCY).await;
                let app = {
                    let n = shared.lock();
                    if n.generation[to] != target_gen || !n.alive[to] {
                        return;
                    }
                    n.apps[to].upgrade()
                };
                if let Some(app) = app {
                    f(&app);
                }
            });
        }
    }
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
        let Some(j) = name.strip_prefix('n').and_then(|s| s.parse::<usize>().ok()) else {
            return false;
        };
        let net = self.net.lock();
        let now = net.now();
        j < net.apps.len() && net.live_in_view(self.idx, j, now) && net.heard[self.idx][j].1 == generation
    }
    fn broadcast_claim(&self, c: &Claim) {
        let c = c.clone();
        self.send(move |app| {
            let _ = app.state.merge_claim(c.clone());
        });
    }
    fn broadcast_nflog(&self, e: &Entry) {
        let e = e.clone();
        self.send(move |app| {
            let _ = app.state.merge_nflog(e.clone());
        });
    }
    fn broadcast_silence(&self, m: &MeshSilence) {
        let m = m.clone();
        self.send(move |app| {
            let _ = app.state.merge_silence(m.clone());
        });
    }
}

struct SimReceiver {
    node: usize,
    generation: u64,
    behaviour: Behaviour,
    net: SharedNet,
}

impl Notifier for SimReceiver {
    fn notify<'a>(&'a self, d: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move {
            let (t, dead) = {
                let net = self.net.lock();
                let dead = net.generation[self.node] != self.generation || !net.alive[self.node];
                (net.now(), dead)
            };
            if dead {
                // A dead process sends nothing more.
                std::future::pending::<()>().await;
            }
            let refused = match &self.behaviour {
                Behaviour::Failing => true,
                Behaviour::Flapping(w) => w.iter().any(|(a, b)| *a <= t && t < *b),
                _ => false,
            };
            let mut firing = Vec::new();
            let mut resolved = Vec::new();
            for a in &d.alerts {
                let name = a.labels["alertname"].to_string();
                if is_zero(a.ends_at) {
                    firing.push(name)
                } else {
                    resolved.push(name)
                }
            }
            firing.sort();
            resolved.sort();
            let group = d.group_labels.get("grp").unwrap_or_default().to_string();
            {
                let mut net = self.net.lock();
                let retry = net
                    .history
                    .iter()
                    .rev()
                    .find(|r| r.node == self.node && r.group == group)
                    .is_some_and(|r| r.refused && r.firing == firing && r.resolved == resolved);
                net.history.push(Received {
                    t,
                    node: self.node,
                    group,
                    firing,
                    resolved,
                    refused,
                    retry,
                });
            }
            if refused {
                return Err(NotifyError::retryable(
                    FailureReason::ServerError,
                    "503 Service Unavailable",
                ));
            }
            if let Behaviour::Slow(s) = self.behaviour {
                tokio::time::sleep(Duration::from_secs_f64(s)).await;
            }
            Ok(None)
        })
    }
}

fn at(t0: Timestamp, s: f64) -> Timestamp {
    t0.checked_add(SignedDuration::from_secs_f64(s)).unwrap()
}

struct Node {
    app: Arc<App>,
    /// The simulated membership's peer.
    peer: Option<Arc<SimPeer>>,
    /// The real peer, its state as served on the wire, and its address (one per life).
    real: Option<(Arc<ClusterPeer>, Arc<dyn Replicated>, SocketAddr)>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// In-memory gossip and replication for real peers.
struct Real {
    gossip: MemoryGossip,
    wires: Arc<MemoryNet>,
}

struct World<'a> {
    s: &'a Scenario,
    net: SharedNet,
    nodes: Vec<Node>,
    t0: Timestamp,
    real: Option<Real>,
    /// The id of each created silence, by its index in the scenario.
    silence_ids: HashMap<usize, String>,
    /// Real peers: the attackers' gossip members, by their fault's index.
    attackers: HashMap<usize, Vec<Membership>>,
}

/// A chitchat member on the in-memory gossip at `addr` (its replication address too).
async fn member(
    gossip: &MemoryGossip,
    name: String,
    generation: u64,
    addr: SocketAddr,
    seeds: Vec<String>,
) -> Membership {
    Membership::start_in_memory(
        MembershipConfig {
            node_id: name,
            generation,
            advertise_addr: addr,
            listen_addr: addr,
            seeds,
            cluster_label: "chaos".into(),
            gossip_interval: Duration::from_millis(200),
            grpc_addr: addr.to_string(),
        },
        gossip,
    )
    .await
    .expect("an in-memory gossip address")
}

/// The gossip and replication address of node `i` in its life `generation`.
fn life_addr(i: usize, generation: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 30_000 + 100 * i as u16 + generation as u16))
}

impl World<'_> {
    async fn start_node(&self, i: usize) -> Node {
        let (generation, start) = {
            let n = self.net.lock();
            (n.generation[i], n.start)
        };
        let behaviour = self.s.receivers[i].clone();
        let net = self.net.clone();
        let factory: NotifierFactory = Arc::new(move |r: &Receiver, _: &tocsin_notify::Shared| {
            Ok(tocsin_notify::webhooks_with(r, |_| {
                Arc::new(SimReceiver {
                    node: i,
                    generation,
                    behaviour: behaviour.clone(),
                    net: net.clone(),
                })
            }))
        });
        let config = load(&self.s.config(), std::path::Path::new("."), &Default::default()).unwrap();
        let mut settings = Settings::new("unused.yml");
        settings.peer_timeout = Duration::from_secs_f64(self.s.peer_timeout);
        let elapsed = (Instant::now() - start).as_secs_f64();
        let app = App::new(settings, config, factory, Clock::new(at(self.t0, elapsed))).unwrap();
        self.net.lock().apps[i] = Arc::downgrade(&app);
        let (stop, _) = tokio::sync::watch::channel(false);
        let Some(real) = &self.real else {
            let peer = Arc::new(SimPeer {
                idx: i,
                generation,
                name: format!("n{i}"),
                position: AtomicUsize::new(i),
                net: self.net.clone(),
            });
            app.set_peer(peer.clone());
            return Node {
                app,
                peer: Some(peer),
                real: None,
                stop,
            };
        };
        let addr = life_addr(i, generation);
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, n)| n.real.as_ref().map(|r| r.2.to_string()))
            .chain(
                (self.nodes.len()..self.s.n)
                    .filter(|j| *j != i)
                    .map(|j| life_addr(j, 1).to_string()),
            )
            .collect();
        let membership = member(&real.gossip, format!("n{i}"), generation, addr, seeds.clone()).await;
        let state = replicated_state(&app);
        real.wires.serve(&addr.to_string(), &state);
        let opts = NodeOptions {
            seeds,
            settle_timeout: Duration::from_secs(5),
            pushpull_interval: Duration::from_secs_f64(ANTI_ENTROPY_EVERY),
        };
        let wire = Arc::new(real.wires.wire(&addr.to_string()));
        let peer = join_with(&app, membership, wire, opts, stop.subscribe());
        app.set_cluster(peer.clone());
        Node {
            app,
            peer: None,
            real: Some((peer, state, addr)),
            stop,
        }
    }

    fn run_node(&self, i: usize) {
        let generation = self.net.lock().generation[i];
        let span = tracing::info_span!("node", n = i, generation);
        tokio::spawn(tracing::Instrument::instrument(
            self.nodes[i].app.clone().run_scheduler(self.nodes[i].stop.subscribe()),
            span,
        ));
    }

    /// Pulls every reachable peer's state into `i` (anti-entropy, and a restart's settle).
    fn pull(&self, i: usize) {
        if self.real.is_some() {
            return;
        }
        let reachable: Vec<usize> = {
            let net = self.net.lock();
            (0..self.s.n)
                .filter(|&j| j != i && net.up(j, i) && net.up(i, j) && net.impostors[j].is_none())
                .collect()
        };
        let me = &self.nodes[i].app;
        for j in reachable {
            let other = &self.nodes[j].app;
            let entries: Vec<Entry> = other.state.nflog().entries().cloned().collect();
            for e in entries {
                let _ = me.state.merge_nflog(e);
            }
            let silences: Vec<MeshSilence> = other.state.silences().iter().cloned().collect();
            for m in silences {
                let _ = me.state.merge_silence(m);
            }
            let claims: Vec<Claim> = other.state.claims().iter().cloned().collect();
            for c in claims {
                let _ = me.state.merge_claim(c);
            }
        }
    }

    fn update_views(&self) {
        if self.real.is_some() {
            return;
        }
        let mut net = self.net.lock();
        let now = net.now();
        let (phantoms, impostors) = self.s.attackers_at(now);
        for i in 0..self.s.n {
            for (j, forged) in impostors.iter().enumerate() {
                if i == j || net.up(j, i) {
                    let g = forged.unwrap_or(net.generation[j]);
                    net.heard[i][j] = (now, g);
                }
            }
        }
        net.impostors = impostors;
        for i in 0..self.s.n {
            // Phantoms sort before every replica.
            let pos = phantoms + (0..i).filter(|&j| net.live_in_view(i, j, now)).count();
            if let Some(p) = &self.nodes[i].peer {
                p.position.store(pos, Ordering::SeqCst);
            }
        }
    }

    fn post(&self, now: f64) {
        let alive: Vec<usize> = {
            let net = self.net.lock();
            (0..self.s.n).filter(|&i| net.alive[i]).collect()
        };
        let mut batch = Vec::new();
        for a in &self.s.alerts {
            let labels = [
                ("alertname".to_string(), a.name.clone()),
                ("grp".to_string(), a.group.clone()),
            ]
            .into();
            if let Some((s, _)) = self.s.firing_at(a, now) {
                batch.push(PostedAlert {
                    labels,
                    starts_at: at(self.t0, s),
                    ends_at: ZERO,
                    ..PostedAlert::default()
                });
            } else if let Some((s, e)) = a.firing.iter().rev().find(|(_, e)| *e <= now).copied() {
                // Prometheus keeps sending a resolved alert for a while.
                if now - e < 120.0 {
                    batch.push(PostedAlert {
                        labels,
                        starts_at: at(self.t0, s),
                        ends_at: at(self.t0, e),
                        ..PostedAlert::default()
                    });
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        for i in alive {
            let rejected = self.nodes[i].app.post_alerts(batch.clone());
            assert!(rejected.is_empty(), "{rejected:?}");
        }
    }

    /// Cuts (`up` false) or restores one more time the link from `a` to `b`, and gossip between
    /// them unless `one_way` (chitchat's channel links are symmetric; a one-way cut stands for
    /// a replication port that one side cannot reach while gossip flows). Partitions may
    /// overlap: a link is restored when the last partition cutting it heals.
    async fn link(&self, a: usize, b: usize, one_way: bool, up: bool) {
        fn count<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: K, up: bool) -> bool {
            let n = m.entry(k).or_insert(0);
            let edge = if up { *n == 1 } else { *n == 0 };
            if up {
                *n = n.saturating_sub(1);
            } else {
                *n += 1;
            }
            m.retain(|_, v| *v > 0);
            edge
        }
        let directed: Vec<(usize, usize)> = if one_way { vec![(a, b)] } else { vec![(a, b), (b, a)] };
        let (wire_edges, gossip_edge) = {
            let mut net = self.net.lock();
            let w: Vec<(usize, usize)> = directed.into_iter().filter(|&k| count(&mut net.cut, k, up)).collect();
            let g = !one_way && count(&mut net.gossip_cut, (a.min(b), a.max(b)), up);
            (w, g)
        };
        let Some(real) = &self.real else { return };
        let addr = |i: usize| self.nodes[i].real.as_ref().map(|r| r.2);
        for (from, to) in wire_edges {
            if let (Some(x), Some(y)) = (addr(from), addr(to)) {
                if up {
                    real.wires.restore(&x.to_string(), &y.to_string());
                } else {
                    real.wires.cut(&x.to_string(), &y.to_string());
                }
            }
        }
        if let (true, Some(x), Some(y)) = (gossip_edge, addr(a), addr(b)) {
            if up {
                real.gossip.heal(x, y).await;
            } else {
                real.gossip.cut(x, y).await;
            }
        }
    }

    /// Pushes the forged records of [`Fault::Forge`] into `target`, as the replication service
    /// would merge them.
    fn forge(&self, target: usize) {
        let app = &self.nodes[target].app;
        let far: Timestamp = "9999-01-01T00:00:00Z".parse().unwrap();
        let now = app.clock.now();
        let everything = Silence {
            id: "forged-1".into(),
            matcher_sets: vec![vec![]],
            starts_at: now,
            ends_at: far,
            updated_at: now,
            ..Silence::default()
        };
        let _ = app.state.merge_silence(MeshSilence {
            silence: everything.clone(),
            expires_at: far,
        });
        let _ = app.state.merge_silence(MeshSilence {
            silence: Silence {
                id: "forged-2".into(),
                matcher_sets: vec![
                    tocsin_core::matchers::parse_matchers("alertname=~\".+\"", Default::default()).unwrap(),
                ],
                updated_at: far,
                ..everything
            },
            expires_at: far,
        });
        let (victim, generation) = {
            let net = self.net.lock();
            let v = (1..self.s.n)
                .map(|k| (target + k) % self.s.n)
                .find(|&j| net.alive[j])
                .unwrap_or(target);
            (v, net.generation[v])
        };
        let receiver = tocsin_core::nflog::ReceiverKey {
            group_name: "r".into(),
            integration: "webhook".into(),
            idx: 0,
        };
        let mut groups: Vec<&String> = self.s.alerts.iter().map(|a| &a.group).collect();
        groups.sort();
        groups.dedup();
        for g in groups {
            let group_key = format!("{{}}:{{grp=\"{g}\"}}");
            let _ = app.state.merge_nflog(Entry {
                group_key: group_key.clone(),
                receiver: receiver.clone(),
                timestamp: far,
                firing_alerts: vec![],
                resolved_alerts: vec![],
                expires_at: far,
                receiver_data: Default::default(),
            });
            let _ = app.state.merge_claim(Claim {
                group_key,
                receiver: receiver.clone(),
                sender: format!("n{victim}"),
                generation,
                created: now,
                deadline: far,
                released: false,
            });
        }
    }

    /// The first replica alive from `i` on (the one a user's request reaches).
    fn alive_from(&self, i: usize) -> usize {
        let net = self.net.lock();
        (0..self.s.n)
            .map(|k| (i + k) % self.s.n)
            .find(|&j| net.alive[j])
            .unwrap_or(i)
    }

    /// Creates and expires the scenario's silences through the replicas' API methods.
    fn apply_silences(&mut self, prev: f64, now: f64) {
        let s = self.s;
        for (k, p) in s.silences.iter().enumerate() {
            if prev < p.from && p.from <= now {
                let app = &self.nodes[self.alive_from(p.node)].app;
                let matchers =
                    tocsin_core::matchers::parse_matchers(&format!("alertname={}", p.alert), Default::default())
                        .expect("a matcher");
                let ends = if p.expire_on.is_some() {
                    s.duration + 10_000.0
                } else {
                    p.until
                };
                let silence = Silence {
                    matcher_sets: vec![matchers],
                    // The user's clock, which the replica's may not agree with.
                    starts_at: at(self.t0, p.from),
                    ends_at: at(self.t0, ends),
                    created_by: "chaos".into(),
                    comment: format!("silence {k}"),
                    ..Silence::default()
                };
                // A replica whose clock is past the end refuses it, as its API would (400).
                match app
                    .state
                    .set_silence(silence, || format!("00000000-0000-4000-8000-{k:012}"))
                {
                    Ok(id) => {
                        self.silence_ids.insert(k, id);
                    }
                    Err(_) => self.net.lock().refused_silences.push(k),
                }
            }
            if let (Some(e), Some(id), true) = (p.expire_on, self.silence_ids.get(&k), prev < p.until && p.until <= now)
            {
                let app = &self.nodes[self.alive_from(e)].app;
                // A replica that never learnt of the silence answers 404, as the API would:
                // the silence stays in force.
                if app.state.expire_silence(id).is_err() {
                    self.net.lock().unexpired_silences.push(k);
                }
            }
        }
    }

    /// Real peers: starts gossip members for an attacker: named `names`, one generation, each
    /// at an address of its own whose replication port nothing serves.
    async fn start_attackers(&mut self, fault: usize, names: Vec<String>, generation: u64) {
        let Some(real) = &self.real else { return };
        let seeds: Vec<String> = (0..self.s.n)
            .filter(|&i| self.net.lock().alive[i])
            .filter_map(|i| self.nodes[i].real.as_ref().map(|r| r.2.to_string()))
            .collect();
        let mut members = Vec::new();
        for (k, name) in names.into_iter().enumerate() {
            let addr = SocketAddr::from(([127, 0, 0, 3], 40_000 + 10 * fault as u16 + k as u16));
            members.push(member(&real.gossip, name, generation, addr, seeds.clone()).await);
        }
        self.attackers.insert(fault, members);
    }

    async fn stop_attackers(&mut self, fault: usize) {
        for m in self.attackers.remove(&fault).unwrap_or_default() {
            let _ = m.stop().await;
        }
    }

    async fn apply_faults(&mut self, prev: f64, now: f64) {
        let s = self.s;
        for (k, f) in s.faults.iter().enumerate() {
            match f {
                // The simulated membership follows these from the scenario (`attackers_at`).
                Fault::Phantom { count, from, until } => {
                    if prev < *from && *from <= now {
                        let names = (0..*count).map(|p| format!("a-phantom-{p}")).collect();
                        self.start_attackers(k, names, 1).await;
                    }
                    if prev < *until && *until <= now {
                        self.stop_attackers(k).await;
                    }
                }
                Fault::Takeover { node, at, until } => {
                    if prev < *at && *at <= now {
                        self.start_attackers(k, vec![format!("n{node}")], IMPOSTOR_GENERATION)
                            .await;
                    }
                    if prev < *until && *until <= now {
                        self.stop_attackers(k).await;
                    }
                }
                Fault::Forge { node, at: when } => {
                    if prev < *when && *when <= now && self.net.lock().alive[*node] {
                        self.forge(*node);
                    }
                }
                Fault::Reload { node, at: when } => {
                    if prev < *when && *when <= now && self.net.lock().alive[*node] {
                        let config = load(&s.config(), std::path::Path::new("."), &Default::default()).unwrap();
                        self.nodes[*node]
                            .app
                            .apply(config)
                            .expect("the same configuration applies");
                    }
                }
                Fault::ClockStep { node, at: when, by } => {
                    if prev < *when && *when <= now {
                        self.nodes[*node].app.clock.step(SignedDuration::from_secs_f64(*by));
                    }
                }
                Fault::Partition {
                    side,
                    from,
                    until,
                    one_way,
                } => {
                    let pairs = || {
                        side.iter()
                            .flat_map(move |&a| (0..s.n).filter(move |b| !side.contains(b)).map(move |b| (a, b)))
                    };
                    if prev < *from && *from <= now {
                        for (a, b) in pairs() {
                            self.link(a, b, *one_way, false).await;
                        }
                    }
                    if prev < *until && *until <= now {
                        for (a, b) in pairs() {
                            self.link(a, b, *one_way, true).await;
                        }
                    }
                }
                Fault::Kill {
                    node,
                    at: die,
                    restart,
                    disk,
                } => {
                    if prev < *die && *die <= now {
                        self.net.lock().alive[*node] = false;
                        let _ = self.nodes[*node].stop.send(true);
                        if let (Some(real), Some((peer, _, addr))) = (&self.real, &self.nodes[*node].real) {
                            real.wires.unserve(&addr.to_string());
                            peer.stop().await;
                        }
                    }
                    if prev < *restart && *restart <= now {
                        {
                            let mut net = self.net.lock();
                            net.generation[*node] += 1;
                            net.alive[*node] = true;
                        }
                        let old = self.nodes[*node].app.clone();
                        let fresh = self.start_node(*node).await;
                        if *disk {
                            // What the snapshots would hold: restored as start-up does.
                            let entries: Vec<Entry> = old.state.nflog().entries().cloned().collect();
                            let silences: Vec<MeshSilence> = old.state.silences().iter().cloned().collect();
                            fresh.app.state.restore(silences, entries);
                        }
                        self.nodes[*node] = fresh;
                        self.update_views();
                        // Settling: a full sync from the peers it reaches before it serves.
                        self.pull(*node);
                        self.run_node(*node);
                    }
                }
            }
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every request the receivers got, in order.
    pub received: Vec<Received>,
    /// Silences of the scenario (by index) that the replica asked refused.
    pub refused_silences: Vec<usize>,
    /// Silences whose expiry the replica asked refused: in force to the end.
    pub unexpired_silences: Vec<usize>,
}

impl History {
    /// When silence `k` of the scenario ended: as planned, or never.
    fn silence_end(&self, k: usize, p: &SilencePlan) -> f64 {
        if self.unexpired_silences.contains(&k) {
            f64::INFINITY
        } else {
            p.until
        }
    }
}

/// Runs a scenario on a fresh paused runtime.
pub fn run(s: &Scenario) -> History {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        *RUN_START.lock() = Some(Instant::now());
        let net = Arc::new(Mutex::new(Net {
            start: Instant::now(),
            alive: vec![true; s.n],
            generation: vec![1; s.n],
            cut: HashMap::new(),
            gossip_cut: HashMap::new(),
            apps: (0..s.n).map(|_| Weak::new()).collect(),
            heard: vec![vec![(0.0, 1); s.n]; s.n],
            impostors: vec![None; s.n],
            history: Vec::new(),
            refused_silences: Vec::new(),
            unexpired_silences: Vec::new(),
        }));
        let mut w = World {
            s,
            net: net.clone(),
            nodes: Vec::new(),
            t0,
            real: s.real_peers.then(|| Real {
                gossip: MemoryGossip::default(),
                wires: MemoryNet::new(LATENCY),
            }),
            silence_ids: HashMap::new(),
            attackers: HashMap::new(),
        };
        for i in 0..s.n {
            let node = w.start_node(i).await;
            w.nodes.push(node);
        }
        if s.real_peers {
            // Formed: every node sees every other, as a cluster that ran before the schedule.
            for _ in 0..300 {
                if w.nodes
                    .iter()
                    .all(|n| n.app.cluster().is_some_and(|c| c.members().len() == s.n))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        w.update_views();
        for i in 0..s.n {
            w.run_node(i);
        }
        let start = net.lock().start;
        let end = s.duration + s.tail();
        let (mut prev, mut next_post, mut next_ae) = (-1.0, 0.0, ANTI_ENTROPY_EVERY);
        let mut now = 0.0;
        while now <= end {
            w.apply_faults(prev, now).await;
            w.apply_silences(prev, now);
            w.update_views();
            if now >= next_post {
                w.post(now);
                next_post += POST_EVERY;
            }
            if now >= next_ae {
                for i in 0..s.n {
                    if net.lock().alive[i] {
                        w.pull(i);
                    }
                }
                next_ae += ANTI_ENTROPY_EVERY;
            }
            prev = now;
            now += VIEW_EVERY;
            tokio::time::sleep_until(start + Duration::from_secs_f64(now)).await;
        }
        for n in &w.nodes {
            let _ = n.stop.send(true);
        }
        let mut net = net.lock();
        History {
            received: std::mem::take(&mut net.history),
            refused_silences: std::mem::take(&mut net.refused_silences),
            unexpired_silences: std::mem::take(&mut net.unexpired_silences),
        }
    })
}

/// A broken promise found in a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Which rule.
    pub rule: &'static str,
    /// What happened.
    pub detail: String,
}

fn faults_near(s: &Scenario, from: f64, to: f64) -> bool {
    events_near(s, from, to) > 0
}

/// How many faults' windows meet `[from, to]`.
fn events_near(s: &Scenario, from: f64, to: f64) -> usize {
    near(s, from, to).count()
}

fn near(s: &Scenario, from: f64, to: f64) -> impl Iterator<Item = &Fault> {
    s.faults.iter().filter(move |f| {
        let (a, b) = f.window();
        a <= to && b >= from
    })
}

/// How many duplicates of one notification the faults meeting `[from, to]` explain: each side
/// of a partition may send once, and p overlapping partitions make up to 2^p sides; a death or
/// a reload leaves one send's outcome unknown; a clock step skews both the stepped replica's
/// judgement of its peers' records and theirs of its own; an impostor hides one replica's
/// claims from its peers and their pushes from it (two, see below). Phantom members only
/// delay: they explain none.
fn duplicates_explained(s: &Scenario, from: f64, to: f64) -> usize {
    let (mut partitions, mut others) = (0u32, 0usize);
    for f in near(s, from, to) {
        match f {
            Fault::Partition { .. } => partitions += 1,
            Fault::ClockStep { .. } => others += 2,
            Fault::Kill { .. } | Fault::Reload { .. } | Fault::Forge { .. } => others += 1,
            // The victim's claims are ignored (one duplicate); when its send was the slow one,
            // the log entry it writes on completion is older in content than a peer's but newer
            // in time, and wins: one replica notifies the newer content again (seeds 383, 891).
            Fault::Takeover { .. } => others += 2,
            Fault::Phantom { .. } => {}
        }
    }
    (1usize << partitions.min(16)) - 1 + others
}

/// When each silence of `name` is in force everywhere, as windows `[from, until)`: its end is
/// known late by a replica cut off, dead or skewed at the time, so the window then lasts until
/// that fault ended and one anti-entropy round after.
fn silenced_windows(s: &Scenario, h: &History, name: &str) -> Vec<(f64, f64)> {
    let bound = s.bound();
    s.silences
        .iter()
        .enumerate()
        .filter(|(k, p)| p.alert == name && !h.refused_silences.contains(k))
        .map(|(k, p)| {
            let until = h.silence_end(k, p);
            let late = s
                .faults
                .iter()
                .map(Fault::window)
                .filter(|(a, b)| *a <= until + bound && *b >= p.from)
                .map(|(_, b)| b + ANTI_ENTROPY_EVERY + bound)
                .fold(until, f64::max);
            (p.from, late)
        })
        .collect()
}

/// Whether `r` was decided just after its sender's clock stepped forward: the alerts it held
/// then looked past their end (`endsAt`, which Alertmanager sets from its own clock for alerts
/// posted without one) until Prometheus' next post, so it may have notified a resolve early. A
/// retry was decided at its first attempt (seed 13655: a refusing receiver took a step's early
/// resolve 13 s after the decision).
fn jumped_ahead(s: &Scenario, h: &History, r: &Received) -> bool {
    let decided = if r.retry {
        h.received
            .iter()
            .filter(|x| x.node == r.node && x.group == r.group && x.t <= r.t)
            .rev()
            .skip_while(|x| !x.refused)
            .take_while(|x| x.refused && x.firing == r.firing && x.resolved == r.resolved)
            .last()
            .map_or(r.t, |x| x.t)
    } else {
        r.t
    };
    s.faults.iter().any(|f| {
        matches!(f, Fault::ClockStep { node, at, by }
            if *node == r.node && *by > 0.0 && *at <= decided && decided <= at + POST_EVERY + s.group_interval + 1.0)
    })
}

/// `[start, end)` minus the windows.
fn minus(start: f64, end: f64, windows: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut parts = vec![(start, end)];
    for &(a, b) in windows {
        parts = parts
            .into_iter()
            .flat_map(|(x, y)| {
                if b <= x || a >= y {
                    vec![(x, y)]
                } else {
                    [(x, a.max(x)), (b.min(y), y)]
                        .into_iter()
                        .filter(|(p, q)| q > p)
                        .collect()
                }
            })
            .collect();
    }
    parts
}

/// Checks a history against the scenario's truth.
///
/// - **No silence**: every firing interval longer than [`Scenario::bound`] was notified firing
///   within the bound of its start.
/// - **Resolves notified**: an alert notified firing whose resolve lasted the bound was
///   notified resolved within the bound.
/// - **No stale firing**: a first attempt says firing only of alerts that fired within one post
///   before it; and no alert is notified firing after a resolved notification of it unless it
///   fired again in between, or a partition or a death kept the sender from knowing.
/// - **Duplicates explained**: the same firing and resolved sets delivered to a group more than
///   once happen only near a fault (partition, death, reload, clock step) or a replica whose
///   receiver refused the group, and no more often than those explain: one duplicate per
///   side of a partition, per death, reload or refusing replica, two per clock step.
/// - **Nothing sent for a silenced alert**: no first attempt names an alert while a silence of
///   it is in force and known to the sender.
///
/// A silence suspends the first two rules for its alert while it is in force everywhere.
pub fn check(s: &Scenario, h: &History) -> Vec<Violation> {
    let mut v = Vec::new();
    let bound = s.bound();
    let delivered: Vec<&Received> = h.received.iter().filter(|r| !r.refused).collect();
    for a in &s.alerts {
        let silenced = silenced_windows(s, h, &a.name);
        for &(start, end) in &a.firing {
            // What the receiver believed of the alert one bound after it fired (or after its
            // silence ended): the last notification that named it must say firing (an earlier
            // one may: a resolve that re-fired before the next flush is, rightly, never notified).
            for (from, to) in minus(start, end, &silenced) {
                let notified = delivered
                    .iter()
                    .rev()
                    .filter(|r| !(r.resolved.contains(&a.name) && jumped_ahead(s, h, r)))
                    .find(|r| {
                        r.group == a.group
                            && r.t <= from + bound
                            && (r.firing.contains(&a.name) || r.resolved.contains(&a.name))
                    })
                    .is_some_and(|r| r.firing.contains(&a.name));
                if to - from > bound && !notified {
                    v.push(Violation {
                        rule: "no silence",
                        detail: format!(
                            "{} fired {start}..{end}, unsilenced {from}..{to}, and was not notified within {bound:.1}s",
                            a.name
                        ),
                    });
                }
            }
            // The resolve, if this interval was notified and the alert then stayed resolved.
            let was_notified = delivered
                .iter()
                .any(|r| r.group == a.group && r.firing.contains(&a.name) && r.t >= start && r.t <= end);
            let refire = a
                .firing
                .iter()
                .find(|(s2, _)| *s2 >= end)
                .map_or(f64::INFINITY, |x| x.0);
            // A silenced alert is dropped from notifications with its resolve (§3.3), and from
            // the log's firing set: once silenced after its last firing notification, its
            // resolve is not notified, as in Alertmanager (upstream #226).
            let last_firing = delivered
                .iter()
                .rev()
                .find(|r| r.group == a.group && r.firing.contains(&a.name) && r.t <= end)
                .map_or(start, |r| r.t);
            let silenced_at_resolve = silenced.iter().any(|(x, y)| *x <= end + bound && *y >= last_firing);
            if was_notified && end < s.duration && refire - end > bound && !silenced_at_resolve {
                // What the receiver believes one bound after the resolve (a replica whose clock
                // runs ahead may have told it a little early).
                let resolved = delivered
                    .iter()
                    .rev()
                    .find(|r| {
                        r.group == a.group
                            && r.t <= end + bound
                            && (r.firing.contains(&a.name) || r.resolved.contains(&a.name))
                    })
                    .is_some_and(|r| r.resolved.contains(&a.name));
                if !resolved {
                    v.push(Violation {
                        rule: "resolve notified",
                        detail: format!(
                            "{} resolved at {end} and was not notified resolved within {bound:.1}s",
                            a.name
                        ),
                    });
                }
            }
        }
    }
    // A first attempt is decided from a look taken just before it: what it says firing fired
    // within one post (Prometheus' resend) before it. Retries carry the first attempt's content.
    for r in delivered.iter().filter(|r| !r.retry) {
        for name in &r.firing {
            let a = s.alerts.iter().find(|a| &a.name == name).unwrap();
            let recent = a
                .firing
                .iter()
                .any(|(st, e)| *st <= r.t && *e >= r.t - POST_EVERY - 0.5);
            if !recent {
                v.push(Violation {
                    rule: "no stale firing",
                    detail: format!(
                        "{name} notified firing by n{} at {:.2}, resolved long before",
                        r.node, r.t
                    ),
                });
            }
        }
    }
    for (k, r2) in delivered.iter().enumerate() {
        for name in &r2.firing {
            let Some(r1) = delivered[..k]
                .iter()
                .rev()
                .find(|r| r.group == r2.group && r.resolved.contains(name))
            else {
                continue;
            };
            let a = s.alerts.iter().find(|a| &a.name == name).unwrap();
            let fired_between = a.firing.iter().any(|(st, e)| *st <= r2.t && *e > r1.t);
            // Across a partition or a death the sender cannot know of the resolve.
            if !fired_between && !faults_near(s, r1.t - bound, r2.t) {
                v.push(Violation {
                    rule: "no stale firing",
                    detail: format!(
                        "{name} notified firing by n{} at {:.2} after n{} notified it resolved at {:.2}",
                        r2.node, r2.t, r1.node, r1.t
                    ),
                });
            }
        }
    }
    // Duplicates: each run of the same firing and resolved sets delivered to a group more than
    // once is explained by the faults near it (a partition, a death, a reload, a clock step) and
    // the replicas whose receiver refused that group's requests, at most one duplicate each.
    let mut groups: Vec<&String> = delivered.iter().map(|r| &r.group).collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        let seq: Vec<&&Received> = delivered.iter().filter(|r| &r.group == g).collect();
        let mut i = 0;
        while i < seq.len() {
            let mut j = i + 1;
            while j < seq.len() && seq[j].firing == seq[i].firing && seq[j].resolved == seq[i].resolved {
                j += 1;
            }
            let (first, last) = (seq[i], seq[j - 1]);
            let dups = j - i - 1;
            if dups > 0 {
                let mut refusing: Vec<usize> = h
                    .received
                    .iter()
                    .filter(|r| r.refused && &r.group == g && r.t >= first.t - bound && r.t <= last.t)
                    .map(|r| r.node)
                    .collect();
                refusing.sort_unstable();
                refusing.dedup();
                let explained = duplicates_explained(s, first.t - bound, last.t) + refusing.len();
                if dups > explained {
                    let senders: Vec<String> = seq[i..j].iter().map(|r| format!("n{}@{:.2}", r.node, r.t)).collect();
                    v.push(Violation {
                        rule: "duplicates explained",
                        detail: format!(
                            "group {g} got firing {:?} resolved {:?} {} times ({}), with {explained} fault(s) near",
                            first.firing,
                            first.resolved,
                            dups + 1,
                            senders.join(", ")
                        ),
                    });
                }
            }
            i = j;
        }
    }
    // Nothing is sent for a silenced alert by a replica that knew of the silence: one that
    // reached its creator (no fault near) had it within one step and the network's latency.
    // Retries carry what the first attempt decided.
    for r in delivered.iter().filter(|r| !r.retry) {
        for name in r.firing.iter().chain(&r.resolved) {
            let made = s
                .silences
                .iter()
                .enumerate()
                .filter(|(k, p)| &p.alert == name && !h.refused_silences.contains(k));
            for (k, p) in made {
                let known = p.from + VIEW_EVERY + 2.0 * LATENCY.as_secs_f64();
                if known <= r.t && r.t < h.silence_end(k, p) && !faults_near(s, p.from - bound, r.t) {
                    v.push(Violation {
                        rule: "nothing sent for a silenced alert",
                        detail: format!(
                            "{name} notified by n{} at {:.2}, silenced {}..{}",
                            r.node, r.t, p.from, p.until
                        ),
                    });
                }
            }
        }
    }
    v
}

/// Shrinks a failing scenario: drops faults, alerts and firing intervals one at a time while
/// the same rule still breaks. Returns the smallest scenario found and its violations.
pub fn shrink(s: &Scenario, rule: &'static str) -> (Scenario, Vec<Violation>) {
    let breaks = |c: &Scenario| {
        let v = check(c, &run(c));
        v.iter().any(|x| x.rule == rule).then_some(v)
    };
    let mut best = s.clone();
    let mut best_v = breaks(&best).unwrap_or_default();
    let mut progress = true;
    while progress {
        progress = false;
        let mut candidates = Vec::new();
        for i in 0..best.faults.len() {
            let mut c = best.clone();
            c.faults.remove(i);
            candidates.push(c);
        }
        for i in 0..best.silences.len() {
            let mut c = best.clone();
            c.silences.remove(i);
            candidates.push(c);
        }
        for i in 0..best.alerts.len() {
            let mut c = best.clone();
            c.alerts.remove(i);
            candidates.push(c);
            for j in 0..best.alerts[i].firing.len() {
                let mut c = best.clone();
                c.alerts[i].firing.remove(j);
                candidates.push(c);
            }
        }
        for c in candidates {
            if let Some(v) = breaks(&c) {
                (best, best_v, progress) = (c, v, true);
                break;
            }
        }
    }
    (best, best_v)
}

/// A scenario as text, to reproduce a failure by hand.
pub fn describe(s: &Scenario) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seed {}: {} replicas, peer_timeout {}s, group_wait {}s, group_interval {}s, bound {:.1}s",
        s.seed,
        s.n,
        s.peer_timeout,
        s.group_wait,
        s.group_interval,
        s.bound()
    );
    for (i, r) in s.receivers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  n{i} receiver: {r:?}{}",
            if r.delivers() { "" } else { " (does not deliver)" }
        );
    }
    for a in &s.alerts {
        let _ = writeln!(out, "  alert {} in {}: firing {:?}", a.name, a.group, a.firing);
    }
    for f in &s.faults {
        let _ = writeln!(out, "  fault {f:?}");
    }
    for p in &s.silences {
        let _ = writeln!(out, "  silence {p:?}");
    }
    out
}
