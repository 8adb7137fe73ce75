#!/usr/bin/env bash
# The whole test suite, from a fresh clone. Installs what it needs first (idempotent):
#   - the wasm32 target the policies compile to (also named in rust-toolchain.toml);
#   - js-ipfs for the real-node tests, from the committed lockfile;
# then checks formatting and lints, and runs every test of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> rust toolchain and wasm32 target"
rustup show active-toolchain
rustup target add wasm32-unknown-unknown

if [ -f tests/ipfs-node/package-lock.json ]; then
  echo "==> js-ipfs for the real-node tests (npm ci)"
  # npm ci is slow (~3 min cold); skip it when node_modules matches the lockfile already.
  if ! cmp -s tests/ipfs-node/package-lock.json tests/ipfs-node/node_modules/.pinwarden-lock; then
    (cd tests/ipfs-node && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/ipfs-node/package-lock.json tests/ipfs-node/node_modules/.pinwarden-lock
  fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --workspace --all-targets "$@"
