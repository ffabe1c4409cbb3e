//! State replication over gRPC: push every local change to every peer, stream full states for
//! anti-entropy. Generic over what is replicated: parts are opaque `(key, bytes)` records merged
//! by the owner of the state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use tocsin_proto::cluster::replication_client::ReplicationClient;
use tocsin_proto::cluster::replication_server::{Replication, ReplicationServer};
use tocsin_proto::cluster::{
    AskRequest, AskResponse, GossipAck, GossipPacket, Part, PushRequest, PushResponse, SyncRequest,
};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::gossip::GossipInbox;
use crate::tls::{ClusterTls, PeerInfo};

/// The replicated state, as the replication layer sees it.
pub trait Replicated: Send + Sync + 'static {
    /// Every record, for a full sync.
    fn full_state(&self) -> Vec<Part>;
    /// Merges one record from a peer; returns whether local state changed.
    fn merge(&self, part: &Part) -> bool;
    /// A digest of the state (published by gossip; a peer whose digest differs is synced from).
    fn digest(&self) -> u64;
    /// Merges one record pushed by the peer named `sender`, authenticated by its certificate
    /// (`--cluster.tls-peer-names`): a record made in another member's name is refused.
    fn merge_from(&self, part: &Part, sender: &str) -> bool {
        let _ = sender;
        self.merge(part)
    }
    /// Answers a peer's read-only question (see [`Replicator::ask`]); may block (run off the
    /// runtime).
    ///
    /// # Errors
    /// A question this state does not answer, or a bad one.
    fn answer(&self, kind: &str, body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let _ = body;
        Err(format!("no answer to {kind:?}"))
    }
}

/// The most an answer to [`Replicator::ask`] carries, in bytes (below tonic's 4 MiB limit).
pub const MAX_ANSWER_BYTES: usize = 3 << 20;

/// `msg_type`: `update` for pushes, `full_state` for syncs (Alertmanager's values).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MsgType {
    /// Message type.
    pub msg_type: String,
}

/// Replication traffic, counted as Alertmanager's `alertmanager_cluster_messages_*` (records,
/// not packets) and `*_size_total` (encoded bytes). Clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Records sent.
    pub sent: Family<MsgType, Counter>,
    /// Bytes of records sent.
    pub sent_bytes: Family<MsgType, Counter>,
    /// Records received.
    pub received: Family<MsgType, Counter>,
    /// Bytes of records received.
    pub received_bytes: Family<MsgType, Counter>,
    /// Records not sent because they exceed [`MAX_PART_BYTES`].
    pub oversized: Counter,
    /// Connections to the cluster port whose TLS handshake failed or timed out.
    pub handshakes_refused: Counter,
    /// Pushes refused because the pusher's certificate is not for the name it gave
    /// (`--cluster.tls-peer-names`).
    pushes_refused: Counter,
}

impl Traffic {
    /// Pushes refused for a certificate that is not for the pusher's name.
    pub fn pushes_refused(&self) -> Counter {
        self.pushes_refused.clone()
    }
}

/// The largest record sent to a peer, in bytes (key and data): below tonic's 4 MiB message
/// limit, so one huge record can neither fail a whole push nor abort a sync. Larger ones are
/// skipped and counted; a silence is refused at the API long before (1 MiB).
pub const MAX_PART_BYTES: usize = 2 << 20;

/// The size of a record on the wire, as [`MAX_PART_BYTES`] measures it.
pub fn part_size(p: &Part) -> usize {
    p.key.len() + p.data.len()
}

/// Drops the records over [`MAX_PART_BYTES`], counting them.
fn within_limit(parts: Vec<Part>, oversized: &Counter) -> Vec<Part> {
    let before = parts.len();
    let kept: Vec<Part> = parts.into_iter().filter(|p| part_size(p) <= MAX_PART_BYTES).collect();
    let skipped = before - kept.len();
    if skipped > 0 {
        oversized.inc_by(skipped as u64);
        tracing::warn!(
            skipped,
            limit = MAX_PART_BYTES,
            "records too large to replicate were skipped"
        );
    }
    kept
}

const UPDATE: &str = "update";
const FULL_STATE: &str = "full_state";

impl Traffic {
    fn count(msgs: &Family<MsgType, Counter>, bytes: &Family<MsgType, Counter>, kind: &str, parts: &[Part]) {
        let l = MsgType { msg_type: kind.into() };
        msgs.get_or_create(&l).inc_by(parts.len() as u64);
        let size: usize = parts.iter().map(|p| p.key.len() + p.data.len()).sum();
        bytes.get_or_create(&l).inc_by(size as u64);
    }
    fn sent(&self, kind: &str, parts: &[Part]) {
        Self::count(&self.sent, &self.sent_bytes, kind, parts);
    }
    fn received(&self, kind: &str, parts: &[Part]) {
        Self::count(&self.received, &self.received_bytes, kind, parts);
    }
}

struct Service {
    state: Arc<dyn Replicated>,
    traffic: Traffic,
    node_id: String,
    gossip: Option<Arc<GossipInbox>>,
    /// `--cluster.tls-peer-names`: a pusher must hold a certificate for its name, and push
    /// records in that name only.
    peer_names: bool,
}

