//! What the test modules share, in one place: policies and simulated rounds ([`policies`]),
//! real Kubo nodes ([`nodes`], on top of the dev-only crate `pinwarden-testkit`),
//! configuration files ([`config`]) and a webhook receiver ([`webhook`]).

pub mod config;
pub mod nodes;
pub mod policies;
pub mod webhook;

pub use pinwarden_testkit::{
    FaultProxy, IpfsCluster, JsIpfsCluster, Mode, XorShift, make_hls_dir, make_hls_set,
};
