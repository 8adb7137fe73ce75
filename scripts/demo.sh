#!/usr/bin/env bash
# The main job, end to end: three local IPFS nodes, an HLS upload, a supernode that lies and
# then dies, pinwarden falling back, verifying and reporting. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -p pinwarden --bin pinwarden --example demo
exec target/debug/examples/demo target/debug/pinwarden
