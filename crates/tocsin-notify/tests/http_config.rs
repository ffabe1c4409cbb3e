//! `http_config` against real servers on 127.0.0.1: a private CA, mutual TLS, skipping
//! verification, redirects and a proxy. Certificates are generated per run.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tocsin_core::alert::Alert;
use tocsin_core::config::{HttpClientConfig, SecretSource, TlsConfig, WebhookConfig};
use tocsin_core::nflog::NotifyReason;
use tocsin_notify::webhook::Webhook;
use tocsin_notify::{Notifier, NotifyData};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn pki() -> Pki {
    pki_for(vec!["localhost".to_string(), "127.0.0.1".to_string()])
}

/// A private CA and a server certificate for `names`.
fn pki_for(names: Vec<String>) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(names)
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_chain: vec![server.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        dir,
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Reads one HTTP/1.1 request, records its request line, answers with `response`.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: Seen, respond: impl Fn(&str) -> String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let line = text.lines().next().unwrap().to_string();
                let authorized = text[..end].to_ascii_lowercase().contains("\r\nauthorization:");
                let body = if len > 0 { " with body" } else { "" };
                let auth = if authorized { " with authorization" } else { "" };
                // Custom headers (`X-…`), as sent.
                let custom: String = text[..end]
                    .lines()
                    .filter(|l| l.to_ascii_lowercase().starts_with("x-"))
                    .map(|l| format!(" with {}", l.to_ascii_lowercase()))
                    .collect();
                seen.lock().unwrap().push(format!("{line}{body}{auth}{custom}"));
                let _ = s.write_all(respond(&line).as_bytes()).await;
                let _ = s.shutdown().await;
                return;
            }
        }
    }
}

fn ok_response(_: &str) -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
}

async fn tls_server(pki: &Pki, require_client_cert: bool) -> (SocketAddr, Seen) {
    let builder = rustls::ServerConfig::builder();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let cfg = builder
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_one(tls, s, ok_response).await;
                }
            });
        }
    });
    (addr, seen)
}

async fn plain_server(respond: fn(&str) -> String) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_plain(listener, Seen::default(), respond)
}

fn serve_plain(
    listener: TcpListener,
    seen: Seen,
    respond: impl Fn(&str) -> String + Clone + Send + 'static,
) -> (SocketAddr, Seen) {
    let addr = listener.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_one(tcp, s.clone(), respond.clone()));
        }
    });
    (addr, seen)
}

fn webhook(url: String, http: HttpClientConfig) -> Webhook {
    let conf = WebhookConfig {
        send_resolved: true,
        url: SecretSource::Inline(url),
        http,
        max_alerts: 0,
        timeout: None,
        payload: None,
    };
    Webhook::new(conf, "Tocsin/test").unwrap()
}

fn data() -> NotifyData {
    NotifyData {
        receiver: "r".into(),
        group_key: "{}:{}".into(),
        group_labels: Default::default(),
        reason: NotifyReason::FirstNotification,
        external_url: "http://tocsin.test".into(),
        route_labels: Default::default(),
        alerts: vec![Alert {
            labels: [("alertname".to_string(), "x".to_string())].into(),
            ..Alert::default()
        }],
        receiver_data: Default::default(),
    }
}

fn tls(f: impl FnOnce(&mut TlsConfig)) -> HttpClientConfig {
    let mut http = HttpClientConfig::default();
    f(&mut http.tls);
    http
}

