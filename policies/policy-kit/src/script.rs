//! A scripted world for native unit tests of policy logic: no wasm, no IPFS, no clock.
//!
//! It plays a decision function the way the host's executor does: actions returned together
//! run concurrently, the policy is asked again each time one of them ends, and every decision
//! must pass the host's own rules ([`host_rules`], the crate the executor uses). A decision the
//! host would refuse ends the run as [`End::Refused`], so a policy that passes its unit tests is
//! not turned away by the host.
//!
//! Like the host, it keeps each node's health (a small ledger: failures, last start, last
//! failure, actions in flight) and hands it to every decision, starting from the health the
//! test gives its nodes, so breakers and hedging can be unit-tested across a round.
//!
//! Each node answers pins from a script (`"ok"`, `"lie"`, `"timeout"`, `"slow"`, `"refused"`,
//! anything else an HTTP 500; the last entry repeats); `pin ls` and retrievability follow from
//! what really got pinned. Only waits and timed-out pins take (virtual) time; everything else
//! ends at once, in the order it was started. A `"timeout"` pin hangs without progress; a
//! `"slow"` one times out too, but shows progress all along (a Kubo node's pins report it, as
//! the host's `since-last-progress-ms`).

use crate::bindings::{Action, Event, HttpError, Job, Node, Outcome, Role};
use std::collections::{HashMap, HashSet};

/// How a run of the decision function ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Succeeded(Vec<String>),
    Failed(String),
    LocalFallback,
    /// The host would refuse this decision (the message names the broken rule).
    Refused(String),
}

pub struct Run {
    pub end: End,
    pub history: Vec<Event>,
    pub now_ms: u64,
}

impl Run {
    /// Pin attempts per node, in history order.
    pub fn pins_on(&self, node: &str) -> usize {
        self.history
            .iter()
            .filter(|e| matches!(&e.action, Action::Pin(p) if p.node == node))
            .count()
    }
    /// The waits, in order.
    pub fn waits(&self) -> Vec<u64> {
        self.history
            .iter()
            .filter_map(|e| match &e.action {
                Action::Wait(w) => Some(w.ms),
                _ => None,
            })
            .collect()
    }
}

/// A Kubo node with no health record yet.
pub fn node(name: &str, role: Role) -> Node {
    Node {
        name: name.into(),
        role,
        health: crate::health::unknown(),
        kind: crate::bindings::NodeKind::Kubo,
        replication: 1,
    }
}

/// A remote backup of `kind` whose confirmed pin stands for `replication` copies.
pub fn remote(name: &str, kind: crate::bindings::NodeKind, replication: u32) -> Node {
    Node {
        kind,
        replication,
        ..node(name, Role::Backup)
    }
}

pub fn job(lazy: bool, failed_rounds: u32) -> Job {
    Job {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: "job-1".into(),
        size_bytes: 1 << 20,
        lazy,
        failed_rounds,
    }
}

host_rules::view_of_action!(pub fn act(Action));

/// The rules' view of the history.
fn steps(history: &[Event]) -> Vec<host_rules::Step<'_>> {
    history
        .iter()
        .map(|e| host_rules::Step {
            act: act(&e.action),
            ok: e.outcome.as_ref().map(|o| *o == Outcome::Ok),
        })
        .collect()
}

/// The scripted nodes: what each pin attempt answers, and what really got pinned.
struct World<'a> {
    scripts: HashMap<&'a str, &'a [&'a str]>,
    pins: HashMap<String, usize>,
    pinned: HashSet<String>,
}

/// A node's ledger entry, in absolute virtual time.
#[derive(Default)]
struct Ledger {
    failures: u32,
    last_ok: Option<u64>,
    last_failure: Option<u64>,
    last_start: Option<u64>,
    in_flight: u32,
    last_pin_ok: Option<u64>,
}

/// An action under way.
struct Running {
    index: usize,
    end: u64,
    outcome: Outcome,
    /// A pin that shows progress while it runs.
    moving: bool,
}

