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
    /// Forgets what is kept per peer (connections, failures) for addresses not in `live`.
    fn prune(&self, _live: &HashSet<String>) {}
    /// Asks the peer at `addr` a read-only question ([`Replicated::answer`]).
    fn ask<'a>(&'a self, addr: &'a str, kind: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, String>>;
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
    fn prune(&self, live: &HashSet<String>) {
        Replicator::prune(self, live);
    }
    fn ask<'a>(&'a self, addr: &'a str, kind: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, String>> {
        Box::pin(Replicator::ask(self, addr, kind, body))
    }
}

/// An in-memory network of replicated states, by address, with directed link cuts.
#[derive(Default)]
pub struct MemoryNet {
    nodes: Mutex<HashMap<String, Weak<dyn Replicated>>>,
    cut: Mutex<HashSet<(String, String)>>,
    /// Links that lose pushes only (syncs still flow).
    lossy: Mutex<HashSet<(String, String)>>,
    /// Nodes that accept calls and never answer.
    stalled: Mutex<HashSet<String>>,
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
        lock(&self.lossy).clear();
    }

    /// Loses every push from `from` to `to` (syncs still flow): only repair can carry a change.
    pub fn lose_pushes(&self, from: &str, to: &str) {
        lock(&self.lossy).insert((from.to_string(), to.to_string()));
    }

    /// Makes `addr` accept every call and never answer, as a process that stopped reading.
    pub fn stall(&self, addr: &str) {
        lock(&self.stalled).insert(addr.to_string());
    }

    async fn maybe_stall(&self, to: &str) {
        if lock(&self.stalled).contains(to) {
            std::future::pending::<()>().await;
        }
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
            self.net.maybe_stall(addr).await;
            if lock(&self.net.lossy).contains(&(self.me.clone(), addr.to_string())) {
                return Ok(0);
            }
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
            self.net.maybe_stall(addr).await;
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

    fn prune(&self, live: &HashSet<String>) {
        lock(&self.failed).retain(|a, _| live.contains(a));
    }

    fn ask<'a>(&'a self, addr: &'a str, kind: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, String>> {
        Box::pin(async move {
            tokio::time::sleep(self.net.latency).await;
            self.net.maybe_stall(addr).await;
            let peer = self.net.reach(&self.me, addr)?;
            self.net.reach(addr, &self.me)?;
            peer.answer(kind, &body).map(crate::replication::within_answer)
        })
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

/// The longest one full-state sync may take, stream included: a peer that accepts a sync and
/// then stalls or trickles costs at most this, and only its own sync (syncs with different
/// peers run in parallel).
pub const SYNC_DEADLINE: Duration = Duration::from_secs(60);
/// How many full-state syncs a node runs at once.
pub const PARALLEL_SYNCS: usize = 4;
/// Parts waiting to be pushed to one peer; past this, new ones are dropped (anti-entropy
/// repairs them) rather than held in memory for a peer that does not read.
pub const PUSH_QUEUE: usize = 10_000;
/// The longest [`ClusterNode::ask_all`] waits for a peer's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// The most parts one push carries.
pub const PUSH_BATCH: usize = 256;

/// A running cluster member: membership, readiness and replication.
pub struct ClusterNode {
    membership: Membership,
    wire: Arc<dyn Wire>,
    ready_rx: watch::Receiver<bool>,
    /// One queue and pushing task per peer address.
    pushers: Mutex<HashMap<String, tokio::sync::mpsc::Sender<Part>>>,
    /// Bounds the syncs running at once.
    syncs: Arc<tokio::sync::Semaphore>,
    /// Peers (by address) a sync from is running now: never two at once from one peer.
    syncing: Mutex<HashSet<String>>,
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
            pushers: Mutex::new(HashMap::new()),
            syncs: Arc::new(tokio::sync::Semaphore::new(PARALLEL_SYNCS)),
            syncing: Mutex::new(HashSet::new()),
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

    /// Asks every other live member a read-only question at once; each answer (or why there is
    /// none) by member name. A peer that does not answer within [`ASK_TIMEOUT`] is reported as
    /// such: one slow peer holds the caller no longer than that.
    pub async fn ask_all(&self, kind: &str, body: &[u8]) -> Vec<(String, Result<Vec<Vec<u8>>, String>)> {
        let me = self.membership.node_id().to_string();
        let mut set = tokio::task::JoinSet::new();
        for m in self.members() {
            let (Some(addr), false) = (m.grpc_addr.clone(), m.name == me) else {
                continue;
            };
            let (wire, kind, body) = (self.wire.clone(), kind.to_string(), body.to_vec());
            set.spawn(async move {
                let r = tokio::time::timeout(ASK_TIMEOUT, wire.ask(&addr, &kind, body))
                    .await
                    .unwrap_or_else(|_| Err(format!("ask {addr}: no answer within {ASK_TIMEOUT:?}")));
                (m.name, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Queues a part for every other live member. Each peer has one pushing task that sends
    /// what queued up in batches (a slow peer delays nobody, and a burst of changes is a few
    /// requests, not one task per change); a lost push is repaired by digests and anti-entropy.
    pub fn push_all(&self, part: Part) {
        let me = self.membership.node_id();
        let mut pushers = lock(&self.pushers);
        for m in self.members() {
            let (Some(addr), false) = (m.grpc_addr.clone(), m.name == me) else {
                continue;
            };
            let tx = pushers.entry(addr.clone()).or_insert_with(|| {
                let (tx, rx) = tokio::sync::mpsc::channel(PUSH_QUEUE);
                tokio::spawn(push_loop(self.wire.clone(), addr, m.name.clone(), rx));
                tx
            });
            if tx.try_send(part.clone()).is_err() {
                debug!(peer = %m.name, "push queue full; anti-entropy will catch up");
            }
        }
    }

    /// Forgets per-peer state (push queues, connections, failures) of addresses that are no
    /// longer live members.
    fn prune(&self) {
        let live: HashSet<String> = self.members().into_iter().filter_map(|m| m.grpc_addr).collect();
        lock(&self.pushers).retain(|a, _| live.contains(a));
        self.wire.prune(&live);
    }

    /// Syncs from a peer in a task of its own, unless one is running from that peer already;
    /// at most [`PARALLEL_SYNCS`] at once, each bounded by [`SYNC_DEADLINE`].
    fn spawn_sync(self: &Arc<Self>, addr: String, name: String, state: Arc<dyn Replicated>, why: &'static str) {
        if !lock(&self.syncing).insert(addr.clone()) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let permit = node.syncs.clone().acquire_owned().await;
            let r = tokio::time::timeout(SYNC_DEADLINE, node.wire.sync_from(&addr, state.as_ref())).await;
            drop(permit);
            lock(&node.syncing).remove(&addr);
            match r {
                Ok(Ok((_, merged))) if merged > 0 => info!(peer = %name, merged, why, "synced state from a peer"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => debug!(peer = %name, err = %e, why, "sync failed"),
                Err(_) => {
                    warn!(peer = %name, why, deadline = ?SYNC_DEADLINE, "sync from a peer passed its deadline; abandoned")
                }
            }
        });
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

/// Pushes what queues up for one peer, in batches, until its queue is dropped (the peer left).
async fn push_loop(wire: Arc<dyn Wire>, addr: String, name: String, mut rx: tokio::sync::mpsc::Receiver<Part>) {
    let mut carry: Option<Part> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Batches stay under one record's limit in bytes too, so they fit a gRPC message.
        let mut size = crate::replication::part_size(&first);
        let mut batch = vec![first];
        while batch.len() < PUSH_BATCH {
            match rx.try_recv() {
                Ok(p) if size + crate::replication::part_size(&p) > crate::replication::MAX_PART_BYTES => {
                    carry = Some(p);
                    break;
                }
                Ok(p) => {
                    size += crate::replication::part_size(&p);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = wire.push(&addr, batch).await {
            debug!(peer = %name, err = %e, "push failed; anti-entropy will catch up");
        }
    }
}

async fn settle(node: Arc<ClusterNode>, state: Arc<dyn Replicated>, opts: NodeOptions, ready: watch::Sender<bool>) {
    let deadline = tokio::time::Instant::now() + opts.settle_timeout;
    // A seed list may name this replica itself (a manifest listing every pod): its own state
    // is no settling.
    let own = node.membership.grpc_addr().to_string();
    let seeds: Vec<&String> = opts.seeds.iter().filter(|s| **s != own).collect();
    let mut synced = seeds.is_empty();
    while !synced && tokio::time::Instant::now() < deadline {
        for s in &seeds {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Ok(Ok((n, m))) = tokio::time::timeout(left, node.wire.sync_from(s, state.as_ref())).await {
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
            node.spawn_sync(
                addr.to_string(),
                m.name.clone(),
                state.clone(),
                "state digests differed",
            );
        }
        let names: HashSet<String> = node.members().into_iter().map(|m| m.name).collect();
        differing.retain(|n, _| names.contains(n));
        synced.retain(|n, _| names.contains(n));
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
            node.spawn_sync(addr, m.name.clone(), state.clone(), "anti-entropy");
        }
        node.prune();
    }
}
