//! HTTP API v2 (§5) and the lifecycle endpoints, with Alertmanager's status codes and bodies.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use tocsin_core::alert::Alert;
use tocsin_core::group::{label_set_order, sort_alerts};
use tocsin_core::labels::{Fingerprint, LabelSet};
use tocsin_core::matchers::{Matcher, all_match, parse_matcher};
use tocsin_core::regex_go;
use tocsin_core::time::{Millis, ZERO, format_millis};

use crate::alerts_body::{DecodedBatch, decode_alerts, rejection_message};
use crate::app::App;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// How much of an announced oversized body is read and discarded before the 413, so that a
/// client still sending can read the answer instead of a reset connection.
const DRAIN_BYTES: u64 = 256 << 20;
/// How long that draining may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds the router; `prefix` is the normalised `--web.route-prefix` (`/` or `/x`).
pub fn router(app: Arc<App>, prefix: &str) -> Router {
    let limiter = Arc::new(Limiter::new(&app));
    let v2 = Router::new()
        .route("/api/v2/alerts", post(post_alerts).get(get_alerts))
        .route("/api/v2/alerts/groups", get(get_groups))
        .route("/api/v2/status", get(get_status))
        .route("/api/v2/receivers", get(get_receivers))
        .route(
            "/api/v2/silences",
            get(crate::api_silences::get_silences).post(crate::api_silences::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(crate::api_silences::get_silence).delete(crate::api_silences::delete_silence),
        )
        .route("/api/v2/{*rest}", any(api_not_found))
        .route("/api/tocsin/v1/events", get(crate::api_events::get_events))
        .route("/api/tocsin/v1/dry-run", post(crate::dry_run::dry_run))
        .route(
            "/api/tocsin/v1/receivers/{name}/test",
            post(crate::dry_run::test_receiver),
        )
        .route(
            "/api/tocsin/v1/groups/{group_key}/history",
            get(crate::api_events::get_history),
        )
        .route_layer(axum::middleware::from_fn_with_state(limiter, limit));
    let api = Router::new()
        .merge(v2)
        .route("/api/v1/{*rest}", any(v1_gone))
        .route("/-/healthy", get(ok_text).head(ok_text))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(app.clone(), buffer_body))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .with_state(app);
    if prefix == "/" {
        api
    } else {
        Router::new().nest(prefix, api)
    }
}

/// `--web.get-concurrency` and `--web.timeout` on the API, as Alertmanager applies them: GETs past
/// the limit are answered 503 at once (POSTs, which carry alerts, never wait on it), and a
/// request past the timeout is answered 503.
struct Limiter {
    gets: Arc<tokio::sync::Semaphore>,
    limit: usize,
    timeout: Option<std::time::Duration>,
    in_flight: prometheus_client::metrics::gauge::Gauge,
    exceeded: prometheus_client::metrics::counter::Counter,
}

impl Limiter {
    fn new(app: &App) -> Self {
        let limit = match app.settings.get_concurrency {
            0 => std::thread::available_parallelism().map_or(8, |n| n.get()).max(8),
            n => n,
        };
        let get = crate::metrics::MethodLabel { method: "get" };
        Limiter {
            gets: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            timeout: (!app.settings.web_timeout.is_zero()).then_some(app.settings.web_timeout),
            in_flight: app.metrics.http_in_flight.get_or_create(&get).clone(),
            exceeded: app.metrics.http_limit_exceeded.get_or_create(&get).clone(),
        }
    }
}

/// Go's rendering of a duration (`2s`, `1m30s`, `500ms`), for Alertmanager's timeout message.
fn go_duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let (mut s, mut out) = (d.as_secs_f64(), String::new());
    let h = (s / 3600.0).floor();
    if h > 0.0 {
        out += &format!("{h}h");
        s -= h * 3600.0;
    }
    let m = (s / 60.0).floor();
    if h > 0.0 || m > 0.0 {
        out += &format!("{m}m");
        s -= m * 60.0;
    }
    out + &format!("{}s", (s * 1000.0).round() / 1000.0)
}

