//! Gossip over the authenticated cluster connection (`--cluster.tls-config`): chitchat's
//! datagrams travel as gRPC calls on the mutually authenticated port instead of UDP, so an
//! outsider can neither add phantom members nor take over a member's name.
//!
//! chitchat encodes its messages only inside its own UDP socket, so the transport keeps one: a
//! chitchat `UdpSocket` on a loopback port, and one loopback relay socket per peer. A message to
//! a peer is written by chitchat to that peer's relay, read back as bytes and sent over gRPC; a
//! message from a peer is written from its relay to the chitchat socket, whose decoder then sees
//! the relay's address, mapped back to the peer's. Datagrams on these loopback sockets from any
//! other source are dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use tokio::sync::{Semaphore, mpsc};

use crate::replication::Replicator;

/// The largest gossip datagram accepted (UDP's payload limit, as chitchat's).
pub const MAX_GOSSIP_BYTES: usize = 65_507;
/// Datagrams received and not yet read by chitchat; more are dropped (gossip is lossy by
/// design: the next round repeats the state).
const INBOX: usize = 1024;
/// Gossip calls in flight to peers; more are dropped for the same reason.
const IN_FLIGHT: usize = 64;
/// Relay sockets kept; past this many peers the map is rebuilt.
const MAX_RELAYS: usize = 512;

/// A datagram and the gossip address of its sender.
type Datagram = (SocketAddr, Vec<u8>);

/// Where the replication server puts gossip datagrams it receives, and the transport reads them.
pub struct GossipInbox {
    tx: mpsc::Sender<Datagram>,
    rx: Mutex<Option<mpsc::Receiver<Datagram>>>,
}

impl GossipInbox {
    /// A new inbox.
    pub fn new() -> Arc<Self> {
        let (tx, rx) = mpsc::channel(INBOX);
        Arc::new(GossipInbox {
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// Delivers a datagram from `from`; returns whether it was queued (not dropped).
    pub fn deliver(&self, from: SocketAddr, payload: Vec<u8>) -> bool {
        payload.len() <= MAX_GOSSIP_BYTES && self.tx.try_send((from, payload)).is_ok()
    }
}

/// chitchat's transport over the replication connection.
pub struct GrpcGossip {
    inbox: Arc<GossipInbox>,
    replicator: Arc<Replicator>,
    advertise: SocketAddr,
}

impl GrpcGossip {
    /// Gossip from `advertise` through `replicator`'s (TLS) connections; datagrams from peers
    /// arrive in `inbox`.
    pub fn new(inbox: Arc<GossipInbox>, replicator: Arc<Replicator>, advertise: SocketAddr) -> Self {
        GrpcGossip {
            inbox,
            replicator,
            advertise,
        }
    }
}

#[async_trait]
impl Transport for GrpcGossip {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let rx = self
            .inbox
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip inbox is already open"))?;
        let inner = UdpSocket::open((Ipv4Addr::LOCALHOST, 0).into()).await?;
        let inner_addr = inner.local_addr()?;
        Ok(Box::new(Bridge {
            inner,
            inner_addr,
            advertise: self.advertise,
            relays: HashMap::new(),
            by_relay: HashMap::new(),
            rx,
            replicator: self.replicator.clone(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            buf: vec![0; MAX_GOSSIP_BYTES],
        }))
    }
}

struct Bridge {
    inner: UdpSocket,
    inner_addr: SocketAddr,
    advertise: SocketAddr,
    relays: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>,
    by_relay: HashMap<SocketAddr, SocketAddr>,
    rx: mpsc::Receiver<Datagram>,
    replicator: Arc<Replicator>,
    in_flight: Arc<Semaphore>,
    buf: Vec<u8>,
}

impl Bridge {
    async fn relay(&mut self, peer: SocketAddr) -> anyhow::Result<Arc<tokio::net::UdpSocket>> {
        if let Some(r) = self.relays.get(&peer) {
            return Ok(r.clone());
        }
        if self.relays.len() >= MAX_RELAYS {
            self.relays.clear();
            self.by_relay.clear();
        }
        let r = Arc::new(tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        self.by_relay.insert(r.local_addr()?, peer);
        self.relays.insert(peer, r.clone());
        Ok(r)
    }
}

#[async_trait]
impl Socket for Bridge {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.advertise)
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let relay = self.relay(to).await?;
        let out = self.inner.send(relay.local_addr()?, envelope).await?;
        // Read back what chitchat wrote: on loopback it is there at once.
        let len = loop {
            let (n, src) = tokio::time::timeout(Duration::from_secs(1), relay.recv_from(&mut self.buf))
                .await
                .map_err(|_| anyhow::anyhow!("gossip relay: datagram lost on loopback"))??;
            if src == self.inner_addr {
                break n;
            }
        };
        let payload = self.buf[..len].to_vec();
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%to, "gossip: too many calls in flight, datagram dropped");
            return Ok(out);
        };
        let (replicator, from) = (self.replicator.clone(), self.advertise);
        tokio::spawn(async move {
            if let Err(e) = replicator.gossip(to, from, payload).await {
                tracing::debug!(%to, error = %e, "gossip over the cluster connection failed");
            }
            drop(permit);
        });
        Ok(out)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            tokio::select! {
                r = self.inner.recv() => {
                    let mut out = r?;
                    // Only what our relays wrote counts; anything else on loopback is dropped.
                    if let Some(peer) = self.by_relay.get(&out.from_addr) {
                        out.from_addr = *peer;
                        return Ok(out);
                    }
                }
                m = self.rx.recv() => {
                    let Some((peer, payload)) = m else {
                        anyhow::bail!("the replication server stopped");
                    };
                    let relay = self.relay(peer).await?;
                    relay.send_to(&payload, self.inner_addr).await?;
                }
            }
        }
    }
}