#[tokio::test]
async fn ca_file_trusts_a_private_ca_and_nothing_else_does() {
    let pki = pki();
    let (addr, seen) = tls_server(&pki, false).await;
    let url = format!("https://127.0.0.1:{}/hook", addr.port());
    let trusted = webhook(url.clone(), tls(|t| t.ca_file = Some(pki.path("ca.pem"))));
    trusted.notify(&data()).await.unwrap();
    let inline = webhook(url.clone(), tls(|t| t.ca = Some(pki.ca_pem.clone())));
    inline.notify(&data()).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["POST /hook HTTP/1.1 with body", "POST /hook HTTP/1.1 with body"]
    );
    // Without the CA the certificate is not trusted; that is a transport error, retried.
    let err = webhook(url.clone(), HttpClientConfig::default())
        .notify(&data())
        .await
        .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert!(err.message.starts_with("webhook request failed"), "{}", err.message);
    // insecure_skip_verify accepts it anyway.
    webhook(url, tls(|t| t.insecure_skip_verify = true))
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn client_certificate_is_presented_for_mutual_tls() {
    let pki = pki();
    let (addr, seen) = tls_server(&pki, true).await;
    let url = format!("https://127.0.0.1:{}/mtls", addr.port());
    let with_cert = webhook(
        url.clone(),
        tls(|t| {
            t.ca_file = Some(pki.path("ca.pem"));
            t.cert_file = Some(pki.path("client.pem"));
            t.key = Some(SecretSource::File(pki.path("client.key")));
        }),
    );
    with_cert.notify(&data()).await.unwrap();
    assert_eq!(seen.lock().unwrap().clone(), ["POST /mtls HTTP/1.1 with body"]);
    let without = webhook(url, tls(|t| t.ca_file = Some(pki.path("ca.pem"))));
    assert!(without.notify(&data()).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unreadable_ca_file_is_reported_when_the_client_is_built() {
    let conf = WebhookConfig {
        send_resolved: true,
        url: SecretSource::Inline("https://127.0.0.1:1/".into()),
        http: tls(|t| t.ca_file = Some("/nonexistent/ca.pem".into())),
        max_alerts: 0,
        timeout: None,
        payload: None,
    };
    let err = Webhook::new(conf, "Tocsin/test").err().unwrap();
    assert!(err.starts_with("unable to read /nonexistent/ca.pem"), "{err}");
}

fn redirecting(line: &str) -> String {
    if line.starts_with("POST /old") {
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: /new\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
    } else {
        ok_response(line)
    }
}

#[tokio::test]
async fn redirects_are_followed_only_when_allowed() {
    let (addr, seen) = plain_server(redirecting).await;
    let url = format!("http://127.0.0.1:{}/old", addr.port());
    webhook(url.clone(), HttpClientConfig::default())
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["POST /old HTTP/1.1 with body", "POST /new HTTP/1.1 with body"]
    );
    let no_follow = HttpClientConfig {
        follow_redirects: false,
        ..HttpClientConfig::default()
    };
    let err = webhook(url, no_follow).notify(&data()).await.unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.starts_with("unexpected status code 307"), "{}", err.message);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn proxy_url_sends_requests_through_the_proxy() {
    let (proxy, seen) = plain_server(ok_response).await;
    let http = HttpClientConfig {
        proxy_url: Some(format!("http://127.0.0.1:{}", proxy.port())),
        ..Default::default()
    };
    webhook("http://hook.internal.test/alerts".into(), http)
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["POST http://hook.internal.test/alerts HTTP/1.1 with body"]
    );
}

#[tokio::test]
async fn see_other_continues_with_a_get_and_credentials_stay_on_their_host() {
    // Both on 127.0.0.1; a different port is another origin for credentials, as in Go.
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = other.local_addr().unwrap().port();
    let (addr, seen) = serve_plain(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Seen::default(),
        move |line: &str| {
            let to = if line.starts_with("POST /see-other") {
                "/same-host"
            } else if line.starts_with("GET /same-host") {
                &format!("http://127.0.0.1:{other_port}/elsewhere")
            } else {
                return ok_response(line);
            };
            format!("HTTP/1.1 303 See Other\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n")
        },
    );
    let (_, seen_other) = serve_plain(other, Seen::default(), ok_response);
    let http = HttpClientConfig {
        authorization: Some(("Bearer".into(), SecretSource::Inline("s3cret".into()))),
        ..Default::default()
    };
    webhook(format!("http://127.0.0.1:{}/see-other", addr.port()), http)
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            "POST /see-other HTTP/1.1 with body with authorization",
            "GET /same-host HTTP/1.1 with authorization"
        ]
    );
    assert_eq!(seen_other.lock().unwrap().clone(), ["GET /elsewhere HTTP/1.1"]);
}

#[tokio::test]
async fn endless_redirects_stop_after_ten() {
    let (addr, seen) =
        plain_server(|_| "HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\n\r\n".to_string()).await;
    let err = webhook(
        format!("http://127.0.0.1:{}/again", addr.port()),
        HttpClientConfig::default(),
    )
    .notify(&data())
    .await
    .unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.message, "webhook request failed: stopped after 10 redirects");
    assert_eq!(seen.lock().unwrap().len(), 11);
}

#[tokio::test]
async fn http_headers_are_sent_on_both_paths_with_files_read_at_each_send() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("org.txt");
    std::fs::write(&file, "from-file\n").unwrap();
    let mut http = HttpClientConfig {
        headers: vec![(
            "X-Scope-OrgID".into(),
            vec![SecretSource::Inline("team-a".into()), SecretSource::File(file.clone())],
        )],
        ..HttpClientConfig::default()
    };
    // Plain HTTP: the hand-written client.
    let (addr, seen) = plain_server(ok_response).await;
    webhook(format!("http://127.0.0.1:{}/hook", addr.port()), http.clone())
        .notify(&data())
        .await
        .unwrap();
    std::fs::write(&file, "rotated").unwrap();
    webhook(format!("http://127.0.0.1:{}/hook", addr.port()), http.clone())
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            "POST /hook HTTP/1.1 with body with x-scope-orgid: team-a with x-scope-orgid: from-file",
            "POST /hook HTTP/1.1 with body with x-scope-orgid: team-a with x-scope-orgid: rotated",
        ]
    );
    // HTTPS: reqwest.
    let pki = pki();
    let (addr, seen) = tls_server(&pki, false).await;
    http.tls.ca_file = Some(pki.path("ca.pem"));
    webhook(format!("https://127.0.0.1:{}/hook", addr.port()), http)
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["POST /hook HTTP/1.1 with body with x-scope-orgid: team-a with x-scope-orgid: rotated"]
    );
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy_and_proxy_connect_header_reaches_it() {
    let (proxy, via_proxy) = plain_server(ok_response).await;
    let (target, direct) = plain_server(ok_response).await;
    let http = HttpClientConfig {
        proxy_url: Some(format!("http://127.0.0.1:{}", proxy.port())),
        no_proxy: Some("127.0.0.1".into()),
        proxy_connect_headers: vec![("X-Proxy-Token".into(), "t0k".into())],
        ..Default::default()
    };
    webhook(format!("http://127.0.0.1:{}/hook", target.port()), http.clone())
        .notify(&data())
        .await
        .unwrap();
    assert_eq!(direct.lock().unwrap().clone(), ["POST /hook HTTP/1.1 with body"]);
    assert!(via_proxy.lock().unwrap().is_empty(), "no_proxy host went direct");
    // An HTTPS target elsewhere goes through the proxy with a CONNECT carrying the header (the
    // stand-in proxy then answers nonsense, so the send itself fails).
    let _ = webhook("https://hook.internal.test/alerts".into(), http)
        .notify(&data())
        .await;
    let seen = via_proxy.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["CONNECT hook.internal.test:443 HTTP/1.1 with x-proxy-token: t0k"],
        "{seen:?}"
    );
}

