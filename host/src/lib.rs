//! pinwarden: a pinning policy engine for IPFS.
//!
//! One path for one pin: request → job → [`executor`] (asks the [`policy`], performs actions on
//! [`node`]s, records history) → result. The simulator ([`sim`]) is the same executor with
//! scripted nodes under a virtual clock.

pub mod app;
pub mod atomic_file;
pub mod cid_identity;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod executor;
pub mod health;
pub mod journal;
pub mod kubo;
pub mod lock;
pub mod migrate;
pub mod node;
pub mod notify;
pub mod policy;
pub mod prove;
pub mod psa;
pub mod queue;
pub mod remote;
pub mod rounds;
pub mod sim;
pub mod trace;

pub use policy::contract::{Action, Event, Job, Node as NodeInfo, Outcome, Role};

/// Installs rustls' crypto provider (ring) for this process, once; every HTTP client needs it.
/// reqwest is built without a bundled provider so that no C toolchain is needed for aws-lc.
pub fn install_crypto_provider() {
    // `Err` only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
