//! The replication service between real sockets on 127.0.0.1: pushes merge on the receiver, a
//! full sync streams everything, an unreachable peer fails fast without blocking.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tocsin_cluster::replication::{MsgType, Replicated, Replicator, Traffic, serve};
use tocsin_proto::cluster::Part;

/// A last-writer-wins map: data is "<version>:<value>".
#[derive(Default)]
struct Lww(Mutex<BTreeMap<String, (u64, String)>>);

fn version(p: &Part) -> (u64, String) {
    let s = String::from_utf8(p.data.clone()).unwrap();
    let (v, val) = s.split_once(':').unwrap();
    (v.parse().unwrap(), val.to_string())
}

impl Replicated for Lww {
    fn full_state(&self) -> Vec<Part> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, (v, val))| Part {
                key: k.clone(),
                data: format!("{v}:{val}").into_bytes(),
            })
            .collect()
    }
    fn merge(&self, p: &Part) -> bool {
        let (v, val) = version(p);
        let mut m = self.0.lock().unwrap();
        if m.get(&p.key).is_some_and(|(cur, _)| *cur >= v) {
            return false;
        }
        m.insert(p.key.clone(), (v, val));
        true
    }
    fn digest(&self) -> u64 {
        self.0.lock().unwrap().values().map(|(v, _)| *v).sum()
    }
}

async fn node(state: Arc<Lww>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve(
        listener,
        "server".into(),
        state,
        Traffic::default(),
        std::future::pending(),
        None,
    ));
    addr
}

fn part(k: &str, v: u64, val: &str) -> Part {
    Part {
        key: k.into(),
        data: format!("{v}:{val}").into_bytes(),
    }
}

#[tokio::test]
async fn push_merges_and_sync_streams_everything() {
    let (a, b) = (Arc::new(Lww::default()), Arc::new(Lww::default()));
    let b_addr = node(b.clone()).await;
    let r = Replicator::new("a");
    assert_eq!(
        r.push(&b_addr, vec![part("x", 2, "new"), part("y", 1, "y")])
            .await
            .unwrap(),
        2
    );
    // Older and duplicate versions do not change the receiver.
    assert_eq!(
        r.push(&b_addr, vec![part("x", 1, "old"), part("y", 1, "y")])
            .await
            .unwrap(),
        0
    );
    assert_eq!(b.0.lock().unwrap()["x"], (2, "new".to_string()));
    // 10k records stream in one sync.
    for i in 0..10_000 {
        b.merge(&part(&format!("k{i:05}"), 1, "v"));
    }
    let (received, merged) = r.sync_from(&b_addr, a.as_ref()).await.unwrap();
    assert_eq!((received, merged), (10_002, 10_002));
    assert_eq!(a.0.lock().unwrap().len(), 10_002);
    // Records are counted as Alertmanager counts gossip messages, by type.
    let count = |f: &Family<MsgType, Counter>, t: &str| f.get_or_create(&MsgType { msg_type: t.into() }).get();
    let t = r.traffic();
    assert_eq!(count(&t.sent, "update"), 4);
    assert_eq!(count(&t.received, "full_state"), 10_002);
    // "k00000" + "1:v" is 9 bytes; x and y add 1 + 5 and 1 + 3.
    assert_eq!(count(&t.received_bytes, "full_state"), 10_000 * 9 + 6 + 4);
    assert!(r.failed().is_empty());
}

#[tokio::test]
async fn unreachable_peer_fails_fast() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let r = Replicator::new("a");
    let start = Instant::now();
    let err = r.push(&dead, vec![part("x", 1, "v")]).await.unwrap_err();
    assert!(err.starts_with(&format!("push to {dead}")), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_eq!(r.failed().get(&dead), Some(&err), "the peer is marked failed");
    // It comes back: the next successful call clears the mark.
    let l = tokio::net::TcpListener::bind(&dead).await.unwrap();
    tokio::spawn(serve(
        l,
        "server".into(),
        Arc::new(Lww::default()),
        Traffic::default(),
        std::future::pending(),
        None,
    ));
    let until = Instant::now() + Duration::from_secs(10);
    while r.push(&dead, vec![part("x", 1, "v")]).await.is_err() {
        assert!(Instant::now() < until, "peer never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(r.failed().is_empty());
}

#[tokio::test]
async fn an_oversized_record_is_skipped_and_the_rest_of_the_sync_arrives() {
    // One 3 MiB record (over tonic's 4 MiB message limit with room to spare it would not be,
    // but over the 2 MiB record limit) between two small ones: before, such a record aborted
    // every sync at that point.
    let server = Arc::new(Lww::default());
    server.merge(&part("a", 1, "small"));
    server.merge(&part("b", 1, &"x".repeat(3 << 20)));
    server.merge(&part("c", 1, "small"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let traffic = Traffic::default();
    tokio::spawn(serve(
        listener,
        "server".into(),
        server,
        traffic.clone(),
        std::future::pending(),
        None,
    ));
    let client = Lww::default();
    let r = Replicator::new("client");
    assert_eq!(r.sync_from(&addr, &client).await, Ok((2, 2)));
    assert_eq!(traffic.oversized.get(), 1, "the skipped record is counted");
    // Pushed, it is skipped too, and the push carries the rest.
    let other = node(Arc::new(Lww::default())).await;
    let pushed = r
        .push(
            &other,
            vec![part("big", 1, &"x".repeat(3 << 20)), part("d", 1, "small")],
        )
        .await;
    assert_eq!(pushed, Ok(1));
    assert_eq!(r.traffic().oversized.get(), 1);
}

#[tokio::test]
async fn a_replica_does_not_sync_from_itself() {
    // A seed list naming this replica (by a name that resolves to its own address).
    let addr = node(Arc::new(Lww::default())).await;
    let r = Replicator::new("server");
    let err = r.sync_from(&addr, &Lww::default()).await.unwrap_err();
    assert!(err.contains("does not sync from itself"), "{err}");
}

#[tokio::test]
async fn a_plaintext_cluster_port_takes_no_gossip_over_grpc() {
    // Gossip rides gRPC only on a TLS cluster port; a plaintext one must not offer a second,
    // unauthenticated way into membership.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve(
        l,
        "server".into(),
        Arc::new(Lww::default()),
        Traffic::default(),
        std::future::pending(),
        None,
    ));
    let r = Replicator::new("a");
    let err = r
        .gossip(addr, "127.0.0.1:1".parse().unwrap(), vec![0; 8])
        .await
        .unwrap_err();
    assert!(
        err.contains("gossip over the cluster connection needs --cluster.tls-config"),
        "{err}"
    );
}
