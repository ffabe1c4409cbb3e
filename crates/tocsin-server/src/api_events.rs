//! Tocsin's event history API (`/api/tocsin/v1`): `GET /events` with filters and paging, newest
//! first, and `GET /groups/{group key}/history`, a group's notifications and the decisions
//! around them. Reads run on the blocking pool, one heavy read at a time per half core.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tocsin_core::events::{DEFAULT_PAGE, Event, Kind, MAX_PAGE, Query};

use crate::api::{ApiError, json_response, query_pairs};
use crate::app::App;

/// A query and its page size, parsed from a query string.
pub(crate) fn parse(app: &App, raw: Option<String>) -> Result<(Query, usize), ApiError> {
    let bad = |m: String| ApiError::handler(StatusCode::BAD_REQUEST, m);
    let time = |k: &str, v: &str| {
        v.parse::<jiff::Timestamp>()
            .map_err(|e| bad(format!("{k}: not an RFC 3339 time: {v:?} ({e})")))
    };
    let mut q = Query::default();
    let mut limit = DEFAULT_PAGE;
    for (k, v) in query_pairs(raw) {
        match k.as_str() {
            "type" => {
                for name in v.split(',').filter(|s| !s.is_empty()) {
                    let kind = Kind::parse(name).ok_or_else(|| {
                        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                        bad(format!(
                            "type: unknown event type {name:?} (one of {})",
                            known.join(", ")
                        ))
                    })?;
                    q.kinds.push(kind);
                }
            }
            "group_key" => q.group_key = Some(v),
            "receiver" => q.receiver = Some(v),
            "fingerprint" => q.fingerprint = Some(v),
            "filter" => {
                let m = tocsin_core::matchers::parse_matcher(&v, app.settings.load.parse_mode)
                    .map_err(|e| bad(format!("filter: {e}")))?;
                q.matchers.push(m);
            }
            "since" => q.since = Some(time(&k, &v)?),
            "until" => q.until = Some(time(&k, &v)?),
            "before" => {
                q.before = Some(v.parse().map_err(|_| bad(format!("before: not an event id: {v:?}")))?);
            }
            "limit" => {
                limit = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                    _ => return Err(bad(format!("limit: a number from 1 to {MAX_PAGE}, not {v:?}"))),
                };
            }
            _ => {}
        }
    }
    Ok((q, limit))
}

/// A page of events: `next` is the cursor of the following page (`before=<next>`), when there
/// may be one.
async fn page(app: &Arc<App>, q: Query, limit: usize) -> Response {
    let Ok(_permit) = app.heavy_reads.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let reader = app.clone();
    let events = tokio::task::spawn_blocking(move || reader.events.query(&q, limit))
        .await
        .unwrap_or_default();
    let next = (events.len() == limit).then(|| events.last().map(|e| e.id)).flatten();
    json_response(StatusCode::OK, &json!({"events": events, "next": next}))
}

/// `GET /api/tocsin/v1/events`.
pub(crate) async fn get_events(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    match parse(&app, raw) {
        Ok((q, limit)) => page(&app, q, limit).await,
        Err(e) => e.into_response(),
    }
}

/// A group's history query: the query string's filters, for that group, its delivery
/// decisions unless `type` says otherwise.
///
/// # Errors
/// A bad parameter.
pub(crate) fn history_query(app: &App, raw: Option<String>, group_key: String) -> Result<(Query, usize), ApiError> {
    let (mut q, limit) = parse(app, raw)?;
    q.group_key = Some(group_key);
    if q.kinds.is_empty() {
        q.kinds = Kind::ALL.into_iter().filter(|k| k.is_delivery()).collect();
    }
    // Ids are per replica: a history spanning replicas pages by time (`until`).
    q.before = None;
    Ok((q, limit))
}

/// What a replica asks its peers for a group's history.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct HistoryAsk {
    /// The API request's query string.
    pub query: Option<String>,
    /// The group key.
    pub group_key: String,
}

/// `GET /api/tocsin/v1/groups/{group key}/history`: the group's notifications, failures,
/// deduplications and claim decisions on every live replica, merged newest first. Each
/// replica that answered, or why it did not, is listed under `replicas`; `next` is the
/// `until` of the following page.
pub(crate) async fn get_history(
    State(app): State<Arc<App>>,
    Path(group_key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (q, limit) = match history_query(&app, raw.clone(), group_key.clone()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let Ok(_permit) = app.heavy_reads.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (reader, local_q) = (app.clone(), q.clone());
    let local = tokio::task::spawn_blocking(move || reader.events.query(&local_q, limit));
    let ask = serde_json::to_vec(&HistoryAsk { query: raw, group_key }).unwrap_or_default();
    let answers = match app.cluster() {
        Some(c) => c.ask_all(HISTORY, &ask).await,
        None => Vec::new(),
    };
    let mut events = local.await.unwrap_or_default();
    let mut full = events.len() == limit;
    let own = app.replica_name(&*app.peer()).to_string();
    let mut replicas = vec![json!({"name": own, "events": events.len()})];
    for (name, answer) in answers {
        match answer {
            Ok(items) => {
                // A peer's events are untrusted: each must parse and match the query.
                let theirs: Vec<Event> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice::<Event>(i).ok())
                    .filter(|e| q.matches(e))
                    .take(limit)
                    .collect();
                full |= theirs.len() == limit;
                replicas.push(json!({"name": name, "events": theirs.len()}));
                events.extend(theirs);
            }
            Err(e) => replicas.push(json!({"name": name, "error": e})),
        }
    }
    events.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then_with(|| a.replica.cmp(&b.replica))
            .then(b.id.cmp(&a.id))
    });
    full |= events.len() > limit;
    events.truncate(limit);
    let next = if full {
        events.last().map(|e| e.time.to_string())
    } else {
        None
    };
    json_response(
        StatusCode::OK,
        &json!({"events": events, "next": next, "replicas": replicas}),
    )
}

/// The question a peer answers with its part of a group's history.
pub(crate) const HISTORY: &str = "history";

/// A peer's question answered from this replica's event log (blocking).
///
/// # Errors
/// An unknown question or a bad query.
pub(crate) fn answer(app: &App, kind: &str, body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if kind != HISTORY {
        return Err(format!("no answer to {kind:?}"));
    }
    let ask: HistoryAsk = serde_json::from_slice(body).map_err(|e| format!("history: {e}"))?;
    let (q, limit) = history_query(app, ask.query, ask.group_key).map_err(|e| match e {
        ApiError::Handler(_, m) | ApiError::Validation(_, _, m) => m,
    })?;
    Ok(app
        .events
        .query(&q, limit)
        .iter()
        .filter_map(|e| serde_json::to_vec(e).ok())
        .collect())
}
