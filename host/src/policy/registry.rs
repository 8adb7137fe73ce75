//! Named policies: the built-ins embedded in the binary, and operator files.

use super::Policy;
use super::engine::PolicyEngine;
use super::loader::LoadError;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The policy a job falls back to when its own policy misbehaves.
pub const BUILTIN_FALLBACK: &str = "tank-mode";

/// A policy shipped in the binary: its component, and the same component compiled ahead of
/// time by the build script (so no process pays a cranelift compile for it).
pub struct Builtin {
    pub name: &'static str,
    pub component: &'static [u8],
    pub precompiled: &'static [u8],
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            component: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")),
            precompiled: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".cwasm")),
        }
    };
}

/// The built-in policies, built from `policies/` by the build script.
pub const BUILTINS: &[Builtin] = &[builtin!("tank-mode"), builtin!("single-backup")];

pub struct Registry {
    engine: PolicyEngine,
    /// Built-ins compiled once per process (without parameters); configured copies share the
    /// compiled code. Simulations, checks and reloads ask for tank-mode again and again.
    compiled: Mutex<HashMap<&'static str, Arc<Policy>>>,
}

impl Registry {
    pub fn new(engine: PolicyEngine) -> Self {
        Registry {
            engine,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTINS.iter().map(|b| b.name)
    }

    /// A built-in by name, configured with `params`; `None` if there is no such built-in.
    pub fn builtin(
        &self,
        name: &str,
        params: &[(String, String)],
    ) -> Option<Result<Arc<Policy>, LoadError>> {
        let builtin = BUILTINS.iter().find(|b| b.name == name)?;
        Some(self.compiled_builtin(builtin).and_then(|bare| {
            if params.is_empty() {
                Ok(bare)
            } else {
                bare.with_params(params)
                    .map(Arc::new)
                    .map_err(|i| LoadError::Incident(builtin.name.to_string(), i))
            }
        }))
    }

    fn compiled_builtin(&self, builtin: &Builtin) -> Result<Arc<Policy>, LoadError> {
        let name = builtin.name;
        if let Some(p) = self.compiled.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(p);
        }
        let policy = Arc::new(Policy::builtin(
            &self.engine,
            name,
            builtin.component,
            builtin.precompiled,
        )?);
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(name, Arc::clone(&policy));
        }
        Ok(policy)
    }

    /// A built-in by name, or else a component file by path.
    pub fn resolve(
        &self,
        name_or_path: &str,
        params: &[(String, String)],
    ) -> Result<Arc<Policy>, LoadError> {
        match self.builtin(name_or_path, params) {
            Some(policy) => policy,
            None => Policy::from_file(&self.engine, Path::new(name_or_path), params).map(Arc::new),
        }
    }

    /// Built-in tank-mode, keeping those of `params` that tank-mode declares (an operator's
    /// `attempts=3` still holds when a custom policy breaks down).
    pub fn fallback_for(&self, params: &[(String, String)]) -> Result<Arc<Policy>, LoadError> {
        let plain = self.builtin(BUILTIN_FALLBACK, &[]).ok_or_else(|| {
            LoadError::NotWasm(format!(
                "built-in {BUILTIN_FALLBACK} missing from this build"
            ))
        })??;
        let kept: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| plain.declares(k))
            .cloned()
            .collect();
        match plain.with_params(&kept) {
            Ok(policy) => Ok(Arc::new(policy)),
            // Values tank-mode rejects (say a quorum the custom policy interprets otherwise)
            // must not leave the job without a fallback: use the defaults.
            Err(_) => Ok(plain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::engine::SandboxLimits;

    /// The build script's artifacts must fit the runtime engine, or every process silently
    /// pays the compile again.
    #[test]
    fn builtin_artifacts_load_without_compiling() {
        let engine = PolicyEngine::new(SandboxLimits::default(), None).expect("engine");
        for builtin in BUILTINS {
            // SAFETY: produced by this crate's build script (see `load_precompiled`).
            let loaded = unsafe {
                wasmtime::component::Component::deserialize(engine.engine(), builtin.precompiled)
            };
            assert!(loaded.is_ok(), "{}: {:?}", builtin.name, loaded.err());
        }
    }
}
