//! The wasmtime engine shared by every policy, and the on-disk cache of compiled components.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Component;

/// How often the epoch advances; a call's deadline is counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Sandbox limits applied to every call into a policy.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Wall-clock budget of one `configure` or `decide` call.
    pub call_deadline: Duration,
    /// Cap on a policy instance's linear memory, in bytes.
    pub memory_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            call_deadline: Duration::from_millis(200),
            memory_bytes: 32 << 20,
        }
    }
}

/// One compiler and runtime for all policies, with a background epoch ticker.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    pub limits: SandboxLimits,
    cache_dir: Option<PathBuf>,
}

impl PolicyEngine {
    pub fn new(limits: SandboxLimits, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let engine = Engine::new(&super::engine_config::config())?;
        let weak = engine.weak();
        // The ticker stops by itself once the engine is dropped.
        std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(PolicyEngine {
            engine,
            limits,
            cache_dir,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component from `artifact`, compiled at build time by `build.rs` with this same
    /// configuration; compiles `bytes` instead when the artifact does not fit this engine (a
    /// machine with other CPU features, say). Saves the ~50 ms cranelift compile per process.
    pub fn load_precompiled(
        &self,
        bytes: &[u8],
        content_hash: &str,
        artifact: &[u8],
    ) -> wasmtime::Result<Component> {
        // SAFETY: `artifact` was produced by this program's own build script with the same
        // wasmtime (one version in Cargo.lock) and configuration (`engine_config`); wasmtime
        // still checks its compatibility header and refuses a mismatch.
        match unsafe { Component::deserialize(&self.engine, artifact) } {
            Ok(component) => Ok(component),
            Err(e) => {
                tracing::debug!("built-in artifact does not fit this engine, compiling: {e}");
                self.compile(bytes, content_hash)
            }
        }
    }

    /// Compiles `bytes`, reusing a precompiled artifact from the cache directory when one made
    /// by this very engine configuration exists (compiling costs ~20 ms, loading far less).
    pub fn compile(&self, bytes: &[u8], content_hash: &str) -> wasmtime::Result<Component> {
        let Some(path) = self.cache_path(content_hash) else {
            return Component::new(&self.engine, bytes);
        };
        if path.exists() {
            // SAFETY: the cache directory only holds artifacts this program serialized itself,
            // keyed by the engine's compatibility hash; a foreign or stale file fails to load.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::debug!(path = %path.display(), "ignoring cached policy: {e}"),
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Err(e) = component
            .serialize()
            .map_err(anyhow::Error::from)
            .and_then(|artifact| Ok(crate::atomic_file::write(&path, &artifact)?))
        {
            tracing::debug!(path = %path.display(), "cannot cache compiled policy: {e}");
        }
        Ok(component)
    }

    fn cache_path(&self, content_hash: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let digest = content_hash.trim_start_matches("sha256:");
        Some(dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish())))
    }
}

/// `sha256:<hex>` of a policy's bytes: its identity in listings, logs and the cache.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
