//! The JSON bodies of the daemon's API: what [`super::api`] serves and
//! [`crate::client::DaemonClient`] reads, one definition for both ends.

use crate::queue::{PinRow, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One pin as `/v1` shows it: a CID and the job ids on it. The API's own type, so the queue's
/// row can change without changing the API (`host/openapi.json`'s `Job`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub cid: String,
    pub state: State,
    pub lazy: bool,
    pub size_bytes: u64,
    /// Rounds that ended in failure so far.
    pub failed_rounds: u32,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The nodes that pinned, verified and proved the content retrievable.
    pub confirmed: Vec<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub job_ids: Vec<String>,
    /// The CID as this job id's caller sent it, when that is another form than `cid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_cid: Option<String>,
    /// The pin's webhook events by delivery state (on a single job's lookup, when it has any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
}

/// A pin's webhook events: how many wait, were delivered, or expired undelivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    pub pending: u64,
    pub delivered: u64,
    pub expired: u64,
    /// Why the newest undelivered event's last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<PinRow> for Job {
    fn from(row: PinRow) -> Job {
        let PinRow {
            cid,
            state,
            lazy,
            size_bytes,
            failed_rounds,
            next_attempt_at_ms,
            created_at_ms,
            updated_at_ms,
            confirmed,
            reason,
            decided_by,
            job_ids,
            requested_cid,
        } = row;
        Job {
            cid,
            state,
            lazy,
            size_bytes,
            failed_rounds,
            next_attempt_at_ms,
            created_at_ms,
            updated_at_ms,
            confirmed,
            reason,
            decided_by,
            job_ids,
            requested_cid,
            notifications: None,
        }
    }
}

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
    /// Where this job's events go (a host in `notify.allowed_hosts`); default `notify.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

/// One pin (a CID and the job ids on it): submit, status and cancel answer with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub job: Job,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsReply {
    pub jobs: Vec<Job>,
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

/// Policy parameters as a request gives them (a JSON object), as `configure` takes them:
/// strings as they are, any other value in its JSON spelling.
pub fn param_pairs(map: BTreeMap<String, serde_json::Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
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

/// `POST /v1/policy/shadow`: the candidate to ask beside the live policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// A built-in name or a component path (read by the daemon, from `daemon.policy_dir`).
    pub policy: String,
    /// Its parameters, exactly (default: those of the configured parameters it declares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, serde_json::Value>>,
}

/// `GET|POST|DELETE /v1/policy/shadow`: the shadow's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowReply {
    pub shadow: crate::rounds::shadow::Report,
}

/// `POST /v1/policy/promote`: the new live policy, and the shadow's last report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteReply {
    pub policy: PolicyView,
    pub shadow: crate::rounds::shadow::Report,
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
    /// A policy check under way (a reload, shadow or promote validating its candidate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checking: Option<CheckProgress>,
}

/// Where a running policy check is: the built-in scenario it runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckProgress {
    /// The candidate, as the request named it.
    pub policy: String,
    pub scenario: String,
    /// 1-based, of `total`.
    pub index: usize,
    pub total: usize,
    pub elapsed_ms: u64,
}

/// `GET /v1/nodes`: every node's health and breaker, live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesReply {
    pub nodes: Vec<crate::health::NodeStatus>,
}
