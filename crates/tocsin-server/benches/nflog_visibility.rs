//! How soon a notification log entry written on one replica is visible on its peers: three
//! replicas joined over real UDP gossip and gRPC on 127.0.0.1 in one process; replica 0 logs and
//! broadcasts 1,000 entries one at a time (10 ms apart, like notifications trickling out) and
//! the time until both peers hold each entry is recorded. Prints p50, p99 and max.
//!
//! Run: `cargo bench -p tocsin-server --bench nflog_visibility`. Bounded: 1,000 entries, and
//! each entry gives up after 5 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tocsin_core::config::{LoadOptions, load};
use tocsin_core::nflog::ReceiverKey;
use tocsin_server::app::{App, NotifierFactory, Settings};
use tocsin_server::clock::Clock;
use tocsin_server::cluster::{JoinOptions, join};

const ENTRIES: usize = 1_000;

fn free_port() -> u16 {
    // A port free for both UDP and TCP at the time of asking.
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn app() -> Arc<App> {
    let cfg = "route:\n  receiver: r\nreceivers:\n- name: r\n";
    let config = load(cfg, std::path::Path::new("."), &LoadOptions::default()).unwrap();
    let factory: NotifierFactory = Arc::new(|_, _| Ok(vec![]));
    App::new(Settings::new("unused.yml"), config, factory, Clock::system()).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let seed = format!("127.0.0.1:{}", ports[0]);
    let mut apps = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let app = app();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let opts = JoinOptions {
            name: format!("r{i}"),
            advertise: Some(listen),
            peers: if i == 0 { vec![] } else { vec![seed.clone()] },
            label: "alertmanager".into(),
            gossip_interval: Duration::from_millis(200),
            pushpull_interval: Duration::from_secs(60),
            settle_timeout: Duration::from_secs(5),
            tls: None,
            tls_peer_names: false,
        };
        let tcp = tokio::net::TcpListener::bind(listen).await.unwrap();
        let peer = join(&app, opts, tcp, stop.clone()).await.unwrap();
        app.set_cluster(peer);
        apps.push(app);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while apps.iter().any(|a| a.cluster().unwrap().members().len() < 3) {
        assert!(Instant::now() < deadline, "the cluster did not form");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rk = ReceiverKey {
        group_name: "team-pager".into(),
        integration: "webhook".into(),
        idx: 0,
    };
    let mut lat = Vec::with_capacity(ENTRIES);
    for i in 0..ENTRIES {
        let group = format!("{{}}/{{severity=\"page\"}}:{{alertname=\"Alert{i}\", cluster=\"eu-1\"}}");
        let start = Instant::now();
        apps[0].state.log(
            &group,
            &rk,
            vec![i as u64, 7, 9],
            vec![],
            Default::default(),
            apps[0].clock.now(),
            Duration::from_secs(7200),
            Duration::from_secs(7200),
        );
        let give_up = start + Duration::from_secs(5);
        while apps[1..].iter().any(|a| a.state.nflog().query(&group, &rk).is_none()) {
            assert!(Instant::now() < give_up, "entry {i} never arrived");
            tokio::task::yield_now().await;
        }
        lat.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "nflog entry visible on both peers: n={} p50={:?} p99={:?} max={:?}",
        lat.len(),
        q(0.5),
        q(0.99),
        lat[lat.len() - 1]
    );
}
