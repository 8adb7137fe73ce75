//! The daemon's HTTP/JSON API, described by `host/openapi.json` (served at
//! `GET /v1/openapi.json`; `tests/it/openapi.rs` holds the two together). Errors are
//! `{"error": "..."}` with a 4xx/5xx status: 400 bad request, 401 missing or wrong token (TCP),
//! 403 a foreign Host (TCP), 404 unknown job or route, 405 method, 409 conflict, 422 policy
//! rejected, 500 internal, 503 shutting down (a waiting submit; the job stays queued), 504 wait
//! timed out. Two come from axum as text: 400 for a path key that is not UTF-8, 413 for a
//! reload body over 2 MiB.

use super::wire::{
    ErrorReply, Health, JobReply, JobsReply, NodesReply, PolicyView, ReloadReply, ReloadRequest,
    SubmitRequest,
};
use super::{Daemon, now_ms};
use crate::daemon::json_body::JsonObject;
use crate::queue::{Cancelled, PinRow, QueueError, State, Submission};
use axum::extract::{Path, Query, Request, State as Ctx};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

type Shared = Arc<Daemon>;

pub fn router(daemon: Shared, token: Option<String>) -> Router {
    let router = Router::new()
        .route("/v1/pins", post(submit))
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/{key}", get(status).delete(cancel))
        .route("/v1/health", get(health_endpoint))
        .route("/v1/nodes", get(nodes))
        .route("/v1/policy/reload", post(reload))
        .route(
            "/v1/policy/shadow",
            get(super::shadow_api::report)
                .post(super::shadow_api::start)
                .delete(super::shadow_api::stop),
        )
        .route("/v1/policy/promote", post(super::shadow_api::promote))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_route)
        .with_state(daemon);
    match token {
        Some(token) => router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { bearer(&token, req, next).await }
        })),
        None => router,
    }
}

/// The API's description (`host/openapi.json`), served as it is in the repository; a test
/// checks it against what the routes really answer.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Unknown paths answer like every other error: JSON naming the problem.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}: the API is described at GET /v1/openapi.json",
            uri.path()
        ),
    )
}

/// A known path asked with another method (axum adds the `Allow` header).
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not served on {} (the Allow header lists what is)",
            uri.path()
        ),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn bearer(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time enough for a shared secret compared once per request.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0
    });
    if ok {
        next.run(req).await
    } else {
        error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
}

