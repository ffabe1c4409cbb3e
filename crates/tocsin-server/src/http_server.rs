//! The HTTP server's accept loop: HTTP/1.1 connections served by hyper with a header read
//! timeout (a client that sends its headers a byte a second is cut off) and a bound on open
//! connections (those past it are closed at once and counted), and a graceful stop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

/// How long connections still open at shutdown may finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The least time between two warnings about refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The server's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `--web.header-read-timeout`.
    pub header_read_timeout: Duration,
    /// `--web.max-connections`.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` turns true, then lets open requests finish for a
/// bounded time. `refused` counts connections closed for being over the limit. With `tls`
/// (`--web.config.file`), every connection is TLS: its handshake must end within the header
/// read timeout, and the certificates in force at that moment are used.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    refused: Counter,
    mut stop: watch::Receiver<bool>,
    tls: Option<Arc<crate::web_config::WebConfig>>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, typically: wait instead of spinning.
                    warn!(err = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // The watch guard is dropped inside: the future stays Send.
            () = async { let _ = stop.wait_for(|v| *v).await; } => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.inc();
            let now = tokio::time::Instant::now();
            if last_warning.is_none_or(|t| now >= t + REFUSAL_LOG_EVERY) {
                warn!(
                    limit = limits.max_connections,
                    "closed an HTTP connection over --web.max-connections (counted in tocsin_http_connections_refused_total)"
                );
                last_warning = Some(now);
            }
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let Some(acceptor) = tls
            .as_ref()
            .and_then(|w| w.current().tls.as_ref().map(|t| t.acceptor()))
        else {
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(err = %e, "HTTP connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        let (http, watcher, timeout) = (http.clone(), graceful.watcher(), limits.header_read_timeout);
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                    let mut h2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                    h2.timer(TokioTimer::new());
                    if let Err(e) = watcher.watch(h2.serve_connection(TokioIo::new(s), service)).await {
                        debug!(err = %e, "HTTP/2 connection ended with an error");
                    }
                }
                Ok(Ok(s)) => {
                    if let Err(e) = watcher.watch(http.serve_connection(TokioIo::new(s), service)).await {
                        debug!(err = %e, "HTTPS connection ended with an error");
                    }
                }
                Ok(Err(e)) => debug!(err = %e, "TLS handshake on the web port failed"),
                Err(_) => debug!("TLS handshake on the web port timed out"),
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        warn!("HTTP connections still open after the shutdown grace period were dropped");
    }
}
