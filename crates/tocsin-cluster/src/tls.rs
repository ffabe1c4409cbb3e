//! Mutual TLS for the cluster port (`--cluster.tls-config`): the server and client configurations
//! of rustls, built from certificate files and rebuilt when a file changes (certificate rotation
//! without a restart), and the accept loop and connector that put gRPC on top of them. The
//! server half ([`ServerTls`]) also serves the HTTP API's TLS (`--web.config.file`).
//!
//! Files are read when the settings are loaded (a bad file refuses start-up) and looked at again
//! at most once per [`RECHECK`] when a connection is made: a changed file is loaded for the next
//! connections; one that fails to load is reported and the previous configuration kept, so a
//! half-written certificate never takes the cluster down. Established connections keep the
//! certificate they were made with.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How often certificate files are looked at for changes, at most.
pub const RECHECK: Duration = Duration::from_secs(1);
/// The longest a TLS handshake may take, both ways: a peer that connects and sends nothing
/// holds one handshake slot for this long at most.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress on the server at once; connections beyond wait in the kernel's
/// backlog.
pub const MAX_HANDSHAKES: usize = 64;

/// A TLS protocol version, as Alertmanager's `min_version`/`max_version` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// How the server treats client certificates (exporter-toolkit's `client_auth_type`, the values
/// rustls can honour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `RequireAndVerifyClientCert`: mutual TLS.
    RequireAndVerify,
    /// `VerifyClientCertIfGiven`.
    VerifyIfGiven,
    /// `NoClientCert`.
    None,
}

/// The server side (`tls_server_config`).
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// `cert_file`.
    pub cert_file: PathBuf,
    /// `key_file`.
    pub key_file: PathBuf,
    /// `client_ca_file`: required unless `client_auth` is `None`.
    pub client_ca_file: Option<PathBuf>,
    /// `client_auth_type`.
    pub client_auth: ClientAuth,
    /// `min_version` (default TLS 1.2).
    pub min_version: Option<Version>,
    /// `max_version` (default TLS 1.3).
    pub max_version: Option<Version>,
}

/// The client side (`tls_client_config`).
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `ca_file`: the roots peers' server certificates must chain to.
    pub ca_file: PathBuf,
    /// `cert_file`, presented to peers.
    pub cert_file: Option<PathBuf>,
    /// `key_file`.
    pub key_file: Option<PathBuf>,
    /// `server_name`: the name peers' certificates are checked against (else each peer's
    /// address, which its certificate must then carry as an IP SAN).
    pub server_name: Option<String>,
    /// `min_version`.
    pub min_version: Option<Version>,
    /// `max_version`.
    pub max_version: Option<Version>,
}

/// Both sides, as `--cluster.tls-config` describes them.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `tls_server_config`.
    pub server: ServerSettings,
    /// `tls_client_config`.
    pub client: ClientSettings,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn versions(min: Option<Version>, max: Option<Version>) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let (min, max) = (min.unwrap_or(Version::Tls12), max.unwrap_or(Version::Tls13));
    if min > max {
        return Err(format!("min_version {min:?} is above max_version {max:?}"));
    }
    let mut v = Vec::new();
    if min <= Version::Tls12 && max >= Version::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    if max >= Version::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    Ok(v)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Arc::new(store))
}

fn build_server(s: &ServerSettings, alpn: &[&[u8]]) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(s.min_version, s.max_version)?)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (s.client_auth, &s.client_ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
            let v = if auth == ClientAuth::VerifyIfGiven {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("client_ca_file: {e}"))?)
        }
        (_, None) => return Err("tls_server_config: client_ca_file is required to verify client certificates".into()),
    };
    let mut cfg = builder
        .with_single_cert(certs(&s.cert_file)?, key(&s.key_file)?)
        .map_err(|e| format!("tls_server_config: certificate and key: {e}"))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

fn build_client(s: &ClientSettings) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(s.min_version, s.max_version)?)
        .map_err(|e| format!("tls_client_config: {e}"))?
        .with_root_certificates(roots(&s.ca_file)?);
    let mut cfg = match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(|e| format!("tls_client_config: certificate and key: {e}"))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("tls_client_config: cert_file and key_file go together".into()),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A configuration rebuilt when one of its files changes.
struct Reloading<T> {
    files: Vec<PathBuf>,
    what: &'static str,
    build: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    state: Mutex<(Instant, Vec<Option<SystemTime>>, Arc<T>)>,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

impl<T> Reloading<T> {
    fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        build: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    ) -> Result<Self, String> {
        let stamped = stamps(&files);
        let current = Arc::new(build()?);
        Ok(Reloading {
            files,
            what,
            build,
            state: Mutex::new((Instant::now(), stamped, current)),
        })
    }

    fn get(&self) -> Arc<T> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0.elapsed() >= RECHECK {
            st.0 = Instant::now();
            let now = stamps(&self.files);
            if now != st.1 {
                st.1 = now;
                match (self.build)() {
                    Ok(cfg) => {
                        tracing::info!(side = self.what, "cluster TLS certificates reloaded");
                        st.2 = Arc::new(cfg);
                    }
                    Err(e) => {
                        tracing::error!(side = self.what, error = %e, "cluster TLS files changed but cannot be loaded; the previous ones stay in use");
                    }
                }
            }
        }
        st.2.clone()
    }
}

