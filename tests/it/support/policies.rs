//! Policies and simulated rounds: the built-in and test guests, a registry, a small topology
//! of simulated nodes, one executor round on virtual time.

use pinwarden::executor::{RoundLimits, RoundResult, Topology, run_round};
use pinwarden::policy::engine::SandboxLimits;
use pinwarden::policy::{Policy, PolicyEngine, Registry, Source};
use pinwarden::sim::node::{NodeScript, PinAnswer, SimNode};
use pinwarden::{Job, Role};
use std::sync::Arc;

pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile-policy.wasm"));
/// A policy built against `pinwarden:policy@0.1.0` (`tests/guests/legacy-v01`).
pub const LEGACY_V01: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/legacy-v01-policy.wasm"));
/// No `local_fallback_after`; traps on every retried round (`tests/guests/retry-trap`).
pub const RETRY_TRAP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/retry-trap-policy.wasm"));
pub const TANK_MODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tank-mode.wasm"));
pub const GUEST_MODULES: &str = env!("PINWARDEN_GUEST_MODULES");

pub fn registry() -> Registry {
    Registry::new(PolicyEngine::new(SandboxLimits::default(), None).expect("wasmtime engine"))
}

pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn hostile(registry: &Registry, pairs: &[(&str, &str)]) -> Policy {
    Policy::from_bytes(
        registry.engine(),
        "hostile",
        Source::Builtin,
        HOSTILE,
        &params(pairs),
    )
    .expect("hostile policy loads")
}

pub fn script(name: &str, role: Role, pin: &[PinAnswer], offline: bool) -> NodeScript {
    NodeScript {
        name: name.into(),
        role,
        pin: pin.to_vec(),
        pin_ms: 500,
        offline,
        retrievable: true,
        phases: Vec::new(),
        kind: pinwarden::node::NodeKind::Kubo,
        replication: 1,
    }
}

/// Primary (answers `primary_pin`), one healthy backup, and a local node.
pub fn topology(primary_pin: &[PinAnswer]) -> Topology {
    let mut t = Topology::new();
    let nodes = [
        script("primary", Role::Primary, primary_pin, false),
        script("backup-1", Role::Backup, &[], false),
        script("local", Role::Local, &[], false),
    ];
    for n in nodes {
        let role: Role = n.role;
        t.add(&n.name.clone(), role, Arc::new(SimNode::new(n)));
    }
    t
}

pub fn job(lazy: bool) -> Job {
    Job {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: "job-test".into(),
        size_bytes: 1 << 20,
        lazy,
        failed_rounds: 0,
    }
}

/// One round on a paused (virtual-time) runtime.
pub fn round(policy: &Policy, fallback: &Policy, topology: &Topology, job: &Job) -> RoundResult {
    round_with(policy, fallback, topology, job, &RoundLimits::default())
}

/// [`round`] under other host limits.
pub fn round_with(
    policy: &Policy,
    fallback: &Policy,
    topology: &Topology,
    job: &Job,
    limits: &RoundLimits,
) -> RoundResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run_round(policy, fallback, job, &[], topology, limits))
}

/// `pinwarden pin` flags for a bounded real-node round: one attempt per node, short backoff,
/// no breaker or hedge, and a stall timeout that ends a pin with no provider in seconds.
pub const ONE_ATTEMPT_PER_NODE: &[&str] = &[
    "--param",
    "breaker_failures=0",
    "--param",
    "hedge_after_ms=0",
    "--param",
    "attempts=1",
    "--param",
    "base_delay_ms=100",
    "--param",
    "pin_timeout_ms=60000",
    "--param",
    "stall_timeout_ms=4000",
];
