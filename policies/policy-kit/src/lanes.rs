//! Reading the history one node at a time.
//!
//! A node's lane is the sequence of its events: attempts of pin → verify (pin ls) →
//! check-retrievable, with a backoff wait after each failed attempt. On a backup, every attempt
//! starts with a provider hint (connect to the primary): the host renews the connection, since
//! one that carried an earlier attempt may have stopped carrying blocks (js-ipfs loses bitswap
//! messages under load and never asks again) or been closed. A claimed pin that `pin ls` does
//! not confirm is a failed attempt, like a timeout.

use crate::bindings::{Action, ConnectRequest, Event, Outcome, PinRequest, WaitRequest};
use crate::params::Settings;

/// Where a node's lane stands after the history so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Lane {
    /// Pinned, verified and retrievable.
    Confirmed,
    /// Every attempt used; `last` describes the final failure.
    Exhausted { attempts: u32, last: String },
    /// An action on this node is still running.
    Busy,
    /// The next step for this node.
    Next(Action),
}

/// The node an action concerns, if any.
pub fn action_node(action: &Action) -> Option<&str> {
    crate::script::act(action).node()
}

/// The events of `node` in `history`, in order: a lane's input.
pub fn events_of<'h>(node: &str, history: &'h [Event]) -> Vec<&'h Event> {
    by_node(history, &[node]).pop().unwrap_or_default()
}

/// The events of each of `nodes` in `history`, in order, in one pass.
///
/// A decision reads each node's events several times; sorting the history out once keeps the
/// decision linear in its length. Names are compared without `memcmp`, which wasm does a byte
/// at a time behind a call: node names are short and most compares fail on the length or the
/// last byte ("backup-1", "backup-2").
pub fn by_node<'h>(history: &'h [Event], nodes: &[&str]) -> Vec<Vec<&'h Event>> {
    let mut buckets: Vec<Vec<&Event>> = nodes.iter().map(|_| Vec::new()).collect();
    for event in history {
        let Some(name) = action_node(&event.action) else {
            continue;
        };
        if let Some(i) = nodes.iter().position(|n| same_name(n, name)) {
            buckets[i].push(event);
        }
    }
    buckets
}

fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.last() == b.last() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Failed actions among a node's `events` that the ledger's consecutive count includes (pins,
/// verifications, checks; not waits, not provider hints).
pub fn failures_on(events: &[&Event]) -> u32 {
    let failed = events.iter().filter(|e| {
        !matches!(e.action, Action::Wait(_) | Action::Connect(_))
            && e.outcome.as_ref().is_some_and(|o| *o != Outcome::Ok)
    });
    u32::try_from(failed.count()).unwrap_or(u32::MAX)
}

/// Short human description of an outcome, for failure summaries.
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".into(),
        Outcome::NotPinned => "claimed ok but pin ls disagrees".into(),
        Outcome::Timeout => "timeout".into(),
        Outcome::Stalled => "stalled".into(),
        Outcome::Unreachable(m) => format!("unreachable: {m}"),
        Outcome::HttpError(e) => format!("HTTP {}: {}", e.status, e.message),
        Outcome::Unretrievable(m) => format!("unretrievable: {m}"),
        Outcome::Error(m) => format!("error: {m}"),
    }
}

enum Phase<'h> {
    Start,
    Connected,
    Pinned,
    Verified,
    Confirmed,
    /// Described only if it ends the lane: most failures are followed by another attempt.
    Failed(&'h Outcome),
    Waited,
}