/// The test's nodes with their health as of `now` (the ledger on top of what the test gave).
fn with_health(
    nodes: &[Node],
    ledger: &HashMap<String, Ledger>,
    history: &[Event],
    running: &[Running],
    now: u64,
) -> Vec<Node> {
    let ago = |t: Option<u64>, given: Option<u64>| t.map(|t| now - t).or(given);
    nodes
        .iter()
        .map(|n| {
            let mut node = n.clone();
            if n.kind == crate::bindings::NodeKind::Kubo {
                // As the host's ledger (a moving pin's last move is now).
                let pins: Vec<&Running> = running
                    .iter()
                    .filter(
                        |r| matches!(&history[r.index].action, Action::Pin(p) if p.node == n.name),
                    )
                    .collect();
                let oldest = pins.iter().map(|r| history[r.index].started_ms).min();
                let moving = pins.iter().any(|r| r.moving).then_some(now);
                let life = ledger.get(&n.name).and_then(|l| l.last_pin_ok);
                node.health.since_last_progress_ms =
                    oldest.map(|t| now - host_rules::quiet_since(t, moving, life));
            }
            if let Some(l) = ledger.get(&n.name) {
                let h = &mut node.health;
                h.consecutive_failures = l.failures;
                h.since_last_ok_ms = ago(l.last_ok, h.since_last_ok_ms);
                h.since_last_failure_ms = ago(l.last_failure, h.since_last_failure_ms);
                h.since_last_start_ms = ago(l.last_start, h.since_last_start_ms);
                h.in_flight = l.in_flight;
            }
            node
        })
        .collect()
}

impl World<'_> {
    /// The outcome of `action`, how long it takes, and whether it moves meanwhile.
    fn answer(&mut self, action: &Action) -> (Outcome, u64, bool) {
        let (outcome, takes) = match action {
            Action::Wait(w) => (Outcome::Ok, w.ms),
            Action::Connect(_) => (Outcome::Ok, 0),
            Action::Pin(p) => {
                let n = self.pins.entry(p.node.clone()).or_default();
                let script = self
                    .scripts
                    .get(p.node.as_str())
                    .copied()
                    .unwrap_or(&["ok"]);
                let answer = script.get(*n).or(script.last()).copied().unwrap_or("ok");
                *n += 1;
                match answer {
                    "ok" => {
                        self.pinned.insert(p.node.clone());
                        (Outcome::Ok, 0)
                    }
                    "lie" => (Outcome::Ok, 0),
                    "timeout" => (Outcome::Timeout, p.timeout_ms),
                    "slow" => return (Outcome::Timeout, p.timeout_ms, true),
                    "refused" => (Outcome::Unreachable("connection refused".into()), 0),
                    other => (
                        Outcome::HttpError(HttpError {
                            status: 500,
                            message: other.into(),
                        }),
                        0,
                    ),
                }
            }
            Action::Verify(n) if self.pinned.contains(n) => (Outcome::Ok, 0),
            Action::Verify(_) => (Outcome::NotPinned, 0),
            Action::CheckRetrievable(n) if self.pinned.contains(n) => (Outcome::Ok, 0),
            Action::CheckRetrievable(_) => (Outcome::Unretrievable("blocks missing".into()), 0),
            // Terminal actions end the run before they would be answered.
            Action::LocalFallback | Action::Succeed(_) | Action::Fail(_) => (Outcome::Ok, 0),
        };
        (outcome, takes, false)
    }
}

/// Plays `decide` against scripted nodes until it ends the job (at most 10,000 decisions).
pub fn run(
    mut decide: impl FnMut(&Job, &[Node], &[Event], u64) -> Vec<Action>,
    job: &Job,
    nodes: &[Node],
    scripts: &[(&str, &[&str])],
) -> Run {
    let mut world = World {
        scripts: scripts.iter().copied().collect(),
        pins: HashMap::new(),
        pinned: HashSet::new(),
    };
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let has_local = nodes.iter().any(|n| n.role == Role::Local);
    let mut history: Vec<Event> = Vec::new();
    let mut running: Vec<Running> = Vec::new();
    let mut ledger: HashMap<String, Ledger> = nodes
        .iter()
        .map(|n| {
            let entry = Ledger {
                failures: n.health.consecutive_failures,
                ..Ledger::default()
            };
            (n.name.clone(), entry)
        })
        .collect();
    let mut now_ms = 0u64;
    for _ in 0..10_000 {
        let seen = with_health(nodes, &ledger, &history, &running, now_ms);
        let actions = decide(job, &seen, &history, now_ms);
        let round = host_rules::Round {
            nodes: &names,
            has_local,
            bounds: host_rules::Bounds::default(),
            started: history.len(),
        };
        let decided: Vec<host_rules::Act> = actions.iter().map(act).collect();
        if let Err(rule) = host_rules::validate(&round, &steps(&history), &decided) {
            return finish(End::Refused(rule), history, now_ms);
        }
        match actions.as_slice() {
            [Action::Succeed(n)] => return finish(End::Succeeded(n.clone()), history, now_ms),
            [Action::Fail(r)] => return finish(End::Failed(r.clone()), history, now_ms),
            [Action::LocalFallback] => return finish(End::LocalFallback, history, now_ms),
            _ => {}
        }
        for action in actions {
            let (outcome, takes, moving) = world.answer(&action);
            if let Some(l) = on_node(&action).and_then(|n| ledger.get_mut(n)) {
                l.last_start = Some(now_ms);
                l.in_flight += 1;
            }
            running.push(Running {
                index: history.len(),
                end: now_ms + takes,
                outcome,
                moving,
            });
            history.push(Event {
                action,
                outcome: None,
                started_ms: now_ms,
                ended_ms: None,
            });
        }
        // The earliest to end (the first started, on a tie) ends; the policy is asked again.
        let Some(next) = (0..running.len()).min_by_key(|&i| (running[i].end, running[i].index))
        else {
            continue;
        };
        let Running {
            index,
            end,
            outcome,
            ..
        } = running.remove(next);
        now_ms = end;
        if let Some(l) = on_node(&history[index].action).and_then(|n| ledger.get_mut(n)) {
            l.in_flight -= 1;
            if outcome == Outcome::Ok {
                (l.failures, l.last_ok) = (0, Some(now_ms));
                if matches!(history[index].action, Action::Pin(_)) {
                    l.last_pin_ok = Some(now_ms);
                }
            } else if !matches!(history[index].action, Action::Connect(_)) {
                // As the host's ledger: a failed provider hint is not the dialer's failure.
                (l.failures, l.last_failure) = (l.failures + 1, Some(now_ms));
            }
        }
        history[index].outcome = Some(outcome);
        history[index].ended_ms = Some(end);
    }
    panic!("policy did not end the job within 10,000 decisions");
}

