//! Cluster membership for Tocsin replicas: who is alive, and each replica's position (§4.5).
//!
//! Built on chitchat (scuttlebutt gossip with a phi-accrual failure detector). Entry points:
//! [`Membership::start`], [`Membership::position`], [`Membership::members`] and the pure
//! [`position_of`]. This is the only crate that imports chitchat; it depends on no other Tocsin
//! crate but `tocsin-proto`. State replication ([`replication`]) is a tonic gRPC service on the
//! cluster port: pushes of each change and streamed full syncs of opaque parts; what a part means
//! is the caller's business ([`replication::Replicated`]). The replication rules (push, settle,
//! digests, anti-entropy) run in [`node::ClusterNode`] over a [`node::Wire`]: gRPC, or the
//! in-memory [`node::MemoryNet`] with which real nodes run in one process on the paused clock
//! (membership then uses chitchat's `ChannelTransport`). With `--cluster.tls-config` the port is
//! mutual TLS ([`tls`]) and gossip travels over it ([`gossip::GrpcGossip`]) instead of UDP.

pub mod gossip;
pub mod node;
pub mod replication;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, spawn_chitchat};
use tokio::sync::watch;

/// Key holding a node's replication (gRPC) address.
pub const GRPC_KEY: &str = "grpc";
/// Key set once a node has settled (shown in the status API; a settling node does not send).
pub const READY_KEY: &str = "ready";
/// Key set when a node is shutting down: it stops counting for positions at once.
pub const LEAVING_KEY: &str = "leaving";
/// Key holding a digest of a node's replicated state; peers sync when theirs differs.
pub const DIGEST_KEY: &str = "digest";

/// How to join the cluster.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Unique name (`--cluster.peer-name`); positions sort by it.
    pub node_id: String,
    /// Increases on every restart (start time in ms), so a restarted node replaces its old self.
    pub generation: u64,
    /// Address peers gossip to (`--cluster.advertise-address`).
    pub advertise_addr: SocketAddr,
    /// Address to bind (`--cluster.listen-address`).
    pub listen_addr: SocketAddr,
    /// Seeds (`--cluster.peer`), `host:port`; names are re-resolved by chitchat.
    pub seeds: Vec<String>,
    /// Isolates clusters (`--cluster.label`).
    pub cluster_label: String,
    /// `--cluster.gossip-interval`.
    pub gossip_interval: Duration,
    /// Address of this node's replication service.
    pub grpc_addr: String,
}

/// A live member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub name: String,
    /// The generation of this life of the node (the newest one seen).
    pub generation: u64,
    /// Gossip address.
    pub address: SocketAddr,
    /// Replication address, if published.
    pub grpc_addr: Option<String>,
    /// Whether it has settled.
    pub ready: bool,
    /// Its published state digest, if any.
    pub digest: Option<String>,
    /// It announced that it is shutting down.
    pub leaving: bool,
}

/// Returns the position of `self_id` among the live member ids, each counted once (several
/// generations of a restarted node are one member), sorted by name.
///
/// The rule that keeps two replicas from sharing a position: every live member that is not
/// leaving counts, settled or not, and the node itself always counts. Counting only settled
/// members let a newcomer count itself as soon as it settled while its peers, who had not yet
/// seen its ready flag, did not count it: both at the same position for a gossip round. A
/// settling member that sorts first delays the others by one peer_timeout (it sends nothing
/// until settled): a delay, not a duplicate.
pub fn position_of(self_id: &str, live_ready_ids: impl IntoIterator<Item = String>) -> usize {
    let mut ids: Vec<String> = live_ready_ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    ids.iter().take_while(|id| id.as_str() < self_id).count()
}

fn members_of(nodes: &BTreeMap<ChitchatId, NodeState>) -> Vec<Member> {
    // Keep the newest generation of each node id.
    let mut by_name: BTreeMap<String, (u64, Member)> = BTreeMap::new();
    for (id, state) in nodes {
        let m = Member {
            name: id.node_id.to_string(),
            generation: id.generation_id,
            address: id.gossip_advertise_addr,
            grpc_addr: state.get(GRPC_KEY).map(String::from),
            ready: state.get(READY_KEY) == Some("true"),
            digest: state.get(DIGEST_KEY).map(String::from),
            leaving: state.get(LEAVING_KEY) == Some("true"),
        };
        match by_name.get(&m.name) {
            Some((g, _)) if *g >= id.generation_id => {}
            _ => {
                by_name.insert(m.name.clone(), (id.generation_id, m));
            }
        }
    }
    by_name.into_values().map(|(_, m)| m).collect()
}

/// An in-memory gossip network (chitchat's channel transport) whose links can be cut.
pub struct MemoryGossip(chitchat::transport::ChannelTransport);

impl Default for MemoryGossip {
    fn default() -> Self {
        MemoryGossip(chitchat::transport::ChannelTransport::with_mtu(65_507))
    }
}

impl MemoryGossip {
    /// Drops gossip between `a` and `b`, both ways.
    pub async fn cut(&self, a: SocketAddr, b: SocketAddr) {
        self.0.remove_link(a, b).await;
    }

    /// Restores gossip between `a` and `b`.
    pub async fn heal(&self, a: SocketAddr, b: SocketAddr) {
        self.0.add_link(a, b).await;
    }
}

