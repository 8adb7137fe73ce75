//! Any Pinning Services API v1.0.0 provider as one tier (pinwarden's own PSA server, IPFS
//! Cluster's `pinsvcapi`, a commercial service), with a bearer token.
//!
//! A request is named [`super::request_name`]`(cid)`, so the request a retry or a restarted
//! process follows is found by listing the CID in every state and matching the name (Kubo's
//! `pinmfs` finds its requests the same way). A failed request is replaced (`POST
//! /pins/{requestid}`, one call that deletes the old one), never added again.

use super::http::Http;
use super::{RemotePins, RemoteRequest, RemoteState, RemoteStatus};
use crate::Outcome;
use crate::kubo::KuboClient;
use crate::node::{Node, NodeKind, Proof};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The spec allows at most 20 origins.
const MAX_ORIGINS: usize = 20;

pub struct Psa {
    http: Http,
    /// One of pinwarden's own Kubo nodes: it dials the provider's delegates and fetches every
    /// block, which proves the provider serves them.
    check_via: Option<Arc<KuboClient>>,
    /// The delegates of the latest answer (the provider's peers for this content).
    delegates: Mutex<Vec<String>>,
}

impl Psa {
    pub fn new(http: Http, check_via: Option<Arc<KuboClient>>) -> Psa {
        Psa {
            http,
            check_via,
            delegates: Mutex::new(Vec::new()),
        }
    }

    pub fn check_via(&self) -> Option<&Arc<KuboClient>> {
        self.check_via.as_ref()
    }

    /// `GET /pins?limit=1` with every status: is the endpoint there and the token accepted?
    /// The request count on success (doctor).
    pub async fn count(&self) -> Result<u64, Outcome> {
        let reply = self
            .http
            .call(
                Method::GET,
                "pins",
                &[("limit", "1"), ("status", "queued,pinning,pinned,failed")],
                None,
            )
            .await?;
        reply
            .body
            .get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| Outcome::Error(format!("not a PSA list reply: {}", reply.body)))
    }

    /// A PinStatus as a request, remembering its delegates.
    fn request(&self, body: &Value) -> Result<RemoteRequest, Outcome> {
        let id = body
            .get("requestid")
            .and_then(Value::as_str)
            .ok_or_else(|| Outcome::Error(format!("not a PinStatus (no requestid): {body}")))?;
        let cid = body
            .pointer("/pin/cid")
            .and_then(Value::as_str)
            .ok_or_else(|| Outcome::Error(format!("not a PinStatus (no pin.cid): {body}")))?;
        let status = status_of(body)?;
        if !status.delegates.is_empty()
            && let Ok(mut d) = self.delegates.lock()
        {
            d.clone_from(&status.delegates);
        }
        Ok(RemoteRequest {
            id: id.to_string(),
            cid: cid.to_string(),
            status,
        })
    }

    fn pin_body(cid: &str, origins: &[String]) -> Value {
        let origins: Vec<&String> = origins
            .iter()
            .filter(|a| a.starts_with('/') && a.contains("/p2p/"))
            .take(MAX_ORIGINS)
            .collect();
        json!({"cid": cid, "name": super::request_name(cid), "origins": origins})
    }
}

/// The PSA status of a PinStatus body.
fn status_of(body: &Value) -> Result<RemoteStatus, Outcome> {
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    let state = match status {
        "queued" | "pinning" => RemoteState::Pending,
        "pinned" => RemoteState::Pinned,
        "failed" => RemoteState::Failed,
        other => {
            return Err(Outcome::Error(format!(
                "PSA status '{other}' is not one of queued, pinning, pinned, failed"
            )));
        }
    };
    let info = body.get("info").cloned().unwrap_or(Value::Null);
    let detail = info
        .get("status_details")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| status.to_string());
    let delegates = body
        .get("delegates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok(RemoteStatus {
        state,
        progress: format!("{status} {info}"),
        detail,
        delegates,
    })
}

#[async_trait]
impl RemotePins for Psa {
    fn kind(&self) -> NodeKind {
        NodeKind::Psa
    }

