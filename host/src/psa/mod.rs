//! pinwarden as a pinning service: the IPFS Pinning Services API v1.0.0 (the spec is
//! `docs/psa/openapi.yaml`), served by `pinwarden serve` on a listener of its own.
//!
//! * [`wire`]: the spec's bodies and the mapping of queue states to its statuses.
//! * [`tokens`]: the users and their bearer tokens.
//! * [`api`]: the routes. Each request is a lazy job of the daemon's queue
//!   (`crate::queue::requests`), pinned by the same worker, policy and proof as any other.

pub mod api;
pub mod tokens;
pub mod wire;
