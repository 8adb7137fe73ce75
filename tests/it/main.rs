//! pinwarden's integration tests, in one binary (one link of wasmtime and cranelift instead of
//! one per file). Each module is one former test binary; `support` is what they share.
//!
//! * in-process: `sandbox` (the hostile guest), `simulator`, `observability` (with the
//!   Grafana dashboard's queries);
//! * the `pinwarden` binary as an operator runs it: `cli_policy`, `cli_context`, `packaging`
//!   (completions, man pages, the systemd unit), `openapi` (the API document against a daemon);
//! * real Kubo nodes on loopback (`support::nodes`, built by `scripts/setup.sh`):
//!   `kubo_client`, `kubo_daemon` (Kubo's own behaviour: progress, trailers, auth, the walk), `fallback_migrate`, `e2e_pin`, `daemon`, `doctor`, `node_client` (the
//!   Node.js client, run by `node`), `outage`, `real_size` (256 MiB over bitswap: the longest,
//!   a few minutes), `weak_points` (content garbage
//!   collected before the pin, a backup killed mid-transfer and restarted, a backup out of disk);
//! * real js-ipfs nodes: `js_ipfs_smoke` (the code only js-ipfs needs, on a smaller set).
//!
//! Every module runs the binary through `support::cli::Pinwarden` (a clean environment), starts
//! `pinwarden serve` through `support::daemon` and waits with `support::wait`; `harness` tests
//! those.
//!
//! Run one module with a filter: `cargo test -p pinwarden --test it -- e2e_pin::`.

mod support;

mod cli_context;
mod cli_policy;
mod daemon;
mod doctor;
mod e2e_pin;
mod fallback_migrate;
mod fuzz;
mod harness;
mod hints;
mod js_ipfs_smoke;
mod kubo_client;
mod kubo_daemon;
mod latency;
mod node_client;
mod notify;
mod observability;
mod openapi;
mod outage;
mod packaging;
mod psa;
mod real_size;
mod rollout;
mod sandbox;
mod simulator;
mod weak_points;
