//! Reading the history one node at a time.
//!
//! A node's lane is the sequence of its events: attempts of pin, then the proof's two reads
//! (verify, i.e. `pin ls`, and check-retrievable) started together, with a backoff wait after
//! each failed attempt. On a backup, every attempt comes with a provider hint (connect to the
//! primary). On a Kubo node a first attempt's hint starts beside its pin: its bitswap sends its
//! wants to a peer as soon as they connect, so the pin loses nothing, and a backup already
//! connected (the usual case in an outage, where every job goes to it) does not wait for a dial
//! it does not need. A remote tier's hint comes first: its addresses become the pin request's
//! origins. A retry's hint comes first too, and renews the connection, since one that carried an
//! earlier attempt may have stopped carrying blocks (js-ipfs loses bitswap messages under load
//! and never asks again) or been closed. A claimed pin that `pin ls` does not confirm is a
//! failed attempt, like a timeout.

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
    /// The next steps for this node, to start together.
    Next(Vec<Action>),
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

/// A lane's provider hint: the node to connect to on every pin attempt (the primary, for
/// backups).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hint<'a> {
    pub provider: &'a str,
    /// A first attempt's hint may start beside its pin (a Kubo node fetches from a peer as soon
    /// as it connects); otherwise it ends before the pin starts (a remote tier's request carries
    /// the hint's addresses as its origins).
    pub beside_pin: bool,
}

