//! Shared guest helpers for pinwarden policies.
//!
//! * [`bindings`]: the Rust side of `wit/policy.wit` (generated once here, used by every policy).
//! * [`params`]: the operator parameters (names are a public interface) and their validation.
//! * [`health`]: a node's health from the host's ledger: circuit breaker and hedge delay.
//! * [`lanes`]: reading the history as one "lane" per node: attempts, verification, backoff.
//! * [`plan`]: the decision built on lanes: which nodes, in what order, quorum, giving up.
//! * [`script`]: a tiny scripted world for native unit tests of policies (no wasm, no IPFS).
//!
//! Everything here is a pure function of its arguments, so it runs the same natively and in wasm.

pub mod health;
pub mod lanes;
pub mod params;
pub mod plan;
pub mod script;

#[allow(clippy::all, missing_docs)]
mod generated {
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "policy_kit",
        additional_derives: [PartialEq],
    });
}

/// The generated WIT bindings: types and the `Guest` trait a policy implements.
pub mod bindings {
    pub use crate::generated::Guest;
    pub use crate::generated::pinwarden::policy::types::*;
}

// The generated export macro refers to `policy_kit::...` paths; keep them reachable.
#[doc(hidden)]
pub use generated::*;

pub use bindings::{Action, Event, HistoryChange, Job, Node, NodeKind, Outcome, PolicyInfo, Role};
pub use params::{ParamSpec, Settings};

use std::sync::Mutex;

/// Settings given by `configure`, read by `decide`. A wasm instance is single-threaded; the
/// mutex only keeps the native build honest.
static CONFIGURED: Mutex<Option<Settings>> = Mutex::new(None);

/// Stores the settings accepted by `configure` for later `decide` calls.
pub fn store_settings(settings: Settings) {
    if let Ok(mut slot) = CONFIGURED.lock() {
        *slot = Some(settings);
    }
}

/// The configured settings, or the defaults of `specs` when `configure` was never called.
pub fn load_settings(specs: &[ParamSpec]) -> Settings {
    CONFIGURED
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .unwrap_or_else(|| Settings::defaults(specs))
}

/// The round's history as this instance has received it (one instance serves one round).
static HISTORY: Mutex<Vec<Event>> = Mutex::new(Vec::new());

/// Applies `decide`'s changes to the history kept from earlier calls: an index inside the
/// history replaces that event (its action ended), the next index appends. (The host never
/// skips an index; one past the end is appended all the same.)
pub fn apply_changes(history: &mut Vec<Event>, changes: Vec<HistoryChange>) {
    for change in changes {
        match history.get_mut(change.index as usize) {
            Some(slot) => *slot = change.event,
            None => history.push(change.event),
        }
    }
}

/// `changes` applied to this instance's history, then `f` of the whole history: how a
/// hand-written `Guest::decide` (the hostile test guest, say) gets the history the kit's
/// policies see.
pub fn with_history<R>(changes: Vec<HistoryChange>, f: impl FnOnce(&[Event]) -> R) -> R {
    let mut kept = HISTORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    apply_changes(&mut kept, changes);
    f(&kept)
}

/// What a policy crate provides; the kit turns it into the WIT `Guest` implementation.
pub trait Policy {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const PARAMS: &'static [ParamSpec];

    /// The nodes to try, in order of preference; the kit's [`plan::plan`] does the rest.
    fn candidates(nodes: &[Node]) -> Vec<&str>;

    /// The decision, as a plain function of settings and arguments: by default the kit's plan
    /// (budgets, backoff, verification, quorum, breakers, hedging) over [`Policy::candidates`].
    fn decide(
        s: &Settings,
        job: &Job,
        nodes: &[Node],
        history: &[Event],
        now_ms: u64,
    ) -> Vec<Action> {
        plan::plan(job, nodes, history, now_ms, s, &Self::candidates(nodes))
    }
}

impl<P: Policy> bindings::Guest for P {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: P::NAME.to_string(),
            description: P::DESCRIPTION.to_string(),
            params: params::describe(P::PARAMS),
        }
    }

    fn configure(params: Vec<(String, String)>) -> Result<(), String> {
        store_settings(Settings::parse(P::NAME, P::PARAMS, &params)?);
        Ok(())
    }

    fn decide(job: Job, nodes: Vec<Node>, changes: Vec<HistoryChange>, now_ms: u64) -> Vec<Action> {
        let settings = load_settings(P::PARAMS);
        with_history(changes, |history| {
            P::decide(&settings, &job, &nodes, history, now_ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::WaitRequest;

    fn event(ms: u64, outcome: Option<Outcome>) -> Event {
        Event {
            action: Action::Wait(WaitRequest { ms, node: None }),
            outcome,
            started_ms: 0,
            ended_ms: None,
        }
    }

    #[test]
    fn changes_append_or_replace_by_index() {
        let mut history = Vec::new();
        let change = |index, event| HistoryChange { index, event };
        apply_changes(
            &mut history,
            vec![
                change(0, event(1, Some(Outcome::Ok))),
                change(1, event(2, None)),
            ],
        );
        assert_eq!(history.len(), 2);
        // The running wait ended, and a new action started.
        apply_changes(
            &mut history,
            vec![
                change(1, event(2, Some(Outcome::Ok))),
                change(2, event(3, None)),
            ],
        );
        assert_eq!(
            history,
            [
                event(1, Some(Outcome::Ok)),
                event(2, Some(Outcome::Ok)),
                event(3, None)
            ]
        );
        apply_changes(&mut history, Vec::new());
        assert_eq!(history.len(), 3);
    }
}
