//! State replication over gRPC: push every local change to every peer, stream full states for
//! anti-entropy. Generic over what is replicated: parts are opaque `(key, bytes)` records merged
//! by the owner of the state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tocsin_proto::cluster::replication_client::ReplicationClient;
use tocsin_proto::cluster::replication_server::{Replication, ReplicationServer};
use tocsin_proto::cluster::{Part, PushRequest, PushResponse, SyncRequest};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// The replicated state, as the replication layer sees it.
pub trait Replicated: Send + Sync + 'static {
    /// Every record, for a full sync.
    fn full_state(&self) -> Vec<Part>;
    /// Merges one record from a peer; returns whether local state changed.
    fn merge(&self, part: &Part) -> bool;
}

struct Service {
    state: Arc<dyn Replicated>,
}

#[tonic::async_trait]
impl Replication for Service {
    async fn push(&self, req: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let merged = req.get_ref().parts.iter().filter(|p| self.state.merge(p)).count();
        Ok(Response::new(PushResponse { merged: merged as u32 }))
    }

    type SyncStream = tokio_stream::Iter<std::vec::IntoIter<Result<Part, Status>>>;

    async fn sync(&self, _: Request<SyncRequest>) -> Result<Response<Self::SyncStream>, Status> {
        let parts: Vec<Result<Part, Status>> = self.state.full_state().into_iter().map(Ok).collect();
        Ok(Response::new(tokio_stream::iter(parts)))
    }
}

/// Serves the replication service on `listener` until `shutdown` resolves.
///
/// # Errors
/// The server failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<dyn Replicated>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ReplicationServer::new(Service { state }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Connect timeout for peers: a dead peer must not hold a push back.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Per-request timeout for pushes.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Clients to peers, created lazily and reused.
pub struct Replicator {
    node_id: String,
    clients: Mutex<HashMap<String, ReplicationClient<Channel>>>,
}

impl Replicator {
    /// Creates a replicator for this node.
    pub fn new(node_id: impl Into<String>) -> Self {
        Replicator {
            node_id: node_id.into(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, addr: &str) -> Result<ReplicationClient<Channel>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(PUSH_TIMEOUT);
        let client = ReplicationClient::new(endpoint.connect_lazy());
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Pushes parts to one peer; returns how many changed its state.
    ///
    /// # Errors
    /// The peer is unreachable or failed.
    pub async fn push(&self, addr: &str, parts: Vec<Part>) -> Result<u32, String> {
        let mut c = self.client(addr)?;
        let r = c
            .push(PushRequest {
                from: self.node_id.clone(),
                parts,
            })
            .await
            .map_err(|e| format!("push to {addr}: {}", e.message()))?;
        Ok(r.get_ref().merged)
    }

    /// Streams a peer's full state into `state`; returns (records received, records merged).
    ///
    /// # Errors
    /// The peer is unreachable or the stream broke (records merged before the break stay).
    pub async fn sync_from(&self, addr: &str, state: &dyn Replicated) -> Result<(usize, usize), String> {
        let mut c = self.client(addr)?;
        let mut stream = c
            .sync(SyncRequest {
                from: self.node_id.clone(),
            })
            .await
            .map_err(|e| format!("sync from {addr}: {}", e.message()))?
            .into_inner();
        let (mut received, mut merged) = (0, 0);
        while let Some(part) = stream
            .message()
            .await
            .map_err(|e| format!("sync from {addr}: {}", e.message()))?
        {
            received += 1;
            if state.merge(&part) {
                merged += 1;
            }
        }
        Ok((received, merged))
    }
}
