//! Wires a replica into its cluster (§4): chitchat membership, gRPC replication of the nflog and
//! silences, settling, and the [`Peer`] the pipeline consults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tocsin_cluster::replication::{Replicated, Replicator, serve};
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
struct AppState(Weak<App>);

impl Replicated for AppState {
    fn full_state(&self) -> Vec<Part> {
        let Some(app) = self.0.upgrade() else { return vec![] };
        let mut parts: Vec<Part> = app
            .nflog
            .lock()
            .entries()
            .map(|e| Part {
                key: NFLOG_KEY.into(),
                data: entry_to_pb(e).encode_to_vec(),
            })
            .collect();
        parts.extend(app.silences.read().iter().map(|m| Part {
            key: SILENCES_KEY.into(),
            data: silence_to_pb(m).encode_to_vec(),
        }));
        parts.extend(app.claims.lock().iter().map(|c| Part {
            key: CLAIMS_KEY.into(),
            data: claim_to_pb(c).encode_to_vec(),
        }));
        parts
    }

    fn merge(&self, part: &Part) -> bool {
        let Some(app) = self.0.upgrade() else { return false };
        let m = &app.metrics;
        let count = |c: &prometheus_client::metrics::counter::Counter, changed: bool| {
            if changed {
                c.inc();
            }
            changed
        };
        let merged = match part.key.as_str() {
            NFLOG_KEY => decode(&part.data, entry_from_pb).map(|e| count(&m.nflog_gossip, app.merge_nflog(e))),
            SILENCES_KEY => {
                decode(&part.data, silence_from_pb).map(|s| count(&m.silences_gossip, app.merge_silence(s)))
            }
            CLAIMS_KEY => decode(&part.data, claim_from_pb).map(|c| app.merge_claim(c)),
            other => {
                debug!(key = other, "ignoring a part of unknown state");
                return false;
            }
        };
        merged.unwrap_or_else(|e| {
            warn!(key = %part.key, err = %e, "dropping an undecodable part");
            false
        })
    }
}

/// How long a peer's published digest must differ from ours before we sync from it: pushes
/// normally close the gap within milliseconds, and digests travel by gossip.
const DIGEST_PATIENCE: Duration = Duration::from_secs(3);
/// The least time between two digest-triggered syncs from one peer.
const DIGEST_BACKOFF: Duration = Duration::from_secs(10);

/// The digest of everything replicated (claims excepted: they are short-lived by design).
fn state_digest(app: &App) -> String {
    let now = app.clock.now();
    let d = app
        .nflog
        .lock()
        .digest(now)
        .wrapping_add(app.silences.read().digest(now));
    format!("{d:016x}")
}

/// Publishes our digest every second and syncs from a peer whose digest has differed from ours
/// for [`DIGEST_PATIENCE`]: a lost push is repaired in seconds, not at the next pushpull.
async fn exchange_digests(
    p: Arc<ClusterPeer>,
    app: Weak<App>,
    state: Arc<dyn Replicated>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut published, mut differing, mut synced) = (String::new(), HashMap::new(), HashMap::new());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(ours) = app.upgrade().map(|a| state_digest(&a)) else {
            return;
        };
        if ours != published {
            p.membership.set_digest(&ours).await;
            published = ours.clone();
        }
        if !p.is_ready() {
            continue;
        }
        let now = tokio::time::Instant::now();
        for m in p.members() {
            let (Some(addr), Some(theirs)) = (m.grpc_addr.as_deref(), m.digest.as_deref()) else {
                continue;
            };
            if m.name == p.name() || theirs == ours {
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
            match p.replicator.sync_from(addr, state.as_ref()).await {
                Ok((_, merged)) => info!(peer = %m.name, merged, "state digests differed; synced"),
                Err(e) => debug!(peer = %m.name, err = %e, "digest-triggered sync failed"),
            }
        }
    }
}

/// Decodes one protobuf record and converts it to the domain type.
fn decode<M: Message + Default, T>(data: &[u8], convert: impl Fn(&M) -> Result<T, String>) -> Result<T, String> {
    M::decode(data).map_err(|e| e.to_string()).and_then(|m| convert(&m))
}

/// A replica's membership in a cluster.
pub struct ClusterPeer {
    membership: Membership,
    replicator: Arc<Replicator>,
    ready_rx: watch::Receiver<bool>,
}

