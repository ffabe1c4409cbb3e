//! Membership on chitchat's in-memory transport with tokio's paused clock: positions as nodes
//! join, settle, are cut off and come back.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use tocsin_cluster::{Membership, MembershipConfig};

fn addr(i: u16) -> SocketAddr {
    format!("127.0.0.1:{}", 19_000 + i).parse().unwrap()
}

async fn node(t: &ChannelTransport, i: u16, generation: u64) -> Membership {
    let cfg = MembershipConfig {
        node_id: format!("node-{i}"),
        generation,
        advertise_addr: addr(i),
        listen_addr: addr(i),
        seeds: (0..3).filter(|j| *j != i).map(|j| addr(j).to_string()).collect(),
        cluster_label: "test".into(),
        gossip_interval: Duration::from_millis(200),
        grpc_addr: format!("127.0.0.1:{}", 29_000 + i),
    };
    let m = Membership::start(cfg, t).await.unwrap();
    m.set_ready().await;
    m
}

async fn settle(nodes: &[&Membership], want: &[usize], what: &str) {
    for _ in 0..600 {
        if nodes.iter().map(|n| n.position()).collect::<Vec<_>>() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: positions {:?}, want {want:?}",
        nodes.iter().map(|n| n.position()).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn positions_follow_membership() {
    let t = ChannelTransport::with_mtu(65_507);
    let n0 = node(&t, 0, 1).await;
    let n1 = node(&t, 1, 1).await;
    let n2 = node(&t, 2, 1).await;
    settle(&[&n0, &n1, &n2], &[0, 1, 2], "three nodes formed").await;
    let names: Vec<String> = n2.members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(names, ["node-0", "node-1", "node-2"]);
    assert_eq!(n2.members()[0].grpc_addr.as_deref(), Some("127.0.0.1:29000"));

    // node-0 is cut off: each side ranks what it can see.
    t.remove_link(addr(0), addr(1)).await;
    t.remove_link(addr(0), addr(2)).await;
    settle(&[&n0, &n1, &n2], &[0, 0, 1], "partitioned").await;

    // Healed: one ranking again.
    t.add_link(addr(0), addr(1)).await;
    t.add_link(addr(0), addr(2)).await;
    settle(&[&n0, &n1, &n2], &[0, 1, 2], "healed").await;
}

#[tokio::test(start_paused = true)]
async fn restarted_node_replaces_its_old_self() {
    let t = ChannelTransport::with_mtu(65_507);
    let n0 = node(&t, 0, 1).await;
    let n1 = node(&t, 1, 1).await;
    let n2 = node(&t, 2, 1).await;
    settle(&[&n0, &n1, &n2], &[0, 1, 2], "formed").await;
    n1.shutdown().await.unwrap();
    // node-1 comes back with a newer generation on the same address.
    let n1b = node(&t, 1, 2).await;
    settle(&[&n0, &n1b, &n2], &[0, 1, 2], "restarted").await;
    let names: Vec<String> = n0.members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(names, ["node-0", "node-1", "node-2"], "one entry per node id");
}
