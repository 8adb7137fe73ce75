//! "Pin, then prove it", written once.
//!
//! Each step is one bounded call on a [`Node`]: the executor runs them for the policy's actions,
//! and the host's own pins (the local fallback, journal migration) run all of them in the order
//! `succeed` must show evidence of ([`host_rules::PROOF`]: pin, verify, check-retrievable).

use crate::Outcome;
use crate::health::Progress;
use crate::node::Node;
use std::time::Duration;
use tokio::time::timeout;

/// Time bounds of one pin and its proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinBounds {
    /// The whole `pin/add`, progress or not.
    pub pin: Duration,
    /// No progress for this long ends the pin as stalled.
    pub stall: Duration,
    /// `pin ls`.
    pub call: Duration,
    /// The retrievability check: an outer safety bound. The node client ends a walk that stops
    /// making progress by itself (`KuboConfig::check_idle_timeout`), and a walk's length
    /// follows the DAG's size, so this is generous.
    pub check: Duration,
}

/// `pin/add`, bounded by `pin` overall and `stall` without progress, which it reports to
/// `progress` (see [`Node::pin_watched`]).
pub async fn pin(
    node: &dyn Node,
    cid: &str,
    pin: Duration,
    stall: Duration,
    progress: &Progress,
) -> Outcome {
    timeout(pin, node.pin_watched(cid, stall, progress))
        .await
        .unwrap_or(Outcome::Timeout)
}

/// `pin ls`: does the node list the CID as pinned?
pub async fn verify(node: &dyn Node, cid: &str, call: Duration) -> Outcome {
    timeout(call, node.verify(cid))
        .await
        .unwrap_or(Outcome::Timeout)
}

/// Are all of the CID's blocks on the node? `bound` is a safety net (see [`PinBounds::check`]).
pub async fn check_retrievable(node: &dyn Node, cid: &str, bound: Duration) -> Outcome {
    timeout(bound, node.check_retrievable(cid))
        .await
        .unwrap_or(Outcome::Timeout)
}

/// The step that failed a proof, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Unproven {
    /// One of [`host_rules::PROOF`].
    pub step: &'static str,
    pub outcome: Outcome,
}

/// Pins `cid` on `node` and proves it: every step of [`host_rules::PROOF`] in order, stopping at
/// the first that is not ok. `seen` hears each step's outcome as it ends (for traces).
pub async fn pin_and_prove(
    node: &dyn Node,
    cid: &str,
    bounds: PinBounds,
    mut seen: impl FnMut(&'static str, &Outcome),
) -> Result<(), Unproven> {
    let [pin_step, verify_step, check_step] = host_rules::PROOF;
    let mut step = |step: &'static str, outcome: Outcome| {
        seen(step, &outcome);
        match outcome {
            Outcome::Ok => Ok(()),
            outcome => Err(Unproven { step, outcome }),
        }
    };
    step(
        pin_step,
        pin(node, cid, bounds.pin, bounds.stall, &Progress::none()).await,
    )?;
    step(verify_step, verify(node, cid, bounds.call).await)?;
    step(check_step, check_retrievable(node, cid, bounds.check).await)
}