/// The lane of `node` with `budget` pin attempts, from the node's `events` (see
/// [`events_of`]). `provider` is the node to connect to before every pin attempt (the primary,
/// for backups), if a provider hint is wanted.
pub fn lane(
    node: &str,
    provider: Option<&str>,
    events: &[&Event],
    s: &Settings,
    budget: u32,
) -> Lane {
    let mut attempts = 0u32;
    let mut phase = Phase::Start;
    for event in events {
        let Some(outcome) = &event.outcome else {
            return Lane::Busy;
        };
        let ok = matches!(outcome, Outcome::Ok);
        let failed = || Phase::Failed(outcome);
        phase = match &event.action {
            // A failed hint is not fatal: the node may find providers by itself.
            Action::Connect(_) => Phase::Connected,
            Action::Pin(_) => {
                attempts += 1;
                if ok { Phase::Pinned } else { failed() }
            }
            Action::Verify(_) if ok => Phase::Verified,
            Action::CheckRetrievable(_) if ok => Phase::Confirmed,
            Action::Verify(_) | Action::CheckRetrievable(_) => failed(),
            Action::Wait(_) => Phase::Waited,
            Action::LocalFallback | Action::Succeed(_) | Action::Fail(_) => phase,
        };
    }
    let pin = || {
        Action::Pin(PinRequest {
            node: node.to_string(),
            timeout_ms: s.pin_timeout_ms,
            stall_timeout_ms: s.stall_timeout_ms,
        })
    };
    match phase {
        Phase::Confirmed => Lane::Confirmed,
        Phase::Pinned => Lane::Next(Action::Verify(node.to_string())),
        Phase::Verified => Lane::Next(Action::CheckRetrievable(node.to_string())),
        Phase::Failed(last) if attempts >= budget => Lane::Exhausted {
            attempts,
            last: describe_outcome(last),
        },
        Phase::Failed(_) => Lane::Next(Action::Wait(WaitRequest {
            ms: s.backoff_ms(attempts),
            node: Some(node.to_string()),
        })),
        // Before every attempt, not only the first: see the module's comment.
        Phase::Start | Phase::Waited => match provider {
            Some(provider) => Lane::Next(Action::Connect(ConnectRequest {
                node: node.to_string(),
                provider: provider.to_string(),
            })),
            None => Lane::Next(pin()),
        },
        Phase::Connected => Lane::Next(pin()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{ATTEMPTS, BASE_DELAY_MS, MAX_DELAY_MS};

    fn done(action: Action, outcome: Outcome) -> Event {
        Event {
            action,
            outcome: Some(outcome),
            started_ms: 0,
            ended_ms: Some(0),
        }
    }
    fn pin(node: &str) -> Action {
        Action::Pin(PinRequest {
            node: node.into(),
            timeout_ms: 1,
            stall_timeout_ms: 1,
        })
    }
    fn settings() -> Settings {
        Settings::defaults(&[ATTEMPTS, BASE_DELAY_MS, MAX_DELAY_MS])
    }

    #[test]
    fn fresh_lane_pins_or_hints_first() {
        assert!(matches!(
            lane("p", None, &events_of("p", &[]), &settings(), 5),
            Lane::Next(Action::Pin(_))
        ));
        assert!(matches!(
            lane("b", Some("p"), &events_of("b", &[]), &settings(), 5),
            Lane::Next(Action::Connect(c)) if c.provider == "p"
        ));
    }

    #[test]
    fn every_attempt_on_a_backup_starts_with_a_fresh_hint() {
        let hint = Action::Connect(ConnectRequest {
            node: "b".into(),
            provider: "p".into(),
        });
        let mut h = vec![done(hint.clone(), Outcome::Ok)];
        assert!(matches!(
            lane("b", Some("p"), &events_of("b", &h), &settings(), 5),
            Lane::Next(Action::Pin(_))
        ));
        h.push(done(pin("b"), Outcome::Stalled));
        assert!(matches!(
            lane("b", Some("p"), &events_of("b", &h), &settings(), 5),
            Lane::Next(Action::Wait(_))
        ));
        h.push(done(
            Action::Wait(WaitRequest {
                ms: 2_000,
                node: Some("b".into()),
            }),
            Outcome::Ok,
        ));
        assert_eq!(
            lane("b", Some("p"), &events_of("b", &h), &settings(), 5),
            Lane::Next(hint)
        );
        // A failed hint still lets the attempt run.
        h.push(done(
            Action::Connect(ConnectRequest {
                node: "b".into(),
                provider: "p".into(),
            }),
            Outcome::Unreachable("refused".into()),
        ));
        assert!(matches!(
            lane("b", Some("p"), &events_of("b", &h), &settings(), 5),
            Lane::Next(Action::Pin(_))
        ));
        // Without a provider (the primary itself) there is no hint.
        let h = [done(pin("p"), Outcome::Stalled)];
        let waited = [
            h[0].clone(),
            done(
                Action::Wait(WaitRequest {
                    ms: 2_000,
                    node: Some("p".into()),
                }),
                Outcome::Ok,
            ),
        ];
        assert!(matches!(
            lane("p", None, &events_of("p", &waited), &settings(), 5),
            Lane::Next(Action::Pin(_))
        ));
    }

    #[test]
    fn claimed_pin_not_listed_is_a_failed_attempt_with_backoff() {
        let h = [
            done(pin("p"), Outcome::Ok),
            done(Action::Verify("p".into()), Outcome::NotPinned),
        ];
        assert_eq!(
            lane("p", None, &events_of("p", &h), &settings(), 5),
            Lane::Next(Action::Wait(WaitRequest {
                ms: 2_000,
                node: Some("p".into())
            }))
        );
    }

    #[test]
    fn confirmed_needs_verify_and_retrievability() {
        let mut h = vec![done(pin("p"), Outcome::Ok)];
        assert!(matches!(
            lane("p", None, &events_of("p", &h), &settings(), 5),
            Lane::Next(Action::Verify(_))
        ));
        h.push(done(Action::Verify("p".into()), Outcome::Ok));
        assert!(matches!(
            lane("p", None, &events_of("p", &h), &settings(), 5),
            Lane::Next(Action::CheckRetrievable(_))
        ));
        h.push(done(Action::CheckRetrievable("p".into()), Outcome::Ok));
        assert_eq!(
            lane("p", None, &events_of("p", &h), &settings(), 5),
            Lane::Confirmed
        );
    }

    #[test]
    fn exhausted_after_the_attempt_budget() {
        let mut h = Vec::new();
        for _ in 0..5 {
            h.push(done(pin("p"), Outcome::Timeout));
        }
        assert_eq!(
            lane("p", None, &events_of("p", &h), &settings(), 5),
            Lane::Exhausted {
                attempts: 5,
                last: "timeout".into()
            }
        );
    }

    #[test]
    fn running_action_makes_the_lane_busy() {
        let h = [Event {
            action: pin("p"),
            outcome: None,
            started_ms: 0,
            ended_ms: None,
        }];
        assert_eq!(
            lane("p", None, &events_of("p", &h), &settings(), 5),
            Lane::Busy
        );
        assert!(matches!(
            lane("q", None, &events_of("q", &h), &settings(), 5),
            Lane::Next(_)
        ));
    }
}
