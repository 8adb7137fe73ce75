//! The remote tiers on real peers: a 3-peer IPFS Cluster (v1.1.6) over 3 Kubo daemons, the
//! cluster's own Pinning Services API (`pinsvcapi`, a PSA server nobody here wrote), and a
//! second pinwarden serving the PSA.
//!
//! Its own binary, with its own harness (libtest-mimic), because it runs **inside a private
//! network namespace** where only `lo` is up: `ipfs-cluster-service` always turns on NAT port
//! mapping, which sends UPnP and NAT-PMP packets off the machine at start (see
//! `pinwarden_testkit::ipfs_cluster`). The binary re-executes itself under `unshare --net`, so a
//! plain `cargo test` runs it there too. One set of daemons serves every test (started by the
//! first, stopped after the last): Kubo 0 is pinwarden's primary (behind a fault proxy), Kubo
//! 1–3 are the cluster peers' nodes, Kubo 4 is a plain Kubo backup or the second pinwarden's
//! node, Kubo 5 the PSA check node. No Kubo is connected to another by the test: content reaches
//! a tier only through the origins pinwarden sends.
//!
//! Filter as usual: `cargo test -p pinwarden --test cluster -- psa`.

#[allow(dead_code, unused_imports)]
#[path = "../it/support/mod.rs"]
mod support;

mod tiers;

use libtest_mimic::{Arguments, Failed, Trial};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

/// A test: the shared world in, a panic (an assertion) for a failure.
type Test = fn(Arc<Mutex<Option<tiers::World>>>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

fn main() -> std::process::ExitCode {
    let listing = std::env::args().any(|a| a == "--list");
    if !listing && let Err(e) = pinwarden_testkit::ipfs_cluster::reexec_in_private_netns() {
        eprintln!("cannot enter a private network namespace: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let mut args = Arguments::from_args();
    // One world for all: the tests take turns.
    args.test_threads = Some(1);
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime"),
    );
    let world: Arc<Mutex<Option<tiers::World>>> = Arc::new(Mutex::new(None));
    let tests: [(&str, Test); 6] = [
        ("cluster_tier_pins_from_the_primary_through_origins", |w| {
            Box::pin(tiers::cluster_tier_pins_from_the_primary_through_origins(w))
        }),
        ("a_cluster_peer_killed_mid_pin_ends_on_the_next_tier", |w| {
            Box::pin(tiers::a_cluster_peer_killed_mid_pin_ends_on_the_next_tier(
                w,
            ))
        }),
        ("psa_tier_on_cluster_pinsvcapi_and_on_pinwarden", |w| {
            Box::pin(tiers::psa_tier_on_cluster_pinsvcapi_and_on_pinwarden(w))
        }),
        ("a_restart_mid_round_makes_no_second_remote_request", |w| {
            Box::pin(tiers::a_restart_mid_round_makes_no_second_remote_request(w))
        }),
        ("fallback_migrate_to_the_cluster", |w| {
            Box::pin(tiers::fallback_migrate_to_the_cluster(w))
        }),
        ("doctor_checks_each_kind", |w| {
            Box::pin(tiers::doctor_checks_each_kind(w))
        }),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let (runtime, world) = (Arc::clone(&runtime), Arc::clone(&world));
            Trial::test(name, move || run(&runtime, test(world)))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Daemons stop here, before the process exits (a static would never drop them).
    runtime.block_on(async { world.lock().await.take() });
    conclusion.exit_code()
}

fn run(runtime: &Runtime, test: std::pin::Pin<Box<dyn Future<Output = ()>>>) -> Result<(), Failed> {
    std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(test))).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the test panicked".into());
        Failed::from(message)
    })
}
