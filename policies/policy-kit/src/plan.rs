//! The decision shared by the built-in policies: try candidate nodes in order, each with its
//! attempt budget, keep `quorum` lanes running at once, succeed as soon as `quorum` nodes are
//! confirmed, and give up (fail, or local fallback for lazy jobs) when the quorum is out of reach.
//!
//! Across jobs it reads each node's health (the host's ledger): a node whose circuit breaker is
//! open is skipped (one probe per cool-down tests it), and a primary pin that runs past the
//! hedge delay gets the next node started beside it; whichever confirms first wins.

use crate::bindings::{Action, Event, Job, Node, NodeKind, Role, WaitRequest};
use crate::health::{self, Breaker};
use crate::lanes::{Hint, Lane, by_node, failures_on, lane};
use crate::params::Settings;

/// A candidate's lane in this round.
struct Planned<'a> {
    node: &'a Node,
    /// The node's events in this round.
    events: Vec<&'a Event>,
    lane: Lane,
    /// Already started in this round: it keeps going, whatever the quorum says.
    started: bool,
}

/// Next actions for `job` at `now_ms`, trying `candidates` (node names, in order of preference).
pub fn plan(
    job: &Job,
    nodes: &[Node],
    history: &[Event],
    now_ms: u64,
    s: &Settings,
    candidates: &[&str],
) -> Vec<Action> {
    let provider = nodes
        .iter()
        .find(|n| n.role == Role::Primary)
        .map(|n| n.name.as_str());
    let candidates: Vec<&Node> = candidates
        .iter()
        .filter_map(|&name| nodes.iter().find(|n| n.name == name))
        .collect();
    let lane_of = |node: &Node, events: &[&Event], budget: u32| {
        lane(&node.name, hint(node, provider), events, s, budget)
    };
    // Every breaker open: the last resort is one attempt on each node, not no attempt at all.
    // (This round's own failures only open breakers further, so once true it stays true.)
    let all_open = candidates
        .iter()
        .all(|&node| health::breaker(node, s) == Breaker::Open);
    let names: Vec<&str> = candidates.iter().map(|n| n.name.as_str()).collect();
    let lanes: Vec<Planned> = candidates
        .iter()
        .zip(by_node(history, &names))
        .filter_map(|(&node, events)| {
            let started = !events.is_empty();
            let budget = budget(node, &events, s, started).or(all_open.then_some(1))?;
            Some(Planned {
                node,
                lane: lane_of(node, &events, budget),
                events,
                started,
            })
        })
        .collect();

    // The quorum counts copies: a confirmed pin on a node stands for its `replication` (a
    // cluster with replication-min 2 is two copies; any other node one).
    let quorum = s.quorum.max(1);
    let copies = |p: &Planned| p.node.replication.max(1);
    let confirmed: Vec<&Planned> = lanes.iter().filter(|p| p.lane == Lane::Confirmed).collect();
    let confirmed_copies: u32 = confirmed.iter().map(|p| copies(p)).sum();
    if confirmed_copies >= quorum {
        return vec![Action::Succeed(
            confirmed.iter().map(|p| p.node.name.clone()).collect(),
        )];
    }

    let alive: Vec<&Planned> = lanes
        .iter()
        .filter(|p| !matches!(p.lane, Lane::Exhausted { .. }))
        .collect();
    if alive.iter().map(|p| copies(p)).sum::<u32>() < quorum {
        return give_up(job, nodes, s, &lanes, confirmed_copies as usize);
    }
    // The first lanes still in the running that make up `quorum` copies work at once (an
    // exhausted lane makes room for the next candidate), one more for each of them that is a
    // primary pin past its hedge delay, and every lane this round has started already.
    let mut need = 0;
    let mut sum = 0;
    for p in &alive {
        if sum >= quorum {
            break;
        }
        sum += copies(p);
        need += 1;
    }
    let due: Vec<Option<u64>> = alive
        .iter()
        .take(need)
        .map(|p| primary_pin_due_in_ms(p, now_ms, s))
        .collect();
    let slow = due.iter().filter(|d| **d == Some(0)).count();
    let active: Vec<&&Planned> = alive
        .iter()
        .enumerate()
        .filter(|(i, p)| *i < need + slow || p.started)
        .map(|(_, p)| p)
        .collect();
    let spare = alive.len() > active.len();
    let mut actions: Vec<Action> = active
        .iter()
        .flat_map(|p| match &p.lane {
            Lane::Next(next) => next.clone(),
            _ => Vec::new(),
        })
        .collect();
    if spare {
        actions.extend(hedge_look(history, &due));
    }
    actions
}

