//! Named policies: the built-ins embedded in the binary, and operator files.

use super::engine::PolicyEngine;
use super::loader::{LoadError, Policy, Source};
use std::path::Path;
use std::sync::Arc;

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
}

impl Registry {
    pub fn new(engine: PolicyEngine) -> Self {
        Registry { engine }
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTINS.iter().map(|(name, _)| *name)
    }

    pub fn builtin(
        &self,
        name: &str,
        params: &[(String, String)],
    ) -> Option<Result<Policy, LoadError>> {
        let (_, bytes) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        Some(Policy::from_bytes(
            &self.engine,
            name,
            Source::Builtin,
            bytes,
            params,
        ))
    }

    /// A built-in by name, or else a component file by path.
    pub fn resolve(
        &self,
        name_or_path: &str,
        params: &[(String, String)],
    ) -> Result<Arc<Policy>, LoadError> {
        match self.builtin(name_or_path, params) {
            Some(policy) => policy.map(Arc::new),
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
            Err(_) => Ok(Arc::new(plain)),
        }
    }
}
