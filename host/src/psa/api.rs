//! The Pinning Services API's routes, on their own listener: bearer tokens of PSA users
//! ([`super::tokens`]), the spec's `Failure` body for every error (401, 404 and 405 included),
//! and each request a lazy job of the daemon's queue.

use super::tokens::Tokens;
use super::wire::{Failure, FailureError, Pin, PinResults, PinStatus, Status};
use crate::daemon::delegates::Delegates;
use crate::daemon::json_body::JsonObject;
use crate::daemon::{Daemon, now_ms};
use crate::queue::requests::{Filter, NameMatch, NewRequest, Removed, RequestRow};
use crate::queue::{QueueError, State};
use axum::extract::{Path, RawQuery, Request, State as Ctx};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use std::sync::Arc;

type Shared = Arc<Daemon>;

/// The user a request authenticated as.
#[derive(Debug, Clone)]
struct User(String);

/// Limits of the spec.
const MAX_NAME: usize = 255;
const MAX_ORIGINS: usize = 20;
const MAX_META: usize = 1_000;
const MAX_CIDS: usize = 10;
const MAX_LIMIT: u32 = 1_000;
const DEFAULT_LIMIT: u32 = 10;

pub fn router(daemon: Shared, tokens: Tokens) -> Router {
    let tokens = Arc::new(tokens);
    Router::new()
        .route("/pins", get(list).post(add))
        .route(
            "/pins/{requestid}",
            get(status).post(replace).delete(remove),
        )
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_route)
        .with_state(daemon)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let tokens = Arc::clone(&tokens);
            async move { authenticate(&tokens, req, next).await }
        }))
}

/// An error in the spec's shape. `reason` is a code for machines, `details` for people.
pub fn failure(status: StatusCode, reason: &str, details: impl Into<String>) -> Response {
    let body = Failure {
        error: FailureError {
            reason: reason.into(),
            details: Some(details.into()),
        },
    };
    (status, Json(body)).into_response()
}

/// The PSA's error body for the shared layers ([`crate::daemon::listen::RenderError`]).
pub fn render_error(status: StatusCode, details: String) -> Response {
    let reason = match status {
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "ERROR",
    };
    failure(status, reason, details)
}

fn bad_request(details: impl Into<String>) -> Response {
    failure(StatusCode::BAD_REQUEST, "BAD_REQUEST", details)
}

fn not_found(requestid: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no pin request '{requestid}'"),
    )
}

fn internal(e: QueueError) -> Response {
    tracing::error!("psa: {e}");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        e.to_string(),
    )
}

async fn authenticate(tokens: &Tokens, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given.and_then(|g| tokens.user(g)) {
        Some(user) => {
            req.extensions_mut().insert(User(user.to_string()));
            next.run(req).await
        }
        None => {
            let details = if given.is_some() {
                "the access token is not valid"
            } else {
                "an access token is required: Authorization: Bearer <token>"
            };
            failure(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", details)
        }
    }
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "no route {method} {}: this is the Pinning Services API (/pins)",
            uri.path()
        ),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not served on {}", uri.path()),
    )
}

/// A new, unguessable request id: 128 random bits, hex.
fn new_requestid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Checks a `Pin` body and makes it a new request of `user`.
fn new_request(body: Result<JsonObject<Pin>, String>, user: &str) -> Result<NewRequest, String> {
    let JsonObject(pin) = body?;
    if let Err(e) = cid::Cid::try_from(pin.cid.as_str()) {
        return Err(format!("invalid CID '{}': {e}", pin.cid));
    }
    if let Some(name) = &pin.name
        && name.chars().count() > MAX_NAME
    {
        return Err(format!("name is longer than {MAX_NAME} characters"));
    }
    if pin.origins.len() > MAX_ORIGINS {
        return Err(format!("more than {MAX_ORIGINS} origins"));
    }
    for (i, o) in pin.origins.iter().enumerate() {
        if !o.starts_with('/') || o.len() > 1_024 {
            return Err(format!("origins[{i}] '{o}' is not a multiaddr"));
        }
        if pin.origins[..i].contains(o) {
            return Err(format!("origins[{i}] '{o}' is given twice"));
        }
    }
    if pin.meta.len() > MAX_META {
        return Err(format!("meta has more than {MAX_META} entries"));
    }
    Ok(NewRequest {
        requestid: new_requestid(),
        user: user.to_string(),
        cid: pin.cid,
        name: pin.name,
        origins: pin.origins,
        meta: pin.meta,
    })
}

