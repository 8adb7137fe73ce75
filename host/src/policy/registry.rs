//! Named policies: the built-ins embedded in the binary, and operator files.

use super::engine::PolicyEngine;
use super::loader::{LoadError, Policy, Source};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The policy a job falls back to when its own policy misbehaves.
pub const BUILTIN_FALLBACK: &str = "tank-mode";

/// The built-in policies' components, built from `policies/` by the build script.
pub const BUILTINS: &[(&str, &[u8])] = &[
    (
        "tank-mode",
        include_bytes!(concat!(env!("OUT_DIR"), "/tank-mode.wasm")),
    ),
    (
        "single-backup",
        include_bytes!(concat!(env!("OUT_DIR"), "/single-backup.wasm")),
    ),
];

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
        BUILTINS.iter().map(|(name, _)| *name)
    }

    /// A built-in by name, configured with `params`; `None` if there is no such built-in.
    pub fn builtin(
        &self,
        name: &str,
        params: &[(String, String)],
    ) -> Option<Result<Arc<Policy>, LoadError>> {
        let (name, bytes) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        Some(self.compiled_builtin(name, bytes).and_then(|bare| {
            if params.is_empty() {
                Ok(bare)
            } else {
                bare.with_params(params)
                    .map(Arc::new)
                    .map_err(|i| LoadError::Incident(name.to_string(), i))
            }
        }))
    }

    fn compiled_builtin(&self, name: &'static str, bytes: &[u8]) -> Result<Arc<Policy>, LoadError> {
        if let Some(p) = self.compiled.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(p);
        }
        let policy = Arc::new(Policy::from_bytes(
            &self.engine,
            name,
            Source::Builtin,
            bytes,
            &[],
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
