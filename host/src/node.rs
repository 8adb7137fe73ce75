//! The seam between the executor and an IPFS node: a real Kubo RPC client, or a simulated node.
//!
//! Every method reports an [`Outcome`] (the same type the policy sees) rather than an error:
//! a refused connection or a lying node is information for the policy, not an exception.

use crate::Outcome;
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
pub trait Node: Send + Sync {
    /// `pin/add` (recursive). The node gives up by itself after `stall` without progress; the
    /// executor bounds the whole call with the pin's overall timeout.
    async fn pin(&self, cid: &str, stall: Duration) -> Outcome;
    /// `pin/ls?type=recursive`: `Ok` when listed, `NotPinned` when the node says it is not.
    async fn verify(&self, cid: &str) -> Outcome;
    /// Are the CID's blocks present locally (root and links), without fetching from the network?
    async fn check_retrievable(&self, cid: &str) -> Outcome;
    /// The node's swarm addresses, with its peer id, for other nodes to dial.
    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome>;
    /// `pin/rm` (recursive): `Ok` too when the node does not pin it (nothing left to undo).
    async fn unpin(&self, cid: &str) -> Outcome;
    /// Dials the given addresses (one is enough).
    async fn connect(&self, addrs: &[String]) -> Outcome;
    /// Replaces the connection to the peer behind `addrs` with a new one (a repeated provider
    /// hint). By default, the same as [`Node::connect`].
    async fn reconnect(&self, addrs: &[String]) -> Outcome {
        self.connect(addrs).await
    }
}
