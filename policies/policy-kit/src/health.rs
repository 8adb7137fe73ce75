//! A node's health as the host's ledger reports it (`node.health`), read for decisions: the
//! circuit breaker and the hedge delay. The breaker itself is `host_rules::breaker`, the same
//! function the host's metrics and alerts use, so what a policy does and what an operator sees
//! agree.

use crate::bindings::{Node, NodeHealth};
use crate::params::Settings;
pub use host_rules::Breaker;

host_rules::view_of_health!(fn view(NodeHealth));

/// The breaker of `node` under the policy's `breaker_failures` and `breaker_cooldown_ms`.
pub fn breaker(node: &Node, s: &Settings) -> Breaker {
    host_rules::breaker(
        &view(&node.health),
        s.breaker_failures,
        s.breaker_cooldown_ms,
    )
}

/// How long a pin on `node` may run before the next node starts beside it (`None`: never).
/// `hedge_after_ms`, halved per consecutive failure of the node (a sick primary is hedged
/// sooner; never below one second), but at least twice its recent pin time (a primary that is
/// merely slow on big content is not raced for nothing).
pub fn hedge_delay_ms(node: &Node, s: &Settings) -> Option<u64> {
    if s.hedge_after_ms == 0 {
        return None;
    }
    let halvings = node.health.consecutive_failures.min(16);
    let sooner = (s.hedge_after_ms >> halvings).max(1_000.min(s.hedge_after_ms));
    let typical = node
        .health
        .pin_latency_ms
        .map_or(0, |ms| ms.saturating_mul(2));
    Some(sooner.max(typical))
}

/// A node nothing is known about.
pub fn unknown() -> NodeHealth {
    NodeHealth {
        consecutive_failures: 0,
        since_last_ok_ms: None,
        since_last_failure_ms: None,
        since_last_start_ms: None,
        recent_ok: 0,
        recent_total: 0,
        pin_latency_ms: None,
        in_flight: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Role;
    use crate::params::{ALL, Settings};

    fn node(failures: u32, latency: Option<u64>) -> Node {
        Node {
            name: "primary".into(),
            role: Role::Primary,
            health: NodeHealth {
                consecutive_failures: failures,
                since_last_failure_ms: Some(0),
                pin_latency_ms: latency,
                ..unknown()
            },
            kind: crate::bindings::NodeKind::Kubo,
            replication: 1,
        }
    }

    #[test]
    fn a_failing_node_is_hedged_sooner_a_slow_one_later() {
        let s = Settings::defaults(ALL);
        assert_eq!(hedge_delay_ms(&node(0, None), &s), Some(10_000));
        assert_eq!(hedge_delay_ms(&node(1, None), &s), Some(5_000));
        assert_eq!(hedge_delay_ms(&node(2, None), &s), Some(2_500));
        assert_eq!(hedge_delay_ms(&node(30, None), &s), Some(1_000));
        assert_eq!(hedge_delay_ms(&node(0, Some(20_000)), &s), Some(40_000));
        let off = Settings {
            hedge_after_ms: 0,
            ..s
        };
        assert_eq!(hedge_delay_ms(&node(3, None), &off), None);
    }

    #[test]
    fn the_breaker_follows_the_parameters() {
        let s = Settings::defaults(ALL);
        assert_eq!(breaker(&node(2, None), &s), Breaker::Closed);
        assert_eq!(breaker(&node(3, None), &s), Breaker::Open);
        let never = Settings {
            breaker_failures: 0,
            ..s
        };
        assert_eq!(breaker(&node(30, None), &never), Breaker::Closed);
    }
}
