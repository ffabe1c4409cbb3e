//! Tocsin's event history API (`/api/tocsin/v1`): `GET /events` with filters and paging, newest
//! first, and `GET /groups/{group key}/history`, a group's notifications and the decisions
//! around them. Reads run on the blocking pool, one heavy read at a time per half core.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tocsin_core::events::{DEFAULT_PAGE, Kind, MAX_PAGE, Query};

use crate::api::{ApiError, json_response, query_pairs};
use crate::app::App;

/// A query and its page size, parsed from a query string.
fn parse(app: &App, raw: Option<String>) -> Result<(Query, usize), ApiError> {
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

/// `GET /api/tocsin/v1/groups/{group key}/history`: the group's notifications, failures,
/// deduplications and claim decisions, newest first (the other filters apply too).
pub(crate) async fn get_history(
    State(app): State<Arc<App>>,
    Path(group_key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (mut q, limit) = match parse(&app, raw) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    q.group_key = Some(group_key);
    if q.kinds.is_empty() {
        q.kinds = Kind::ALL.into_iter().filter(|k| k.is_delivery()).collect();
    }
    page(&app, q, limit).await
}
