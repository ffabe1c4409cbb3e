//! Wires a replica into its cluster (§4): what its replicated state is as parts (nflog entries,
//! silences, claims), and the [`Peer`] the pipeline consults. The replication rules themselves
//! (push, settle, digests, anti-entropy) are `tocsin_cluster::node`'s; [`join`] runs them over
//! UDP gossip and gRPC, [`join_with`] over any membership and wire (in-memory in simulations).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tocsin_cluster::gossip::{GossipInbox, GrpcGossip};
use tocsin_cluster::node::{ClusterNode, NodeOptions, Wire};
use tocsin_cluster::replication::{Replicated, Replicator, Secure, serve};
use tocsin_cluster::tls::ClusterTls;
use tocsin_cluster::{Member, Membership, MembershipConfig};
use tocsin_core::claim::Claim;
use tocsin_core::nflog::{Entry, ReceiverKey};
use tocsin_core::silence::MeshSilence;
use tocsin_core::snapshot::{entry_from_pb, entry_to_pb, silence_from_pb, silence_to_pb};
use tocsin_proto::Message;
use tocsin_proto::cluster::{Claim as ClaimPb, Part};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::peer::{BoxFuture, Peer};

const NFLOG_KEY: &str = "nfl";
const SILENCES_KEY: &str = "sil";
const CLAIMS_KEY: &str = "clm";

fn claim_to_pb(c: &Claim) -> ClaimPb {
    ClaimPb {
        group_key: c.group_key.clone(),
        group_name: c.receiver.group_name.clone(),
        integration: c.receiver.integration.clone(),
        idx: c.receiver.idx,
        sender: c.sender.clone(),
        generation: c.generation,
        created_ms: c.created.as_millisecond(),
        deadline_ms: c.deadline.as_millisecond(),
        released: c.released,
    }
}

fn claim_from_pb(p: &ClaimPb) -> Result<Claim, String> {
    let ts = |ms| jiff::Timestamp::from_millisecond(ms).map_err(|e| format!("claim time: {e}"));
    Ok(Claim {
        group_key: p.group_key.clone(),
        receiver: ReceiverKey {
            group_name: p.group_name.clone(),
            integration: p.integration.clone(),
            idx: p.idx,
        },
        sender: p.sender.clone(),
        generation: p.generation,
        created: ts(p.created_ms)?,
        deadline: ts(p.deadline_ms)?,
        released: p.released,
    })
}

/// The replica's state as replicated parts.
struct AppState {
    app: Weak<App>,
    /// Refusals, logged at most once per period: a hostile or broken peer must not flood the log.
    refusals: crate::logging::RateLimited,
}

impl AppState {
    fn refused(&self, app: &App, state: &'static str, reason: &'static str, detail: &str) {
        app.metrics
            .refused
            .get_or_create(&crate::metrics::RefusedLabels { state, reason })
            .inc();
        if let Some(n) = self.refusals.hit() {
            warn!(
                state,
                reason,
                refused_since_last_report = n,
                detail,
                "refused a record from a peer (counted in tocsin_cluster_records_refused_total)"
            );
        }
    }
}

impl Replicated for AppState {
    fn full_state(&self) -> Vec<Part> {
        let Some(app) = self.app.upgrade() else { return vec![] };
        let mut parts: Vec<Part> = app
            .state
            .nflog()
            .entries()
            .map(|e| Part {
                key: NFLOG_KEY.into(),
                data: entry_to_pb(e).encode_to_vec(),
            })
            .collect();
        parts.extend(app.state.silences().iter().map(|m| Part {
            key: SILENCES_KEY.into(),
            data: silence_to_pb(m).encode_to_vec(),
        }));
        parts.extend(app.state.claims().iter().map(|c| Part {
            key: CLAIMS_KEY.into(),
            data: claim_to_pb(c).encode_to_vec(),
        }));
        parts
    }

    fn merge(&self, part: &Part) -> bool {
        let Some(app) = self.app.upgrade() else { return false };
        let m = &app.metrics;
        let (state, merged) = match part.key.as_str() {
            NFLOG_KEY => (
                "nflog",
                decode(&part.data, entry_from_pb)
                    .map(|e| app.state.merge_nflog(e).inspect(|n| count(&m.nflog_gossip, *n))),
            ),
            SILENCES_KEY => (
                "silences",
                decode(&part.data, silence_from_pb)
                    .map(|s| app.state.merge_silence(s).inspect(|n| count(&m.silences_gossip, *n))),
            ),
            CLAIMS_KEY => (
                "claims",
                decode(&part.data, claim_from_pb).map(|c| app.state.merge_claim(c)),
            ),
            other => {
                debug!(key = other, "ignoring a part of unknown state");
                return false;
            }
        };
        match merged {
            Ok(Ok(changed)) => changed,
            Ok(Err(refusal)) => {
                self.refused(&app, state, refusal.as_str(), "");
                false
            }
            Err(e) => {
                self.refused(&app, state, "undecodable", &e);
                false
            }
        }
    }