/// `/v1`'s error body, for the shared layers ([`super::listen::RenderError`]).
pub fn render_error(status: StatusCode, message: String) -> Response {
    error(status, message)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorReply {
            error: message.into(),
        }),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn submit(Ctx(d): Ctx<Shared>, body: Result<JsonObject<SubmitRequest>, String>) -> Response {
    let (submission, limit) = match validate(body, &d.config.notify) {
        Ok(valid) => valid,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    // Subscribed before the enqueue, so the round's end cannot come unseen in between.
    let events = d.events.subscribe();
    let row = match enqueue(&d, submission.clone()).await {
        Ok(row) => row,
        Err(e @ QueueError::JobConflict { .. }) => {
            return error(StatusCode::CONFLICT, e.to_string());
        }
        Err(e) => return internal(e),
    };
    if submission.lazy {
        return (StatusCode::ACCEPTED, Json(JobReply { job: row.into() })).into_response();
    }
    if row.state.is_final() {
        return Json(JobReply { job: row.into() }).into_response();
    }
    wait_for_round_end(&d, events, row, &submission.job_id, limit).await
}

/// Checks the request and makes it a submission (lazy unless the caller waits), with how
/// long a waiting caller waits; or why it is refused (a 400).
fn validate(
    body: Result<JsonObject<SubmitRequest>, String>,
    notify: &crate::notify::NotifyConfig,
) -> Result<(Submission, Duration), String> {
    let JsonObject(body) = body?;
    if let Err(e) = cid::Cid::try_from(body.cid.as_str()) {
        return Err(format!("invalid CID '{}': {e}", body.cid));
    }
    if body.job_id.trim().is_empty() || body.job_id.len() > 256 {
        return Err("job_id must be 1 to 256 characters".into());
    }
    if body.job_id.starts_with(crate::queue::requests::JOB_PREFIX) {
        return Err(format!(
            "job_id '{}': job ids starting with '{}' belong to Pinning Services API requests",
            body.job_id,
            crate::queue::requests::JOB_PREFIX
        ));
    }
    let limit = Duration::from_millis(body.timeout_ms.unwrap_or(3_600_000));
    // The allow-list: a submitter must not make the daemon call an arbitrary address.
    let notify_url = match &body.notify {
        Some(url) => Some(notify.check_callback(url)?),
        None => None,
    };
    let submission = Submission {
        cid: body.cid,
        job_id: body.job_id,
        size_bytes: body.size_bytes,
        lazy: !body.wait,
        notify_url,
    };
    Ok((submission, limit))
}

/// Queues the submission durably (fsynced, group-committed: it survives a power loss once
/// this returns) and wakes the worker.
async fn enqueue(d: &Daemon, submission: Submission) -> Result<PinRow, QueueError> {
    let (job_id, wait) = (submission.job_id.clone(), !submission.lazy);
    let row = d
        .queue
        .run(move |q| q.submit(&submission, now_ms()))
        .await?;
    d.wake.notify_one();
    if row.state.is_final() {
        // Attached to a pin that had ended: its event was written with the submission.
        d.notifier.wake.notify_one();
    }
    tracing::info!(cid = %row.cid, job_id = %job_id, state = %row.state, wait, "submitted");
    Ok(row)
}

/// Waits for the next round's end of `row`'s pin: a final state or, for a pin that lazy jobs
/// keep queued, the failed round (its `failed_rounds` grows; the pin stays queued for them).
/// 503 when the daemon stops first (the job stays queued), 504 when `limit` runs out.
async fn wait_for_round_end(
    d: &Daemon,
    mut events: broadcast::Receiver<PinRow>,
    row: PinRow,
    job_id: &str,
    limit: Duration,
) -> Response {
    let rounds = row.failed_rounds;
    let answered = move |r: &PinRow| r.state.is_final() || r.failed_rounds > rounds;
    let mut stopping = d.stop.subscribe();
    let waited = tokio::time::timeout(limit, async {
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                // The daemon is stopping: answer now (503) instead of holding its exit.
                _ = stopping.wait_for(|s| *s) => return None,
            };
            match event {
                Ok(r) if r.cid == row.cid && answered(&r) => return Some(r),
                Ok(_) => {}
                // Missed events: look at the queue itself.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let cid = row.cid.clone();
                    if let Ok(Some(r)) = d.queue.run(move |q| q.by_cid(&cid)).await
                        && answered(&r)
                    {
                        return Some(r);
                    }
                }
                Err(_) => return None,
            }
        }
    })
    .await;
    match waited {
        Ok(Some(r)) => Json(JobReply {
            job: with_job(r, job_id).into(),
        })
        .into_response(),
        Ok(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the daemon is shutting down; job '{job_id}' is still queued and resumes when it \
                 starts again"
            ),
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "still {} after {} ms; the pin goes on",
                row.state,
                limit.as_millis()
            ),
        ),
    }
}

/// A pin as `/v1` shows it, with its webhook events' delivery state when it has events.
fn shown(q: &crate::queue::Queue, row: PinRow) -> Result<super::wire::Job, QueueError> {
    let counts = q.event_counts(Some(&row.cid))?;
    let last_error = if counts.pending + counts.expired > 0 {
        q.event_error(&row.cid)?
    } else {
        None
    };
    let mut job: super::wire::Job = row.into();
    if counts != crate::queue::outbox::OutboxCounts::default() {
        job.notifications = Some(super::wire::Notifications {
            pending: counts.pending,
            delivered: counts.delivered,
            expired: counts.expired,
            last_error,
        });
    }
    Ok(job)
}

/// Keeps the row's job ids but makes sure the caller's is among them.
fn with_job(mut row: PinRow, job_id: &str) -> PinRow {
    if !row.job_ids.iter().any(|j| j == job_id) {
        row.job_ids.push(job_id.to_string());
    }
    row
}