#[tonic::async_trait]
impl Replication for Service {
    async fn push(&self, req: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let from = &req.get_ref().from;
        if self.peer_names {
            let cert = req.extensions().get::<PeerInfo>().and_then(|i| i.cert.as_ref());
            if !cert.is_some_and(|c| crate::tls::cert_is_for(c, from)) {
                self.traffic.pushes_refused.inc();
                tracing::warn!(from = %from, "a push refused: the peer's certificate is not for the name it gave");
                return Err(Status::permission_denied(format!(
                    "the peer's certificate is not for {from:?} (--cluster.tls-peer-names)"
                )));
            }
        }
        self.traffic.received(UPDATE, &req.get_ref().parts);
        let parts = &req.get_ref().parts;
        let merged = if self.peer_names {
            parts.iter().filter(|p| self.state.merge_from(p, from)).count()
        } else {
            parts.iter().filter(|p| self.state.merge(p)).count()
        };
        Ok(Response::new(PushResponse { merged: merged as u32 }))
    }

    type SyncStream = tokio_stream::Iter<std::vec::IntoIter<Result<Part, Status>>>;

    async fn sync(&self, req: Request<SyncRequest>) -> Result<Response<Self::SyncStream>, Status> {
        // A replica whose seed list names itself must not settle on its own state.
        if req.get_ref().from == self.node_id {
            return Err(Status::failed_precondition("a replica does not sync from itself"));
        }
        let parts = within_limit(self.state.full_state(), &self.traffic.oversized);
        self.traffic.sent(FULL_STATE, &parts);
        let parts: Vec<Result<Part, Status>> = parts.into_iter().map(Ok).collect();
        Ok(Response::new(tokio_stream::iter(parts)))
    }

    async fn gossip(&self, req: Request<GossipPacket>) -> Result<Response<GossipAck>, Status> {
        // Gossip travels here only on an authenticated (TLS) cluster port; a plaintext one
        // gossips over UDP and must not offer a second, unauthenticated way in.
        let Some(inbox) = &self.gossip else {
            return Err(Status::unimplemented(
                "gossip over the cluster connection needs --cluster.tls-config",
            ));
        };
        let from: std::net::SocketAddr = req
            .get_ref()
            .from
            .parse()
            .map_err(|_| Status::invalid_argument("from: not an address"))?;
        let GossipPacket { payload, .. } = req.into_inner();
        if payload.len() > crate::gossip::MAX_GOSSIP_BYTES {
            return Err(Status::invalid_argument("payload: larger than a gossip datagram"));
        }
        inbox.deliver(from, payload);
        Ok(Response::new(GossipAck {}))
    }

    async fn ask(&self, req: Request<AskRequest>) -> Result<Response<AskResponse>, Status> {
        let AskRequest { kind, body, .. } = req.into_inner();
        let state = self.state.clone();
        let items = tokio::task::spawn_blocking(move || state.answer(&kind, &body))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(AskResponse {
            items: within_answer(items),
        }))
    }
}

/// The first items of an answer that fit in [`MAX_ANSWER_BYTES`].
pub fn within_answer(items: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut total = 0;
    items
        .into_iter()
        .take_while(|i| {
            total += i.len();
            total <= MAX_ANSWER_BYTES
        })
        .collect()
}

/// The cluster port's security: TLS for every connection and gossip carried over it.
#[derive(Clone)]
pub struct Secure {
    /// Certificates and keys.
    pub tls: Arc<ClusterTls>,
    /// Where gossip datagrams received from peers go.
    pub gossip: Arc<GossipInbox>,
    /// `--cluster.tls-peer-names`.
    pub peer_names: bool,
}