    /// A claim pushed by an authenticated peer must be its own (`--cluster.tls-peer-names`):
    /// a member cannot hold up a group in another member's name.
    fn merge_from(&self, part: &Part, sender: &str) -> bool {
        if part.key == CLAIMS_KEY
            && let Ok(c) = decode(&part.data, claim_from_pb)
            && c.sender != sender
        {
            if let Some(app) = self.app.upgrade() {
                self.refused(
                    &app,
                    "claims",
                    "wrong_sender",
                    &format!("{} pushed a claim of {}", sender, c.sender),
                );
            }
            return false;
        }
        self.merge(part)
    }

    /// A peer's question about this replica's own records (its event history).
    fn answer(&self, kind: &str, body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let app = self.app.upgrade().ok_or("shutting down")?;
        crate::api_events::answer(&app, kind, body)
    }

    /// The nflog's and the silences' (claims are short-lived by design and left out).
    fn digest(&self) -> u64 {
        let Some(app) = self.app.upgrade() else { return 0 };
        let now = app.clock.now();
        app.state
            .nflog()
            .digest(now)
            .wrapping_add(app.state.silences().digest(now))
    }
}

/// The replica's state as the replication layer sees it (to serve it on a wire).
pub fn replicated_state(app: &Arc<App>) -> Arc<dyn Replicated> {
    Arc::new(AppState {
        app: Arc::downgrade(app),
        refusals: crate::logging::RateLimited::default(),
    })
}

fn count(c: &prometheus_client::metrics::counter::Counter, changed: bool) {
    if changed {
        c.inc();
    }
}

/// Decodes one protobuf record and converts it to the domain type.
fn decode<M: Message + Default, T>(data: &[u8], convert: impl Fn(&M) -> Result<T, String>) -> Result<T, String> {
    M::decode(data).map_err(|e| e.to_string()).and_then(|m| convert(&m))
}

/// A replica's membership in a cluster.
pub struct ClusterPeer {
    node: Arc<ClusterNode>,
}

impl ClusterPeer {
    /// Returns the live members, self included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.node.members()
    }

    /// Returns this node's name.
    pub fn name(&self) -> &str {
        self.node.membership().node_id()
    }

    /// Returns the live members (other than self) whose last replication call failed, with the
    /// error: a peer that gossip still reports alive but that cannot be reached over TCP.
    pub fn failed_peers(&self) -> Vec<(Member, String)> {
        self.node.failed_peers()
    }

    /// Announces that this replica leaves: peers stop counting it for positions.
    pub async fn leave(&self) {
        self.node.leave().await;
    }

    /// Returns whether the replica has settled.
    pub fn is_ready(&self) -> bool {
        self.node.is_ready()
    }

    /// Asks every other live member a read-only question; answers by member name.
    pub async fn ask_all(&self, kind: &str, body: &[u8]) -> Vec<(String, Result<Vec<Vec<u8>>, String>)> {
        self.node.ask_all(kind, body).await
    }

    /// Stops gossiping, as a process that dies (simulations).
    pub async fn stop(&self) {
        self.node.stop().await;
    }
}

impl Peer for ClusterPeer {
    fn position(&self) -> usize {
        self.node.membership().position()
    }

    fn wait_ready(&self) -> BoxFuture<'_, ()> {
        self.node.wait_ready()
    }

    fn name(&self) -> &str {
        self.node.membership().node_id()
    }

    fn generation(&self) -> u64 {
        self.node.membership().generation()
    }

    fn is_live(&self, name: &str, generation: u64) -> bool {
        self.node.is_live(name, generation)
    }

    fn broadcast_claim(&self, c: &Claim) {
        self.node.push_all(Part {
            key: CLAIMS_KEY.into(),
            data: claim_to_pb(c).encode_to_vec(),
        });
    }

    fn broadcast_nflog(&self, e: &Entry) {
        self.node.push_all(Part {
            key: NFLOG_KEY.into(),
            data: entry_to_pb(e).encode_to_vec(),
        });
    }

    fn broadcast_silence(&self, m: &MeshSilence) {
        self.node.push_all(Part {
            key: SILENCES_KEY.into(),
            data: silence_to_pb(m).encode_to_vec(),
        });
    }
}