async fn limit(State(lim): State<Arc<Limiter>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let _slot = if req.method() == axum::http::Method::GET {
        match lim.gets.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                lim.exceeded.inc();
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Limit of concurrent GET requests reached ({}), try again later.\n",
                        lim.limit
                    ),
                )
                    .into_response();
            }
        }
    } else {
        None
    };
    // Decremented on drop too: a client that hangs up cancels this future.
    struct InFlight(Option<prometheus_client::metrics::gauge::Gauge>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            if let Some(g) = &self.0 {
                g.dec();
            }
        }
    }
    let _counted = InFlight(_slot.as_ref().map(|_| {
        lim.in_flight.inc();
        lim.in_flight.clone()
    }));
    match lim.timeout {
        None => next.run(req).await,
        Some(t) => match tokio::time::timeout(t, next.run(req)).await {
            Ok(r) => r,
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Exceeded configured timeout of {}.\n", go_duration(t)),
            )
                .into_response(),
        },
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use tower::ServiceExt;

    fn limiter(limit: usize, timeout: Option<std::time::Duration>) -> Arc<Limiter> {
        Arc::new(Limiter {
            gets: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            timeout,
            in_flight: Default::default(),
            exceeded: Default::default(),
        })
    }

    fn slow_router(lim: Arc<Limiter>) -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    "done"
                })
                .post(|| async { "posted" }),
            )
            .route_layer(axum::middleware::from_fn_with_state(lim, limit))
    }

    async fn call(r: &Router, method: &str) -> (u16, String) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri("/slow")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = r.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn gets_past_the_limit_get_503_at_once_and_posts_are_never_limited() {
        let lim = limiter(1, None);
        let r = slow_router(lim.clone());
        let first = tokio::spawn({
            let r = r.clone();
            async move { call(&r, "GET").await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            call(&r, "GET").await,
            (
                503,
                "Limit of concurrent GET requests reached (1), try again later.\n".into()
            )
        );
        assert_eq!(call(&r, "POST").await, (200, "posted".into()));
        assert_eq!((lim.in_flight.get(), lim.exceeded.get()), (1, 1));
        assert_eq!(first.await.unwrap(), (200, "done".into()));
        assert_eq!(lim.in_flight.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_answered_503() {
        let r = slow_router(limiter(8, Some(std::time::Duration::from_secs(2))));
        let started = tokio::time::Instant::now();
        assert_eq!(
            call(&r, "GET").await,
            (503, "Exceeded configured timeout of 2s.\n".into())
        );
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
        assert_eq!(go_duration(std::time::Duration::from_millis(90_500)), "1m30.5s");
        assert_eq!(go_duration(std::time::Duration::from_millis(250)), "250ms");
    }
}

/// Refuses a body announced larger than [`MAX_BODY_BYTES`] with a readable 413: the body is
/// read and discarded first (up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]), because answering and
/// closing while the client still sends gave it a broken pipe instead of the answer. Bodies
/// without a length are cut by the body limit as they are read.
async fn refuse_oversized(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let Some(len) = announced.filter(|n| *n > MAX_BODY_BYTES as u64) else {
        return next.run(req).await;
    };
    if len <= DRAIN_BYTES {
        let mut body = req.into_body().into_data_stream();
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(_)) = tokio_stream::StreamExt::next(&mut body).await {}
        })
        .await;
    }
    let mut r = error_object(
        StatusCode::PAYLOAD_TOO_LARGE,
        413,
        format!("request body of {len} bytes exceeds the limit of {MAX_BODY_BYTES} bytes"),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Reads a request's body before its handler runs, within two bounds: the body must arrive
/// within `--web.body-read-timeout` (a client trickling a 32 MiB upload is cut off with a 408),
/// and the bodies being read or handled at once may not exceed `--web.request-memory` bytes
/// (reserved by their announced length, or the body limit when none is announced; past it a
/// request is answered 503 at once). 200 slow 32 MiB uploads then cost at most that memory.
async fn buffer_body(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    let reserve = match announced {
        Some(0) | None if !chunked => return next.run(req).await,
        Some(n) => n.min(MAX_BODY_BYTES as u64),
        None => MAX_BODY_BYTES as u64,
    };
    let kib = u32::try_from(reserve.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(_permit) = app.body_memory.clone().try_acquire_many_owned(kib) else {
        app.metrics
            .http_bodies_refused
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: "memory".into(),
            })
            .inc();
        let mut r = error_string(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Request bodies in flight exceed --web.request-memory ({} bytes), try again later.",
                app.settings.request_memory
            ),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let (parts, body) = req.into_parts();
    let timeout = app.settings.body_read_timeout;
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return error_object(
                StatusCode::PAYLOAD_TOO_LARGE,
                413,
                format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(_) => {
            app.metrics
                .http_bodies_refused
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: "timeout".into(),
                })
                .inc();
            let mut r = error_string(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within --web.body-read-timeout ({timeout:?})"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A response with an already serialised JSON body.
fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    json_headers(&mut r);
    r
}

fn json_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A handler error: a JSON string body, as go-swagger handlers answer.
pub(crate) fn error_string(status: StatusCode, msg: impl Into<String>) -> Response {
    json_response(status, &msg.into())
}

/// A validation error in go-openapi's shape `{"code":…,"message":…}`.
pub(crate) fn error_object(status: StatusCode, code: u32, msg: impl Into<String>) -> Response {
    json_response(status, &json!({"code": code, "message": msg.into()}))
}

async fn ok_text() -> &'static str {
    "OK"
}

/// Renders /metrics; state gauges are computed at scrape time.
/// How old a computed `/metrics` body may be and still answer a scrape that waited for it.
const METRICS_REUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// Alerts evaluated per hold of the silence and inhibition read locks: writers (a silence
/// created, an alert ingested) get in between chunks instead of queueing behind a whole pass.
const METRICS_CHUNK: usize = 4096;

/// `/metrics`: computed on the blocking pool, one scrape at a time. A scrape that waited while
/// another computed reuses that body when it is under a second old, so a flood of concurrent
/// scrapes costs one pass over the alerts, not one per request; a scrape that finds no
/// computation under way always gets a fresh body.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    use std::sync::atomic::Ordering;
    let arrived = app.metrics_made.load(Ordering::Acquire);
    let mut last = app.metrics_body.lock().await;
    let body = match &*last {
        Some((at, body)) if app.metrics_made.load(Ordering::Acquire) > arrived && at.elapsed() < METRICS_REUSE => {
            body.clone()
        }
        _ => {
            let a = app.clone();
            let Ok(_permit) = app.heavy_reads.clone().acquire_owned().await else {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            };
            let Ok(body) = tokio::task::spawn_blocking(move || render_metrics(&a)).await else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let body = bytes::Bytes::from(body);
            *last = Some((std::time::Instant::now(), body.clone()));
            app.metrics_made.fetch_add(1, Ordering::AcqRel);
            body
        }
    };
    drop(last);
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

fn render_metrics(app: &App) -> String {
    use crate::metrics::StateLabel;
    let now = app.clock.now();
    let (mut active, mut suppressed) = (0i64, 0i64);
    let alerts = app.store.list();
    for chunk in alerts.chunks(METRICS_CHUNK) {
        let ih = app.inhibitor();
        let sil = app.state.silences();
        for a in chunk {
            if a.resolved_at(now) {
                continue;
            }
            if ih.inhibited_by(&a.labels, now).is_some() || !sil.silenced_by(&a.labels, now).is_empty() {
                suppressed += 1;
            } else {
                active += 1;
            }
        }
    }
    drop(alerts);
    {
        let sil = app.state.silences();
        let mut by_state = std::collections::HashMap::new();
        for m in sil.iter() {
            *by_state.entry(m.silence.state(now).as_str()).or_insert(0i64) += 1;
        }
        for s in ["active", "pending", "expired"] {
            app.metrics
                .silences
                .get_or_create(&StateLabel { state: s.into() })
                .set(*by_state.get(s).unwrap_or(&0));
        }
    }
    app.metrics
        .alerts
        .get_or_create(&StateLabel { state: "active".into() })
        .set(active);
    app.metrics
        .alerts
        .get_or_create(&StateLabel {
            state: "suppressed".into(),
        })
        .set(suppressed);
    let groups = app.dispatcher().groups.len();
    app.metrics.aggregation_groups.set(groups as i64);
    match app.cluster() {
        Some(c) => {
            app.metrics.cluster_enabled.set(1);
            app.metrics.cluster_members.set(c.members().len() as i64);
            app.metrics.cluster_failed_peers.set(c.failed_peers().len() as i64);
            app.metrics.peer_position.set(app.peer().position() as i64);
        }
        None => {
            app.metrics.cluster_enabled.set(0);
        }
    }
    app.metrics.render()
}

/// 503 until a clustered replica has settled (first state sync or settle timeout).
async fn ready(State(app): State<Arc<App>>) -> Response {
    match app.cluster() {
        Some(c) if !c.is_ready() => (StatusCode::SERVICE_UNAVAILABLE, "settling").into_response(),
        _ => (StatusCode::OK, "OK").into_response(),
    }
}

async fn v1_gone() -> Response {
    json_response(
        StatusCode::GONE,
        &json!({"status": "deprecated", "error": "The Alertmanager v1 API was deprecated in version 0.16.0 and is removed as of version 0.27.0 - please use the equivalent route in the v2 API"}),
    )
}

async fn api_not_found(uri: Uri) -> Response {
    error_object(StatusCode::NOT_FOUND, 404, format!("path {} was not found", uri.path()))
}

/// Records `alertmanager_http_request_duration_seconds` and `..._response_size_bytes` for
/// matched routes (the route pattern is the `handler` label, so cardinality stays bounded).
async fn observe(
    State(app): State<Arc<App>>,
    matched: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let handler = matched.map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m.to_string(),
        _ => "other".to_string(),
    };
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let l = crate::metrics::HttpLabels { handler, method };
    app.metrics
        .http_duration
        .get_or_create(&l)
        .observe(started.elapsed().as_secs_f64());
    if let Some(n) = axum::body::HttpBody::size_hint(resp.body()).exact() {
        app.metrics.http_size.get_or_create(&l).observe(n as f64);
    }
    resp
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(err = %e, "error reloading configuration");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config: {e}"),
            )
                .into_response()
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string keeping repeated keys.
pub(crate) fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The filters shared by GET /alerts and /alerts/groups.
struct AlertFilter {
    matchers: Vec<Matcher>,
    receiver: Option<regex::Regex>,
    /// `receiver_matchers` (0.33, repeatable, ANDed) on the receivers' labels.
    receiver_matchers: Vec<Matcher>,
    active: bool,
    silenced: bool,
    inhibited: bool,
    muted: bool,
}

/// An API error before a response is built.
pub(crate) enum ApiError {
    /// A handler error (JSON string body).
    Handler(StatusCode, String),
    /// A go-openapi validation error (`{"code","message"}`).
    Validation(StatusCode, u32, String),
}

impl ApiError {
    /// A handler error with a JSON string body.
    pub(crate) fn handler(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError::Handler(status, msg.into())
    }

    /// A go-openapi validation error.
    pub(crate) fn validation(status: StatusCode, code: u32, msg: impl Into<String>) -> Self {
        ApiError::Validation(status, code, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Handler(s, m) => error_string(s, m),
            ApiError::Validation(s, c, m) => error_object(s, c, m),
        }
    }
}

fn parse_filter(app: &App, raw: Option<String>) -> Result<AlertFilter, ApiError> {
    let mut f = AlertFilter {
        matchers: vec![],
        receiver: None,
        receiver_matchers: vec![],
        active: true,
        silenced: true,
        inhibited: true,
        muted: true,
    };
    for (k, v) in query_pairs(raw) {
        let flag = |v: &str| -> Result<bool, ApiError> {
            v.parse::<bool>().map_err(|_| {
                ApiError::Validation(
                    StatusCode::BAD_REQUEST,
                    601,
                    format!("{k} in query must be of type boolean: {v:?}"),
                )
            })
        };
        match k.as_str() {
            "filter" => {
                let m = parse_matcher(&v, app.settings.load.parse_mode)
                    .map_err(|e| ApiError::Handler(StatusCode::BAD_REQUEST, e))?;
                f.matchers.push(m);
            }
            "receiver" => {
                let re = regex_go::compile_anchored(&v).map_err(|e| {
                    ApiError::Handler(StatusCode::BAD_REQUEST, format!("failed to parse receiver param: {e}"))
                })?;
                f.receiver = Some(re);
            }
            "receiver_matchers" => f.receiver_matchers.push(parse_receiver_matcher(app, &v)?),
            "active" => f.active = flag(&v)?,
            "silenced" => f.silenced = flag(&v)?,
            "inhibited" => f.inhibited = flag(&v)?,
            "muted" => f.muted = flag(&v)?,
            _ => {}
        }
    }
    Ok(f)
}

fn parse_receiver_matcher(app: &App, v: &str) -> Result<Matcher, ApiError> {
    parse_matcher(v, app.settings.load.parse_mode).map_err(|e| {
        ApiError::Handler(
            StatusCode::BAD_REQUEST,
            format!("failed to parse receiver_matchers param: {e}"),
        )
    })
}

/// The receivers whose labels match every matcher of `receiver_matchers`, or `None` when the
/// parameter was not given (every receiver passes). Computed once per request.
fn passing_receivers(active: &crate::app::Active, ms: &[Matcher]) -> Option<std::collections::HashSet<String>> {
    if ms.is_empty() {
        return None;
    }
    Some(
        active
            .config
            .receivers
            .values()
            .filter(|r| all_match(ms, &r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
            .map(|r| r.name.clone())
            .collect(),
    )
}

#[derive(Serialize)]
struct Receiver<'a> {
    name: &'a str,
}

impl Receiver<'_> {
    /// Appends the JSON that the derived `Serialize` writes, without serde.
    fn write_json(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(br#"{"name":"#);
        crate::json_out::push_str(buf, self.name);
        buf.push(b'}');
    }
}

#[derive(Serialize)]
struct AlertStatus {
    #[serde(rename = "inhibitedBy")]
    inhibited_by: Vec<String>,
    #[serde(rename = "mutedBy")]
    muted_by: Vec<String>,
    #[serde(rename = "silencedBy")]
    silenced_by: Vec<String>,
    state: &'static str,
}

/// An alert in API form; labels, annotations and receiver names are borrowed, and times and the
/// fingerprint serialise without allocating (per-alert copies and strings dominated GET
/// /api/v2/alerts at 100k alerts).
#[derive(Serialize)]
struct GettableAlert<'a> {
    annotations: &'a LabelSet,
    #[serde(rename = "endsAt")]
    ends_at: Millis,
    fingerprint: Fingerprint,
    receivers: Vec<Receiver<'a>>,
    #[serde(rename = "startsAt")]
    starts_at: Millis,
    status: AlertStatus,
    #[serde(rename = "updatedAt")]
    updated_at: Millis,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
    labels: &'a LabelSet,
}

impl GettableAlert<'_> {
    /// Appends the JSON that the derived `Serialize` writes (fields in declaration order), without
    /// serde: see [`crate::json_out`].
    fn write_json(&self, buf: &mut Vec<u8>) {
        use crate::json_out::{push_array, push_fingerprint, push_labels, push_millis, push_str, push_strs};
        buf.extend_from_slice(br#"{"annotations":"#);
        push_labels(buf, self.annotations);
        buf.extend_from_slice(br#","endsAt":"#);
        push_millis(buf, self.ends_at);
        buf.extend_from_slice(br#","fingerprint":"#);
        push_fingerprint(buf, self.fingerprint);
        buf.extend_from_slice(br#","receivers":"#);
        push_array(buf, &self.receivers, |buf, r| r.write_json(buf));
        buf.extend_from_slice(br#","startsAt":"#);
        push_millis(buf, self.starts_at);
        buf.extend_from_slice(br#","status":{"inhibitedBy":"#);
        push_strs(buf, &self.status.inhibited_by);
        buf.extend_from_slice(br#","mutedBy":"#);
        push_strs(buf, &self.status.muted_by);
        buf.extend_from_slice(br#","silencedBy":"#);
        push_strs(buf, &self.status.silenced_by);
        buf.extend_from_slice(br#","state":"#);
        push_str(buf, self.status.state);
        buf.extend_from_slice(br#"},"updatedAt":"#);
        push_millis(buf, self.updated_at);
        if !self.generator_url.is_empty() {
            buf.extend_from_slice(br#","generatorURL":"#);
            push_str(buf, self.generator_url);
        }
        buf.extend_from_slice(br#","labels":"#);
        push_labels(buf, self.labels);
        buf.push(b'}');
    }
}

/// What an alert is checked against: the request's filter and the suppression state, read-locked
/// once per request rather than once per alert.
/// What a listing evaluates each alert against. The inhibitor's and the silences' read locks
/// are taken per alert, not for the whole listing: ingest takes the inhibitor's write lock for
/// every batch, and a 100k-alert listing holding the read lock made every POST wait for it
/// (tocsin-bench --flood-only: POST p50 140 ms during a GET flood).
struct Suppressors<'g> {
    filter: AlertFilter,
    app: &'g App,
    now: Timestamp,
}

fn suppressors(app: &App, filter: AlertFilter) -> Suppressors<'_> {
    Suppressors {
        filter,
        app,
        now: app.clock.now(),
    }
}

/// Evaluates an alert against the filter; returns its API form if it passes.
fn gettable<'a>(
    sup: &Suppressors<'_>,
    a: &'a Alert,
    receivers: Vec<Receiver<'a>>,
    muted_by: Vec<String>,
) -> Option<GettableAlert<'a>> {
    let (f, now) = (&sup.filter, sup.now);
    if a.ends_at != ZERO && a.ends_at < now {
        return None;
    }
    if !all_match(&f.matchers, &a.labels) {
        return None;
    }
    let inhibited_by: Vec<String> = sup
        .app
        .inhibitor()
        .inhibited_by(&a.labels, now)
        .map(|fp| fp.to_string())
        .into_iter()
        .collect();
    let silenced_by = sup.app.state.silences().silenced_by(&a.labels, now);
    let suppressed = !inhibited_by.is_empty() || !muted_by.is_empty() || !silenced_by.is_empty();
    if (!f.active && !suppressed)
        || (!f.inhibited && !inhibited_by.is_empty())
        || (!f.silenced && !silenced_by.is_empty())
    {
        return None;
    }
    Some(GettableAlert {
        annotations: &a.annotations,
        ends_at: Millis(a.ends_at),
        fingerprint: a.fingerprint,
        receivers,
        starts_at: Millis(a.starts_at),
        status: AlertStatus {
            inhibited_by,
            muted_by,
            silenced_by,
            state: if suppressed { "suppressed" } else { "active" },
        },
        updated_at: Millis(a.updated_at),
        generator_url: &a.generator_url,
        labels: &a.labels,
    })
}

/// Runs a CPU-heavy handler on the blocking pool, so that a large listing does not hold up the
/// runtime worker that also serves ingest, and at most half the cores' worth of them at once
/// (each listing writes its JSON on every core): eight concurrent 100k-alert listings on two
/// cores left a POST waiting for CPU (tocsin-bench --flood-only: p99 144 ms before this bound).
async fn blocking(app: Arc<App>, q: Option<String>, f: fn(&App, Option<String>) -> Response) -> Response {
    let Ok(_permit) = app.heavy_reads.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    tokio::task::spawn_blocking(move || f(&app, q))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn get_alerts(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    blocking(app, q, list_alerts).await
}

async fn get_groups(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    blocking(app, q, list_groups).await
}

fn list_alerts(app: &App, q: Option<String>) -> Response {
    let f = match parse_filter(app, q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let active = app.active();
    let stored = app.store.list_sorted();
    let passing = passing_receivers(&active, &f.receiver_matchers);
    let sup = suppressors(app, f);
    let response = json_array_response(&stored, ALERT_JSON_BYTES, warm, |a, buf| {
        let receivers: Vec<Receiver> = active
            .config
            .route
            .match_routes(&a.labels)
            .iter()
            .map(|r| Receiver { name: &r.receiver })
            .collect();
        if let Some(re) = &sup.filter.receiver
            && !receivers.iter().any(|r| re.is_match(r.name))
        {
            return;
        }
        // receiver_matchers: at least one of its receivers' labels match.
        if let Some(p) = &passing
            && !receivers.iter().any(|r| p.contains(r.name))
        {
            return;
        }
        if let Some(g) = gettable(&sup, a, receivers, vec![]) {
            g.write_json(buf);
        }
    });
    drop_later(stored);
    response
}

/// Drops a listing's copy of the store on another blocking thread, after the response is
/// handed back: releasing 100k alert references, one cache miss each, took ~9 ms of a GET.
fn drop_later<T: Send + 'static>(v: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(move || drop(v));
        }
        Err(_) => drop(v),
    }
}

/// A generous alert size in API JSON, to size response buffers: a buffer that overflows is
/// copied as it grows. Pages reserved and never written are never made resident, so erring high
/// costs address space only.
const ALERT_JSON_BYTES: usize = 1024;

/// Writes a JSON array whose elements `write` appends (or skips, by appending nothing), byte for
/// byte as `serde_json::to_vec` of the kept elements would. Large arrays are split into one
/// contiguous chunk per core: evaluating and serialising is all of a 100k-alert listing.
///
/// `warm` is called on each block of [`WARM_BLOCK`] items before they are written (see [`warm`]).
pub(crate) fn json_array_response<I: Sync>(
    items: &[I],
    bytes_per_item: usize,
    warm: impl Fn(&[I]) + Sync,
    write: impl Fn(&I, &mut Vec<u8>) + Sync,
) -> Response {
    // Each chunk is written into pieces of about PIECE bytes. One buffer per chunk (26 MB for
    // half a 100k-alert listing) came from jemalloc's oversize arena, which returns freed pages
    // at once: every listing faulted all its pages in again (a sixth of GET /alerts/groups).
    // Pieces this size are kept and reused by the arenas.
    const PIECE: usize = 1 << 20;
    let write_chunk = |chunk: &[I]| {
        let capacity = |left: usize| (left * bytes_per_item).min(PIECE + PIECE / 4);
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut buf = Vec::with_capacity(capacity(chunk.len()));
        let mut first = true;
        for (i, item) in chunk.iter().enumerate() {
            if i % WARM_BLOCK == 0 {
                warm(&chunk[i..chunk.len().min(i + WARM_BLOCK)]);
            }
            let mark = buf.len();
            if !first {
                buf.push(b',');
            }
            write(item, &mut buf);
            if !first && buf.len() == mark + 1 {
                // Nothing written: take the separator back.
                buf.pop();
            }
            first &= buf.len() == mark;
            if buf.len() >= PIECE {
                let next = Vec::with_capacity(capacity(chunk.len() - i - 1));
                pieces.push(Bytes::from(std::mem::replace(&mut buf, next)));
            }
        }
        if !buf.is_empty() {
            pieces.push(Bytes::from(buf));
        }
        pieces
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // Worth a thread by the estimated size, not the item count: 500 groups of 200 alerts are
    // as much work as 100k alerts.
    let parts: Vec<Vec<Bytes>> = if threads == 1 || items.len() < 2 || items.len() * bytes_per_item < PIECE {
        vec![write_chunk(items)]
    } else {
        let mut chunks = items.chunks(items.len().div_ceil(threads));
        let first = chunks.next().unwrap_or_default();
        std::thread::scope(|s| {
            let others: Vec<_> = chunks.map(|c| s.spawn(move || write_chunk(c))).collect();
            let mut parts = vec![write_chunk(first)];
            parts.extend(others.into_iter().map(|h| h.join().unwrap_or_default()));
            parts
        })
    };
    let mut chunks: Vec<Bytes> = vec![Bytes::from_static(b"[")];
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        if chunks.len() > 1 {
            chunks.push(Bytes::from_static(b","));
        }
        chunks.extend(part);
    }
    chunks.push(Bytes::from_static(b"]"));
    if chunks.iter().map(Bytes::len).sum::<usize>() < PIECE {
        return json_bytes(StatusCode::OK, chunks.concat());
    }
    // Large listings send the pieces as they are instead of copying them into one buffer (that
    // copy and its page faults were a tenth of a 52 MB listing); the body is chunked.
    let stream = tokio_stream::iter(chunks.into_iter().map(Ok::<Bytes, std::convert::Infallible>));
    let mut r = (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response();
    json_headers(&mut r);
    r
}

/// Items warmed at a time: enough to keep the core's outstanding cache misses busy, few enough
/// that they are still cached when written.
const WARM_BLOCK: usize = 16;

/// Reads each allocation of each alert (the alert, its labels, annotations and generator URL)
/// in one tight loop. Listings visit alerts scattered over the heap; stalling on each alert's
/// first read in turn was most of `gettable`, while independent reads in a short loop are all in
/// flight at once.
fn warm<A: std::ops::Deref<Target = Alert>>(alerts: &[A]) {
    let mut acc = 0u64;
    for a in alerts {
        let url = a.generator_url.as_bytes().first().copied().unwrap_or(0);
        acc ^= a.fingerprint.0 ^ u64::from(a.labels.warm() ^ a.annotations.warm() ^ url);
    }
    std::hint::black_box(acc);
}

#[derive(Serialize)]
struct AlertGroup<'a> {
    alerts: Vec<GettableAlert<'a>>,
    labels: &'a LabelSet,
    receiver: Receiver<'a>,
    /// The route's `labels` rendered for the group's alerts (0.34; `{}` when none).
    #[serde(rename = "routeLabels")]
    route_labels: &'a LabelSet,
}

impl AlertGroup<'_> {
    /// Appends the JSON that the derived `Serialize` writes, without serde.
    fn write_json(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(br#"{"alerts":"#);
        crate::json_out::push_array(buf, &self.alerts, |buf, a| a.write_json(buf));
        buf.extend_from_slice(br#","labels":"#);
        crate::json_out::push_labels(buf, self.labels);
        buf.extend_from_slice(br#","receiver":"#);
        self.receiver.write_json(buf);
        buf.extend_from_slice(br#","routeLabels":"#);
        crate::json_out::push_labels(buf, self.route_labels);
        buf.push(b'}');
    }
}

fn list_groups(app: &App, q: Option<String>) -> Response {
    let f = match parse_filter(app, q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let active = app.active();
    // Copy what is needed under the lock, evaluate outside it.
    let mut groups: Vec<(usize, LabelSet, Vec<Arc<Alert>>)> = app
        .dispatcher()
        .groups
        .values()
        .map(|g| (g.route_idx, g.info.labels.clone(), g.alerts.iter().cloned().collect()))
        .collect();
    let receiver = |idx: usize| active.config.route.nodes[idx].receiver.as_str();
    groups.sort_by(|a, b| label_set_order(&a.1, &b.1).then_with(|| receiver(a.0).cmp(receiver(b.0))));
    // Each alert's receivers are those of the groups holding it, in group order. Most alerts
    // are in one group, whose receiver that is; only alerts in several groups are looked up, in
    // a sorted list of (alert, group position) (a binary search per alert in a list of all of
    // them was a third of the listing). Without a `continue` route an alert matches one route
    // and is in one group, and building that list (a sort of every alert, before the listing
    // can go on both cores) is skipped.
    let mut shared = Vec::new();
    if active.config.route.has_continue() {
        let mut memberships: Vec<(Fingerprint, usize)> = groups
            .iter()
            .enumerate()
            .flat_map(|(pos, (_, _, alerts))| alerts.iter().map(move |a| (a.fingerprint, pos)))
            .collect();
        memberships.sort_unstable();
        for run in memberships.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
            shared.extend_from_slice(run);
        }
    }
    let receivers_of = |fp: Fingerprint, own: usize| -> Vec<Receiver<'_>> {
        let from = shared.partition_point(|m| m.0 < fp);
        let mut list: Vec<Receiver<'_>> = shared[from..]
            .iter()
            .take_while(|m| m.0 == fp)
            .map(|&(_, pos)| Receiver {
                name: receiver(groups[pos].0),
            })
            .collect();
        if list.is_empty() {
            list.push(Receiver { name: receiver(own) });
        }
        list
    };
    let passing = passing_receivers(&active, &f.receiver_matchers);
    let sup = suppressors(app, f);
    let (f, now) = (&sup.filter, sup.now);
    let alerts: usize = groups.iter().map(|g| g.2.len()).sum();
    let per_group = ALERT_JSON_BYTES * alerts / groups.len().max(1);
    let response = json_array_response(
        &groups,
        per_group,
        |_| {},
        |(idx, labels, alerts), buf| {
            let route = &active.config.route.nodes[*idx];
            if f.receiver.as_ref().is_some_and(|re| !re.is_match(&route.receiver)) {
                return;
            }
            if passing.as_ref().is_some_and(|p| !p.contains(&route.receiver)) {
                return;
            }
            let muted_by = app.muted_by_time(&active, route, now).unwrap_or_default();
            if !f.muted && !muted_by.is_empty() {
                return;
            }
            warm(alerts);
            let mut alerts: Vec<&Arc<Alert>> = alerts.iter().collect();
            sort_alerts(&mut alerts, |a| &a.labels);
            let list: Vec<GettableAlert> = alerts
                .iter()
                .filter_map(|a| gettable(&sup, a, receivers_of(a.fingerprint, *idx), muted_by.clone()))
                .collect();
            if !list.is_empty() {
                let route_labels = match active.route_labels.get(*idx).cloned().flatten() {
                    Some(l) => {
                        let d = tocsin_notify::NotifyData {
                            receiver: route.receiver.clone(),
                            group_key: route.group_key(labels),
                            group_labels: labels.clone(),
                            reason: tocsin_core::nflog::NotifyReason::FirstNotification,
                            external_url: app.settings.external_url.clone(),
                            alerts: alerts.iter().map(|a| Alert::clone(a)).collect(),
                            route_labels: LabelSet::default(),
                            receiver_data: Default::default(),
                        };
                        l.render(&d, now).0
                    }
                    None => LabelSet::default(),
                };
                let group = AlertGroup {
                    alerts: list,
                    labels,
                    receiver: Receiver { name: &route.receiver },
                    route_labels: &route_labels,
                };
                group.write_json(buf);
            }
        },
    );
    drop_later(groups);
    response
}

/// `GET /api/v2/receivers`: every receiver with its labels (0.33), filtered by
/// `receiver_matchers`.
async fn get_receivers(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    let mut ms = Vec::new();
    for (k, v) in query_pairs(q) {
        if k == "receiver_matchers" {
            match parse_receiver_matcher(&app, &v) {
                Ok(m) => ms.push(m),
                Err(e) => return e.into_response(),
            }
        }
    }
    let active = app.active();
    let passing = passing_receivers(&active, &ms);
    let list: Vec<Value> = active
        .config
        .receivers
        .values()
        .filter(|r| passing.as_ref().is_none_or(|p| p.contains(&r.name)))
        .map(|r| json!({"name": r.name, "labels": r.labels}))
        .collect();
    json_response(StatusCode::OK, &list)
}

fn cluster_status(app: &App) -> Value {
    let Some(c) = app.cluster() else {
        return json!({"peers": [], "status": "disabled"});
    };
    let peers: Vec<Value> = c
        .members()
        .iter()
        .map(|m| json!({"name": m.name, "address": m.address.to_string()}))
        .collect();
    // An addition to Alertmanager's shape: peers gossip reports alive but replication cannot reach.
    let failed: Vec<Value> = c
        .failed_peers()
        .iter()
        .map(|(m, err)| json!({"name": m.name, "address": m.address.to_string(), "error": err}))
        .collect();
    json!({
        "name": c.name(),
        "status": if c.is_ready() { "ready" } else { "settling" },
        "peers": peers,
        "failedPeers": failed,
    })
}

async fn get_status(State(app): State<Arc<App>>) -> Response {
    let active = app.active();
    let original = serde_saphyr::to_string(&active.config.raw).unwrap_or_else(|_| String::new());
    let body = json!({
        "cluster": cluster_status(&app),
        "config": {"original": original},
        "uptime": format_millis(app.started),
        // Tocsin's own: what ingest changes in posted alerts (`--alerts.drop-label`).
        "tocsin": {"droppedLabels": app.settings.drop_labels},
        "versionInfo": {
            "branch": "",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": "",
            "version": env!("CARGO_PKG_VERSION"),
        },
    });
    json_response(StatusCode::OK, &body)
}

async fn post_alerts(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let DecodedBatch {
        valid,
        index_of,
        mut errors,
    } = match decode_alerts(&body) {
        Ok(d) => d,
        Err(msg) => return error_object(StatusCode::BAD_REQUEST, 400, msg),
    };
    let total = index_of.len() + errors.len();
    for r in app.post_alerts(valid) {
        errors.push((index_of[r.index], r.message));
    }
    if errors.is_empty() {
        return StatusCode::OK.into_response();
    }
    tracing::debug!(invalid = errors.len(), total, "rejected alerts");
    error_string(StatusCode::BAD_REQUEST, rejection_message(&body, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parallel_array_serialisation_is_byte_identical() {
        for n in [0, 1, 2, 1023, 1024, 5001, 40_000, 100_000] {
            let items: Vec<serde_json::Value> = (0..n)
                .map(|i| serde_json::json!({"i": i, "s": format!("a\"b{i}"), "l": [i, {"x": null}]}))
                .collect();
            // Every third item is skipped, as a filter would.
            let r = json_array_response(
                &items,
                40,
                |_| {},
                |v, buf| {
                    if v["i"].as_u64().is_some_and(|i| i % 3 != 1) {
                        serde_json::to_writer(buf, v).unwrap();
                    }
                },
            );
            let kept: Vec<&serde_json::Value> = items.iter().filter(|v| v["i"].as_u64().unwrap() % 3 != 1).collect();
            let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
            assert_eq!(body, serde_json::to_vec(&kept).unwrap(), "{n} items");
        }
    }

    proptest::proptest! {
        /// The hand-written alert and group JSON is byte for byte what the derived `Serialize` writes.
        #[test]
        fn hand_written_alert_json_matches_serde(
            labels in proptest::collection::btree_map("[a-z\"é]{1,4}", "\\PC{0,6}|[\\\n\"]{1,2}", 1..5),
            annotations in proptest::collection::btree_map("[a-z]{1,4}", "\\PC{0,12}", 0..3),
            url in "|http://p/\\PC{0,4}",
            receivers in proptest::collection::vec("[a-z\"]{1,4}", 0..3),
            silenced in proptest::collection::vec("[0-9a-f-]{1,8}", 0..3),
            millis in 0i64..4_000_000_000_000,
        ) {
            let at = Timestamp::from_millisecond(millis).unwrap();
            let alert = Alert {
                labels: labels.iter().collect(),
                annotations: annotations.iter().collect(),
                starts_at: at,
                ends_at: ZERO,
                generator_url: url.into(),
                updated_at: at,
                timeout: false,
                fingerprint: Fingerprint((millis as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            };
            let g = GettableAlert {
                annotations: &alert.annotations,
                ends_at: Millis(alert.ends_at),
                fingerprint: alert.fingerprint,
                receivers: receivers.iter().map(|name| Receiver { name }).collect(),
                starts_at: Millis(alert.starts_at),
                status: AlertStatus {
                    inhibited_by: vec![],
                    muted_by: silenced.iter().rev().cloned().collect(),
                    silenced_by: silenced.clone(),
                    state: if silenced.is_empty() { "active" } else { "suppressed" },
                },
                updated_at: Millis(alert.updated_at),
                generator_url: &alert.generator_url,
                labels: &alert.labels,
            };
            let mut buf = Vec::new();
            g.write_json(&mut buf);
            proptest::prop_assert_eq!(String::from_utf8(buf).unwrap(), serde_json::to_string(&g).unwrap());
            let group = AlertGroup {
                labels: &alert.labels,
                receiver: Receiver { name: "r\"x" },
                alerts: vec![g],
                route_labels: &alert.annotations,
            };
            let mut buf = Vec::new();
            group.write_json(&mut buf);
            proptest::prop_assert_eq!(String::from_utf8(buf).unwrap(), serde_json::to_string(&group).unwrap());
        }
    }
}
