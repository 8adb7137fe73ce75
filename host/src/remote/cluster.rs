//! An IPFS Cluster as one tier, through its REST API (v1.1):
//! `POST /pins/{cid}?replication-min=&replication-max=&name=&origins=` (a second POST of a CID
//! updates the same pin, never duplicates it: the CID is the request's key),
//! `GET /allocations/{cid}` (is it in the pinset), `GET /pins/{cid}` (`peer_map`: a status per
//! peer), `POST /pins/{cid}/recover`, `DELETE /pins/{cid}` and `GET /id`.

use super::http::{Http, is_not_found};
use super::{RemotePins, RemoteRequest, RemoteState, RemoteStatus};
use crate::Outcome;
use crate::kubo::KuboClient;
use crate::node::{Node, NodeKind, Proof};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Peer states that will not reach `pinned` without a `recover`.
const ERROR_STATES: [&str; 4] = [
    "pin_error",
    "unexpectedly_unpinned",
    "cluster_error",
    "error",
];
/// Peer states on the way to `pinned`.
const MOVING_STATES: [&str; 3] = ["pinning", "pin_queued", "queued"];

pub struct Cluster {
    http: Http,
    replication_min: u32,
    replication_max: i32,
    /// The Kubo RPC of the cluster's peers, for the retrievability walk.
    peer_kubos: Vec<Arc<KuboClient>>,
}

impl Cluster {
    /// `replication_max` -1 means every peer.
    pub fn new(
        http: Http,
        replication_min: u32,
        replication_max: i32,
        peer_kubos: Vec<Arc<KuboClient>>,
    ) -> Cluster {
        Cluster {
            http,
            replication_min,
            replication_max,
            peer_kubos,
        }
    }

    /// `GET /id`: the peer the API belongs to (doctor shows it).
    pub async fn id(&self) -> Result<Value, Outcome> {
        Ok(self.http.call(Method::GET, "id", &[], None).await?.body)
    }

    /// The peers of the cluster, as the API's peer sees them (`GET /peers`, NDJSON or an array).
    pub async fn peers(&self) -> Result<Vec<Value>, Outcome> {
        let reply = self.http.call(Method::GET, "peers", &[], None).await?;
        Ok(match reply.body {
            Value::Array(list) => list,
            Value::Null => Vec::new(),
            one => vec![one],
        })
    }

    pub fn peer_kubos(&self) -> &[Arc<KuboClient>] {
        &self.peer_kubos
    }

    async fn pin_info(&self, cid: &str) -> Result<RemoteStatus, Outcome> {
        let reply = self
            .http
            .call(Method::GET, &format!("pins/{cid}"), &[], None)
            .await?;
        Ok(summarise(&reply.body, self.replication_min))
    }
}

