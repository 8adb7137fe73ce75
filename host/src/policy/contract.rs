//! Host bindings of `wit/policy.wit`, the single host↔policy contract. The executor, the
//! simulator and the node clients speak these generated types directly.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    additional_derives: [PartialEq, serde::Serialize],
});

/// The generated bindings of the `policy` world (named to avoid clashing with [`super::Policy`]).
pub use self::Policy as PolicyBindings;
pub use self::PolicyPre as PolicyBindingsPre;
pub use pinwarden::policy::types::*;
