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

/// How often they are asked while no node has answered yet (every node down at start).
pub const RETRY_EMPTY_EVERY: Duration = Duration::from_secs(5);

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
    ///
    /// The spec requires at least one delegate. When none of `nodes` has known addresses (a
    /// node that was down at start, a local fallback node), the addresses of every other node
    /// stand in: each of them can reach the content's holders over bitswap. Empty only while no
    /// node at all has answered, see [`Delegates::is_empty`].
    pub fn of(&self, nodes: &[String]) -> Vec<String> {
        let Ok(map) = self.addrs.read() else {
            return Vec::new();
        };
        let wanted: Vec<&String> = nodes.iter().filter_map(|n| map.get(n)).flatten().collect();
        let chosen = if wanted.is_empty() {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            names
                .into_iter()
                .filter_map(|n| map.get(n))
                .flatten()
                .collect()
        } else {
            wanted
        };
        let mut out: Vec<String> = Vec::new();
        for addr in chosen {
            if out.len() < MAX_DELEGATES && !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    /// No node has told its addresses yet: the daemon then asks again sooner than
    /// [`REFRESH_EVERY`].
    pub fn is_empty(&self) -> bool {
        self.addrs
            .read()
            .map(|m| m.values().all(Vec::is_empty))
            .unwrap_or(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(nodes: &[(&str, &[&str])]) -> Delegates {
        let d = Delegates::default();
        if let Ok(mut map) = d.addrs.write() {
            for (name, addrs) in nodes {
                map.insert(
                    name.to_string(),
                    addrs.iter().map(|a| a.to_string()).collect(),
                );
            }
        }
        d
    }

    const A: &str = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA";
    const B: &str = "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWB";

    #[test]
    fn the_nodes_asked_for_come_first_without_repeats() {
        let d = with(&[("primary", &[A]), ("backup", &[B, A])]);
        assert_eq!(d.of(&["backup".into(), "primary".into()]), [B, A]);
        assert_eq!(d.of(&["primary".into()]), [A]);
    }

    #[test]
    fn never_empty_while_any_node_has_answered() {
        // The spec's minItems 1: a pin confirmed only on a node with no known addresses still
        // names a node that can reach it.
        let d = with(&[("local", &[]), ("primary", &[A])]);
        assert_eq!(d.of(&["local".into()]), [A]);
        assert_eq!(d.of(&["gone".into()]), [A]);
        assert!(!d.is_empty());
        assert!(with(&[("local", &[])]).is_empty());
        assert!(Delegates::default().is_empty());
    }
}
