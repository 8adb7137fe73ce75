//! Sandboxed WebAssembly policies.
//!
//! * [`engine`]: one wasmtime `Engine` with epoch interruption and an on-disk cache of compiled
//!   components.
//! * [`loader`]: turning bytes into a validated, configured [`Policy`] (or a clear error).
//! * [`session`]: a per-job `Store` with a deadline and memory cap on every call; failures come
//!   back as [`Incident`]s, never as panics or hangs.
//! * [`registry`]: named policies, the embedded built-ins, and resolving a name or a file.

pub mod contract;
pub mod engine;
pub mod loader;
pub mod registry;
pub mod session;

pub use engine::PolicyEngine;
pub use loader::{LoadError, Policy, Source};
pub use registry::{BUILTIN_FALLBACK, Registry};
pub use session::{Incident, IncidentKind, Session};