impl ClusterPeer {
    /// Returns the live members, self included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.membership.members()
    }

    /// Returns this node's name.
    pub fn name(&self) -> &str {
        self.membership.node_id()
    }

    /// Returns the live members (other than self) whose last replication call failed, with the
    /// error: a peer that gossip still reports alive but that cannot be reached over TCP.
    pub fn failed_peers(&self) -> Vec<(Member, String)> {
        let failed = self.replicator.failed();
        self.members()
            .into_iter()
            .filter_map(|m| {
                let err = failed.get(m.grpc_addr.as_deref()?)?.clone();
                Some((m, err))
            })
            .collect()
    }

    /// Announces that this replica leaves: peers stop counting it for positions.
    pub async fn leave(&self) {
        self.membership.set_leaving().await;
        info!("leaving the cluster");
    }

    /// Returns whether the replica has settled.
    pub fn is_ready(&self) -> bool {
        *self.ready_rx.borrow()
    }

    fn push_all(&self, part: Part) {
        let me = self.membership.node_id().to_string();
        for m in self.membership.members() {
            let (Some(addr), false) = (m.grpc_addr.clone(), m.name == me) else {
                continue;
            };
            let (r, p) = (self.replicator.clone(), part.clone());
            tokio::spawn(async move {
                if let Err(e) = r.push(&addr, vec![p]).await {
                    debug!(peer = %m.name, err = %e, "push failed; anti-entropy will catch up");
                }
            });
        }
    }
}

impl Peer for ClusterPeer {
    fn position(&self) -> usize {
        self.membership.position()
    }

    fn wait_ready(&self) -> BoxFuture<'_, ()> {
        let mut rx = self.ready_rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|r| *r).await;
        })
    }

    fn name(&self) -> &str {
        self.membership.node_id()
    }

    fn generation(&self) -> u64 {
        self.membership.generation()
    }

    fn is_live(&self, name: &str, generation: u64) -> bool {
        // Members hold the newest generation seen per name.
        self.membership
            .members()
            .iter()
            .any(|m| m.name == name && m.generation == generation)
    }

    fn broadcast_claim(&self, c: &Claim) {
        self.push_all(Part {
            key: CLAIMS_KEY.into(),
            data: claim_to_pb(c).encode_to_vec(),
        });
    }

    fn broadcast_nflog(&self, e: &Entry) {
        self.push_all(Part {
            key: NFLOG_KEY.into(),
            data: entry_to_pb(e).encode_to_vec(),
        });
    }

    fn broadcast_silence(&self, m: &MeshSilence) {
        self.push_all(Part {
            key: SILENCES_KEY.into(),
            data: silence_to_pb(m).encode_to_vec(),
        });
    }
}

/// How to join.
pub struct JoinOptions {
    /// Node name.
    pub name: String,
    /// Bind address (UDP gossip and TCP replication share the port).
    pub listen: SocketAddr,
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
}

/// Joins the cluster: binds the replication port, starts gossip, settles and keeps syncing.
///
/// # Errors
/// The ports cannot be bound or the advertise address cannot be determined.
pub async fn join(
    app: &Arc<App>,
    opts: JoinOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Arc<ClusterPeer>> {
    let tcp = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| anyhow::anyhow!("unable to listen on cluster address {}: {e}", opts.listen))?;
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
    let membership = Membership::start_udp(MembershipConfig {
        node_id: opts.name.clone(),
        generation,
        advertise_addr: advertise,
        listen_addr: bound,
        seeds: opts.peers.clone(),
        cluster_label: opts.label.clone(),
        gossip_interval: opts.gossip_interval,
        grpc_addr: advertise.to_string(),
    })
    .await?;
    let state: Arc<dyn Replicated> = Arc::new(AppState(Arc::downgrade(app)));
    let traffic = app.metrics.cluster_traffic.clone();
    let replicator = Arc::new(Replicator::new(opts.name.clone()).with_traffic(traffic.clone()));
    let mut stop = shutdown.clone();
    tokio::spawn(serve(tcp, state.clone(), traffic, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    let (ready_tx, ready_rx) = watch::channel(false);
    let peer = Arc::new(ClusterPeer {
        membership,
        replicator: replicator.clone(),
        ready_rx,
    });
    info!(name = %opts.name, address = %advertise, peers = ?opts.peers, "joined cluster");

    // Settle: ready after a full sync from any seed, or when the settle timeout passes.
    let (p, st, seeds) = (peer.clone(), state.clone(), opts.peers.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + opts.settle_timeout;
        let mut synced = seeds.is_empty();
        while !synced && tokio::time::Instant::now() < deadline {
            for s in &seeds {
                if let Ok((n, m)) = p.replicator.sync_from(s, st.as_ref()).await {
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
        p.membership.set_ready().await;
        let _ = ready_tx.send(true);
    });

    tokio::spawn(exchange_digests(
        peer.clone(),
        Arc::downgrade(app),
        state.clone(),
        shutdown.clone(),
    ));

    // Anti-entropy: pull every peer's full state each pushpull interval.
    let (p, st, mut stop) = (peer.clone(), state, shutdown);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(opts.pushpull_interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let me = p.name().to_string();
            for m in p.members() {
                let (Some(addr), false) = (m.grpc_addr.clone(), m.name == me) else {
                    continue;
                };
                match p.replicator.sync_from(&addr, st.as_ref()).await {
                    Ok((_, merged)) if merged > 0 => info!(peer = %m.name, merged, "anti-entropy merged state"),
                    Ok(_) => {}
                    Err(e) => debug!(peer = %m.name, err = %e, "anti-entropy sync failed"),
                }
            }
        }
    });
    Ok(peer)
}
