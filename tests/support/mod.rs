//! Real-node test support: the js-ipfs daemons and the fault-injecting proxy come from the
//! dev-only crate `pinwarden-testkit`; this adds what the test binaries share on top of it.
// Each binary uses a different part of it.
#![allow(unused)]

pub use pinwarden_testkit::{FaultProxy, IpfsCluster, Mode, XorShift, make_hls_dir};

/// `n` js-ipfs daemons for a test binary that cannot run without them: a start failure fails
/// the test loudly (never a skip), with the reason and the fix.
pub async fn required_cluster(n: usize) -> IpfsCluster {
    pinwarden::install_crypto_provider();
    IpfsCluster::start(n)
        .await
        .unwrap_or_else(|e| panic!("real IPFS nodes are required and could not start: {e:#}"))
}

/// Progress of a long real-node test, on stderr (shown with --nocapture or on failure).
pub fn step(t0: std::time::Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}
