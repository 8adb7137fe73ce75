//! Real-node test support: js-ipfs daemons ([`ipfs`]) and a fault-injecting reverse proxy
//! ([`proxy`]). Each test binary that needs them declares `mod support;`.
// Each binary uses a different part of it: `unused` (not `dead_code`, which a binary may allow on
// its `mod support;` line without clippy calling the attribute duplicated).
#![allow(unused)]

pub mod ipfs;
pub mod proxy;

pub use ipfs::{IpfsCluster, IpfsDaemon, make_hls_dir};
pub use proxy::{FaultProxy, Mode};

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