/// A `GlobalPinInfo` as a status: pinned with replication-min peers `pinned`; failed when the
/// peers still moving cannot make up replication-min and one reports an error.
fn summarise(info: &Value, replication_min: u32) -> RemoteStatus {
    let mut peers: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    let mut delegates = Vec::new();
    if let Some(map) = info.get("peer_map").and_then(Value::as_object) {
        for (peer, p) in map {
            let status = p
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("undefined");
            let error = p.get("error").and_then(Value::as_str).unwrap_or("");
            let attempts = p.get("attempt_count").and_then(Value::as_u64).unwrap_or(0);
            let name = p
                .get("peername")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(peer);
            if status == "pinned" || MOVING_STATES.contains(&status) {
                let addrs = p.get("ipfs_peer_addresses").and_then(Value::as_array);
                delegates.extend(
                    addrs
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .filter(|a| a.contains("/p2p/"))
                        .map(str::to_string),
                );
            }
            peers.insert(
                name.to_string(),
                (status.to_string(), error.to_string(), attempts),
            );
        }
    }
    let count = |states: &[&str]| {
        u32::try_from(
            peers
                .values()
                .filter(|(s, _, _)| states.contains(&s.as_str()))
                .count(),
        )
        .unwrap_or(u32::MAX)
    };
    let (pinned, moving, errors) = (
        count(&["pinned"]),
        count(&MOVING_STATES),
        count(&ERROR_STATES),
    );
    let state = if pinned >= replication_min.max(1) {
        RemoteState::Pinned
    } else if errors > 0 && pinned + moving < replication_min.max(1) {
        RemoteState::Failed
    } else {
        RemoteState::Pending
    };
    let progress = peers
        .iter()
        .map(|(peer, (s, _, a))| format!("{peer}={s}/{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut detail = format!("{pinned} of replication-min {replication_min} peers pinned");
    for (peer, (s, e, _)) in &peers {
        if ERROR_STATES.contains(&s.as_str()) {
            detail.push_str(&format!("; {peer}: {s}"));
            if !e.is_empty() {
                detail.push_str(&format!(" ({e})"));
            }
        }
    }
    RemoteStatus {
        state,
        progress,
        detail,
        delegates,
    }
}

#[async_trait]
impl RemotePins for Cluster {
    fn kind(&self) -> NodeKind {
        NodeKind::Cluster
    }

    fn proof(&self) -> Proof {
        if self.peer_kubos.is_empty() {
            Proof::StatusOnly
        } else {
            Proof::PeerWalk
        }
    }

    fn replication(&self) -> u32 {
        self.replication_min.max(1)
    }

    async fn find(&self, cid: &str) -> Result<Option<RemoteRequest>, Outcome> {
        match self
            .http
            .call(Method::GET, &format!("allocations/{cid}"), &[], None)
            .await
        {
            Ok(_) => Ok(Some(RemoteRequest {
                id: cid.to_string(),
                cid: cid.to_string(),
                status: self.pin_info(cid).await?,
            })),
            Err(o) if is_not_found(&o) => Ok(None),
            Err(o) => Err(o),
        }
    }

    async fn create(&self, cid: &str, origins: &[String]) -> Result<RemoteRequest, Outcome> {
        let (min, max) = (
            self.replication_min.to_string(),
            self.replication_max.to_string(),
        );
        let name = super::request_name(cid);
        // The cluster parses every origin as a multiaddr and refuses the pin on a bad one.
        let origins = origins
            .iter()
            .filter(|a| a.starts_with('/') && a.contains("/p2p/") && !a.contains(','))
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        let mut query = vec![
            ("replication-min", min.as_str()),
            ("replication-max", max.as_str()),
            ("name", name.as_str()),
        ];
        if !origins.is_empty() {
            query.push(("origins", origins.as_str()));
        }
        self.http
            .call(Method::POST, &format!("pins/{cid}"), &query, None)
            .await?;
        Ok(RemoteRequest {
            id: cid.to_string(),
            cid: cid.to_string(),
            status: self.pin_info(cid).await?,
        })
    }

    async fn retry(
        &self,
        request: &RemoteRequest,
        _origins: &[String],
    ) -> Result<RemoteRequest, Outcome> {
        self.http
            .call(
                Method::POST,
                &format!("pins/{}/recover", request.id),
                &[],
                None,
            )
            .await?;
        Ok(RemoteRequest {
            id: request.id.clone(),
            cid: request.cid.clone(),
            status: self.pin_info(&request.id).await?,
        })
    }

    async fn status(&self, request: &RemoteRequest) -> Result<RemoteStatus, Outcome> {
        self.pin_info(&request.id).await
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

    /// An offline walk on the Kubo of a peer that pins it: the first that holds every block.
    async fn check_retrievable(&self, cid: &str, _request: &RemoteRequest) -> Outcome {
        if self.peer_kubos.is_empty() {
            return Outcome::Unretrievable(
                "not proven: no Kubo RPC of the cluster's peers is configured (peer_kubo_urls)"
                    .into(),
            );
        }
        let mut last = Outcome::Error("no peer walked".into());
        for kubo in &self.peer_kubos {
            match kubo.check_retrievable(cid).await {
                Outcome::Ok => return Outcome::Ok,
                other => {
                    tracing::debug!(peer = kubo.name(), cid, outcome = ?other, "cluster peer walk");
                    last = other;
                }
            }
        }
        last
    }

    async fn delegates(&self) -> Result<Vec<String>, Outcome> {
        let id = self.id().await?;
        let addrs: Vec<String> = id
            .pointer("/ipfs/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|a| a.contains("/p2p/"))
            .map(str::to_string)
            .collect();
        if addrs.is_empty() {
            return Err(Outcome::Error(
                "the cluster peer reports no IPFS addresses".into(),
            ));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer(status: &str) -> Value {
        json!({"peername": "", "status": status, "error": "", "attempt_count": 0,
               "ipfs_peer_addresses": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA"]})
    }

    #[test]
    fn pinned_counts_replication_min_peers() {
        let info = |a: &str, b: &str, c: &str| json!({"cid": "x", "peer_map": {"p1": peer(a), "p2": peer(b), "p3": peer(c)}});
        let state = |i: &Value, min| summarise(i, min).state;
        assert_eq!(
            state(&info("pinned", "pinning", "remote"), 2),
            RemoteState::Pending
        );
        assert_eq!(
            state(&info("pinned", "pinned", "remote"), 2),
            RemoteState::Pinned
        );
        assert_eq!(
            state(&info("pinned", "pin_error", "remote"), 2),
            RemoteState::Failed
        );
        // An error elsewhere while enough peers still move is not yet a failure.
        assert_eq!(
            state(&info("pinned", "pin_error", "pinning"), 2),
            RemoteState::Pending
        );
        assert_eq!(
            state(&info("pinned", "pin_error", "remote"), 1),
            RemoteState::Pinned
        );
    }

    #[test]
    fn progress_changes_with_any_peer_and_errors_are_named() {
        let a = summarise(
            &json!({"peer_map": {"p1": peer("pin_queued"), "p2": peer("remote")}}),
            1,
        );
        let b = summarise(
            &json!({"peer_map": {"p1": peer("pinning"), "p2": peer("remote")}}),
            1,
        );
        assert_ne!(a.progress, b.progress);
        assert_eq!(a.delegates.len(), 1, "only peers that hold or fetch it");
        let mut failed = peer("pin_error");
        failed["error"] = json!("context canceled");
        let c = summarise(&json!({"peer_map": {"p1": failed}}), 1);
        assert!(
            c.detail.contains("p1: pin_error (context canceled)"),
            "{}",
            c.detail
        );
    }
}
