//! Real Kubo nodes for the real-node modules, started through `pinwarden-testkit` and
//! required: a start failure fails the test with the fix, never a skip.
//!
//! * [`shared_cluster`]: one cluster for the modules that only need fresh content
//!   (`fallback_migrate`, `e2e_pin`, `daemon`: every test uploads random bytes, so no test
//!   sees another's CIDs or pins). Started by the first test that asks, stopped when the
//!   last test holding it lets go; a test asking after that starts a new one (with
//!   `--test-threads=1`, one per module, as before).
//! * [`required_cluster`]: a dedicated cluster, for a test that changes a node's global state
//!   (`kubo_client` collects garbage, removes blocks, and checks that its daemons are gone
//!   after it stops them).
//!
//! At most one shared and one dedicated cluster run at once: seven daemons.
//!
//! Reaping: an [`IpfsCluster`] kills and reaps its daemons (by pid) and deletes their repos
//! when dropped. No static ever owns the shared cluster: the static holds a [`Weak`], each
//! test an [`Arc`], so the cluster is dropped inside the last test that used it, when that
//! test returns or unwinds from a panic, before the harness can exit. Statics are never
//! dropped, so a static owner would leave the daemons running after the binary exits.

use pinwarden::Outcome;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden_testkit::{IpfsCluster, XorShift};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::Mutex;

/// Shared nodes 0, 1 and 2: a full mesh, each connected to the two others (production backups
/// peer with the supernode; so do ours). Tests may connect these to each other, never to
/// [`ISOLATED`].
pub const MESH: [usize; 3] = [0, 1, 2];

/// Shared node 3: connected to no other node, ever, so content uploaded only there cannot be
/// fetched by anyone else (the daemon module's local node, which must end in the local
/// fallback).
pub const ISOLATED: usize = 3;

/// The shared cluster while some test holds it; the lock makes concurrent first callers start
/// one cluster, not one each.
static SHARED: Mutex<Weak<IpfsCluster>> = Mutex::const_new(Weak::new());

/// The shared cluster ([`MESH`] and [`ISOLATED`]): the running one, or a new one if no test
/// holds it. Keep the `Arc` for as long as the test uses the nodes.
pub async fn shared_cluster() -> Arc<IpfsCluster> {
    let mut slot = SHARED.lock().await;
    if let Some(cluster) = slot.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(required_cluster(ISOLATED + 1).await);
    let clients: Vec<KuboClient> = MESH
        .iter()
        .map(|&i| KuboClient::new(format!("n{i}"), &cluster.api_url(i), None).expect("client"))
        .collect();
    for (i, from) in clients.iter().enumerate() {
        for (j, to) in clients.iter().enumerate() {
            if i != j {
                let addrs = to.swarm_addrs().await.expect("addrs");
                assert_eq!(from.connect(&addrs).await, Outcome::Ok, "mesh {i}->{j}");
            }
        }
    }
    *slot = Arc::downgrade(&cluster);
    cluster
}

/// `n` Kubo daemons for a test that cannot run without them: a start failure fails the
/// test loudly (never a skip), with the reason and the fix.
pub async fn required_cluster(n: usize) -> IpfsCluster {
    pinwarden::install_crypto_provider();
    IpfsCluster::start(n)
        .await
        .unwrap_or_else(|e| panic!("real IPFS nodes are required and could not start: {e:#}"))
}

/// A client of node `i` of `cluster`, named `name` in its outcomes.
pub fn client(cluster: &IpfsCluster, i: usize, name: &str) -> KuboClient {
    KuboClient::new(name, &cluster.api_url(i), None).expect("client")
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

/// Uploads a small HLS-like directory (4 KiB, fresh random bytes) to `client`: a new CID.
pub async fn upload_tiny(client: &KuboClient, name: &str) -> String {
    let (_tmp, dir) = pinwarden_testkit::make_hls_dir(name, 4 << 10, 1).expect("dir");
    client.add_dir(&dir).await.expect("upload")
}

/// `node`, connected to a provider of `root` but holding none of it, reports `root`
/// unretrievable ("missing") at once: the check asks the node offline and never waits on a
/// fetch (5 s bounds a check that would).
pub async fn assert_missing_without_fetching(node: &KuboClient, root: &str) {
    let started = Instant::now();
    let outcome = node.check_retrievable(root).await;
    assert!(
        matches!(&outcome, Outcome::Unretrievable(m) if m.contains("missing")),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
