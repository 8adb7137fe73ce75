//! The JSON bodies of the daemon's API: what [`super::api`] serves and
//! [`crate::client::DaemonClient`] reads, one definition for both ends.

use crate::queue::PinRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/pins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub cid: String,
    pub job_id: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// Return only when the pin has ended (default: lazy, return at once).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`: give up waiting (the pin goes on) after this long. Default 1 hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One pin (a CID and the job ids on it): submit, status and cancel answer with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub job: PinRow,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsReply {
    pub jobs: Vec<PinRow>,
}

/// Every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// A policy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub name: String,
    pub hash: String,
    pub source: String,
}

impl From<&crate::policy::Policy> for PolicyView {
    fn from(p: &crate::policy::Policy) -> Self {
        PolicyView {
            name: p.name.clone(),
            hash: p.hash.clone(),
            source: p.source.to_string(),
        }
    }
}

/// `POST /v1/policy/reload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Another built-in name or component path to switch to (default: re-read the configured
    /// one). A path is read by the daemon: send it absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Parameters for it, exactly (default: those of the configured parameters it declares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub policy: PolicyView,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub policy: PolicyView,
    /// Pins by state.
    pub queue: BTreeMap<String, u64>,
    pub policy_reloads: u64,
    pub node_name: String,
}

/// `GET /v1/nodes`: every node's health and breaker, live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesReply {
    pub nodes: Vec<crate::health::NodeStatus>,
}