fn token_or_ok(line: &str) -> String {
    if line.starts_with("POST /token") {
        let body = r#"{"access_token":"abc","token_type":"bearer","expires_in":3600}"#;
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    } else if line.starts_with("POST /huge") {
        let body = format!(r#"{{"access_token":"{}"}}"#, "x".repeat(100_000));
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    } else if line.starts_with("POST /denied") {
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: 14\r\nconnection: close\r\n\r\ninvalid_client".to_string()
    } else {
        ok_response(line)
    }
}

#[tokio::test]
async fn oauth2_fetches_a_token_once_and_sends_it() {
    let (addr, seen) = plain_server(token_or_ok).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let oauth = |path: &str| tocsin_core::config::OAuth2Config {
        client_id: "tocsin".into(),
        client_secret: SecretSource::File(dir.path().join("secret")),
        scopes: vec!["alerts".into(), "write".into()],
        token_url: format!("http://127.0.0.1:{}/{path}", addr.port()),
        endpoint_params: [("audience".to_string(), "hooks".to_string())].into(),
    };
    let hook = webhook(
        format!("http://127.0.0.1:{}/hook", addr.port()),
        HttpClientConfig {
            oauth2: Some(oauth("token")),
            ..Default::default()
        },
    );
    hook.notify(&data()).await.unwrap();
    hook.notify(&data()).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            "POST /token HTTP/1.1 with body with authorization",
            "POST /hook HTTP/1.1 with body with authorization",
            "POST /hook HTTP/1.1 with body with authorization",
        ],
        "one token request, then the cached token on every send"
    );
    // A token endpoint that refuses the client: a final authError naming it.
    let refused = webhook(
        format!("http://127.0.0.1:{}/hook", addr.port()),
        HttpClientConfig {
            oauth2: Some(oauth("denied")),
            ..Default::default()
        },
    );
    let err = refused.notify(&data()).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.reason, tocsin_notify::FailureReason::AuthError);
    assert!(
        err.message
            .contains("oauth2: token endpoint answered 401: invalid_client"),
        "{}",
        err.message
    );
    // A huge answer is not read whole.
    let huge = webhook(
        format!("http://127.0.0.1:{}/hook", addr.port()),
        HttpClientConfig {
            oauth2: Some(oauth("huge")),
            ..Default::default()
        },
    );
    let err = huge.notify(&data()).await.unwrap_err();
    assert!(
        err.message.contains("token response larger than 65536 bytes"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn server_name_verifies_the_certificate_against_that_name() {
    // The receiver is reached by address, its certificate names only hook.internal.test.
    let pki = pki_for(vec!["hook.internal.test".to_string()]);
    let (addr, seen) = tls_server(&pki, false).await;
    let url = format!("https://127.0.0.1:{}/hook", addr.port());
    let named = webhook(
        url.clone(),
        tls(|t| {
            t.ca_file = Some(pki.path("ca.pem"));
            t.server_name = Some("hook.internal.test".into());
        }),
    );
    named.notify(&data()).await.unwrap();
    assert_eq!(seen.lock().unwrap().clone(), ["POST /hook HTTP/1.1 with body"]);
    // Without it the certificate does not match the address: refused.
    let err = webhook(url.clone(), tls(|t| t.ca_file = Some(pki.path("ca.pem"))))
        .notify(&data())
        .await
        .unwrap_err();
    assert!(err.retryable, "{}", err.message);
    // Nor does it match another name.
    let wrong = webhook(
        url,
        tls(|t| {
            t.ca_file = Some(pki.path("ca.pem"));
            t.server_name = Some("other.test".into());
        }),
    );
    assert!(wrong.notify(&data()).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
}
