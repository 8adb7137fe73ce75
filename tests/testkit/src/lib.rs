//! Dev-only support shared by pinwarden's integration tests (`tests/it`) and the real-node
//! examples (`host/examples/demo.rs`, `host/examples/bench_e2e.rs`): Kubo daemons on loopback
//! ([`ipfs`], [`kubo`]), js-ipfs daemons for a smaller smoke set ([`js_ipfs`]), test data
//! ([`data`]), a fault-injecting reverse proxy for a node's RPC API ([`proxy`]) and a TCP relay that delays or
//! cuts a swarm link ([`relay`]).
//!
//! It knows nothing of pinwarden itself; the tests' pinwarden-specific helpers (policies,
//! fixtures) live in `tests/it/support`.

pub mod data;
pub mod ipfs;
pub mod ipfs_cluster;
pub mod js_ipfs;
pub mod kubo;
pub mod proxy;
pub mod relay;

pub use data::{XorShift, make_hls_dir, make_hls_set};
pub use ipfs::IpfsCluster;
pub use ipfs_cluster::ClusterPeers;
pub use js_ipfs::{JsIpfsCluster, add_with_js_ipfs_cli};
pub use kubo::{KUBO_VERSION, add_with_kubo_cli, kubo_bin};
pub use proxy::{FaultProxy, Mode};
pub use relay::DelayRelay;