/// A stored request as the spec shows it: delegates are the nodes that verified the pin
/// once it is pinned, else every node that may pin it.
fn shown(d: &Daemon, row: RequestRow) -> PinStatus {
    let nodes = if row.confirmed.is_empty() {
        Delegates::pinning_nodes(&d.topology)
    } else {
        row.confirmed.clone()
    };
    let delegates = d.delegates.of(&nodes);
    PinStatus::of(row, delegates)
}

async fn add(
    Ctx(d): Ctx<Shared>,
    Extension(User(user)): Extension<User>,
    body: Result<JsonObject<Pin>, String>,
) -> Response {
    let new = match new_request(body, &user) {
        Ok(new) => new,
        Err(message) => return bad_request(message),
    };
    match d.queue.run(move |q| q.add_request(&new, now_ms())).await {
        Ok(row) => {
            d.wake.notify_one();
            if row.state.is_final() {
                // Content pinned already: its event was written with the request.
                d.notifier.wake.notify_one();
            }
            tracing::info!(cid = %row.cid, requestid = %row.requestid, user = %row.user, "PSA pin request");
            (StatusCode::ACCEPTED, Json(shown(&d, row))).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn status(
    Ctx(d): Ctx<Shared>,
    Extension(User(user)): Extension<User>,
    Path(requestid): Path<String>,
) -> Response {
    let id = requestid.clone();
    match d.queue.run(move |q| q.request(&user, &id)).await {
        Ok(Some(row)) => Json(shown(&d, row)).into_response(),
        Ok(None) => not_found(&requestid),
        Err(e) => internal(e),
    }
}

async fn replace(
    Ctx(d): Ctx<Shared>,
    Extension(User(user)): Extension<User>,
    Path(requestid): Path<String>,
    body: Result<JsonObject<Pin>, String>,
) -> Response {
    let new = match new_request(body, &user) {
        Ok(new) => new,
        Err(message) => return bad_request(message),
    };
    let id = requestid.clone();
    match d
        .queue
        .run(move |q| q.replace_request(&id, &new, now_ms()))
        .await
    {
        Ok(Some((row, removed))) => {
            after_removal(&d, &removed);
            d.wake.notify_one();
            tracing::info!(cid = %row.cid, requestid = %row.requestid, replaced = %requestid, "PSA pin request replaced");
            (StatusCode::ACCEPTED, Json(shown(&d, row))).into_response()
        }
        Ok(None) => not_found(&requestid),
        Err(e) => internal(e),
    }
}

async fn remove(
    Ctx(d): Ctx<Shared>,
    Extension(User(user)): Extension<User>,
    Path(requestid): Path<String>,
) -> Response {
    let id = requestid.clone();
    match d
        .queue
        .run(move |q| q.remove_request(&user, &id, now_ms()))
        .await
    {
        Ok(Some(removed)) => {
            after_removal(&d, &removed);
            tracing::info!(requestid = %requestid, "PSA pin request deleted ({removed:?})");
            StatusCode::ACCEPTED.into_response()
        }
        Ok(None) => not_found(&requestid),
        Err(e) => internal(e),
    }
}

/// A cancelled pin's round stops; a forgotten one's unpin starts; a `cancelled` event written
/// with the removal goes out.
fn after_removal(d: &Daemon, removed: &Removed) {
    d.notifier.wake.notify_one();
    match removed {
        Removed::Detached => {}
        Removed::Cancelled { cid } => {
            if let Ok(mut running) = d.running.lock()
                && let Some(handle) = running.remove(cid)
            {
                handle.abort();
            }
        }
        Removed::Forgotten { unpin, .. } => {
            if !unpin.is_empty() {
                d.unpinning.wake.notify_one();
            }
        }
    }
}

async fn list(
    Ctx(d): Ctx<Shared>,
    Extension(User(user)): Extension<User>,
    RawQuery(query): RawQuery,
) -> Response {
    let filter = match filter(&user, query.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(message) => return bad_request(message),
    };
    match d.queue.run(move |q| q.list_requests(&filter)).await {
        Ok((count, rows)) => {
            let results = rows.into_iter().map(|row| shown(&d, row)).collect();
            Json(PinResults { count, results }).into_response()
        }
        Err(e) => internal(e),
    }
}

/// The `GET /pins` query as a filter of `user`'s requests, or why it is refused.
fn filter(user: &str, query: &str) -> Result<Filter, String> {
    let mut f = Filter {
        user: user.to_string(),
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    let mut statuses: Option<Vec<Status>> = None;
    let (mut name, mut how) = (None, NameMatch::default());
    let mut seen: Vec<String> = Vec::new();
    let mut json_meta = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if seen.iter().any(|k| *k == key) {
            return Err(format!("'{key}' is given twice"));
        }
        seen.push(key.to_string());
        let value = value.as_ref();
        match key.as_ref() {
            "cid" => {
                let cids: Vec<String> = value.split(',').map(|c| c.trim().to_string()).collect();
                if cids.len() > MAX_CIDS {
                    return Err(format!("at most {MAX_CIDS} CIDs in 'cid'"));
                }
                for (i, c) in cids.iter().enumerate() {
                    if cid::Cid::try_from(c.as_str()).is_err() {
                        return Err(format!("'cid': '{c}' is not a CID"));
                    }
                    if cids[..i].contains(c) {
                        return Err(format!("'cid': '{c}' is given twice"));
                    }
                }
                f.cids = cids;
            }
            "name" => {
                if value.chars().count() > MAX_NAME {
                    return Err(format!("'name' is longer than {MAX_NAME} characters"));
                }
                name = Some(value.to_string());
            }
            "match" => {
                how = match value {
                    "exact" => NameMatch::Exact,
                    "iexact" => NameMatch::IExact,
                    "partial" => NameMatch::Partial,
                    "ipartial" => NameMatch::IPartial,
                    other => {
                        return Err(format!(
                            "'match': '{other}' is not one of exact, iexact, partial, ipartial"
                        ));
                    }
                }
            }
            "status" => {
                let mut list = Vec::new();
                for s in value.split(',') {
                    let st = Status::parse(s.trim()).ok_or_else(|| {
                        format!("'status': '{s}' is not one of queued, pinning, pinned, failed")
                    })?;
                    // The spec's uniqueItems, as for cid.
                    if list.contains(&st) {
                        return Err(format!("'status': '{}' is given twice", s.trim()));
                    }
                    list.push(st);
                }
                statuses = Some(list);
            }
            "before" => {
                f.before_us = Some(
                    super::wire::parse_timestamp(value).map_err(|e| format!("'before': {e}"))?,
                )
            }
            "after" => {
                f.after_us =
                    Some(super::wire::parse_timestamp(value).map_err(|e| format!("'after': {e}"))?)
            }
            "limit" => {
                f.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("'limit': '{value}' is not a number from 1 to {MAX_LIMIT}")
                    })?;
            }
            "meta" => {
                if !f.meta.is_empty() {
                    return Err("give 'meta' as JSON or as meta[KEY]=VALUE, not both".into());
                }
                f.meta = serde_json::from_str(value)
                    .map_err(|e| format!("'meta': not a JSON object of strings: {e}"))?;
                json_meta = true;
            }
            // The spec's form is `meta={"k":"v"}`; the spec authors' own generated JS client
            // (@ipfs-shipyard/pinning-service-client 2.0.0) sends an object as `meta[k]=v`
            // (OpenAPI's deepObject style). Both mean the same containment filter.
            deep if deep.starts_with("meta[") && deep.ends_with(']') => {
                if json_meta {
                    return Err("give 'meta' as JSON or as meta[KEY]=VALUE, not both".into());
                }
                let key = &deep["meta[".len()..deep.len() - 1];
                if key.is_empty() {
                    return Err("'meta[]': an empty key".into());
                }
                f.meta.insert(key.to_string(), value.to_string());
            }
            other => {
                return Err(format!(
                    "unknown parameter '{other}' (cid, name, match, status, before, after, limit, meta)"
                ));
            }
        }
    }
    if f.meta.len() > MAX_META {
        return Err(format!("'meta': more than {MAX_META} entries"));
    }
    f.name = name.map(|n| (n, how));
    // The spec's default is "pinned only". It holds for a listing; a lookup of particular
    // requests (by cid, name or meta) without a status sees them in every state, as a client
    // looking for the request it just made expects (the compliance suite's name checks ask for a
    // pin seconds old; pinning-service-compliance#245). Kubo always sends a status.
    let lookup = !f.cids.is_empty() || f.name.is_some() || !f.meta.is_empty();
    let statuses = statuses.unwrap_or_else(|| {
        if lookup {
            Status::ALL.to_vec()
        } else {
            vec![Status::Pinned]
        }
    });
    f.states = statuses
        .into_iter()
        .flat_map(Status::states)
        .collect::<Vec<State>>();
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafybeibdjhavaqzfimtkey4h5yikxe3y4k3efygimktbyy52aku4sofwfq";
    const CID2: &str = "bafkreid72wrgxvqw64loy6hpnqf7sqd5y4wupmhkv5jdccjza6io32dynu";

    #[test]
    fn the_default_filter_is_pinned_newest_ten() {
        let f = filter("u", "").expect("filter");
        assert_eq!(f.states, [State::Pinned, State::LocalFallback]);
        assert_eq!(f.limit, 10);
        assert_eq!(f.user, "u");
        let f = filter("u", "limit=5&before=2026-01-01T00:00:00Z").expect("filter");
        assert_eq!(f.states, [State::Pinned, State::LocalFallback]);
    }

    #[test]
    fn a_lookup_without_status_sees_every_state() {
        for q in [
            format!("cid={CID}"),
            "name=video&match=iexact".to_string(),
            "meta=%7B%22app%22%3A%22enc%22%7D".to_string(),
        ] {
            let f = filter("u", &q).expect("filter");
            for s in Status::ALL {
                for st in s.states() {
                    assert!(f.states.contains(&st), "{q}: {st:?} missing");
                }
            }
        }
        let f = filter("u", "name=video&status=pinned").expect("filter");
        assert_eq!(f.states, [State::Pinned, State::LocalFallback]);
    }

    #[test]
    fn every_parameter_is_read() {
        let q = format!(
            "cid={CID},{CID2}&name=Video&match=ipartial&status=queued,failed&before=2026-01-01T00:00:00Z\
             &after=2025-01-01T00:00:00.5Z&limit=1000&meta=%7B%22app%22%3A%22enc%22%7D"
        );
        let f = filter("u", &q).expect("filter");
        assert_eq!(f.cids.len(), 2);
        assert_eq!(f.name, Some(("Video".into(), NameMatch::IPartial)));
        assert_eq!(f.states, [State::Queued, State::Failed]);
        assert_eq!(f.limit, 1000);
        assert_eq!(f.meta.get("app").map(String::as_str), Some("enc"));
        assert!(f.before_us.is_some() && f.after_us.is_some());
    }

    #[test]
    fn meta_is_read_as_json_or_as_deep_object() {
        let json = filter(
            "u",
            "meta=%7B%22app%22%3A%22enc%22%2C%22job%22%3A%227%22%7D",
        );
        let deep = filter("u", "meta%5Bapp%5D=enc&meta[job]=7");
        let (json, deep) = (json.expect("json"), deep.expect("deep"));
        assert_eq!(json.meta, deep.meta);
        assert_eq!(deep.meta.len(), 2);
        assert_eq!(
            deep.states, json.states,
            "a meta lookup sees every state either way"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, says) in [
            ("limit=0", "'limit'"),
            ("limit=1001", "'limit'"),
            ("status=done", "'status'"),
            ("match=fuzzy", "'match'"),
            ("cid=nope", "'cid'"),
            ("before=yesterday", "'before'"),
            ("meta=[1]", "'meta'"),
            ("colour=red", "unknown parameter 'colour'"),
            ("meta[]=x", "empty key"),
            ("meta=%7B%7D&meta[a]=b", "not both"),
            ("meta[a]=b&meta=%7B%7D", "not both"),
            ("meta[a]=b&meta[a]=c", "twice"),
            ("limit=1&limit=2", "twice"),
            (
                "status=failed,pinned,failed",
                "'status': 'failed' is given twice",
            ),
            ("status=", "'status'"),
            ("cid=", "'cid'"),
        ] {
            let e = filter("u", q).expect_err(q);
            assert!(e.contains(says), "{q}: {e}");
        }
        let twice = filter("u", &format!("cid={CID},{CID}")).expect_err("twice");
        assert!(twice.contains("given twice"), "{twice}");
        let eleven = [CID; 11].join(",");
        assert!(filter("u", &format!("cid={eleven}")).is_err());
    }
}
