//! A replica's part in the cluster: its membership plus the replication rules (push every local
//! change to every member, settle from a seed, repair when a peer's published digest differs,
//! pull every peer's full state each pushpull interval), over a [`Wire`]: gRPC
//! ([`Replicator`]) in production, [`MemoryWire`] in one-process simulations on the paused
//! clock.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tocsin_proto::cluster::Part;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::replication::{Replicated, Replicator};
use crate::{Member, Membership};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How replication reaches a peer's state.
pub trait Wire: Send + Sync + 'static {
    /// Pushes parts to the peer at `addr`; returns how many changed its state.
    fn push<'a>(&'a self, addr: &'a str, parts: Vec<Part>) -> BoxFuture<'a, Result<u32, String>>;
    /// Merges the full state of the peer at `addr` into `state`; returns (received, merged).
    fn sync_from<'a>(
        &'a self,
        addr: &'a str,
        state: &'a dyn Replicated,
    ) -> BoxFuture<'a, Result<(usize, usize), String>>;
    /// The peers whose last call failed, by address, with the error.
    fn failed(&self) -> HashMap<String, String>;
}

impl Wire for Replicator {
    fn push<'a>(&'a self, addr: &'a str, parts: Vec<Part>) -> BoxFuture<'a, Result<u32, String>> {
        Box::pin(Replicator::push(self, addr, parts))
    }
    fn sync_from<'a>(
        &'a self,
        addr: &'a str,
        state: &'a dyn Replicated,
    ) -> BoxFuture<'a, Result<(usize, usize), String>> {
        Box::pin(Replicator::sync_from(self, addr, state))
    }
    fn failed(&self) -> HashMap<String, String> {
        Replicator::failed(self)
    }
}

/// An in-memory network of replicated states, by address, with directed link cuts.
#[derive(Default)]
pub struct MemoryNet {
    nodes: Mutex<HashMap<String, Weak<dyn Replicated>>>,
    cut: Mutex<HashSet<(String, String)>>,
    latency: Duration,
}

impl MemoryNet {
    /// A network whose every call takes `latency`.
    pub fn new(latency: Duration) -> Arc<Self> {
        Arc::new(MemoryNet {
            latency,
            ..MemoryNet::default()
        })
    }

    /// Serves `state` at `addr` (replacing whatever was there: a restart).
    pub fn serve(&self, addr: &str, state: &Arc<dyn Replicated>) {
        lock(&self.nodes).insert(addr.to_string(), Arc::downgrade(state));
    }

    /// Stops serving `addr` (its process died): calls to it are refused.
    pub fn unserve(&self, addr: &str) {
        lock(&self.nodes).remove(addr);
    }

    /// Drops everything sent from `from` to `to`.
    pub fn cut(&self, from: &str, to: &str) {
        lock(&self.cut).insert((from.to_string(), to.to_string()));
    }

    /// Restores the link from `from` to `to`.
    pub fn restore(&self, from: &str, to: &str) {
        lock(&self.cut).remove(&(from.to_string(), to.to_string()));
    }

    /// Restores every link.
    pub fn heal(&self) {
        lock(&self.cut).clear();
    }

    /// The wire of the node at `me`.
    pub fn wire(self: &Arc<Self>, me: &str) -> MemoryWire {
        MemoryWire {
            net: self.clone(),
            me: me.to_string(),
            failed: Mutex::new(HashMap::new()),
        }
    }

