//! The wasmtime configuration of every policy engine. Shared with `build.rs`, which
//! precompiles the built-in policies with it: an artifact loads only into an engine whose
//! configuration matches the one that compiled it.

/// Component model on; epoch interruption (cheaper than fuel) bounds each call's wall time.
pub fn config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}
