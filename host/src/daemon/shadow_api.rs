//! `/v1/policy/shadow` and `/v1/policy/promote` (see `rollout.rs`): start, read, stop and
//! promote a shadow policy. Validation compiles and simulates, so it runs on the blocking pool.

use super::Daemon;
use super::api::error;
use super::json_body::JsonObject;
use super::wire::{PolicyView, PromoteReply, ShadowReply, ShadowRequest};
use axum::Json;
use axum::extract::State as Ctx;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

type Shared = Arc<Daemon>;

const NONE_RUNNING: &str = "no shadow policy is running: start one with `policy shadow CANDIDATE`";

/// `GET`: the running shadow's report (404 if none).
pub async fn report(Ctx(d): Ctx<Shared>) -> Response {
    match d.shadow_report() {
        Some(shadow) => Json(ShadowReply { shadow }).into_response(),
        None => error(StatusCode::NOT_FOUND, NONE_RUNNING),
    }
}

/// `POST`: validate the candidate as a reload would and put it in shadow (422 if refused).
pub async fn start(
    Ctx(d): Ctx<Shared>,
    body: Result<JsonObject<ShadowRequest>, String>,
) -> Response {
    let body = match body {
        Ok(JsonObject(b)) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if body.policy.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "policy: must name a built-in or a file",
        );
    }
    let params = body.params.map(super::wire::param_pairs);
    let daemon = Arc::clone(&d);
    let started = tokio::task::spawn_blocking(move || {
        daemon
            .start_shadow(&body.policy, params.as_deref())
            .map(|_| daemon.shadow_report())
    })
    .await;
    match started {
        Ok(Ok(Some(shadow))) => Json(ShadowReply { shadow }).into_response(),
        Ok(Ok(None)) => error(StatusCode::CONFLICT, "the shadow was replaced meanwhile"),
        Ok(Err(message)) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE`: stop the shadow; its last report (404 if none).
pub async fn stop(Ctx(d): Ctx<Shared>) -> Response {
    let daemon = Arc::clone(&d);
    match tokio::task::spawn_blocking(move || daemon.stop_shadow()).await {
        Ok(Some(shadow)) => Json(ShadowReply { shadow }).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, NONE_RUNNING),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /v1/policy/promote`: the shadow becomes the live policy (409 none runs, 422 the
/// reload refused it).
pub async fn promote(Ctx(d): Ctx<Shared>) -> Response {
    if d.shadow_report().is_none() {
        return error(StatusCode::CONFLICT, NONE_RUNNING);
    }
    let daemon = Arc::clone(&d);
    match tokio::task::spawn_blocking(move || daemon.promote()).await {
        Ok(Ok((policy, shadow))) => Json(PromoteReply {
            policy: PolicyView::from(policy.as_ref()),
            shadow,
        })
        .into_response(),
        Ok(Err(message)) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