/// A node's provider hint: backups connect to the primary, which has the blocks. A Kubo node's
/// first hint may run beside its pin (it sends its wants to a peer as they connect); a remote
/// tier's must end first, since its addresses become the request's origins.
fn hint<'a>(node: &Node, primary: Option<&'a str>) -> Option<Hint<'a>> {
    primary.filter(|&p| p != node.name).map(|provider| Hint {
        provider,
        beside_pin: node.kind == NodeKind::Kubo,
    })
}

/// With a node to spare: a wait until the soonest hedge that is due but not yet (`due`, per
/// primary lane), so the policy is asked again then; none while such a wait runs (one at a
/// time: `node` none tells it from a lane's backoff).
fn hedge_look(history: &[Event], due: &[Option<u64>]) -> Option<Action> {
    let ms = due.iter().flatten().copied().filter(|&ms| ms > 0).min()?;
    let waiting = history
        .iter()
        .any(|e| e.outcome.is_none() && matches!(&e.action, Action::Wait(w) if w.node.is_none()));
    (!waiting).then_some(Action::Wait(WaitRequest { ms, node: None }))
}

/// A node's pin budget in this round; `None`: skip it (breaker open).
///
/// A node this round has started keeps the budget it started with: full, unless it had already
/// failed `breaker_failures` times before this round (then it was a probe: one attempt). The
/// ledger's count includes this round's own failures, which are subtracted here, so a single
/// job's retries follow the attempt budget and the breaker acts across jobs.
fn budget(node: &Node, events: &[&Event], s: &Settings, started: bool) -> Option<u32> {
    if started {
        let before = node
            .health
            .consecutive_failures
            .saturating_sub(failures_on(events));
        let probe = s.breaker_failures > 0 && before >= s.breaker_failures;
        return Some(if probe { 1 } else { s.attempts });
    }
    match health::breaker(node, s) {
        Breaker::Closed => Some(s.attempts),
        Breaker::HalfOpen => Some(1),
        Breaker::Open => None,
    }
}

/// For a lane whose primary pin is running or starting now: how long until its hedge is due
/// (0: now, so the next lane starts beside it; a pin that starts on a primary already quiet
/// for `hedge_quiet_ms` is due at once); `None` for any other lane, or with hedging off.
fn primary_pin_due_in_ms(p: &Planned, now_ms: u64, s: &Settings) -> Option<u64> {
    if p.node.role != Role::Primary {
        return None;
    }
    let starting =
        matches!(&p.lane, Lane::Next(next) if next.iter().any(|a| matches!(a, Action::Pin(_))))
            .then_some(0);
    p.events
        .iter()
        .filter(|e| e.outcome.is_none() && matches!(&e.action, Action::Pin(_)))
        .map(|e| now_ms.saturating_sub(e.started_ms))
        .chain(starting)
        .filter_map(|elapsed| health::hedge_due_in_ms(p.node, s, elapsed))
        .min()
}

fn give_up(
    job: &Job,
    nodes: &[Node],
    s: &Settings,
    lanes: &[Planned],
    confirmed: usize,
) -> Vec<Action> {
    let round = job.failed_rounds.saturating_add(1);
    let has_local = nodes.iter().any(|n| n.role == Role::Local);
    if job.lazy && has_local && s.local_fallback_after > 0 && round >= s.local_fallback_after {
        return vec![Action::LocalFallback];
    }
    let tried: Vec<String> = lanes
        .iter()
        .filter_map(|p| match &p.lane {
            Lane::Exhausted { attempts, last } => {
                Some(format!("{}: {attempts} attempts, last {last}", p.node.name))
            }
            _ => None,
        })
        .collect();
    let mut reason = if s.quorum > 1 {
        format!(
            "CRITICAL: quorum {} unreachable ({confirmed} copies confirmed); {}",
            s.quorum,
            tried.join("; ")
        )
    } else {
        format!("CRITICAL: pin failed on every node; {}", tried.join("; "))
    };
    if lanes.is_empty() {
        reason = "CRITICAL: no primary or backup node to pin on".to_string();
    }
    if job.lazy && has_local && s.local_fallback_after > 0 {
        reason.push_str(&format!(
            " (lazy round {round} of {} before local fallback)",
            s.local_fallback_after
        ));
    }
    vec![Action::Fail(reason)]
}

/// Names of nodes with `role`, in topology order.
pub fn nodes_with(nodes: &[Node], role: Role) -> impl Iterator<Item = &str> {
    nodes
        .iter()
        .filter(move |n| n.role == role)
        .map(|n| n.name.as_str())
}