/// How to join.
pub struct JoinOptions {
    /// Node name.
    pub name: String,
    /// Advertised address.
    pub advertise: Option<SocketAddr>,
    /// Seeds.
    pub peers: Vec<String>,
    /// `--cluster.label`.
    pub label: String,
    /// `--cluster.gossip-interval`.
    pub gossip_interval: Duration,
    /// `--cluster.pushpull-interval`.
    pub pushpull_interval: Duration,
    /// `--cluster.settle-timeout`.
    pub settle_timeout: Duration,
    /// `--cluster.tls-config`: mutual TLS on the cluster port, gossip carried over it.
    pub tls: Option<tocsin_cluster::tls::Settings>,
    /// `--cluster.tls-peer-names`: peers' certificates carry their names, and a peer pushes
    /// records in its own name only.
    pub tls_peer_names: bool,
}

/// Joins the cluster: serves replication on `tcp`, binds gossip on its UDP port, settles and
/// keeps syncing.
///
/// # Errors
/// The ports cannot be bound or the advertise address cannot be determined.
pub async fn join(
    app: &Arc<App>,
    opts: JoinOptions,
    tcp: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Arc<ClusterPeer>> {
    let bound = tcp.local_addr()?;
    let advertise = match opts.advertise {
        Some(a) => a,
        None if !bound.ip().is_unspecified() => bound,
        // Alone, nobody needs to reach us: loopback is honest.
        None if opts.peers.is_empty() => SocketAddr::from(([127, 0, 0, 1], bound.port())),
        None => {
            anyhow::bail!("--cluster.advertise-address is required when --cluster.listen-address binds all interfaces")
        }
    };
    let generation = jiff::Timestamp::now().as_millisecond() as u64;
    let secure = match &opts.tls {
        Some(s) => Some(Secure {
            tls: ClusterTls::load(s).map_err(|e| anyhow::anyhow!("--cluster.tls-config: {e}"))?,
            gossip: GossipInbox::new(),
            peer_names: opts.tls_peer_names,
        }),
        None => None,
    };
    let state = replicated_state(app);
    let traffic = app.metrics.cluster_traffic.clone();
    let mut replicator = Replicator::new(opts.name.clone()).with_traffic(traffic.clone());
    if let Some(s) = &secure {
        replicator = replicator.with_tls(s.tls.clone());
    }
    let replicator = Arc::new(replicator);
    let mut stop = shutdown.clone();
    let secured = secure.is_some();
    tokio::spawn(serve(
        tcp,
        opts.name.clone(),
        state.clone(),
        traffic,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
        secure.clone(),
    ));
    let cfg = MembershipConfig {
        node_id: opts.name.clone(),
        generation,
        advertise_addr: advertise,
        listen_addr: bound,
        seeds: opts.peers.clone(),
        cluster_label: opts.label.clone(),
        gossip_interval: opts.gossip_interval,
        grpc_addr: advertise.to_string(),
    };
    let membership = match secure {
        // Gossip rides the authenticated connection: nothing listens on UDP.
        Some(s) => Membership::start(cfg, &GrpcGossip::new(s.gossip, replicator.clone(), advertise)).await?,
        None => Membership::start_udp(cfg).await?,
    };
    info!(name = %opts.name, address = %advertise, peers = ?opts.peers, mutual_tls = secured, "joined cluster");
    let node_opts = NodeOptions {
        seeds: opts.peers.clone(),
        settle_timeout: opts.settle_timeout,
        pushpull_interval: opts.pushpull_interval,
    };
    Ok(join_with(app, membership, replicator, node_opts, shutdown))
}

/// Joins through a running membership and a replication wire: starts settling, digest exchange
/// and anti-entropy (real sockets in [`join`]; in-memory ones in simulations, where the wire
/// must serve [`replicated_state`] at this node's replication address).
pub fn join_with(
    app: &Arc<App>,
    membership: Membership,
    wire: Arc<dyn Wire>,
    opts: NodeOptions,
    shutdown: watch::Receiver<bool>,
) -> Arc<ClusterPeer> {
    let node = ClusterNode::start(membership, wire, replicated_state(app), opts, shutdown);
    Arc::new(ClusterPeer { node })
}
