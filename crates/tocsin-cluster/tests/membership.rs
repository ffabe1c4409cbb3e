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
    let m = settling_node(t, i, generation).await;
    m.set_ready().await;
    m
}

async fn settling_node(t: &ChannelTransport, i: u16, generation: u64) -> Membership {
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
    Membership::start(cfg, t).await.unwrap()
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
    // Peers list the new life once gossip shows it live (well before failure detection
    // would drop the old one): a claim of the old life stops counting then.
    for _ in 0..100 {
        if n0.members()[1].generation == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n0.members()[1].generation, 2, "the newest life, within 10 s");
}

#[tokio::test(start_paused = true)]
async fn settling_members_count_for_positions_and_leaving_ones_do_not() {
    // A member counts from the moment peers see it, settled or not: when it settles, nobody's
    // position changes, so no two replicas share one.
    let t = ChannelTransport::with_mtu(65_507);
    let n0 = settling_node(&t, 0, 1).await;
    let n1 = node(&t, 1, 1).await;
    let n2 = node(&t, 2, 1).await;
    settle(&[&n0, &n1, &n2], &[0, 1, 2], "node-0 still settling").await;
    assert!(!n1.members()[0].ready);
    n0.set_ready().await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!([n0.position(), n1.position(), n2.position()], [0, 1, 2]);
    }
    // A leaving member stops counting at the next gossip round, long before failure detection.
    n0.set_leaving().await;
    settle(&[&n1, &n2], &[0, 1], "node-0 leaving").await;
}
