//! Backends that pin on their own time: an IPFS Cluster ([`cluster`]) and any Pinning Services
//! API provider ([`psa`]). A Kubo node pins in one streamed call that stops when dropped; a
//! remote request outlives the call that made it. So a remote backend works in four steps, and
//! [`RemoteNode`] turns them into the [`Node`] the executor drives:
//!
//! 1. **find or make** the request for the CID ([`RemotePins::find`], then
//!    [`RemotePins::create`], or [`RemotePins::retry`] for a failed one): a retry, a second
//!    round or a restarted process finds the request the first one made and follows it, never
//!    POSTing a duplicate. The backend is the record of what exists (cluster: the CID is the key;
//!    PSA: a deterministic name per CID), so nothing local can drift from it;
//! 2. **poll** its status; no change for the pin's stall timeout is `Stalled`;
//! 3. **cancel** it when the round abandons it (dropped by a timeout or another node's win),
//!    unless it is pinned by then;
//! 4. say what **proof** it can give ([`Proof`]).
//!
//! `connect` and `swarm_addrs` mean, remotely, the request's `origins` and the backend's
//! delegates: a provider hint given to a remote node is kept and sent as the origins of its
//! next requests.

pub mod cluster;
pub mod http;
pub mod psa;

use crate::Outcome;
use crate::node::{Capabilities, Node, NodeKind, Proof};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// The provider hints a remote node keeps for its next requests: the last few peers dialled.
const MAX_HINT_PEERS: usize = 8;
/// Consecutive failed status polls that end the pin with the last failure (one is a blip).
const MAX_POLL_FAILURES: u32 = 3;

/// The name pinwarden gives its request for `cid` on a remote backend: deterministic, so a
/// retry or a restarted process finds the request the first attempt made.
pub fn request_name(cid: &str) -> String {
    format!("pinwarden:{cid}")
}

/// Where a remote request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteState {
    Pending,
    Pinned,
    Failed,
}

/// One answer about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStatus {
    pub state: RemoteState,
    /// What changes while the backend makes progress (per-peer states, the PSA status and info):
    /// the stall detector compares it between polls.
    pub progress: String,
    /// For messages: why it failed, or how far it is.
    pub detail: String,
    /// The backend's peers that hold or fetch the content (full multiaddrs with `/p2p/`).
    pub delegates: Vec<String>,
}

/// A request as the backend knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRequest {
    /// The backend's id for it (the CID for a cluster, the requestid for a PSA provider).
    pub id: String,
    /// The content it pins.
    pub cid: String,
    pub status: RemoteStatus,
}

/// What a remote backend must do. Every failure is an [`Outcome`] for the policy.
#[async_trait]
pub trait RemotePins: Send + Sync {
    fn kind(&self) -> NodeKind;
    /// What "pinned and retrievable" can be proven to mean on this backend.
    fn proof(&self) -> Proof;
    /// How many copies one confirmed pin stands for (a cluster's replication-min).
    fn replication(&self) -> u32 {
        1
    }
    /// The request pinwarden made for `cid`, in any state, if there is one.
    async fn find(&self, cid: &str) -> Result<Option<RemoteRequest>, Outcome>;
    /// A new request for `cid`, asking the backend to fetch from `origins`.
    async fn create(&self, cid: &str, origins: &[String]) -> Result<RemoteRequest, Outcome>;
    /// Another attempt at a failed request, without a second request (cluster: recover; PSA:
    /// replace, which deletes the old one in the same call).
    async fn retry(
        &self,
        request: &RemoteRequest,
        origins: &[String],
    ) -> Result<RemoteRequest, Outcome>;
    async fn status(&self, request: &RemoteRequest) -> Result<RemoteStatus, Outcome>;
    /// Deletes the request (for a cluster: takes the CID out of its pinset).
    async fn cancel(&self, request: &RemoteRequest) -> Outcome;
    /// The proof beyond the status: every block reachable (see [`Proof`]).
    async fn check_retrievable(&self, cid: &str, request: &RemoteRequest) -> Outcome;
    /// Addresses other nodes can dial to fetch from the backend.
    async fn delegates(&self) -> Result<Vec<String>, Outcome>;
}

