//! Sandboxed WebAssembly policies.
//!
//! * [`engine`]: one wasmtime `Engine` with epoch interruption, the built-ins precompiled at
//!   build time, and an on-disk cache of compiled operator components.
//! * [`engine_config`]: that engine's wasmtime configuration (shared with `build.rs`).
//! * [`loader`]: turning bytes into a validated, configured [`Policy`] (or a clear error).
//! * [`session`]: a per-job `Store` with a deadline and memory cap on every call; failures come
//!   back as [`Incident`]s, never as panics or hangs.
//! * [`registry`]: named policies, the embedded built-ins, and resolving a name or a file.

pub mod contract;
pub mod engine;
pub mod engine_config;
pub mod loader;
pub mod registry;
pub mod session;

pub use engine::PolicyEngine;
pub use loader::{LoadError, Source};
pub use registry::{BUILTIN_FALLBACK, Registry};
pub use session::{Incident, IncidentKind, Session};

use contract::{PolicyBindingsPre, PolicyInfo};
use session::HostState;

/// A compiled, validated policy with its operator parameters. Cheap to share; every job gets
/// its own [`Session`].
pub struct Policy {
    /// The name the policy gives itself in `describe`.
    pub name: String,
    pub source: Source,
    pub hash: String,
    pub info: PolicyInfo,
    /// Operator parameters, passed to `configure` in every session.
    pub params: Vec<(String, String)>,
    pre: PolicyBindingsPre<HostState>,
    engine: PolicyEngine,
}

impl Policy {
    /// The same compiled policy with other parameters (validated by a trial `configure`).
    pub fn with_params(&self, params: &[(String, String)]) -> Result<Policy, Incident> {
        self.session_with(params)?;
        Ok(Policy {
            name: self.name.clone(),
            source: self.source.clone(),
            hash: self.hash.clone(),
            info: self.info.clone(),
            params: params.to_vec(),
            pre: self.pre.clone(),
            engine: self.engine.clone(),
        })
    }

    /// A fresh, configured instance for one job.
    pub fn session(&self) -> Result<Session, Incident> {
        self.session_with(&self.params)
    }

    fn session_with(&self, params: &[(String, String)]) -> Result<Session, Incident> {
        let mut session = Session::instantiate(
            &self.name,
            self.engine.engine(),
            &self.pre,
            self.engine.limits,
        )?;
        session.configure(params)?;
        Ok(session)
    }

    /// The effective value of a parameter: configured, else the policy's declared default.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.info
                    .params
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.default_value.clone())
            })
    }

    /// Whether the policy declares a parameter of that name.
    pub fn declares(&self, name: &str) -> bool {
        self.info.params.iter().any(|p| p.name == name)
    }
}