    fn reach(&self, from: &str, to: &str) -> Result<Arc<dyn Replicated>, String> {
        // A process that stopped serving (it died) sends nothing either.
        let sender_up = lock(&self.nodes).get(from).is_some_and(|w| w.strong_count() > 0);
        if !sender_up || lock(&self.cut).contains(&(from.to_string(), to.to_string())) {
            return Err(format!("{to}: unreachable"));
        }
        lock(&self.nodes)
            .get(to)
            .and_then(Weak::upgrade)
            .ok_or_else(|| format!("{to}: connection refused"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One node's side of a [`MemoryNet`].
pub struct MemoryWire {
    net: Arc<MemoryNet>,
    me: String,
    failed: Mutex<HashMap<String, String>>,
}

impl MemoryWire {
    fn outcome<T>(&self, addr: &str, r: Result<T, String>) -> Result<T, String> {
        match &r {
            Ok(_) => lock(&self.failed).remove(addr),
            Err(e) => lock(&self.failed).insert(addr.to_string(), e.clone()),
        };
        r
    }
}

impl Wire for MemoryWire {
    fn push<'a>(&'a self, addr: &'a str, parts: Vec<Part>) -> BoxFuture<'a, Result<u32, String>> {
        Box::pin(async move {
            tokio::time::sleep(self.net.latency).await;
            let r = self
                .net
                .reach(&self.me, addr)
                .map(|peer| parts.iter().filter(|p| peer.merge(p)).count() as u32);
            self.outcome(addr, r)
        })
    }

    fn sync_from<'a>(
        &'a self,
        addr: &'a str,
        state: &'a dyn Replicated,
    ) -> BoxFuture<'a, Result<(usize, usize), String>> {
        Box::pin(async move {
            tokio::time::sleep(self.net.latency).await;
            let r = self.net.reach(&self.me, addr).and_then(|peer| {
                // A sync is a request and a stream back: both directions must be up.
                self.net.reach(addr, &self.me).map(|_| peer.full_state())
            });
            let r = r.map(|parts| (parts.len(), parts.iter().filter(|p| state.merge(p)).count()));
            self.outcome(addr, r)
        })
    }

    fn failed(&self) -> HashMap<String, String> {
        lock(&self.failed).clone()
    }
}

/// The replication side of joining.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Seeds to settle from (`--cluster.peer`), as replication addresses.
    pub seeds: Vec<String>,
    /// `--cluster.settle-timeout`.
    pub settle_timeout: Duration,
    /// `--cluster.pushpull-interval`.
    pub pushpull_interval: Duration,
}

/// How long a peer's published digest must differ from ours before we sync from it: pushes
/// normally close the gap within milliseconds, and digests travel by gossip.
const DIGEST_PATIENCE: Duration = Duration::from_secs(3);
/// The least time between two digest-triggered syncs from one peer.
const DIGEST_BACKOFF: Duration = Duration::from_secs(10);

/// A running cluster member: membership, readiness and replication.
pub struct ClusterNode {
    membership: Membership,
    wire: Arc<dyn Wire>,
    ready_rx: watch::Receiver<bool>,
}

impl ClusterNode {
    /// Starts settling (a full sync from any seed, or the settle timeout), digest exchange and
    /// anti-entropy; all stop when `shutdown` turns true.
    pub fn start(
        membership: Membership,
        wire: Arc<dyn Wire>,
        state: Arc<dyn Replicated>,
        opts: NodeOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (ready_tx, ready_rx) = watch::channel(false);
        let node = Arc::new(ClusterNode {
            membership,
            wire,
            ready_rx,
        });
        tokio::spawn(settle(node.clone(), state.clone(), opts.clone(), ready_tx));
        tokio::spawn(exchange_digests(node.clone(), state.clone(), shutdown.clone()));
        tokio::spawn(anti_entropy(node.clone(), state, opts.pushpull_interval, shutdown));
        node
    }

    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The live members, self included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.membership.members()
    }

    /// Whether `name` is a live member at `generation` (the newest life seen of that name).
    pub fn is_live(&self, name: &str, generation: u64) -> bool {
        self.members()
            .iter()
            .any(|m| m.name == name && m.generation == generation)
    }

    /// Whether the node has settled.
    pub fn is_ready(&self) -> bool {
        *self.ready_rx.borrow()
    }

