//! The seam between the executor and a pinning backend: a Kubo node (RPC client), a remote
//! backend that pins asynchronously (an IPFS Cluster or a PSA provider, see [`crate::remote`]),
//! or a simulated node.
//!
//! Every method reports an [`Outcome`] (the same type the policy sees) rather than an error:
//! a refused connection or a lying node is information for the policy, not an exception.
//! Callers branch on [`Node::capabilities`], never on the type behind the trait.

use crate::Outcome;
use crate::health::Progress;
use async_trait::async_trait;
use std::time::Duration;

/// What a backend is (the config's `api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A Kubo node (or another node speaking Kubo's RPC): uploads, streamed pins, local walks.
    #[default]
    Kubo,
    /// An IPFS Cluster, through its REST API.
    Cluster,
    /// A Pinning Services API v1.0.0 provider.
    Psa,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Kubo => "kubo",
            NodeKind::Cluster => "cluster",
            NodeKind::Psa => "psa",
        }
    }
}

impl From<NodeKind> for crate::policy::contract::NodeKind {
    fn from(kind: NodeKind) -> Self {
        use crate::policy::contract::NodeKind as Wit;
        match kind {
            NodeKind::Kubo => Wit::Kubo,
            NodeKind::Cluster => Wit::Cluster,
            NodeKind::Psa => Wit::Psa,
        }
    }
}

impl From<crate::policy::contract::NodeKind> for NodeKind {
    fn from(kind: crate::policy::contract::NodeKind) -> Self {
        use crate::policy::contract::NodeKind as Wit;
        match kind {
            Wit::Kubo => NodeKind::Kubo,
            Wit::Cluster => NodeKind::Cluster,
            Wit::Psa => NodeKind::Psa,
        }
    }
}

/// What `check_retrievable` can prove on a backend (host-rules' `PROOF_BY_KIND` says why each
/// is enough). A backend that cannot walk the blocks never reports `Ok` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proof {
    /// Kubo: `pin ls`, then every block of the DAG present in the node's own blockstore.
    LocalWalk,
    /// Cluster: replication-min peers `pinned`, then every block present on the blockstore of
    /// one of those peers' Kubo nodes (offline walk through its RPC).
    PeerWalk,
    /// PSA: status `pinned`, then every block fetched from the provider's delegates by one of
    /// pinwarden's own Kubo nodes.
    FetchFromDelegates,
    /// Status only: nothing configured to walk the blocks with; never verified.
    StatusOnly,
}

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub kind: NodeKind,
    pub proof: Proof,
    /// How many copies one confirmed pin stands for (a cluster's replication-min; 1 otherwise).
    pub replication: u32,
}

impl Capabilities {
    pub const KUBO: Capabilities = Capabilities {
        kind: NodeKind::Kubo,
        proof: Proof::LocalWalk,
        replication: 1,
    };
}

#[async_trait]
pub trait Node: Send + Sync {
    /// What this backend is and can prove.
    fn capabilities(&self) -> Capabilities {
        Capabilities::KUBO
    }
    /// `pin/add` (recursive). The node gives up by itself after `stall` without progress; the
    /// executor bounds the whole call with the pin's overall timeout.
    async fn pin(&self, cid: &str, stall: Duration) -> Outcome;
    /// [`Node::pin`], telling `progress` as the pin starts and each time it moves (the ledger's
    /// `since-last-progress-ms`, which lets a policy hedge a pin that does not move at all).
    /// By default a node reports no progress, and its pins are never quiet.
    async fn pin_watched(&self, cid: &str, stall: Duration, progress: &Progress) -> Outcome {
        let _ = progress;
        self.pin(cid, stall).await
    }
    /// `pin/ls?type=recursive`: `Ok` when listed, `NotPinned` when the node says it is not.
    async fn verify(&self, cid: &str) -> Outcome;
    /// Are the CID's blocks present locally (root and links), without fetching from the network?
    async fn check_retrievable(&self, cid: &str) -> Outcome;
    /// The node's swarm addresses, with its peer id, for other nodes to dial.
    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome>;
    /// A dial to the addresses [`Node::swarm_addrs`] gave failed: a client that keeps them asks
    /// the node again next time (it may have restarted on other ports).
    fn swarm_addrs_failed(&self) {}
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
