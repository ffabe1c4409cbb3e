//! `--cluster.tls-config`: two replicas on real sockets with certificates made by rcgen. They
//! gossip and replicate over mutual TLS (nothing on UDP); an outsider without a certificate of
//! the cluster's CA is refused; rotated files are used for new connections without a restart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use serde_json::{Value, json};
use tocsin_cluster::replication::Replicator;
use tocsin_cluster::tls::{ClientAuth, ClientSettings, ClusterTls, ServerSettings, Settings};
use tocsin_proto::cluster::Part;
use tocsin_server::flags::Flags;
use tocsin_server::{Listeners, run_with};

mod common;

const CONFIG: &str = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n";

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (a certificate for the name `tocsin` and
    /// 127.0.0.1, usable both ways) into `dir`.
    fn write(&self, dir: &Path) {
        self.write_for(dir, "tocsin");
    }

    /// The same with a certificate for the DNS names `tocsin` and `name`.
    fn write_for(&self, dir: &Path, name: &str) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["tocsin".to_string(), name.to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.0).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.crt"), self.0.pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    }
}

/// The file deploy/ ships (server_name "tocsin", files beside it): the test proves it works.
const TLS_YAML: &str = include_str!("../../../deploy/cluster-tls.yml");

fn settings(dir: &Path) -> Settings {
    Settings {
        server: ServerSettings {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            client_ca_file: Some(dir.join("ca.crt")),
            client_auth: ClientAuth::RequireAndVerify,
            min_version: None,
            max_version: None,
        },
        client: ClientSettings {
            ca_file: dir.join("ca.crt"),
            cert_file: Some(dir.join("tls.crt")),
            key_file: Some(dir.join("tls.key")),
            server_name: None,
            min_version: None,
            max_version: None,
        },
    }
}

struct Replica {
    base: String,
    cluster: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: &Path, name: &str, cluster: tokio::net::TcpListener, peer: SocketAddr) -> Replica {
    std::fs::write(dir.join("alertmanager.yml"), CONFIG).unwrap();
    std::fs::write(dir.join("tls.yml"), TLS_YAML).unwrap();
    let addr = cluster.local_addr().unwrap();
    let flags = Flags::parse_from([
        "tocsin".to_string(),
        format!("--config.file={}", dir.join("alertmanager.yml").display()),
        format!("--storage.path={}", dir.join("data").display()),
        format!("--cluster.listen-address={addr}"),
        format!("--cluster.peer={peer}"),
        format!("--cluster.peer-name={name}"),
        format!("--cluster.tls-config={}", dir.join("tls.yml").display()),
        "--cluster.gossip-interval=100ms".into(),
        "--cluster.pushpull-interval=2s".into(),
        "--cluster.settle-timeout=2s".into(),
    ]);
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", web.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel();
    let listeners = Listeners {
        web,
        cluster: Some(cluster),
    };
    let run = tokio::spawn(run_with(flags, listeners, async {
        let _ = rx.await;
    }));
    Replica {
        base,
        cluster: addr,
        stop,
        run,
    }
}

async fn peers(c: &reqwest::Client, base: &str) -> usize {
    let Ok(r) = c.get(format!("{base}/api/v2/status")).send().await else {
        return 0;
    };
    let status: Value = r.json().await.unwrap_or_default();
    status["cluster"]["peers"].as_array().map_or(0, Vec::len)
}