    /// Resolves once the node has settled.
    pub fn wait_ready(&self) -> BoxFuture<'_, ()> {
        let mut rx = self.ready_rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|r| *r).await;
        })
    }

    /// The live members (other than self) whose last replication call failed, with the error.
    pub fn failed_peers(&self) -> Vec<(Member, String)> {
        let failed = self.wire.failed();
        self.members()
            .into_iter()
            .filter_map(|m| {
                let err = failed.get(m.grpc_addr.as_deref()?)?.clone();
                Some((m, err))
            })
            .collect()
    }

    /// Pushes a part to every other live member, each in its own task (a slow peer delays
    /// nobody); a lost push is repaired by digests and anti-entropy.
    pub fn push_all(&self, part: Part) {
        let me = self.membership.node_id();
        for m in self.members() {
            let (Some(addr), false) = (m.grpc_addr.clone(), m.name == me) else {
                continue;
            };
            let (wire, p) = (self.wire.clone(), part.clone());
            tokio::spawn(async move {
                if let Err(e) = wire.push(&addr, vec![p]).await {
                    debug!(peer = %m.name, err = %e, "push failed; anti-entropy will catch up");
                }
            });
        }
    }

    /// Stops gossiping, as a process that dies (simulations).
    pub async fn stop(&self) {
        let _ = self.membership.stop().await;
    }

    /// Announces that this replica leaves: peers stop counting it for positions.
    pub async fn leave(&self) {
        self.membership.set_leaving().await;
        info!("leaving the cluster");
    }
}

async fn settle(node: Arc<ClusterNode>, state: Arc<dyn Replicated>, opts: NodeOptions, ready: watch::Sender<bool>) {
    let deadline = tokio::time::Instant::now() + opts.settle_timeout;
    let mut synced = opts.seeds.is_empty();
    while !synced && tokio::time::Instant::now() < deadline {
        for s in &opts.seeds {
            if let Ok((n, m)) = node.wire.sync_from(s, state.as_ref()).await {
                info!(peer = %s, received = n, merged = m, "initial state sync done");
                synced = true;
                break;
            }
        }
        if !synced {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if !synced {
        warn!("gossip not settled but continuing anyway");
    }
    node.membership.set_ready().await;
    let _ = ready.send(true);
}

/// Publishes our digest every second and syncs from a peer whose digest has differed from ours
/// for [`DIGEST_PATIENCE`]: a lost push is repaired in seconds, not at the next pushpull.
async fn exchange_digests(node: Arc<ClusterNode>, state: Arc<dyn Replicated>, mut stop: watch::Receiver<bool>) {
    let (mut published, mut differing, mut synced) = (String::new(), HashMap::new(), HashMap::new());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let ours = format!("{:016x}", state.digest());
        if ours != published {
            node.membership.set_digest(&ours).await;
            published = ours.clone();
        }
        if !node.is_ready() {
            continue;
        }
        let now = tokio::time::Instant::now();
        for m in node.members() {
            let (Some(addr), Some(theirs)) = (m.grpc_addr.as_deref(), m.digest.as_deref()) else {
                continue;
            };
            if m.name == node.membership.node_id() || theirs == ours {
                differing.remove(&m.name);
                continue;
            }
            let since = *differing.entry(m.name.clone()).or_insert(now);
            let recent = synced.get(&m.name).is_some_and(|t| now - *t < DIGEST_BACKOFF);
            if now - since < DIGEST_PATIENCE || recent {
                continue;
            }
            synced.insert(m.name.clone(), now);
            differing.remove(&m.name);
            match node.wire.sync_from(addr, state.as_ref()).await {
                Ok((_, merged)) => info!(peer = %m.name, merged, "state digests differed; synced"),
                Err(e) => debug!(peer = %m.name, err = %e, "digest-triggered sync failed"),
            }
        }
    }
}

/// Pulls every peer's full state each pushpull interval.
async fn anti_entropy(
    node: Arc<ClusterNode>,
    state: Arc<dyn Replicated>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let me = node.membership.node_id().to_string();
        for m in node.members() {
            let (Some(addr), false) = (m.grpc_addr.clone(), m.name == me) else {
                continue;
            };
            match node.wire.sync_from(&addr, state.as_ref()).await {
                Ok((_, merged)) if merged > 0 => info!(peer = %m.name, merged, "anti-entropy merged state"),
                Ok(_) => {}
                Err(e) => debug!(peer = %m.name, err = %e, "anti-entropy sync failed"),
            }
        }
    }
}
