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
/// merely slow on big content is not raced for nothing). The floor, one second, when the node
/// is [`stuck`]: other jobs' pins on it are already past that delay.
pub fn hedge_delay_ms(node: &Node, s: &Settings) -> Option<u64> {
    if s.hedge_after_ms == 0 {
        return None;
    }
    let floor = 1_000.min(s.hedge_after_ms);
    let halvings = node.health.consecutive_failures.min(16);
    let sooner = (s.hedge_after_ms >> halvings).max(floor);
    let typical = node
        .health
        .pin_latency_ms
        .map_or(0, |ms| ms.saturating_mul(2));
    let delay = sooner.max(typical);
    Some(if stuck(&node.health, delay) {
        floor
    } else {
        delay
    })
}

/// Whether a node's running actions look stuck: actions are running on it, none of its actions
/// has succeeded since the last one started, and either they are all older than `delay` or the
/// node's last outcome was a failure (`consecutive_failures` counts from the last success).
///
/// Why: the breaker opens only as the stuck pins are abandoned, one failure at a time, so in
/// an outage the jobs that start meanwhile (the next wave, as the first one's backups win)
/// would each wait out a hedge delay of their own on a node known to be stuck (measured on
/// Kubo: 2 of 100 drained jobs, 5.1 and 2.8 s each, the drain's tail). The pins a new job
/// starts reset `since_last_start_ms`, hence the failure test for the jobs after the first.
/// On a healthy node a job starts when another ends, so a success is recent and this is false.
pub fn stuck(h: &NodeHealth, delay: u64) -> bool {
    let Some(quiet) = h.since_last_start_ms else {
        return false;
    };
    let unanswered = h.in_flight > 0 && h.since_last_ok_ms.is_none_or(|ok| ok >= quiet);
    unanswered && (quiet >= delay || h.consecutive_failures > 0)
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

    /// A node with pins running past the hedge delay and no success since: a new pin on it is
    /// hedged after the floor, not after a full delay of its own.
    #[test]
    fn a_node_whose_running_pins_are_stuck_is_hedged_at_the_floor() {
        let s = Settings::defaults(ALL);
        let busy = |in_flight, quiet, ok, failures| Node {
            health: NodeHealth {
                in_flight,
                since_last_start_ms: Some(quiet),
                since_last_ok_ms: ok,
                ..node(failures, None).health
            },
            ..node(failures, None)
        };
        // Nine pins started 10.1 s ago, none answered: stuck.
        assert_eq!(hedge_delay_ms(&busy(9, 10_100, None, 0), &s), Some(1_000));
        // The last outcome a failure, a pin started since (the previous job's): stuck.
        assert_eq!(hedge_delay_ms(&busy(9, 100, None, 1), &s), Some(1_000));
        // Not yet past the delay, no failure.
        assert_eq!(hedge_delay_ms(&busy(9, 9_000, None, 0), &s), Some(10_000));
        // A failure, but a success since the last start: the node answers.
        assert_eq!(hedge_delay_ms(&busy(9, 100, Some(50), 1), &s), Some(5_000));
        // A success since the last start: a healthy node with long pins.
        assert_eq!(
            hedge_delay_ms(&busy(9, 10_100, Some(200), 0), &s),
            Some(10_000)
        );
        // A success before the last start does not count.
        assert_eq!(
            hedge_delay_ms(&busy(9, 10_100, Some(20_000), 0), &s),
            Some(1_000)
        );
        // Nothing running: nothing is stuck.
        assert_eq!(hedge_delay_ms(&busy(0, 60_000, None, 0), &s), Some(10_000));
        // Slow but healthy content (pins take 20 s): stuck only past twice that.
        let slow = |quiet| Node {
            health: NodeHealth {
                pin_latency_ms: Some(20_000),
                ..busy(9, quiet, Some(quiet + 1), 0).health
            },
            ..node(0, None)
        };
        assert_eq!(hedge_delay_ms(&slow(30_000), &s), Some(40_000));
        assert_eq!(hedge_delay_ms(&slow(40_000), &s), Some(1_000));
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