async fn wait_async(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pushes one junk record to `to` as an outsider would: `Ok` when the connection was accepted.
async fn outsider_push(tls: Option<Arc<ClusterTls>>, to: SocketAddr) -> Result<u32, String> {
    let r = Replicator::new("outsider");
    let r = match tls {
        Some(t) => r.with_tls(t),
        None => r,
    };
    r.push(
        &to.to_string(),
        vec![Part {
            key: "zzz".into(),
            data: vec![1, 2, 3],
        }],
    )
    .await
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn webhook_config(url: &str) -> String {
    format!(
        "route:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1m\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {url}/hook\n"
    )
}

/// Starts the binary as a clustered replica with `--cluster.tls-config` from `dir`.
fn start_binary(dir: &Path, name: &str, me: SocketAddr, peers: &[SocketAddr], sink: &str) -> common::Tocsin {
    std::fs::write(dir.join("tls.yml"), TLS_YAML).unwrap();
    let mut args = vec![
        format!("--cluster.listen-address={me}"),
        format!("--cluster.peer-name={name}"),
        format!("--cluster.tls-config={}", dir.join("tls.yml").display()),
        "--cluster.gossip-interval=100ms".into(),
        "--cluster.pushpull-interval=5s".into(),
        "--cluster.settle-timeout=2s".into(),
        "--cluster.peer-timeout=2s".into(),
    ];
    args.extend(peers.iter().map(|p| format!("--cluster.peer={p}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::start_in(dir, &webhook_config(sink), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_binaries_over_mutual_tls_notify_once_and_a_foreign_ca_never_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, url) = common::start_sink().await;
    let ca = Ca::new("tocsin cluster CA");
    let addrs = [free_port(), free_port(), free_port()];
    let mut replicas = Vec::new();
    for (i, me) in addrs.iter().enumerate() {
        let dir = tmp.path().join(format!("r{i}"));
        ca.write(&dir);
        let peers: Vec<SocketAddr> = addrs.iter().filter(|a| *a != me).copied().collect();
        replicas.push(start_binary(&dir, &format!("r{i}"), *me, &peers, &url));
    }
    // A fourth replica whose certificates come from another CA, pointed at the cluster.
    let foreign_dir = tmp.path().join("foreign");
    Ca::new("another CA").write(&foreign_dir);
    let foreign = start_binary(&foreign_dir, "r3", free_port(), &addrs, &url);
    let c = reqwest::Client::new();
    wait_async("three members on every replica", async || {
        let mut ok = true;
        for r in &replicas {
            ok &= peers(&c, &r.base).await == 3;
        }
        ok
    })
    .await;
    let alert = json!([{"labels": {"alertname": "OverTls"}}]);
    for r in &replicas {
        let resp = c
            .post(format!("{}/api/v2/alerts", r.base))
            .json(&alert)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    common::wait_for("one notification", || {
        (!sink.got.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    // The two replicas that did not send each decided so (the next flush is a minute away).
    wait_async("two replicas to find the group notified", async || {
        let mut quiet = 0;
        for r in &replicas {
            quiet += usize::from(common::metric(&c, &r.base, common::DEDUPLICATED).await >= 1.0);
        }
        quiet >= 2
    })
    .await;
    assert_eq!(sink.got.lock().unwrap().len(), 1, "exactly one notification");
    // The foreign replica never joined: by now it has tried for seconds, and neither side
    // lists the other; its handshakes were refused (metric and log).
    assert_eq!(
        peers(&c, &foreign.base).await,
        1,
        "the foreign replica sees only itself"
    );
    for r in &replicas {
        assert_eq!(peers(&c, &r.base).await, 3);
    }
    let mut refused = 0.0;
    for r in &replicas {
        refused += common::metric(&c, &r.base, "tocsin_cluster_tls_handshakes_refused_total").await;
    }
    assert!(refused >= 1.0, "the foreign replica's handshakes are counted");
    let warned = replicas.iter().any(|r| {
        r.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("cluster port: TLS handshakes refused"))
    });
    assert!(warned, "a refused handshake is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_gossip_and_replicate_over_mutual_tls_and_refuse_outsiders() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let ca = Ca::new("tocsin cluster CA");
    ca.write(&da);
    ca.write(&db);
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (aa, ab) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = start(&da, "a", la, ab).await;
    let b = start(&db, "b", lb, aa).await;
    let c = reqwest::Client::new();

    // Membership travels by gossip over TLS: each replica lists both.
    wait_async("both replicas to list two members", async || {
        peers(&c, &a.base).await == 2 && peers(&c, &b.base).await == 2
    })
    .await;
    // Nothing of Tocsin listens on UDP at the cluster port: this test can bind it.
    std::net::UdpSocket::bind(a.cluster).expect("the cluster port's UDP side is free: gossip does not use it");

    // A silence created on a reaches b over the replication connection.
    let silence = json!({
        "matchers": [{"name": "alertname", "value": "Maintenance", "isRegex": false, "isEqual": true}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "tls test",
        "comment": "over mutual TLS",
    });
    let r = c
        .post(format!("{}/api/v2/silences", a.base))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_async("the silence on b", async || {
        let s: Value = common::get_json(&c, format!("{}/api/v2/silences", b.base)).await;
        s.as_array()
            .is_some_and(|v| v.iter().any(|s| s["comment"] == "over mutual TLS"))
    })
    .await;

    // Outsiders: plaintext, and TLS with a certificate of another CA, are refused; a member's
    // certificate is accepted.
    let refused_before = common::metric(&c, &a.base, "tocsin_cluster_tls_handshakes_refused_total").await;
    let err = outsider_push(None, a.cluster).await.unwrap_err();
    assert!(err.contains("push to"), "{err}");
    let stranger = tmp.path().join("stranger");
    Ca::new("another CA").write(&stranger);
    let mut st = settings(&stranger);
    // The stranger trusts a's CA (to get as far as presenting its own certificate).
    st.client.ca_file = da.join("ca.crt");
    let strange_tls = ClusterTls::load(&st).unwrap();
    assert!(outsider_push(Some(strange_tls), a.cluster).await.is_err());
    common::wait_metric(
        &c,
        &a.base,
        "tocsin_cluster_tls_handshakes_refused_total",
        refused_before + 2.0,
    )
    .await;
    let member_tls = ClusterTls::load(&settings(&db)).unwrap();
    assert_eq!(outsider_push(Some(member_tls), a.cluster).await, Ok(0));

    // Rotation: a moves to a new CA by rewriting its files; new connections use them. A client
    // of the old CA is then refused, one of the new CA accepted, without a restart.
    let next = Ca::new("next cluster CA");
    next.write(&da);
    let fresh = tmp.path().join("fresh");
    next.write(&fresh);
    let fresh_tls = ClusterTls::load(&settings(&fresh)).unwrap();
    wait_async("a to accept a certificate of the new CA", async || {
        outsider_push(Some(fresh_tls.clone()), a.cluster).await.is_ok()
    })
    .await;
    let old_tls = ClusterTls::load(&settings(&db)).unwrap();
    assert!(
        outsider_push(Some(old_tls), a.cluster).await.is_err(),
        "a certificate of the old CA is refused after the rotation"
    );

    for r in [a, b] {
        r.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), r.run)
            .await
            .expect("stopped within 10 s")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_peer_names_a_member_pushes_only_in_its_own_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, url) = common::start_sink().await;
    let _ = sink;
    let ca = Ca::new("tocsin cluster CA");
    let addrs = [free_port(), free_port()];
    let mut replicas = Vec::new();
    for (i, me) in addrs.iter().enumerate() {
        let dir = tmp.path().join(format!("r{i}"));
        ca.write_for(&dir, &format!("r{i}"));
        std::fs::write(dir.join("tls.yml"), TLS_YAML).unwrap();
        let peer = addrs[1 - i];
        let args = [
            format!("--cluster.listen-address={me}"),
            format!("--cluster.peer-name=r{i}"),
            format!("--cluster.peer={peer}"),
            format!("--cluster.tls-config={}", dir.join("tls.yml").display()),
            "--cluster.tls-peer-names".into(),
            "--cluster.gossip-interval=100ms".into(),
            "--cluster.settle-timeout=2s".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        replicas.push(common::start_in(&dir, &webhook_config(&url), &args));
    }
    let c = reqwest::Client::new();
    wait_async("two members", async || {
        peers(&c, &replicas[0].base).await == 2 && peers(&c, &replicas[1].base).await == 2
    })
    .await;
    // r0's own certificate: pushing as r0 is accepted, as r1 refused.
    let r0_tls = ClusterTls::load(&settings(&tmp.path().join("r0"))).unwrap();
    let as_r0 = Replicator::new("r0").with_tls(r0_tls.clone());
    let junk = || {
        vec![Part {
            key: "zzz".into(),
            data: vec![1],
        }]
    };
    assert_eq!(as_r0.push(&addrs[1].to_string(), junk()).await, Ok(0));
    let as_r1 = Replicator::new("r1").with_tls(r0_tls);
    let err = as_r1.push(&addrs[1].to_string(), junk()).await.unwrap_err();
    assert!(err.contains("the peer's certificate is not for \"r1\""), "{err}");
    // A claim in another member's name, pushed by r0: refused and counted.
    let claim = tocsin_proto::cluster::Claim {
        group_key: "{}:{}".into(),
        group_name: "hook".into(),
        integration: "webhook".into(),
        idx: 0,
        sender: "r1".into(),
        created_ms: jiff::Timestamp::now().as_millisecond(),
        deadline_ms: jiff::Timestamp::now().as_millisecond() + 60_000,
        released: false,
        generation: 1,
    };
    let part = Part {
        key: "clm".into(),
        data: tocsin_proto::Message::encode_to_vec(&claim),
    };
    assert_eq!(as_r0.push(&addrs[1].to_string(), vec![part]).await, Ok(0));
    let base = &replicas[1].base;
    common::wait_metric(
        &c,
        base,
        "tocsin_cluster_records_refused_total{state=\"claims\",reason=\"wrong_sender\"}",
        1.0,
    )
    .await;
    assert_eq!(
        common::metric(&c, base, "tocsin_cluster_pushes_refused_total").await,
        1.0
    );
}

#[test]
fn peer_names_refuse_a_certificate_that_is_not_for_the_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    Ca::new("ca").write_for(dir, "r0");
    std::fs::write(dir.join("tls.yml"), TLS_YAML).unwrap();
    std::fs::write(dir.join("am.yml"), CONFIG).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg(format!("--config.file={}", dir.join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--cluster.listen-address=127.0.0.1:0")
        .arg("--cluster.peer-name=r7")
        .arg(format!("--cluster.tls-config={}", dir.join("tls.yml").display()))
        .arg("--cluster.tls-peer-names")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not a certificate for") && err.contains("r7"), "{err}");
}
