//! Real js-ipfs nodes for the real-node modules (`kubo_client`, `fallback_migrate`, `e2e_pin`,
//! `daemon`): started through `pinwarden-testkit`, required (a start failure fails the test
//! with the fix, never a skip).

use pinwarden_testkit::{IpfsCluster, XorShift};
use sha2::{Digest, Sha256};
use std::time::Instant;

/// `n` js-ipfs daemons for a test that cannot run without them: a start failure fails the
/// test loudly (never a skip), with the reason and the fix.
pub async fn required_cluster(n: usize) -> IpfsCluster {
    pinwarden::install_crypto_provider();
    IpfsCluster::start(n)
        .await
        .unwrap_or_else(|e| panic!("real IPFS nodes are required and could not start: {e:#}"))
}

/// Progress of a long real-node test, on stderr (shown with --nocapture or on failure).
pub fn step(t0: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}

/// A CIDv1 (raw) of random bytes: content no node has.
pub fn ghost_cid() -> String {
    let mut bytes = [0u8; 64];
    XorShift::seeded().fill(&mut bytes);
    let digest = Sha256::digest(bytes);
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).expect("sha2-256 multihash");
    cid::Cid::new_v1(0x55, hash).to_string()
}