/// Serves the replication service on `listener` until `shutdown` resolves, counting what it
/// receives and streams in `traffic`.
///
/// # Errors
/// The server failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node_id: String,
    state: Arc<dyn Replicated>,
    traffic: Traffic,
    shutdown: impl std::future::Future<Output = ()> + Send,
    secure: Option<Secure>,
) -> Result<(), tonic::transport::Error> {
    let refused = traffic.handshakes_refused.clone();
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(ReplicationServer::new(Service {
            state,
            traffic,
            node_id,
            gossip: secure.as_ref().map(|s| s.gossip.clone()),
            peer_names: secure.as_ref().is_some_and(|s| s.peer_names),
        }));
    match secure {
        Some(s) => {
            let incoming = ReceiverStream::new(s.tls.incoming(listener, refused));
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
    }
}

/// Connect timeout for peers: a dead peer must not hold a push back.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Per-request timeout for pushes (and a sync's response head).
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a sync waits for its next record: a peer that stops sending mid-stream is
/// given up on (the whole sync has a deadline too, see `node::SYNC_DEADLINE`).
pub const SYNC_IDLE: Duration = Duration::from_secs(5);
/// HTTP/2 pings on idle connections, both ways: a peer that vanished without closing its
/// connection is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients to peers, created lazily and reused; remembers which peers the last call failed on.
pub struct Replicator {
    node_id: String,
    tls: Option<Arc<ClusterTls>>,
    clients: Mutex<HashMap<String, ReplicationClient<Channel>>>,
    failed: Mutex<HashMap<String, String>>,
    traffic: Traffic,
}

impl Replicator {
    /// Creates a replicator for this node.
    pub fn new(node_id: impl Into<String>) -> Self {
        Replicator {
            node_id: node_id.into(),
            tls: None,
            clients: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            traffic: Traffic::default(),
        }
    }

    /// Counts into `traffic` (counters registered by the caller) instead of private ones.
    #[must_use]
    pub fn with_traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = traffic;
        self
    }

    /// Connects to peers over mutual TLS.
    #[must_use]
    pub fn with_tls(mut self, tls: Arc<ClusterTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Returns the traffic counters (pass a clone to [`serve`] to count both directions).
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Forgets the connections and failures of addresses not in `live` (members that left).
    pub fn prune(&self, live: &std::collections::HashSet<String>) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| live.contains(a));
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| live.contains(a));
    }

    /// Returns the peers whose last push or sync failed, by address, with the error.
    pub fn failed(&self) -> HashMap<String, String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the outcome of a call to a peer: a failure marks it, a success clears it.
    fn outcome<T>(&self, addr: &str, r: Result<T, String>) -> Result<T, String> {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &r {
            Ok(_) => {
                failed.remove(addr);
            }
            Err(e) => {
                failed.insert(addr.to_string(), e.clone());
            }
        }
        r
    }

    fn client(&self, addr: &str) -> Result<ReplicationClient<Channel>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(PUSH_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = match &self.tls {
            Some(tls) => {
                let (tls, addr) = (tls.clone(), addr.to_string());
                endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                    let (tls, addr) = (tls.clone(), addr.clone());
                    async move { tls.connect(&addr).await.map(hyper_util::rt::TokioIo::new) }
                }))
            }
            None => endpoint.connect_lazy(),
        };
        let client = ReplicationClient::new(channel);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Pushes parts to one peer; returns how many changed its state.
    ///
    /// # Errors
    /// The peer is unreachable or failed.
    pub async fn push(&self, addr: &str, parts: Vec<Part>) -> Result<u32, String> {
        let parts = within_limit(parts, &self.traffic.oversized);
        if parts.is_empty() {
            return Ok(0);
        }
        let mut c = self.client(addr)?;
        self.traffic.sent(UPDATE, &parts);
        let r = c
            .push(PushRequest {
                from: self.node_id.clone(),
                parts,
            })
            .await
            .map(|r| r.get_ref().merged)
            .map_err(|e| format!("push to {addr}: {}", e.message()));
        self.outcome(addr, r)
    }

    /// Sends one gossip datagram to the peer at `to` (TLS clusters only).
    ///
    /// # Errors
    /// The peer is unreachable or refused it.
    pub async fn gossip(
        &self,
        to: std::net::SocketAddr,
        from: std::net::SocketAddr,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        let mut c = self.client(&to.to_string())?;
        c.gossip(GossipPacket {
            from: from.to_string(),
            payload,
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("gossip to {to}: {}", e.message()))
    }

    /// Asks the peer at `addr` a read-only question; its answer's items (untrusted).
    ///
    /// # Errors
    /// The peer is unreachable, refused the question, or did not answer in time.
    pub async fn ask(&self, addr: &str, kind: &str, body: Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
        let mut c = self.client(addr)?;
        c.ask(AskRequest {
            from: self.node_id.clone(),
            kind: kind.to_string(),
            body,
        })
        .await
        .map(|r| r.into_inner().items)
        .map_err(|e| format!("ask {addr}: {}", e.message()))
    }

    /// Streams a peer's full state into `state`; returns (records received, records merged).
    ///
    /// # Errors
    /// The peer is unreachable or the stream broke (records merged before the break stay).
    pub async fn sync_from(&self, addr: &str, state: &dyn Replicated) -> Result<(usize, usize), String> {
        let r = self.stream_from(addr, state).await;
        self.outcome(addr, r)
    }

    async fn stream_from(&self, addr: &str, state: &dyn Replicated) -> Result<(usize, usize), String> {
        let mut c = self.client(addr)?;
        let mut stream = c
            .sync(SyncRequest {
                from: self.node_id.clone(),
            })
            .await
            .map_err(|e| format!("sync from {addr}: {}", e.message()))?
            .into_inner();
        let (mut received, mut merged) = (0, 0);
        loop {
            let next = tokio::time::timeout(SYNC_IDLE, stream.message())
                .await
                .map_err(|_| format!("sync from {addr}: no record for {SYNC_IDLE:?}"))?;
            let Some(part) = next.map_err(|e| format!("sync from {addr}: {}", e.message()))? else {
                break;
            };
            received += 1;
            self.traffic.received(FULL_STATE, std::slice::from_ref(&part));
            if state.merge(&part) {
                merged += 1;
            }
        }
        Ok((received, merged))
    }
}
