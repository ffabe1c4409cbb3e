//! The seam between a replica and its cluster (§4.5): position, readiness and replication.
//!
//! `crate::cluster::ClusterPeer` (chitchat membership + gRPC replication) implements [`Peer`]; a
//! replica without `--cluster.*` runs as [`SingleNode`], and tests use in-memory implementations.

use std::future::Future;
use std::pin::Pin;

use tocsin_core::claim::Claim;
use tocsin_core::nflog::Entry;
use tocsin_core::silence::MeshSilence;

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the pipeline and the stores need from the cluster.
pub trait Peer: Send + Sync {
    /// Index of this replica among the live, ready members sorted by name (0 when alone).
    fn position(&self) -> usize;
    /// Resolves once the replica has settled (first full sync, or the settle timeout).
    fn wait_ready(&self) -> BoxFuture<'_, ()>;
    /// This replica's node name (empty when alone).
    fn name(&self) -> &str;
    /// This life's generation (start time in ms; 0 when alone).
    fn generation(&self) -> u64;
    /// Whether a node is a live member of the cluster at that generation: a node restarted
    /// under the same name is live only at its new one.
    fn is_live(&self, name: &str, generation: u64) -> bool;
    /// Replicates an in-flight claim made or released locally.
    fn broadcast_claim(&self, claim: &Claim);
    /// Replicates a notification log entry written locally.
    fn broadcast_nflog(&self, entry: &Entry);
    /// Replicates a silence created, updated or expired locally.
    fn broadcast_silence(&self, silence: &MeshSilence);
}

/// A replica without peers: position 0, always ready, nothing to replicate.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleNode;

impl Peer for SingleNode {
    fn position(&self) -> usize {
        0
    }
    fn wait_ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn name(&self) -> &str {
        ""
    }
    fn generation(&self) -> u64 {
        0
    }
    fn is_live(&self, _: &str, _: u64) -> bool {
        false
    }
    fn broadcast_claim(&self, _: &Claim) {}
    fn broadcast_nflog(&self, _: &Entry) {}
    fn broadcast_silence(&self, _: &MeshSilence) {}
}
