//! `--web.config.file` against the binary: TLS and basic auth on every endpoint, headers, a
//! reload of the users without a restart, and the real clients Alertmanager users point at it:
//! amtool with `--http.config.file`, Prometheus with `basic_auth` and `tls_config` (each skipped
//! with a reason when not installed; failing under CI=true).

#[path = "../../tocsin-notify/tests/support/skip.rs"]
mod skip;

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use serde_json::Value;

const CONFIG: &str = "route:\n  receiver: blackhole\n  group_wait: 0s\nreceivers:\n- name: blackhole\n";

/// Writes `ca.crt`, `web.crt`, `web.key` (for 127.0.0.1) and `web.yml` with TLS, the users
/// (name, password) hashed with bcrypt, and one extra header.
fn write_files(dir: &Path, users: &[(&str, &str)]) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "web test CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = p.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("web.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("web.key"), key.serialize_pem()).unwrap();
    write_users(dir, users);
}

fn write_users(dir: &Path, users: &[(&str, &str)]) {
    let mut yml = String::from(
        "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n",
    );
    for (u, pw) in users {
        yml += &format!("  {u}: {}\n", bcrypt::hash(pw, 4).unwrap());
    }
    // Written whole, then renamed: a reader never sees half a file.
    std::fs::write(dir.join("web.yml.tmp"), yml).unwrap();
    std::fs::rename(dir.join("web.yml.tmp"), dir.join("web.yml")).unwrap();
}

