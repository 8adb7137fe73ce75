//! What the test modules share, in one place: running the binary ([`cli`]), the `pinwarden
//! serve` fixture ([`daemon`]), the bounded wait that fails with a daemon's log ([`wait`]),
//! policies and simulated rounds ([`policies`]), real Kubo nodes ([`nodes`], on top of the
//! dev-only crate `pinwarden-testkit`), configuration files ([`config`]) and a webhook receiver
//! ([`webhook`]).

pub mod cli;
pub mod config;
pub mod daemon;
pub mod nodes;
pub mod policies;
pub mod wait;
pub mod webhook;

pub use pinwarden_testkit::{
    FaultProxy, IpfsCluster, JsIpfsCluster, Mode, XorShift, make_hls_dir, make_hls_set,
};
