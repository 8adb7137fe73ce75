//! `no-kit`: a complete pinwarden policy written against the WIT contract alone.
//!
//! The strategy: every node once, in topology order (the primary, then each backup); a backup
//! first gets a provider hint (connect to the primary). A pin counts only once `pin ls`
//! confirms it and its blocks are found, which is also what the host demands before it accepts
//! `succeed`. Any failure moves on to the next node; when none is left, `fail`.
//!
//! The host calls `decide` each time an action ends, with the changes to the round's history
//! since the previous call; the policy keeps the history (one instance serves one round) and
//! reads the next step off its last event.

// wit-bindgen's generated export shims take the flattened arguments of `decide`.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    // In your own crate: a copy of pinwarden's wit/policy.wit, e.g. "wit".
    path: "../../../wit",
});

// `generate!` already brought the world's `use`d types into this module (`Job`, `Node`,
// `HistoryChange`, `Action`, `PolicyInfo`): importing them again fails with E0255. Everything
// else of the interface is imported from its module.
use pinwarden::policy::types::{ConnectRequest, Event, Outcome, ParamInfo, PinRequest, Role};
use std::sync::Mutex;

/// How long one pin may take, and without progress.
const PIN_TIMEOUT_MS: u64 = 300_000;
const STALL_TIMEOUT_MS: u64 = 60_000;

struct NoKit;

impl Guest for NoKit {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "no-kit".into(),
            description: "each node once, in topology order (plain wit-bindgen example)".into(),
            params: vec![ParamInfo {
                name: "pin_timeout_ms".into(),
                default_value: PIN_TIMEOUT_MS.to_string(),
                description: "bound of one pin, progress or not".into(),
            }],
        }
    }

    fn configure(params: Vec<(String, String)>) -> Result<(), String> {
        for (name, value) in params {
            match name.as_str() {
                "pin_timeout_ms" => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|_| format!("pin_timeout_ms: '{value}' is not a number"))?;
                    if !(1_000..=3_600_000).contains(&ms) {
                        return Err(format!("pin_timeout_ms: {ms} is outside 1000..=3600000"));
                    }
                    PIN_TIMEOUT.store(ms, std::sync::atomic::Ordering::Relaxed);
                }
                // Refuse what you do not know: a typo must not pass silently.
                other => return Err(format!("unknown parameter '{other}'")),
            }
        }
        Ok(())
    }

    fn decide(
        _job: Job,
        nodes: Vec<Node>,
        changes: Vec<HistoryChange>,
        _now_ms: u64,
    ) -> Vec<Action> {
        let mut history = HISTORY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A change at an index we hold replaces that event (its action ended); the next
        // index appends.
        for change in changes {
            match history.get_mut(change.index as usize) {
                Some(slot) => *slot = change.event,
                None => history.push(change.event),
            }
        }
        decide(&nodes, &history)
    }
}

/// The round's history, as received so far.
static HISTORY: Mutex<Vec<Event>> = Mutex::new(Vec::new());

/// Set by `configure`, read by `decide` (one instance serves one job).
static PIN_TIMEOUT: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(PIN_TIMEOUT_MS);

fn decide(nodes: &[Node], history: &[Event]) -> Vec<Action> {
    let order: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.role == Role::Primary)
        .chain(nodes.iter().filter(|n| n.role == Role::Backup))
        .collect();
    let Some(last) = history.last() else {
        return start(&order, 0);
    };
    // One action at a time: while it runs there is nothing to decide (an empty list is
    // "wait for running actions"; the host refuses it when nothing runs).
    let Some(outcome) = &last.outcome else {
        return Vec::new();
    };
    let (node, step) = match &last.action {
        Action::Connect(c) => return vec![pin(&c.node)],
        Action::Pin(p) => (p.node.as_str(), Step::Pin),
        Action::Verify(n) => (n.as_str(), Step::Verify),
        Action::CheckRetrievable(n) => (n.as_str(), Step::Check),
        // Not an action of ours (this policy never waits): start over from the top.
        _ => return start(&order, 0),
    };
    match (outcome, step) {
        (Outcome::Ok, Step::Pin) => vec![Action::Verify(node.into())],
        (Outcome::Ok, Step::Verify) => vec![Action::CheckRetrievable(node.into())],
        (Outcome::Ok, Step::Check) => vec![Action::Succeed(vec![node.into()])],
        // Not pinned, timed out, stalled, unreachable...: the next node.
        _ => {
            let next = order
                .iter()
                .position(|n| n.name == node)
                .map_or(0, |i| i + 1);
            start(&order, next)
        }
    }
}

#[derive(Clone, Copy)]
enum Step {
    Pin,
    Verify,
    Check,
}

/// The first action on `order[i]`, or `fail` when no node is left.
fn start(order: &[&Node], i: usize) -> Vec<Action> {
    let Some(node) = order.get(i) else {
        return vec![Action::Fail(format!(
            "CRITICAL: pin failed on every node ({} tried once each)",
            order.len()
        ))];
    };
    match (node.role, order.first()) {
        (Role::Backup, Some(primary)) => vec![Action::Connect(ConnectRequest {
            node: node.name.clone(),
            provider: primary.name.clone(),
        })],
        _ => vec![pin(&node.name)],
    }
}

fn pin(node: &str) -> Action {
    let timeout_ms = PIN_TIMEOUT.load(std::sync::atomic::Ordering::Relaxed);
    Action::Pin(PinRequest {
        node: node.into(),
        timeout_ms,
        stall_timeout_ms: STALL_TIMEOUT_MS.min(timeout_ms),
    })
}

export!(NoKit);
