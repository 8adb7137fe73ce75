//! pinwarden's integration tests, in one binary (one link of wasmtime and cranelift instead of
//! one per file). Each module is one former test binary; `support` is what they share.
//!
//! * in-process: `sandbox` (the hostile guest), `simulator`, `observability`;
//! * the `pinwarden` binary as an operator runs it: `cli_policy`, `cli_context`;
//! * real js-ipfs nodes on loopback (`support::nodes`, needs `cd tests/ipfs-node && npm ci
//!   --before=2024-12-14`): `kubo_client`, `fallback_migrate`, `e2e_pin`, `daemon`, `outage`,
//!   `real_size` (256 MiB over bitswap: the longest, a few minutes).
//!
//! Run one module with a filter: `cargo test -p pinwarden --test it -- e2e_pin::`.

mod support;

mod cli_context;
mod cli_policy;
mod daemon;
mod doctor;
mod e2e_pin;
mod fallback_migrate;
mod kubo_client;
mod node_client;
mod observability;
mod openapi;
mod outage;
mod packaging;
mod real_size;
mod sandbox;
mod simulator;
