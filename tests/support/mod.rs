//! Real-node test support: js-ipfs daemons ([`ipfs`]) and a fault-injecting reverse proxy
//! ([`proxy`]). Each test binary that needs them declares `mod support;`.
// Each binary uses a different part of it: `unused` (not `dead_code`, which a binary may allow on
// its `mod support;` line without clippy calling the attribute duplicated).
#![allow(unused)]

pub mod ipfs;
pub mod proxy;

pub use ipfs::{IpfsCluster, IpfsDaemon, make_hls_dir};
pub use proxy::{FaultProxy, Mode};