fn client(dir: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn https(t: &common::Tocsin) -> String {
    t.base.replacen("http://", "https://", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_tls_and_basic_auth_and_users_reload_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("alice", "wonderland")]);
    let web = dir.path().join("web.yml");
    let t = common::start_in(dir.path(), CONFIG, &[&format!("--web.config.file={}", web.display())]);
    let base = https(&t);
    let c = client(dir.path());

    for path in ["/api/v2/status", "/metrics", "/-/healthy", "/-/ready", "/api/v2/alerts"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without credentials");
        assert_eq!(r.headers()["www-authenticate"], "Basic");
        assert_eq!(r.headers()["x-frame-options"], "deny", "headers on refusals too");
        let r = c
            .get(format!("{base}{path}"))
            .basic_auth("alice", Some("not-it"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong password");
        let r = c
            .get(format!("{base}{path}"))
            .basic_auth("alice", Some("wonderland"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} as alice");
        assert_eq!(r.headers()["x-frame-options"], "deny");
        assert_eq!(
            r.version(),
            reqwest::Version::HTTP_2,
            "HTTP/2 negotiated over TLS (http2 defaults to true)"
        );
    }
    let r = c
        .post(format!("{base}/-/reload"))
        .basic_auth("mallory", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an unknown user");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new().get(format!("{}/-/healthy", t.base)).send().await;
    assert!(plain.map_or(true, |r| !r.status().is_success()));

    // The users change on disk: bob works and alice does not, without a restart.
    write_users(dir.path(), &[("bob", "builder")]);
    common::wait_for_async("bob to be let in", async || {
        c.get(format!("{base}/api/v2/status"))
            .basic_auth("bob", Some("builder"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let r = c
        .get(format!("{base}/api/v2/status"))
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A broken file keeps the one in force (and says so in the log).
    std::fs::write(&web, "basic_auth_users:\n  eve: not-a-hash\n").unwrap();
    // (The file is looked at when requests arrive.)
    common::wait_for_async("the broken file to be reported", async || {
        let _ = c.get(format!("{base}/-/healthy")).send().await;
        t.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("cannot be loaded; the previous one stays in force"))
    })
    .await;
    let r = c
        .get(format!("{base}/api/v2/status"))
        .basic_auth("bob", Some("builder"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_false_keeps_tls_clients_on_http1() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[]);
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\nhttp_server_config:\n  http2: false\n",
    )
    .unwrap();
    let t = common::start_in(dir.path(), CONFIG, &[&format!("--web.config.file={}", web.display())]);
    let r = client(dir.path())
        .get(format!("{}/-/healthy", https(&t)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "no users: no basic auth");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

#[test]
fn a_bad_web_config_file_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("am.yml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("web.yml"), "basic_auth_users:\n  bob: plaintext\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--cluster.listen-address=")
        .arg(format!("--web.config.file={}", dir.path().join("web.yml").display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("basic_auth_users: \\\"bob\\\": not a bcrypt hash")
            || err.contains("basic_auth_users: \"bob\": not a bcrypt hash"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_with_an_http_config_file_creates_and_expires_a_silence() {
    if Command::new("amtool").arg("--version").output().is_err() {
        skip::skip("amtool not found (Debian package prometheus-alertmanager; .ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("alice", "wonderland")]);
    let t = common::start_in(
        dir.path(),
        CONFIG,
        &[&format!("--web.config.file={}", dir.path().join("web.yml").display())],
    );
    let http = dir.path().join("amtool-http.yml");
    std::fs::write(
        &http,
        format!(
            "basic_auth:\n  username: alice\n  password: wonderland\ntls_config:\n  ca_file: {}\n",
            dir.path().join("ca.crt").display()
        ),
    )
    .unwrap();
    let amtool = |args: &[&str]| {
        let out = Command::new("amtool")
            .arg(format!("--alertmanager.url={}", https(&t)))
            .arg(format!("--http.config.file={}", http.display()))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "amtool {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let id = amtool(&[
        "silence",
        "add",
        "alertname=Maint",
        "--comment=behind basic auth",
        "--duration=1h",
    ]);
    assert_eq!(id.len(), 36, "a silence id: {id}");
    assert_eq!(amtool(&["silence", "query", "-q"]), id);
    amtool(&["silence", "expire", &id]);
    assert_eq!(amtool(&["silence", "query", "-q"]), "");
    // Without the http config file, amtool is refused.
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={}", https(&t)))
        .args(["silence", "query"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_with_basic_auth_and_tls_delivers_alerts() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        skip::skip("prometheus not found (Debian package prometheus; .ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("prom", "etheus")]);
    let t = common::start_in(
        dir.path(),
        CONFIG,
        &[&format!("--web.config.file={}", dir.path().join("web.yml").display())],
    );
    let _prometheus = common::start_prometheus(&format!(
        "  alertmanagers:\n  - scheme: https\n    basic_auth:\n      username: prom\n      password: etheus\n    tls_config:\n      ca_file: {}\n    static_configs:\n    - targets: ['{}']\n",
        dir.path().join("ca.crt").display(),
        t.base.trim_start_matches("http://"),
    ));
    let c = client(dir.path());
    let base = https(&t);
    common::wait_for_async("Prometheus' alert on tocsin", async || {
        let Ok(r) = c
            .get(format!("{base}/api/v2/alerts"))
            .basic_auth("prom", Some("etheus"))
            .send()
            .await
        else {
            return false;
        };
        let alerts: Value = r.json().await.unwrap_or_default();
        alerts
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == "AlwaysFiring"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_never_completes_a_request_is_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("alice", "wonderland")]);
    let web = dir.path().join("web.yml");
    let t = common::start_in(
        dir.path(),
        CONFIG,
        &[
            &format!("--web.config.file={}", web.display()),
            "--web.header-read-timeout=1s",
        ],
    );
    // A raw HTTP/2 client: TLS with ALPN h2, the preface and SETTINGS, then a HEADERS frame a
    // byte every 300 ms (hyper's HTTP/2 server has no header read timeout of its own).
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(dir.path().join("ca.crt")).unwrap())
        .unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let addr = t.base.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut slow = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(slow.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    slow.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // A HEADERS frame of 64 bytes on stream 1 whose block never finishes arriving.
    let frame = [&[0u8, 0, 64, 1, 4, 0, 0, 0, 1][..], &[0x82u8; 55][..]].concat();
    let (mut rd, mut wr) = tokio::io::split(slow);
    let trickle = tokio::spawn(async move {
        for b in frame {
            if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    // Meanwhile another client is served.
    let r = client(dir.path())
        .get(format!("{}/-/healthy", https(&t)))
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The slow connection is closed (after the server's SETTINGS and GOAWAY frames) within the
    // timeout and the one after it that a close may take; before, it stayed open for as long
    // as the client trickled.
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection was still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        started.elapsed()
    );
    trickle.abort();
}