    fn proof(&self) -> Proof {
        if self.check_via.is_some() {
            Proof::FetchFromDelegates
        } else {
            Proof::StatusOnly
        }
    }

    /// The CID's requests in every state, newest first; ours by name: a pinned one first, else
    /// one still moving, else a failed one (to replace).
    async fn find(&self, cid: &str) -> Result<Option<RemoteRequest>, Outcome> {
        let reply = self
            .http
            .call(
                Method::GET,
                "pins",
                &[
                    ("cid", cid),
                    ("status", "queued,pinning,pinned,failed"),
                    ("limit", "1000"),
                ],
                None,
            )
            .await?;
        let name = super::request_name(cid);
        let mut ours = Vec::new();
        for r in reply
            .body
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if r.pointer("/pin/name").and_then(Value::as_str) == Some(name.as_str()) {
                ours.push(self.request(r)?);
            }
        }
        let rank = |r: &RemoteRequest| match r.status.state {
            RemoteState::Pinned => 0,
            RemoteState::Pending => 1,
            RemoteState::Failed => 2,
        };
        ours.sort_by_key(rank); // stable: newest first within a rank
        Ok(ours.into_iter().next())
    }

    async fn create(&self, cid: &str, origins: &[String]) -> Result<RemoteRequest, Outcome> {
        let body = Self::pin_body(cid, origins);
        let reply = self
            .http
            .call(Method::POST, "pins", &[], Some(&body))
            .await?;
        self.request(&reply.body)
    }

    async fn retry(
        &self,
        request: &RemoteRequest,
        origins: &[String],
    ) -> Result<RemoteRequest, Outcome> {
        let body = Self::pin_body(&request.cid, origins);
        let reply = self
            .http
            .call(
                Method::POST,
                &format!("pins/{}", request.id),
                &[],
                Some(&body),
            )
            .await?;
        self.request(&reply.body)
    }

    async fn status(&self, request: &RemoteRequest) -> Result<RemoteStatus, Outcome> {
        let reply = self
            .http
            .call(Method::GET, &format!("pins/{}", request.id), &[], None)
            .await?;
        Ok(self.request(&reply.body)?.status)
    }

    async fn cancel(&self, request: &RemoteRequest) -> Outcome {
        match self
            .http
            .call(Method::DELETE, &format!("pins/{}", request.id), &[], None)
            .await
        {
            Ok(_) => Outcome::Ok,
            Err(o) => o,
        }
    }

    /// The check node dials the delegates, then fetches every block. Refused as proof when the
    /// check node held every block before: its walk would then show nothing of the provider.
    async fn check_retrievable(&self, cid: &str, request: &RemoteRequest) -> Outcome {
        let Some(checker) = &self.check_via else {
            return Outcome::Unretrievable(
                "not proven: no check_via node is configured to fetch from the provider".into(),
            );
        };
        if checker.check_retrievable(cid).await == Outcome::Ok {
            return Outcome::Unretrievable(format!(
                "not proven: check node {} holds every block already, so fetching shows nothing \
                 of the provider (use a check_via node that does not keep this content)",
                checker.name()
            ));
        }
        // A list entry may leave delegates out; the request's own status names them.
        let mut delegates = request.status.delegates.clone();
        if delegates.is_empty()
            && let Ok(status) = self.status(request).await
        {
            delegates = status.delegates;
        }
        if delegates.is_empty() {
            return Outcome::Unretrievable("not proven: the provider names no delegates".into());
        }
        let dialled = checker.connect(&delegates).await;
        if dialled != Outcome::Ok {
            return Outcome::Unretrievable(format!(
                "not proven: {} cannot dial the provider's delegates: {dialled:?}",
                checker.name()
            ));
        }
        checker.fetch_all(cid).await
    }

    async fn delegates(&self) -> Result<Vec<String>, Outcome> {
        let known = self.delegates.lock().map(|d| d.clone()).unwrap_or_default();
        if known.is_empty() {
            return Err(Outcome::Error(
                "the provider has named no delegates yet".into(),
            ));
        }
        Ok(known)
    }
}