/// A TLS server configuration loaded from files and reloaded when they change.
pub struct ServerTls(Reloading<ServerConfig>);

impl ServerTls {
    /// Loads the certificate, key and client CA, offering `alpn` (e.g. `http/1.1`).
    ///
    /// # Errors
    /// A file is missing or unusable, or the settings contradict each other.
    pub fn load(s: &ServerSettings, alpn: &'static [&'static [u8]]) -> Result<Arc<Self>, String> {
        let sv = s.clone();
        let mut files = vec![sv.cert_file.clone(), sv.key_file.clone()];
        files.extend(sv.client_ca_file.clone());
        Ok(Arc::new(ServerTls(Reloading::new(
            "server",
            files,
            Box::new(move || build_server(&sv, alpn)),
        )?)))
    }

    /// An acceptor with the current configuration (files looked at again at most once per
    /// [`RECHECK`]).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.0.get())
    }
}

/// The cluster's TLS: loaded once, reloaded on file changes.
pub struct ClusterTls {
    server: Arc<ServerTls>,
    client: Reloading<ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Loads every file.
    ///
    /// # Errors
    /// A file is missing or unusable, or the settings contradict each other.
    pub fn load(s: &Settings) -> Result<Arc<Self>, String> {
        if let Some(n) = &s.client.server_name {
            ServerName::try_from(n.clone()).map_err(|e| format!("tls_client_config: server_name {n:?}: {e}"))?;
        }
        let server = ServerTls::load(&s.server, &[b"h2"])?;
        let cl = s.client.clone();
        let mut client_files = vec![cl.ca_file.clone()];
        client_files.extend(cl.cert_file.clone());
        client_files.extend(cl.key_file.clone());
        let client = Reloading::new("client", client_files, Box::new(move || build_client(&cl)))?;
        Ok(Arc::new(ClusterTls {
            server,
            client,
            server_name: s.client.server_name.clone(),
        }))
    }

    /// Opens a TLS connection to a peer at `addr` (`host:port`).
    ///
    /// # Errors
    /// The peer cannot be reached or the handshake failed (its certificate is not trusted).
    pub async fn connect(&self, addr: &str) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(n) => ServerName::try_from(n.clone()),
            None => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(host.to_string())
            }
        }
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        let connector = TlsConnector::from(self.client.get());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            connector.connect(name, tcp).await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: TLS handshake timed out")))?
    }

    /// Accepts TCP connections on `listener` and hands over those whose handshake succeeds;
    /// the rest are dropped (and counted in `refused`). Ends when the receiver is dropped.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> mpsc::Receiver<io::Result<TlsConn>> {
        let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
        let tls = self.clone();
        let warned = Arc::new(RateLimitedWarning::default());
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!(error = %e, "cluster port: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let acceptor = tls.server.acceptor();
                let (tx, refused, warned) = (tx.clone(), refused.clone(), warned.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            drop(permit);
                            let _ = tx.send(Ok(TlsConn { inner: s, peer })).await;
                        }
                        Ok(Err(e)) => {
                            refused.inc();
                            warned.refused(peer, &e.to_string());
                        }
                        Err(_) => {
                            refused.inc();
                            warned.refused(peer, "handshake timed out");
                        }
                    }
                });
            }
        });
        rx
    }
}

/// Refused handshakes logged as a warning at most once per [`WARN_EVERY`], with the count
/// since the last warning: an outsider knocking must be visible without flooding the log.
#[derive(Default)]
struct RateLimitedWarning(Mutex<(Option<Instant>, u64)>);

/// The least time between two warnings about refused handshakes.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

impl RateLimitedWarning {
    fn refused(&self, peer: SocketAddr, error: &str) {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.1 += 1;
        if st.0.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(%peer, error, refused = st.1, "cluster port: TLS handshakes refused (counted in tocsin_cluster_tls_handshakes_refused_total)");
            *st = (Some(Instant::now()), 0);
        } else {
            tracing::debug!(%peer, error, "cluster port: TLS handshake refused");
        }
    }
}

/// A server-side TLS connection, as tonic serves it.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
}

/// Who is on the other end of a TLS connection (in each request's extensions).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The certificate it authenticated with, if any.
    pub cert: Option<CertificateDer<'static>>,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        PeerInfo {
            addr: self.peer,
            cert: self
                .inner
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned()),
        }
    }
}

/// Whether `cert` is valid for the DNS name `name` (a SAN; `--cluster.tls-peer-names`).
pub fn cert_is_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = ServerName::try_from(name.to_string()) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.verify_is_valid_for_subject_name(&server_name).is_ok())
}

/// Whether the first certificate of the PEM file at `path` is valid for the DNS name `name`.
///
/// # Errors
/// The file holds no readable certificate.
pub fn cert_file_is_for(path: &Path, name: &str) -> Result<bool, String> {
    let certs = certs(path)?;
    Ok(cert_is_for(&certs[0], name))
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
