//! The `delegates` of PSA answers: the swarm addresses (each ending in `/p2p/<peer id>`) of
//! the nodes that pin, asked of each node once at start and again every minute, so an answer
//! never waits on a node (a dead one keeps its last known addresses).

use crate::Role;
use crate::executor::Topology;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// The spec's `maxItems` for delegates.
pub const MAX_DELEGATES: usize = 20;

/// Addresses kept per node: enough to reach it, few enough to fit several nodes.
const PER_NODE: usize = 3;

/// How often the addresses are asked again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Delegates {
    addrs: RwLock<HashMap<String, Vec<String>>>,
}

impl Delegates {
    /// Asks every node for its addresses, each within `bound`, all at once.
    pub async fn refresh(&self, topology: &Topology, bound: Duration) {
        let asked = topology.roles().into_iter().filter_map(|(name, _)| {
            let client = topology.client(&name)?.clone();
            Some(async move {
                let addrs = tokio::time::timeout(bound, client.swarm_addrs()).await;
                (name, addrs)
            })
        });
        for (name, addrs) in futures::future::join_all(asked).await {
            match addrs {
                Ok(Ok(addrs)) => {
                    let kept: Vec<String> = addrs
                        .into_iter()
                        .filter(|a| crate::kubo::addr::peer_id(a).is_some())
                        .take(PER_NODE)
                        .collect();
                    if let Ok(mut map) = self.addrs.write() {
                        map.insert(name, kept);
                    }
                }
                other => tracing::debug!(node = %name, "delegates: no addresses ({other:?})"),
            }
        }
    }

    /// The addresses of `nodes`, in order, without repeats, at most [`MAX_DELEGATES`].
    pub fn of(&self, nodes: &[String]) -> Vec<String> {
        let Ok(map) = self.addrs.read() else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for addr in nodes.iter().filter_map(|n| map.get(n)).flatten() {
            if out.len() < MAX_DELEGATES && !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    /// The nodes that will pin a request not yet pinned: the primary and the backups.
    pub fn pinning_nodes(topology: &Topology) -> Vec<String> {
        topology
            .roles()
            .into_iter()
            .filter(|(_, role)| *role != Role::Local)
            .map(|(name, _)| name)
            .collect()
    }
}
