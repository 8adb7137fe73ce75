//! The host's rules on a policy's decision, applied to a round: the rules themselves live in
//! the `host-rules` crate, shared with `policy-kit`'s test player, so a policy that passes its
//! unit tests is not refused here.

use crate::policy::contract::{Action, Event, Node as NodeInfo, Role};
use host_rules::{Act, Bounds, Round, Step};

/// Checks `decided` against the round so far; `Err` names the broken rule (a policy incident).
pub fn check(
    decided: &[Action],
    history: &[Event],
    nodes: &[NodeInfo],
    bounds: Bounds,
    started: usize,
) -> Result<(), String> {
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let round = Round {
        nodes: &names,
        has_local: nodes.iter().any(|n| n.role == Role::Local),
        bounds,
        started,
    };
    let steps: Vec<Step> = history.iter().map(Event::step).collect();
    let acts: Vec<Act> = decided.iter().map(Action::act).collect();
    host_rules::validate(&round, &steps, &acts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::contract::{Outcome, PinRequest, WaitRequest};

    fn nodes() -> Vec<NodeInfo> {
        ["primary", "backup-1"]
            .iter()
            .zip([Role::Primary, Role::Backup])
            .map(|(n, role)| NodeInfo {
                name: n.to_string(),
                role,
                health: crate::health::unknown(),
                kind: crate::policy::contract::NodeKind::Kubo,
                replication: 1,
            })
            .collect()
    }

    fn pin(node: &str) -> Action {
        Action::Pin(PinRequest {
            node: node.into(),
            timeout_ms: 60_000,
            stall_timeout_ms: 30_000,
        })
    }

    fn ended(action: Action, outcome: Outcome) -> Event {
        Event {
            action,
            outcome: Some(outcome),
            started_ms: 0,
            ended_ms: Some(0),
        }
    }

    #[test]
    fn a_lying_node_gives_no_evidence() {
        let succeed = [Action::Succeed(vec!["primary".into()])];
        let mut history = vec![
            ended(pin("primary"), Outcome::Ok),
            ended(Action::Verify("primary".into()), Outcome::NotPinned),
        ];
        let err = check(&succeed, &history, &nodes(), Bounds::default(), 2).unwrap_err();
        assert!(err.contains("without a verified, retrievable pin"), "{err}");
        history.push(ended(Action::Verify("primary".into()), Outcome::Ok));
        history.push(ended(
            Action::CheckRetrievable("primary".into()),
            Outcome::Ok,
        ));
        assert_eq!(
            check(&succeed, &history, &nodes(), Bounds::default(), 4),
            Ok(())
        );
    }

    #[test]
    fn running_actions_and_local_fallback_follow_the_topology() {
        let running = [Event {
            action: pin("backup-1"),
            outcome: None,
            started_ms: 0,
            ended_ms: None,
        }];
        let err = check(&[pin("backup-1")], &running, &nodes(), Bounds::default(), 1).unwrap_err();
        assert!(err.contains("already running"), "{err}");
        // A wait beside a running pin (hedging) is fine; a wait has no "busy" slot.
        let wait = Action::Wait(WaitRequest {
            ms: 5_000,
            node: Some("backup-1".into()),
        });
        assert_eq!(
            check(&[wait], &running, &nodes(), Bounds::default(), 1),
            Ok(())
        );
        assert!(
            check(
                &[Action::LocalFallback],
                &[],
                &nodes(),
                Bounds::default(),
                0
            )
            .is_err()
        );
    }
}
