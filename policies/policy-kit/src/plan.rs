//! The decision shared by the built-in policies: try candidate nodes in order, each with its
//! attempt budget, keep `quorum` lanes running at once, succeed as soon as `quorum` nodes are
//! confirmed, and give up (fail, or local fallback for lazy jobs) when the quorum is out of reach.

use crate::bindings::{Action, Job, Node, Role};
use crate::lanes::{Lane, lane};
use crate::params::Settings;

/// Next actions for `job`, trying `candidates` (node names, in order of preference).
pub fn plan(
    job: &Job,
    nodes: &[Node],
    history: &[crate::Event],
    s: &Settings,
    candidates: &[&str],
) -> Vec<Action> {
    let provider = nodes
        .iter()
        .find(|n| n.role == Role::Primary)
        .map(|n| n.name.as_str());
    let lanes: Vec<(&str, Lane)> = candidates
        .iter()
        .map(|&name| {
            // Backups get a provider hint: connect them to the primary, which has the blocks.
            let hint = provider.filter(|&p| p != name);
            (name, lane(name, hint, history, s))
        })
        .collect();

    let quorum = s.quorum.max(1) as usize;
    let confirmed: Vec<String> = lanes
        .iter()
        .filter(|(_, l)| *l == Lane::Confirmed)
        .map(|(n, _)| n.to_string())
        .collect();
    if confirmed.len() >= quorum {
        return vec![Action::Succeed(confirmed)];
    }

    let alive = lanes
        .iter()
        .filter(|(_, l)| !matches!(l, Lane::Exhausted { .. }));
    if alive.clone().count() < quorum {
        return give_up(job, nodes, s, &lanes, confirmed.len());
    }
    // The first `quorum` lanes still in the running work at once; a lane that is exhausted
    // makes room for the next candidate.
    alive
        .take(quorum)
        .filter_map(|(_, l)| match l {
            Lane::Next(action) => Some(action.clone()),
            _ => None,
        })
        .collect()
}

fn give_up(
    job: &Job,
    nodes: &[Node],
    s: &Settings,
    lanes: &[(&str, Lane)],
    confirmed: usize,
) -> Vec<Action> {
    let round = job.failed_rounds.saturating_add(1);
    let has_local = nodes.iter().any(|n| n.role == Role::Local);
    if job.lazy && has_local && s.local_fallback_after > 0 && round >= s.local_fallback_after {
        return vec![Action::LocalFallback];
    }
    let tried: Vec<String> = lanes
        .iter()
        .filter_map(|(name, l)| match l {
            Lane::Exhausted { attempts, last } => {
                Some(format!("{name}: {attempts} attempts, last {last}"))
            }
            _ => None,
        })
        .collect();
    let mut reason = if s.quorum > 1 {
        format!(
            "CRITICAL: quorum {} unreachable ({confirmed} confirmed); {}",
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