/// The node whose health an action's outcome tells about (waits tell nothing).
fn on_node(action: &Action) -> Option<&str> {
    match action {
        Action::Wait(_) => None,
        other => act(other).node(),
    }
}

fn finish(end: End, history: Vec<Event>, now_ms: u64) -> Run {
    Run {
        end,
        history,
        now_ms,
    }
}

/// Primary, `backups` backups and (optionally) a local node.
pub fn topology(backups: usize, local: bool) -> Vec<Node> {
    let mut nodes = vec![node("primary", Role::Primary)];
    nodes.extend((1..=backups).map(|i| node(&format!("backup-{i}"), Role::Backup)));
    if local {
        nodes.push(node("local", Role::Local));
    }
    nodes
}

/// Plays policy `P` (its plain `decide`, with settings `s`) against scripted nodes.
pub fn play<P: crate::Policy>(
    s: &crate::Settings,
    job: &Job,
    nodes: &[Node],
    scripts: &[(&str, &[&str])],
) -> Run {
    run(|j, n, h, t| P::decide(s, j, n, h, t), job, nodes, scripts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::PinRequest;

    fn pin(node: &str) -> Action {
        Action::Pin(PinRequest {
            node: node.into(),
            timeout_ms: 1_000,
            stall_timeout_ms: 1_000,
        })
    }

    /// A policy that trusts the node's "pin OK" is refused here exactly as the host refuses it.
    #[test]
    fn success_without_proof_is_refused_as_the_host_refuses_it() {
        let trusting = |_: &Job, _: &[Node], h: &[Event], _: u64| {
            if h.is_empty() {
                vec![pin("primary")]
            } else {
                vec![Action::Succeed(vec!["primary".into()])]
            }
        };
        let run = run(trusting, &job(false, 0), &topology(0, false), &[]);
        match run.end {
            End::Refused(rule) => assert!(rule.contains("without a verified"), "{rule}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn two_pins_on_one_node_at_once_are_refused() {
        let greedy =
            |_: &Job, _: &[Node], _: &[Event], _: u64| vec![pin("primary"), pin("primary")];
        let run = run(greedy, &job(false, 0), &topology(0, false), &[]);
        assert!(matches!(run.end, End::Refused(r) if r.contains("already running")));
    }

    /// Actions returned together run concurrently: the policy is asked again as each ends,
    /// with the others still running (as the executor does).
    #[test]
    fn concurrent_actions_end_one_at_a_time() {
        let mut seen_running = false;
        let hedge = |_: &Job, _: &[Node], h: &[Event], _: u64| {
            if h.is_empty() {
                return vec![
                    pin("primary"),
                    Action::Wait(crate::bindings::WaitRequest {
                        ms: 500,
                        node: None,
                    }),
                ];
            }
            seen_running |= h.iter().any(|e| e.outcome.is_none());
            vec![Action::Fail("done".into())]
        };
        let run = run(
            hedge,
            &job(false, 0),
            &topology(0, false),
            &[("primary", &["timeout"])],
        );
        assert_eq!(run.end, End::Failed("done".into()));
        assert!(seen_running, "the wait ended first while the pin still ran");
        assert_eq!(run.now_ms, 500);
    }
}
