//! Silence endpoints of API v2 (§5.2): POST/GET /silences, GET/DELETE /silence/{id}.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tocsin_core::matchers::{MatchType, Matcher, parse_matcher};
use tocsin_core::silence::{Silence, SilenceError, State as SilenceState};
use tocsin_core::time::{Millis, ZERO, parse_rfc3339};

use crate::api::{ApiError, error_object, error_string, json_array_response, json_response, query_pairs};
use crate::app::App;

#[derive(Serialize)]
struct ApiMatcher<'a> {
    #[serde(rename = "isEqual")]
    is_equal: bool,
    #[serde(rename = "isRegex")]
    is_regex: bool,
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct SilenceStatus {
    state: &'static str,
}

/// A silence in API form, borrowed from the store (listing 10k silences cloned each one twice).
#[derive(Serialize)]
struct GettableSilence<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
    comment: &'a str,
    #[serde(rename = "createdBy")]
    created_by: &'a str,
    #[serde(rename = "endsAt")]
    ends_at: Millis,
    id: &'a str,
    matchers: Vec<ApiMatcher<'a>>,
    #[serde(rename = "startsAt")]
    starts_at: Millis,
    status: SilenceStatus,
    #[serde(rename = "updatedAt")]
    updated_at: Millis,
}

impl GettableSilence<'_> {
    /// Appends the JSON that the derived `Serialize` writes, without serde (see
    /// [`crate::json_out`]; escaping was most of listing 10k silences).
    fn write_json(&self, buf: &mut Vec<u8>) {
        use crate::json_out::{push_array, push_bool, push_millis, push_object, push_str};
        buf.push(b'{');
        if !self.annotations.is_empty() {
            buf.extend_from_slice(br#""annotations":"#);
            push_object(buf, self.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            buf.push(b',');
        }
        buf.extend_from_slice(br#""comment":"#);
        push_str(buf, self.comment);
        buf.extend_from_slice(br#","createdBy":"#);
        push_str(buf, self.created_by);
        buf.extend_from_slice(br#","endsAt":"#);
        push_millis(buf, self.ends_at);
        buf.extend_from_slice(br#","id":"#);
        push_str(buf, self.id);
        buf.extend_from_slice(br#","matchers":"#);
        push_array(buf, &self.matchers, |buf, m| {
            buf.extend_from_slice(br#"{"isEqual":"#);
            push_bool(buf, m.is_equal);
            buf.extend_from_slice(br#","isRegex":"#);
            push_bool(buf, m.is_regex);
            buf.extend_from_slice(br#","name":"#);
            push_str(buf, m.name);
            buf.extend_from_slice(br#","value":"#);
            push_str(buf, m.value);
            buf.push(b'}');
        });
        buf.extend_from_slice(br#","startsAt":"#);
        push_millis(buf, self.starts_at);
        buf.extend_from_slice(br#","status":{"state":"#);
        push_str(buf, self.status.state);
        buf.extend_from_slice(br#"},"updatedAt":"#);
        push_millis(buf, self.updated_at);
        buf.push(b'}');
    }
}

fn api_matcher(m: &Matcher) -> ApiMatcher<'_> {
    ApiMatcher {
        is_equal: !m.op.is_negative(),
        is_regex: m.op.is_regex(),
        name: &m.name,
        value: &m.value,
    }
}

fn gettable(s: &Silence, now: jiff::Timestamp) -> Result<GettableSilence<'_>, String> {
    // The API can express one matcher set only, like Alertmanager's.
    let [set] = s.matcher_sets.as_slice() else {
        return Err(format!(
            "silence {} has {} matcher sets; the API can show only one",
            s.id,
            s.matcher_sets.len()
        ));
    };
    Ok(GettableSilence {
        annotations: &s.annotations,
        comment: &s.comment,
        created_by: &s.created_by,
        ends_at: Millis(s.ends_at),
        id: &s.id,
        matchers: set.iter().map(api_matcher).collect(),
        starts_at: Millis(s.starts_at),
        status: SilenceStatus {
            state: s.state(now).as_str(),
        },
        updated_at: Millis(s.updated_at),
    })
}

fn check_uuid(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            601,
            format!("silenceID in path must be of type uuid: {id:?}"),
        )
    })
}

pub(crate) async fn get_silence(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(e) = check_uuid(&id) {
        return e.into_response();
    }
    let now = app.clock.now();
    let store = app.state.silences();
    match store.get(&id).map(|s| gettable(s, now)) {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Ok(g)) => json_response(StatusCode::OK, &g),
        Some(Err(e)) => error_string(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

pub(crate) async fn delete_silence(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(e) = check_uuid(&id) {
        return e.into_response();
    }
    match app.state.expire_silence(&id) {
        Ok(()) => {
            if let Err(e) = journal(&app, vec![id.clone()]).await {
                return e;
            }
            let mut e = tocsin_core::events::Event::new(tocsin_core::events::Kind::SilenceExpired);
            e.silence_id = id;
            app.record(e);
            StatusCode::OK.into_response()
        }
        Err(SilenceError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => error_string(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(crate) async fn get_silences(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    let mut filters = Vec::new();
    let (mut active, mut pending, mut expired) = (true, true, true);
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "filter" => match parse_matcher(&v, app.settings.load.parse_mode) {
                Ok(m) => filters.push(m),
                Err(e) => return error_string(StatusCode::BAD_REQUEST, e),
            },
            "active" | "pending" | "expired" => {
                let Ok(b) = v.parse::<bool>() else {
                    return error_object(
                        StatusCode::BAD_REQUEST,
                        601,
                        format!("{k} in query must be of type boolean: {v:?}"),
                    );
                };
                match k.as_str() {
                    "active" => active = b,
                    "pending" => pending = b,
                    _ => expired = b,
                }
            }
            _ => {}
        }
    }
    let now = app.clock.now();
    // Serialised under the read lock, borrowing from the store.
    let store = app.state.silences();
    let mut list: Vec<(SilenceState, &Silence)> = {
        store
            .iter()
            .map(|m| &m.silence)
            .filter(|s| {
                // A filter selects silences having an identical matcher (not label evaluation).
                filters
                    .iter()
                    .all(|f| s.matcher_sets.iter().any(|set| set.iter().any(|m| m == f)))
            })
            .map(|s| (s.state(now), s))
            .filter(|(st, _)| match st {
                SilenceState::Active => active,
                SilenceState::Pending => pending,
                SilenceState::Expired => expired,
            })
            .collect()
    };
    // Active by end ascending, then pending by start ascending, then expired by end descending.
    list.sort_by(|(sa, a), (sb, b)| {
        let rank = |s: &SilenceState| match s {
            SilenceState::Active => 0,
            SilenceState::Pending => 1,
            SilenceState::Expired => 2,
        };
        rank(sa).cmp(&rank(sb)).then_with(|| match sa {
            SilenceState::Active => a.ends_at.cmp(&b.ends_at),
            SilenceState::Pending => a.starts_at.cmp(&b.starts_at),
            SilenceState::Expired => b.ends_at.cmp(&a.ends_at),
        })
    });
    if let Some(Err(e)) = list
        .iter()
        .find(|(_, s)| s.matcher_sets.len() != 1)
        .map(|(_, s)| gettable(s, now))
    {
        return error_string(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    json_array_response(&list, SILENCE_JSON_BYTES, warm, |(_, s), buf| {
        if let Ok(g) = gettable(s, now) {
            g.write_json(buf);
        }
    })
}

/// Reads a byte of each allocation of a block of silences (their strings and matchers) in one
/// tight loop, so that their cache misses overlap. The first read of
/// each silence was a third of the listing (as `api::warm` does for alerts).
fn warm(block: &[(SilenceState, &Silence)]) {
    let first = |t: &str| t.as_bytes().first().copied().unwrap_or(0);
    let mut acc = 0u8;
    for (_, s) in block {
        acc ^= first(&s.id) ^ first(&s.comment) ^ first(&s.created_by);
        for m in s.matcher_sets.iter().flatten() {
            acc ^= first(&m.name) ^ first(&m.value);
        }
    }
    std::hint::black_box(acc);
}

/// A generous silence size in API JSON, to size the listing's buffer without regrowing it
/// (untouched reserved pages are never resident).
const SILENCE_JSON_BYTES: usize = 1024;

/// Decodes a `postableSilence` body into a silence, with go-openapi's required-field errors.
fn decode(body: &[u8], app: &App) -> Result<Silence, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::validation(
            StatusCode::BAD_REQUEST,
            400,
            format!("parsing silence body from \"\" failed, because {e}"),
        )
    })?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::validation(
            StatusCode::BAD_REQUEST,
            400,
            "parsing silence body from \"\" failed, because the body is not a JSON object",
        )
    })?;
    for field in ["comment", "createdBy", "endsAt", "matchers", "startsAt"] {
        if obj.get(field).is_none_or(Value::is_null) {
            return Err(ApiError::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                602,
                format!("{field} in body is required"),
            ));
        }
    }
    let text = |k: &str| -> Result<String, ApiError> {
        obj.get(k).and_then(Value::as_str).map(String::from).ok_or_else(|| {
            ApiError::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                602,
                format!("{k} in body must be of type string"),
            )
        })
    };
    let time = |k: &str| -> Result<jiff::Timestamp, ApiError> {
        let s = text(k)?;
        parse_rfc3339(&s).map_err(|e| {
            ApiError::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                602,
                format!("{k} in body must be of type date-time: {e}"),
            )
        })
    };
    let raw_matchers = obj["matchers"].as_array().ok_or_else(|| {
        ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            602,
            "matchers in body must be of type array",
        )
    })?;
    if raw_matchers.is_empty() {
        return Err(ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            612,
            "matchers in body should have at least 1 items",
        ));
    }
    let mut set = Vec::new();
    let names = app.settings.load.name_validation();
    for (i, m) in raw_matchers.iter().enumerate() {
        let field = |k: &str| m.get(k);
        let (Some(Value::String(name)), Some(Value::String(value)), Some(Value::Bool(is_regex))) =
            (field("name"), field("value"), field("isRegex"))
        else {
            return Err(ApiError::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                602,
                format!("matchers.{i}: name, value and isRegex are required"),
            ));
        };
        let is_equal = field("isEqual").and_then(Value::as_bool).unwrap_or(true);
        let op = match (*is_regex, is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regexp,
            (true, false) => MatchType::NotRegexp,
        };
        if !names.is_valid(name) {
            return Err(ApiError::handler(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: invalid label matcher {i}: invalid label name {name:?}"),
            ));
        }
        let m = Matcher::new(op, name, value).map_err(|e| {
            ApiError::handler(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: invalid label matcher {i}: {e}"),
            )
        })?;
        set.push(m);
    }
    let annotations = match obj.get("annotations") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(Silence {
        id: obj.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        matcher_sets: vec![set],
        starts_at: time("startsAt")?,
        ends_at: time("endsAt")?,
        updated_at: ZERO,
        created_by: text("createdBy")?,
        comment: text("comment")?,
        annotations,
    })
}

/// A silence in one line for its event: matchers, end, author and comment.
fn silence_summary(s: &tocsin_core::silence::Silence) -> String {
    let sets: Vec<String> = s
        .matcher_sets
        .iter()
        .map(|set| {
            let ms: Vec<String> = set.iter().map(ToString::to_string).collect();
            format!("{{{}}}", ms.join(", "))
        })
        .collect();
    format!(
        "{} until {} by {}: {}",
        sets.join(" or "),
        s.ends_at,
        s.created_by,
        s.comment
    )
}

/// Writes the silences `ids` to the journal before the API answers: an acknowledged change
/// survives a crash. A failure is answered 500 with what is true: the change is in effect and
/// replicated, but not on this replica's disk.
async fn journal(app: &Arc<App>, ids: Vec<String>) -> Result<(), Response> {
    let a = app.clone();
    let written = tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = ids.iter().map(String::as_str).filter(|i| !i.is_empty()).collect();
        crate::storage::journal_silences(&a, &ids)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    written.map_err(|e| {
        tracing::error!(err = %e, "a silence change is in effect but not on disk");
        error_string(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the silence change is in effect but was not written to disk: {e}"),
        )
    })
}

pub(crate) async fn post_silence(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let s = match decode(&body, &app) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let now = app.clock.now();
    if s.starts_at >= s.ends_at {
        return error_string(
            StatusCode::BAD_REQUEST,
            "Failed to create silence: start time must be before end time",
        );
    }
    if s.ends_at < now {
        return error_string(
            StatusCode::BAD_REQUEST,
            "Failed to create silence: end time can't be in the past",
        );
    }
    let (asked, what) = (s.id.clone(), silence_summary(&s));
    let result = app.state.set_silence(s, || uuid::Uuid::new_v4().to_string());
    match result {
        Ok(id) => {
            tracing::debug!(silence_id = %id, "silence set");
            // On disk before the answer; a replaced silence was expired, so it goes too.
            if let Err(e) = journal(&app, vec![asked.clone(), id.clone()]).await {
                return e;
            }
            // A new id is a new silence (also when it replaced one that could not be updated).
            let kind = if id == asked {
                tocsin_core::events::Kind::SilenceUpdated
            } else {
                tocsin_core::events::Kind::SilenceCreated
            };
            let mut e = tocsin_core::events::Event::new(kind);
            e.silence_id.clone_from(&id);
            e.reason = what;
            app.record(e);
            json_response(StatusCode::OK, &json!({"silenceID": id}))
        }
        Err(SilenceError::NotFound) => error_string(StatusCode::NOT_FOUND, "silence not found"),
        Err(e) => error_string(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The hand-written silence JSON is byte for byte what the derived `Serialize` writes.
        #[test]
        fn hand_written_silence_json_matches_serde(
            annotations in proptest::collection::btree_map("[a-z\"]{1,3}", "\\PC{0,6}", 0..3),
            comment in "\\PC{0,12}|[\"\\\\\\n]{1,3}",
            created_by in "\\PC{0,6}",
            matchers in proptest::collection::vec(
                (proptest::bool::ANY, proptest::bool::ANY, "[a-z_\"]{1,5}", "\\PC{0,6}"), 0..4),
            millis in 0i64..4_000_000_000_000,
        ) {
            let at = Millis(jiff::Timestamp::from_millisecond(millis).unwrap());
            let g = GettableSilence {
                annotations: &annotations,
                comment: &comment,
                created_by: &created_by,
                ends_at: at,
                id: "5c4b0f0e-7d1a-4c1e-9a41-0d6f1d3e2b77",
                matchers: matchers
                    .iter()
                    .map(|(is_equal, is_regex, name, value)| ApiMatcher { is_equal: *is_equal, is_regex: *is_regex, name, value })
                    .collect(),
                starts_at: at,
                status: SilenceStatus { state: "active" },
                updated_at: at,
            };
            let mut buf = Vec::new();
            g.write_json(&mut buf);
            proptest::prop_assert_eq!(String::from_utf8(buf).unwrap(), serde_json::to_string(&g).unwrap());
        }
    }
}
