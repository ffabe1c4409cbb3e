//! The HTTP server's accept loop: HTTP/1.1 connections served by hyper with a header read
//! timeout (a client that sends its headers a byte a second is cut off) and a bound on open
//! connections (those past it are closed at once and counted), and a graceful stop. HTTP/2
//! (over TLS, by ALPN) has no header read timeout in hyper: a connection with no request in
//! flight for that long is closed instead (GOAWAY, then dropped one timeout later), which is
//! what HTTP/1.1's timeout does to an idle keep-alive connection.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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
        let stop = stop.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                    serve_h2(TokioIo::new(s), service, timeout, stop).await;
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
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    // HTTP/2 connections close themselves on `stop`; every connection holds a slot.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let finished = tokio::time::timeout_at(deadline, async {
        graceful.shutdown().await;
        let _ = slots.acquire_many(all).await;
    });
    if finished.await.is_err() {
        warn!("HTTP connections still open after the shutdown grace period were dropped");
    }
}

/// What an HTTP/2 connection is doing: its requests in flight (until their response body is
/// done) and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<tokio::time::Instant>,
}

impl Activity {
    fn idle_since(&self) -> tokio::time::Instant {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request in flight on an HTTP/2 connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The time first: a watchdog that sees no request in flight sees when the last ended.
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until it is done or dropped.
struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one HTTP/2 connection: closed gracefully (GOAWAY: requests in flight finish) once it
/// has had no request in flight for `timeout`, or on `stop`, and dropped if it has not ended
/// one `timeout` (or the shutdown grace) after that.
async fn serve_h2<I>(io: I, service: TowerToHyperService<Router>, timeout: Duration, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        idle_since: Mutex::new(tokio::time::Instant::now()),
    });
    let a = activity.clone();
    let tracked = hyper::service::service_fn(move |req| {
        let busy = Busy::new(&a);
        let call = hyper::service::Service::call(&service, req);
        async move {
            let resp = call.await?;
            Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, _busy: busy }))
        }
    });
    let mut h2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    h2.timer(TokioTimer::new());
    let conn = h2.serve_connection(io, tracked);
    tokio::pin!(conn);
    let mut hard_stop: Option<tokio::time::Instant> = None;
    loop {
        let idle_check = if activity.in_flight.load(Ordering::SeqCst) == 0 {
            activity.idle_since() + timeout
        } else {
            tokio::time::Instant::now() + timeout
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(err = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_check), if hard_stop.is_none() => {
                let idle = activity.in_flight.load(Ordering::SeqCst) == 0
                    && activity.idle_since() + timeout <= tokio::time::Instant::now();
                if idle {
                    debug!(?timeout, "HTTP/2 connection without a request for the header read timeout: closing it");
                    conn.as_mut().graceful_shutdown();
                    hard_stop = Some(tokio::time::Instant::now() + timeout);
                }
            }
            _ = stop.wait_for(|v| *v), if hard_stop.is_none() => {
                conn.as_mut().graceful_shutdown();
                hard_stop = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            () = async { tokio::time::sleep_until(hard_stop.unwrap_or_else(tokio::time::Instant::now)).await }, if hard_stop.is_some() => {
                debug!("HTTP/2 connection still open after its close was asked: dropped");
                return;
            }
        }
    }
}
