//! Dev-only support shared by pinwarden's integration tests (`tests/it`) and the real-node
//! examples (`host/examples/demo.rs`, `host/examples/bench_e2e.rs`): js-ipfs daemons on loopback
//! ([`ipfs`]) and a fault-injecting reverse proxy for a node's RPC API ([`proxy`]).
//!
//! It knows nothing of pinwarden itself; the tests' pinwarden-specific helpers (policies,
//! fixtures) live in `tests/it/support`.

pub mod ipfs;
pub mod proxy;

pub use ipfs::{IpfsCluster, XorShift, make_hls_dir, make_hls_set};
pub use proxy::{FaultProxy, Mode};