async fn status(Ctx(d): Ctx<Shared>, Path(key): Path<String>) -> Response {
    let asked = key.clone();
    let found = d
        .queue
        .run(move |q| {
            let row = match q.by_job(&asked)? {
                Some(row) => Some(row),
                None => q.by_cid(&asked)?,
            };
            row.map(|row| shown(q, row)).transpose()
        })
        .await;
    match found {
        Ok(Some(job)) => Json(JobReply { job }).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job or CID '{key}'")),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

async fn list(
    Ctx(d): Ctx<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => match State::parse(s) {
            Some(st) => Some(st),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown state '{s}' ({})", State::names()),
                );
            }
        },
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let listed = d
        .queue
        .run(move |q| {
            q.list(state, limit)?
                .into_iter()
                .map(|row| shown(q, row))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    match listed {
        Ok(jobs) => Json(JobsReply { jobs }).into_response(),
        Err(e) => internal(e),
    }
}

async fn cancel(Ctx(d): Ctx<Shared>, Path(job_id): Path<String>) -> Response {
    let id = job_id.clone();
    let row = match d.queue.run(move |q| q.cancel(&id, now_ms())).await {
        Ok(Cancelled::NoSuchJob) => {
            return error(StatusCode::NOT_FOUND, format!("no job '{job_id}'"));
        }
        Ok(Cancelled::AlreadyEnded(row)) => {
            return error(
                StatusCode::CONFLICT,
                format!("job '{job_id}' already ended: {}", row.state),
            );
        }
        // Other job ids still want the CID: the pin and its running round go on.
        Ok(Cancelled::Detached(row)) => row,
        Ok(Cancelled::Pin(row)) => {
            if let Ok(mut running) = d.running.lock()
                && let Some(handle) = running.remove(&row.cid)
            {
                handle.abort();
            }
            row
        }
        Err(e) => return internal(e),
    };
    let _ = d.events.send(row.clone());
    // A `cancelled` event may have been written with it.
    d.notifier.wake.notify_one();
    Json(JobReply { job: row.into() }).into_response()
}

pub async fn health(d: &Daemon) -> Result<Health, QueueError> {
    let counts = d.queue.run(|q| q.counts()).await?;
    let (policy, _) = d.policy.current();
    let queue = counts
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    Ok(Health {
        status: "ok".into(),
        policy: PolicyView::from(policy.as_ref()),
        queue,
        policy_reloads: d.policy.reloads.load(std::sync::atomic::Ordering::Relaxed),
        node_name: d.config.node_name.clone(),
        checking: d.policy.checking(),
    })
}

async fn health_endpoint(Ctx(d): Ctx<Shared>) -> Response {
    match health(&d).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

async fn nodes(Ctx(d): Ctx<Shared>) -> Response {
    let (policy, _) = d.policy.current();
    let thresholds = crate::health::Thresholds::of(&policy);
    let nodes = crate::health::statuses(&d.topology.roles(), d.topology.ledger(), thresholds);
    Json(NodesReply { nodes }).into_response()
}

async fn metrics(Ctx(d): Ctx<Shared>) -> Response {
    let text = d.metrics_text().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn reload(Ctx(d): Ctx<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let body: ReloadRequest = if body.is_empty() {
        ReloadRequest::default()
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().starts_with(b"application/json"));
        let parsed = serde_json::from_slice(&body)
            .map_err(|e| format!("bad JSON body: {e}"))
            .and_then(crate::daemon::json_body::of_value);
        match parsed {
            Ok(b) if json => b,
            Ok(_) => return error(StatusCode::BAD_REQUEST, "expected application/json"),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    };
    let params = body.params.map(super::wire::param_pairs);
    let daemon = Arc::clone(&d);
    // Through the daemon, like SIGHUP and the file watch, so every reload is counted.
    let result = tokio::task::spawn_blocking(move || {
        daemon.reload_policy(body.policy.as_deref(), params.as_deref())
    })
    .await;
    match result {
        Ok(Ok(p)) => Json(ReloadReply {
            policy: PolicyView::from(p.as_ref()),
        })
        .into_response(),
        Ok(Err(message)) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        Err(e) => internal(e),
    }
}
