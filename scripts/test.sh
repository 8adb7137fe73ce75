#!/usr/bin/env bash
# The whole test suite, from a fresh clone. Installs what it needs first (scripts/setup.sh:
# the wasm32 target, Kubo built once and cached, js-ipfs from the lockfile), then checks
# formatting and lints, and runs every test of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --workspace --all-targets "$@"
