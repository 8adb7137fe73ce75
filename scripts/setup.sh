#!/usr/bin/env bash
# Installs what pinwarden's demo and tests need on a fresh machine (idempotent):
#   - the wasm32 target the policies compile to (also named in rust-toolchain.toml);
#   - js-ipfs (real IPFS daemons speaking the Kubo RPC API) from the committed lockfile;
#   - systemd-analyze and groff for the packaging tests (Debian packages, when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> rust toolchain and wasm32 target"
# The toolchain rust-toolchain.toml pins, with the wasm32 target (no-ops when present; explicit
# because RUSTUP_AUTO_INSTALL=0 may be set).
channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$channel"; then
  rustup toolchain install "$channel" --profile minimal -c rustfmt -c clippy -t wasm32-unknown-unknown
fi
rustup component add rustfmt clippy
rustup target add wasm32-unknown-unknown

echo "==> js-ipfs for the real-node tests and the demo"
# npm ci is slow (~3 min cold); skip it when node_modules matches the lockfile already.
if ! cmp -s tests/ipfs-node/package-lock.json tests/ipfs-node/node_modules/.pinwarden-lock; then
  (cd tests/ipfs-node && npm ci --no-audit --no-fund --loglevel=error)
  cp tests/ipfs-node/package-lock.json tests/ipfs-node/node_modules/.pinwarden-lock
fi

echo "==> packaging checks: systemd-analyze (the service unit), groff (the man pages)"
# tests/it/packaging.rs verifies deploy/systemd/pinwarden.service with systemd-analyze and
# renders the man pages with groff. Debian packages; installed only when missing.
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v groff >/dev/null || missing+=(groff-base)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