/// A [`RemotePins`] backend as a [`Node`].
pub struct RemoteNode {
    name: String,
    backend: Arc<dyn RemotePins>,
    poll: Duration,
    hints: Mutex<VecDeque<Vec<String>>>,
    /// One find-or-make per CID at a time in this process, so two rounds on one CID cannot
    /// both find nothing and both create.
    making: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl RemoteNode {
    pub fn new(name: &str, backend: Arc<dyn RemotePins>, poll: Duration) -> RemoteNode {
        RemoteNode {
            name: name.to_string(),
            backend,
            poll,
            hints: Mutex::new(VecDeque::new()),
            making: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn backend(&self) -> &Arc<dyn RemotePins> {
        &self.backend
    }

    /// The origins for a new request: every address of the peers last hinted.
    fn origins(&self) -> Vec<String> {
        self.hints
            .lock()
            .map(|h| h.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The request to follow for `cid`: the one that exists, retried if it failed, or a new one.
    async fn find_or_make(&self, cid: &str) -> Result<RemoteRequest, Outcome> {
        let lock = {
            let mut making = self.making.lock().await;
            making.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(making.entry(cid.to_string()).or_default())
        };
        let _one = lock.lock().await;
        let origins = self.origins();
        match self.backend.find(cid).await? {
            Some(r) if r.status.state == RemoteState::Failed => {
                tracing::info!(node = %self.name, cid, id = %r.id, detail = %r.status.detail,
                    "remote request failed before: another attempt on it");
                self.backend.retry(&r, &origins).await
            }
            Some(r) => {
                tracing::debug!(node = %self.name, cid, id = %r.id, "following the existing remote request");
                Ok(r)
            }
            None => self.backend.create(cid, &origins).await,
        }
    }
}

/// Cancels a request still pending when the pin that follows it is dropped (the round's
/// timeout, or another node won): the backend would otherwise keep fetching for nobody.
struct CancelOnDrop {
    backend: Arc<dyn RemotePins>,
    request: Option<RemoteRequest>,
    node: String,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.request = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (backend, node) = (Arc::clone(&self.backend), self.node.clone());
        runtime.spawn(async move {
            // Pinned meanwhile: a copy made is kept, as a Kubo pin that finished would be.
            let pinned = matches!(backend.status(&request).await, Ok(s) if s.state == RemoteState::Pinned);
            if !pinned {
                let outcome = backend.cancel(&request).await;
                tracing::info!(node = %node, id = %request.id, ?outcome, "abandoned remote request cancelled");
            }
        });
    }
}

#[async_trait]
impl Node for RemoteNode {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: self.backend.kind(),
            proof: self.backend.proof(),
            replication: self.backend.replication(),
        }
    }

    /// Find or make the request, then poll it until pinned, failed or stalled.
    async fn pin(&self, cid: &str, stall: Duration) -> Outcome {
        let request = match self.find_or_make(cid).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let mut guard = CancelOnDrop {
            backend: Arc::clone(&self.backend),
            request: Some(request.clone()),
            node: self.name.clone(),
        };
        let mut status = request.status.clone();
        let (mut changed, mut failures) = (Instant::now(), 0);
        loop {
            match status.state {
                RemoteState::Pinned => {
                    guard.disarm();
                    return Outcome::Ok;
                }
                RemoteState::Failed => {
                    guard.disarm();
                    return Outcome::Error(format!("remote request failed: {}", status.detail));
                }
                RemoteState::Pending if changed.elapsed() >= stall => {
                    // Left in place: the policy's next attempt on this node follows it.
                    guard.disarm();
                    tracing::info!(node = %self.name, cid, id = %request.id, detail = %status.detail,
                        "remote request made no progress for the stall timeout");
                    return Outcome::Stalled;
                }
                RemoteState::Pending => {}
            }
            sleep(self.poll.min(stall.saturating_sub(changed.elapsed()))).await;
            match self.backend.status(&request).await {
                Ok(next) => {
                    failures = 0;
                    if next.progress != status.progress {
                        changed = Instant::now();
                    }
                    status = next;
                }
                Err(outcome) => {
                    failures += 1;
                    if failures >= MAX_POLL_FAILURES {
                        guard.disarm();
                        return outcome;
                    }
                }
            }
        }
    }

    /// Pinned as the backend counts it (a cluster: replication-min peers `pinned`).
    async fn verify(&self, cid: &str) -> Outcome {
        match self.backend.find(cid).await {
            Ok(Some(r)) if r.status.state == RemoteState::Pinned => Outcome::Ok,
            Ok(_) => Outcome::NotPinned,
            Err(outcome) => outcome,
        }
    }

    async fn check_retrievable(&self, cid: &str) -> Outcome {
        match self.backend.find(cid).await {
            Ok(Some(r)) if r.status.state == RemoteState::Pinned => {
                self.backend.check_retrievable(cid, &r).await
            }
            Ok(_) => Outcome::NotPinned,
            Err(outcome) => outcome,
        }
    }

    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome> {
        self.backend.delegates().await
    }

    /// Deletes the request, if there is one.
    async fn unpin(&self, cid: &str) -> Outcome {
        match self.backend.find(cid).await {
            Ok(Some(r)) => match self.backend.cancel(&r).await {
                o if http::is_not_found(&o) => Outcome::Ok,
                o => o,
            },
            Ok(None) => Outcome::Ok,
            Err(outcome) => outcome,
        }
    }

    /// Remembered as origins for the next requests; the backend dials them itself.
    async fn connect(&self, addrs: &[String]) -> Outcome {
        if addrs.is_empty() {
            return Outcome::Error("no address to dial".into());
        }
        if let Ok(mut hints) = self.hints.lock() {
            hints.retain(|known| known != addrs);
            hints.push_front(addrs.to_vec());
            hints.truncate(MAX_HINT_PEERS);
        }
        Outcome::Ok
    }
}

#[cfg(test)]
mod tests;
