//! Round records: what every decision of a round saw and answered, kept in the data directory
//! so that a candidate policy can be replayed against real traffic (`policy replay`) and rounds
//! can be looked at after the fact (`rounds show`, `rounds export`).
//!
//! * [`store`]: the bounded segment files under `data/rounds/`, written by a thread of their
//!   own (a slow disk never slows a round), read back oldest first.
//! * [`replay`]: a candidate asked at every recorded decision point, its first divergence
//!   classified, and the diverging rounds re-run in the simulator to predict their end.
//!
//! A record is compact: the round's final history once, and per decision only the history's
//! length, the events that ended since the decision before, and the nodes' health when it
//! changed ([`DecisionPoint`]). From that the exact history each decision was given is rebuilt
//! ([`RoundRecord::history_at`]).

pub mod replay;
pub mod shadow;
pub mod store;

use crate::executor::{DecisionPoint, RoundEnd, RoundResult};
use crate::policy::Policy;
use crate::policy::contract::{Event, Job, Node as NodeInfo};
use serde::{Deserialize, Serialize};

/// The record format's version (the `v` of every line).
pub const VERSION: u32 = 1;

/// Which policy decided: its name, content hash and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
}

impl PolicyRef {
    pub fn of(policy: &Policy) -> PolicyRef {
        PolicyRef {
            name: policy.name.clone(),
            hash: policy.hash.clone(),
            params: policy.params.clone(),
        }
    }
}

/// How the round ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct End {
    pub status: RoundEnd,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub decided_by: String,
    pub elapsed_ms: u64,
}

/// One round, as it is kept: one JSON line in a segment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub v: u32,
    /// When the round began (Unix ms).
    pub at_ms: i64,
    /// `daemon` or `cli`.
    pub by: String,
    pub job: Job,
    pub policy: PolicyRef,
    pub fallback: PolicyRef,
    pub points: Vec<DecisionPoint>,
    /// The round's history as it ended; the points index into it.
    pub history: Vec<Event>,
    pub end: End,
    /// What the shadow policy answered at this round's decisions, when one ran (the shadow
    /// thread writes such a record once it has caught up with the round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowVerdict>,
}

/// A shadow policy's answers to one round: counted where they agree with the live policy's,
/// kept where they differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowVerdict {
    pub policy: PolicyRef,
    /// Decisions compared. Those after the live policy was contained are the fallback's, and
    /// those after the shadow fell behind are not asked: `compared` may be fewer than `points`.
    pub compared: u32,
    pub agree: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diverged: Vec<ShadowAnswer>,
}

/// A decision where the shadow answered otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowAnswer {
    /// The decision's index in the round's `points`.
    pub k: u32,
    pub class: replay::Class,
    pub answer: replay::Answer,
}

impl RoundRecord {
    /// The record of a finished round that began at `at_ms`.
    pub fn new(
        by: &str,
        at_ms: i64,
        job: &Job,
        policy: &Policy,
        fallback: &Policy,
        result: &RoundResult,
    ) -> RoundRecord {
        RoundRecord {
            v: VERSION,
            at_ms,
            by: by.to_string(),
            job: job.clone(),
            policy: PolicyRef::of(policy),
            fallback: PolicyRef::of(fallback),
            points: result.decisions.clone(),
            history: result.history.clone(),
            end: End {
                status: result.status,
                confirmed: result.confirmed.clone(),
                reason: result.reason.clone(),
                decided_by: result.decided_by.clone(),
                elapsed_ms: result.elapsed_ms,
            },
            shadow: None,
        }
    }

    /// The history decision `k` was given: the first `len` events, with an outcome only where
    /// it had arrived by then. `None` when the record is inconsistent (an index past the end).
    pub fn history_at(&self, k: usize) -> Option<Vec<Event>> {
        let point = self.points.get(k)?;
        let len = point.len as usize;
        if len > self.history.len() {
            return None;
        }
        let mut ended = vec![false; len];
        for p in &self.points[..=k] {
            for &i in &p.ended {
                *ended.get_mut(i as usize)? = true;
            }
        }
        Some(
            self.history[..len]
                .iter()
                .zip(ended)
                .map(|(event, done)| {
                    let mut event = event.clone();
                    if !done {
                        event.outcome = None;
                        event.ended_ms = None;
                    }
                    event
                })
                .collect(),
        )
    }

    /// The nodes decision `k` saw (the latest point at or before it that carries them).
    pub fn nodes_at(&self, k: usize) -> Option<&[NodeInfo]> {
        self.points
            .get(..=k)?
            .iter()
            .rev()
            .find_map(|p| p.nodes.as_deref())
    }

    /// The first job id, for `rounds show`.
    pub fn job_id(&self) -> &str {
        &self.job.job_id
    }
}

#[cfg(test)]
mod tests;