/// The lane of `node` with `budget` pin attempts, from the node's `events` (see
/// [`events_of`]), with a provider hint on every attempt if `hint` is given.
pub fn lane(
    node: &str,
    hint: Option<Hint<'_>>,
    events: &[&Event],
    s: &Settings,
    budget: u32,
) -> Lane {
    let mut attempts = 0u32;
    let mut phase = Phase::Start;
    // A hint still running that a pin started beside: not waited for, but no second hint
    // starts before it ends (the host refuses one action twice on a node).
    let mut hint_running = false;
    for (i, event) in events.iter().enumerate() {
        let Some(outcome) = &event.outcome else {
            if matches!(event.action, Action::Connect(_)) && i + 1 < events.len() {
                hint_running = true;
                continue;
            }
            return Lane::Busy;
        };
        let ok = matches!(outcome, Outcome::Ok);
        let failed = || Phase::Failed(outcome);
        phase = match (&event.action, phase) {
            // A failed hint is not fatal: the node may find providers by itself.
            (Action::Connect(_), _) => Phase::Connected,
            (Action::Pin(_), _) => {
                attempts += 1;
                if ok { Phase::Pinned } else { failed() }
            }
            (Action::Verify(_), _) if ok => Phase::Verified,
            // The two reads run together and are recorded in the order they started (verify
            // first): the pin is confirmed only when both were ok, and a failed verify stays
            // the reason whatever the check found.
            (Action::CheckRetrievable(_), Phase::Verified) if ok => Phase::Confirmed,
            (Action::CheckRetrievable(_), earlier @ Phase::Failed(_)) => earlier,
            (Action::Verify(_) | Action::CheckRetrievable(_), _) => failed(),
            (Action::Wait(_), _) => Phase::Waited,
            (Action::LocalFallback | Action::Succeed(_) | Action::Fail(_), earlier) => earlier,
        };
    }
    let pin = || {
        Action::Pin(PinRequest {
            node: node.to_string(),
            timeout_ms: s.pin_timeout_ms,
            stall_timeout_ms: s.stall_timeout_ms,
        })
    };
    let connect = |hint: Hint| {
        Action::Connect(ConnectRequest {
            node: node.to_string(),
            provider: hint.provider.to_string(),
        })
    };
    match phase {
        Phase::Confirmed => Lane::Confirmed,
        Phase::Pinned => Lane::Next(vec![
            Action::Verify(node.to_string()),
            Action::CheckRetrievable(node.to_string()),
        ]),
        // Only from a history whose verify ran alone (an older policy's, replayed).
        Phase::Verified => Lane::Next(vec![Action::CheckRetrievable(node.to_string())]),
        Phase::Failed(last) if attempts >= budget => Lane::Exhausted {
            attempts,
            last: describe_outcome(last),
        },
        Phase::Failed(_) => Lane::Next(vec![Action::Wait(WaitRequest {
            ms: s.backoff_ms(attempts),
            node: Some(node.to_string()),
        })]),
        // A hint with every attempt, not only the first: see the module's comment.
        Phase::Start => match hint {
            Some(h) if h.beside_pin => Lane::Next(vec![connect(h), pin()]),
            Some(h) => Lane::Next(vec![connect(h)]),
            None => Lane::Next(vec![pin()]),
        },
        Phase::Waited => match hint {
            // The retry's hint renews the connection the first one may still be making.
            Some(_) if hint_running => Lane::Busy,
            Some(h) => Lane::Next(vec![connect(h)]),
            None => Lane::Next(vec![pin()]),
        },
        Phase::Connected => Lane::Next(vec![pin()]),
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
    /// The pin a lane asks for under [`settings`].
    fn pin_with_defaults(node: &str) -> Action {
        let s = settings();
        Action::Pin(PinRequest {
            node: node.into(),
            timeout_ms: s.pin_timeout_ms,
            stall_timeout_ms: s.stall_timeout_ms,
        })
    }

    fn hint() -> Action {
        Action::Connect(ConnectRequest {
            node: "b".into(),
            provider: "p".into(),
        })
    }
    fn running(action: Action) -> Event {
        Event {
            action,
            outcome: None,
            started_ms: 0,
            ended_ms: None,
        }
    }
    /// The lane of `node`; `provider`: a Kubo backup's hint.
    fn next(node: &str, provider: Option<&str>, h: &[Event]) -> Lane {
        let hint = provider.map(|provider| Hint {
            provider,
            beside_pin: true,
        });
        lane(node, hint, &events_of(node, h), &settings(), 5)
    }

    #[test]
    fn fresh_lane_pins_or_hints_beside_the_pin() {
        assert_eq!(
            next("p", None, &[]),
            Lane::Next(vec![pin_with_defaults("p")])
        );
        assert_eq!(
            next("b", Some("p"), &[]),
            Lane::Next(vec![hint(), pin_with_defaults("b")])
        );
        // A remote tier's hint ends before its pin starts: it gives the request its origins.
        let remote = Some(Hint {
            provider: "p",
            beside_pin: false,
        });
        assert_eq!(
            lane("b", remote, &events_of("b", &[]), &settings(), 5),
            Lane::Next(vec![hint()])
        );
        let hinted = [done(hint(), Outcome::Ok)];
        assert_eq!(
            lane("b", remote, &events_of("b", &hinted), &settings(), 5),
            Lane::Next(vec![pin_with_defaults("b")])
        );
    }

    #[test]
    fn a_first_hint_still_running_does_not_hold_its_pin_up() {
        // The pin ended before the dial did: the lane goes on to the proof.
        let h = [running(hint()), done(pin("b"), Outcome::Ok)];
        assert_eq!(
            next("b", Some("p"), &h),
            Lane::Next(vec![
                Action::Verify("b".into()),
                Action::CheckRetrievable("b".into())
            ])
        );
        // Both running: busy.
        let h = [running(hint()), running(pin("b"))];
        assert_eq!(next("b", Some("p"), &h), Lane::Busy);
        // A hint alone (a retry's) is waited for.
        assert_eq!(next("b", Some("p"), &[running(hint())]), Lane::Busy);
        // The pin failed and its backoff ended before the first dial did: the retry's hint
        // waits for it (a second connect on the node would be refused).
        let backoff = Action::Wait(WaitRequest {
            ms: 2_000,
            node: Some("b".into()),
        });
        let mut h = vec![
            running(hint()),
            done(pin("b"), Outcome::Unreachable("refused".into())),
            done(backoff, Outcome::Ok),
        ];
        assert_eq!(next("b", Some("p"), &h), Lane::Busy);
        h[0] = done(hint(), Outcome::Ok);
        assert_eq!(next("b", Some("p"), &h), Lane::Next(vec![hint()]));
    }

    #[test]
    fn a_retry_on_a_backup_renews_its_hint_before_the_pin() {
        let mut h = vec![done(hint(), Outcome::Ok), done(pin("b"), Outcome::Stalled)];
        assert!(matches!(
            next("b", Some("p"), &h),
            Lane::Next(v) if matches!(v.as_slice(), [Action::Wait(_)])
        ));
        h.push(done(
            Action::Wait(WaitRequest {
                ms: 2_000,
                node: Some("b".into()),
            }),
            Outcome::Ok,
        ));
        assert_eq!(next("b", Some("p"), &h), Lane::Next(vec![hint()]));
        // A failed hint still lets the attempt run.
        h.push(done(hint(), Outcome::Unreachable("refused".into())));
        assert_eq!(
            next("b", Some("p"), &h),
            Lane::Next(vec![pin_with_defaults("b")])
        );
        // Without a provider (the primary itself) there is no hint.
        let waited = [
            done(pin("p"), Outcome::Stalled),
            done(
                Action::Wait(WaitRequest {
                    ms: 2_000,
                    node: Some("p".into()),
                }),
                Outcome::Ok,
            ),
        ];
        assert_eq!(
            next("p", None, &waited),
            Lane::Next(vec![pin_with_defaults("p")])
        );
    }

    #[test]
    fn claimed_pin_not_listed_is_a_failed_attempt_with_backoff() {
        let backoff = Lane::Next(vec![Action::Wait(WaitRequest {
            ms: 2_000,
            node: Some("p".into()),
        })]);
        let h = [
            done(pin("p"), Outcome::Ok),
            done(Action::Verify("p".into()), Outcome::NotPinned),
        ];
        assert_eq!(next("p", None, &h), backoff);
        // Whatever the check beside it found.
        let mut h = h.to_vec();
        h.push(done(Action::CheckRetrievable("p".into()), Outcome::Ok));
        assert_eq!(next("p", None, &h), backoff);
        h.pop();
        h.push(done(
            Action::CheckRetrievable("p".into()),
            Outcome::Unretrievable("a block is missing".into()),
        ));
        match next("p", None, &h) {
            Lane::Next(v) => assert!(matches!(v.as_slice(), [Action::Wait(_)]), "{v:?}"),
            other => panic!("{other:?}"),
        }
        let exhausted = lane("p", None, &events_of("p", &h), &settings(), 1);
        assert_eq!(
            exhausted,
            Lane::Exhausted {
                attempts: 1,
                last: "claimed ok but pin ls disagrees".into()
            }
        );
    }

    #[test]
    fn confirmed_needs_verify_and_retrievability() {
        let mut h = vec![done(pin("p"), Outcome::Ok)];
        let proof = vec![
            Action::Verify("p".into()),
            Action::CheckRetrievable("p".into()),
        ];
        assert_eq!(next("p", None, &h), Lane::Next(proof));
        // One of the two still running: busy, in either order of ending.
        h.push(done(Action::Verify("p".into()), Outcome::Ok));
        h.push(running(Action::CheckRetrievable("p".into())));
        assert_eq!(next("p", None, &h), Lane::Busy);
        h[1] = running(Action::Verify("p".into()));
        h[2] = done(Action::CheckRetrievable("p".into()), Outcome::Ok);
        assert_eq!(next("p", None, &h), Lane::Busy);
        h[1] = done(Action::Verify("p".into()), Outcome::Ok);
        assert_eq!(next("p", None, &h), Lane::Confirmed);
        // A pin that `pin ls` listed but whose blocks are not all there is not confirmed.
        h[2] = done(
            Action::CheckRetrievable("p".into()),
            Outcome::Unretrievable("a block is missing".into()),
        );
        assert!(
            matches!(next("p", None, &h), Lane::Next(v) if matches!(v.as_slice(), [Action::Wait(_)]))
        );
        // A history whose verify ran alone (an older policy's) goes on to the check.
        let h = [
            done(pin("p"), Outcome::Ok),
            done(Action::Verify("p".into()), Outcome::Ok),
        ];
        assert_eq!(
            next("p", None, &h),
            Lane::Next(vec![Action::CheckRetrievable("p".into())])
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
