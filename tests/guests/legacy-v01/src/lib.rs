//! A policy as it was written for `pinwarden:policy@0.1.0` (its `wit/` is that version's
//! contract): the host's loader must refuse it with a message naming both versions.

// The generated bindings' functions take many arguments (that is wit-bindgen's, not ours).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "policy", path: "wit" });

struct Legacy;

impl Guest for Legacy {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "legacy".into(),
            description: "built against pinwarden:policy@0.1.0".into(),
            params: Vec::new(),
        }
    }

    fn configure(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn decide(_job: Job, _nodes: Vec<Node>, _history: Vec<Event>, _now_ms: u64) -> Vec<Action> {
        vec![Action::Fail("legacy policy".into())]
    }
}

export!(Legacy);