/// A running membership: gossip plus a position kept current by a watcher task.
pub struct Membership {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    /// Taken by [`Membership::stop`].
    handle: std::sync::Mutex<Option<ChitchatHandle>>,
    node_id: String,
    generation: u64,
    grpc_addr: String,
    position: Arc<AtomicUsize>,
    members_rx: watch::Receiver<Vec<Member>>,
}

impl Membership {
    /// Joins the cluster through `transport` (UDP in production, channels in tests).
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start(cfg: MembershipConfig, transport: &dyn Transport) -> anyhow::Result<Self> {
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(cfg.node_id.clone(), cfg.generation, cfg.advertise_addr),
            cluster_id: if cfg.cluster_label.is_empty() {
                "alertmanager".into()
            } else {
                cfg.cluster_label.clone()
            },
            gossip_interval: cfg.gossip_interval,
            listen_addr: cfg.listen_addr,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: cfg.gossip_interval,
                dead_node_grace_period: Duration::from_secs(3600),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let kvs = vec![(GRPC_KEY.to_string(), cfg.grpc_addr.clone())];
        let handle = spawn_chitchat(config, kvs, transport).await?;
        let mut live = handle.chitchat().lock().await.live_nodes_watcher();
        // Chitchat lists this node as live only after its first gossip round; wait for it so that
        // the member list (and /api/v2/status) never shows a cluster without this node.
        let me = cfg.node_id.clone();
        let listed = tokio::time::timeout(
            cfg.gossip_interval.saturating_mul(20).max(Duration::from_secs(2)),
            live.wait_for(|nodes| nodes.keys().any(|id| *id.node_id == *me)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !listed {
            tracing::warn!("gossip did not list this node as live yet");
        }
        let position = Arc::new(AtomicUsize::new(0));
        let (members_tx, members_rx) = watch::channel(members_of(&live.borrow()));
        let pos = position.clone();
        tokio::spawn(async move {
            loop {
                let members = members_of(&live.borrow_and_update());
                let p = position_of(
                    &me,
                    members
                        .iter()
                        .filter(|m| !m.leaving || m.name == me)
                        .map(|m| m.name.clone()),
                );
                if pos.swap(p, Ordering::SeqCst) != p {
                    let view: Vec<String> = members
                        .iter()
                        .map(|m| format!("{}{}", m.name, if m.ready { "" } else { "(settling)" }))
                        .collect();
                    tracing::info!(position = p, members = ?view, "cluster position changed");
                }
                if members_tx.send(members).is_err() || live.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Membership {
            chitchat: handle.chitchat(),
            handle: std::sync::Mutex::new(Some(handle)),
            node_id: cfg.node_id,
            generation: cfg.generation,
            grpc_addr: cfg.grpc_addr,
            position,
            members_rx,
        })
    }

    /// Joins over UDP on `cfg.listen_addr`.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start_udp(cfg: MembershipConfig) -> anyhow::Result<Self> {
        Self::start(cfg, &chitchat::transport::UdpTransport).await
    }

    /// Joins over an in-memory gossip network (simulations on the paused clock).
    ///
    /// # Errors
    /// The address is taken on that network.
    pub async fn start_in_memory(cfg: MembershipConfig, net: &MemoryGossip) -> anyhow::Result<Self> {
        Self::start(cfg, &net.0).await
    }

    /// Returns a receiver that sees every membership change.
    pub fn watch(&self) -> watch::Receiver<Vec<Member>> {
        self.members_rx.clone()
    }

    /// Returns this node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Returns this node's replication address, as published to its peers.
    pub fn grpc_addr(&self) -> &str {
        &self.grpc_addr
    }

    /// Returns this node's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Returns the current position (0 = notifies first).
    pub fn position(&self) -> usize {
        self.position.load(Ordering::SeqCst)
    }

    /// Returns the live members, self included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.members_rx.borrow().clone()
    }

    /// Marks this node settled.
    pub async fn set_ready(&self) {
        self.set(READY_KEY, "true").await;
    }

    /// Leaving: no longer counts for positions, so peers re-rank at the next gossip round rather
    /// than after failure detection.
    pub async fn set_leaving(&self) {
        self.set(LEAVING_KEY, "true").await;
        self.set(READY_KEY, "false").await;
    }

    /// Publishes the digest of this node's replicated state.
    pub async fn set_digest(&self, digest: &str) {
        self.set(DIGEST_KEY, digest).await;
    }

    async fn set(&self, key: &str, value: &str) {
        self.chitchat.lock().await.self_node_state().set(key, value);
    }

    /// Leaves the cluster.
    ///
    /// # Errors
    /// The gossip task failed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop().await
    }

    /// Stops gossiping (a process that dies); later calls do nothing.
    ///
    /// # Errors
    /// The gossip task failed.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle {
            Some(h) => h.shutdown().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_each_node_id_once_in_name_order() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(position_of("b", ids(&["c", "a", "b"])), 1);
        assert_eq!(position_of("a", ids(&["c", "b", "a"])), 0);
        assert_eq!(
            position_of("c", ids(&["a", "a", "b", "c"])),
            2,
            "two generations of a count once"
        );
        assert_eq!(position_of("z", ids(&[])), 0);
    }
}
