//! A node's health as the host's ledger reports it (`node.health`), read for decisions: the
//! circuit breaker and the hedge delay. The breaker itself is `host_rules::breaker`, the same
//! function the host's metrics and alerts use, so what a policy does and what an operator sees
//! agree.

use crate::bindings::{Node, NodeHealth, NodeKind};
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

/// How long until a primary pin on `node` that started `elapsed_ms` ago is due a hedge: 0 when
/// due now, `None` when never (hedging off). Due at its [`hedge_delay_ms`], or sooner by the
/// quiet rule: once the node's running pins have shown no progress for `hedge_quiet_ms`.
///
/// Why: a stalled `pin/add` and one that is merely slow look alike for as long as time is
/// all a policy reads, so the time rule must wait long (10 s) to spare slow pins a race; a
/// Kubo pin reports its block count every 500 ms, so one that does not move at all is told
/// apart within a second or two. A GC holding Kubo's pin lock also reads as quiet: it gets a
/// backup pin beside it, never a failure. The host reports progress only for pins that show
/// it, so the rule waits for the first report to tell a Kubo node that reports none.
pub fn hedge_due_in_ms(node: &Node, s: &Settings, elapsed_ms: u64) -> Option<u64> {
    let by_time = hedge_delay_ms(node, s)?.saturating_sub(elapsed_ms);
    if s.hedge_quiet_ms == 0 || node.kind != NodeKind::Kubo {
        return Some(by_time);
    }
    let by_quiet = match node.health.since_last_progress_ms {
        Some(quiet) => s.hedge_quiet_ms.saturating_sub(quiet),
        // No report yet (the decision that starts a pin sees the node before it): look again
        // once the pin could have been quiet that long.
        None if elapsed_ms < s.hedge_quiet_ms => s.hedge_quiet_ms - elapsed_ms,
        None => by_time,
    };
    // Looking again takes a decision; a report at most 500 ms old never rules out a hedge.
    Some(if by_quiet == 0 {
        0
    } else {
        by_quiet.max(MIN_RECHECK_MS).min(by_time)
    })
}

/// The shortest wait before the quiet rule looks again.
const MIN_RECHECK_MS: u64 = 100;

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
        since_last_progress_ms: None,
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

    /// A Kubo primary whose running pins show no progress for `hedge_quiet_ms` is due a hedge
    /// at once; one whose pins move keeps the time rule; other kinds and `0` turn it off.
    #[test]
    fn a_primary_whose_pins_do_not_move_is_due_a_hedge_sooner() {
        let s = Settings::defaults(ALL);
        let quiet = |ms: Option<u64>, kind| Node {
            health: NodeHealth {
                since_last_progress_ms: ms,
                in_flight: 1,
                since_last_start_ms: Some(0),
                ..unknown()
            },
            kind,
            ..node(0, None)
        };
        let kubo = |ms| quiet(ms, NodeKind::Kubo);
        // The decision that starts the pin: no report yet, look again at the quiet delay.
        assert_eq!(hedge_due_in_ms(&kubo(None), &s, 0), Some(1_000));
        // Quiet since the pin started: due at 1 s, not 10.
        assert_eq!(hedge_due_in_ms(&kubo(Some(600)), &s, 600), Some(400));
        assert_eq!(hedge_due_in_ms(&kubo(Some(1_000)), &s, 1_000), Some(0));
        // Moving (the last report 200 ms ago, 5 s in): look again, hedge by time at 10 s.
        assert_eq!(hedge_due_in_ms(&kubo(Some(200)), &s, 5_000), Some(800));
        assert_eq!(hedge_due_in_ms(&kubo(Some(200)), &s, 9_500), Some(500));
        assert_eq!(hedge_due_in_ms(&kubo(Some(200)), &s, 10_000), Some(0));
        // Nearly quiet long enough: the next look is not a busy loop.
        assert_eq!(hedge_due_in_ms(&kubo(Some(990)), &s, 990), Some(100));
        // A Kubo node that never reports (js-ipfs): the time rule, once it has had its chance.
        assert_eq!(hedge_due_in_ms(&kubo(None), &s, 1_500), Some(8_500));
        // A cluster reports no progress: the time rule.
        let cluster = quiet(Some(5_000), NodeKind::Cluster);
        assert_eq!(hedge_due_in_ms(&cluster, &s, 5_000), Some(5_000));
        // Off: either parameter at 0.
        let no_quiet = Settings {
            hedge_quiet_ms: 0,
            ..s.clone()
        };
        assert_eq!(
            hedge_due_in_ms(&kubo(Some(5_000)), &no_quiet, 5_000),
            Some(5_000)
        );
        let no_hedge = Settings {
            hedge_after_ms: 0,
            ..s
        };
        assert_eq!(hedge_due_in_ms(&kubo(Some(5_000)), &no_hedge, 5_000), None);
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
