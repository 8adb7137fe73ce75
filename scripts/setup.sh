#!/usr/bin/env bash
# Installs what pinwarden's demo and tests need on a fresh machine (idempotent):
#   - the wasm32 target the policies compile to (also named in rust-toolchain.toml);
#   - Kubo (the IPFS node of the demo and the real-node tests), a pinned version built from the
#     Go module proxy once and cached between runs;
#   - IPFS Cluster (the cluster tier's tests), likewise;
#   - js-ipfs (a second, smaller real-node smoke set) from the committed lockfile;
#   - systemd-analyze and groff for the packaging tests (Debian packages, when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Kubo release the tests and the demo run on; bump it here (tests/testkit looks here too).
KUBO_VERSION=v0.43.1
KUBO_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/kubo-$KUBO_VERSION"
# The IPFS Cluster release of the cluster tier's tests (tests/testkit looks here too).
CLUSTER_VERSION=v1.1.6
CLUSTER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/ipfs-cluster-$CLUSTER_VERSION"

echo "==> rust toolchain and wasm32 target"
# The toolchain rust-toolchain.toml pins, with the wasm32 target (no-ops when present; explicit
# because RUSTUP_AUTO_INSTALL=0 may be set).
channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$channel"; then
  rustup toolchain install "$channel" --profile minimal -c rustfmt -c clippy -t wasm32-unknown-unknown
fi
rustup component add rustfmt clippy
rustup target add wasm32-unknown-unknown

echo "==> Kubo $KUBO_VERSION for the demo and the real-node tests"
# Built from source through the Go module proxy, once, into a per-user cache that every clone
# and worktree shares; tests/testkit finds it there (or at $PINWARDEN_KUBO_BIN).
# Not `go install github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION`: Kubo's go.mod replaces
# go-libp2p with a fork (github.com/lidel/go-libp2p) that the proxy does not serve, and
# `go install pkg@version` refuses any module with replace directives. So: download Kubo's
# module, drop that replace, pin quic-go and webtransport-go to the versions go-libp2p v0.49.0
# itself requires (the fork only existed to use newer ones), and build it in a temp copy.
kubo_bin="$KUBO_CACHE/ipfs"
if [ -x "$kubo_bin" ] && "$kubo_bin" version 2>/dev/null | grep -qx "ipfs version ${KUBO_VERSION#v}"; then
  echo "cached: $kubo_bin"
else
  command -v go >/dev/null || { echo "Kubo needs Go (1.25 or newer) on PATH" >&2; exit 1; }
  started=$(date +%s)
  build=$(mktemp -d "${TMPDIR:-/tmp}/pinwarden-kubo-build.XXXXXX")
  trap 'chmod -R u+w "$build" 2>/dev/null; rm -rf "$build"' EXIT
  src=$(go mod download -json "github.com/ipfs/kubo@$KUBO_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { echo "go mod download did not give Kubo $KUBO_VERSION's source" >&2; exit 1; }
  cp -r "$src" "$build/kubo"
  chmod -R u+w "$build/kubo"
  (
    cd "$build/kubo"
    go mod edit -dropreplace github.com/libp2p/go-libp2p
    GOFLAGS=-mod=mod go get github.com/quic-go/webtransport-go@v0.11.1 github.com/quic-go/quic-go@v0.60.0
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$build/ipfs" ./cmd/ipfs
  )
  "$build/ipfs" version | grep -qx "ipfs version ${KUBO_VERSION#v}" \
    || { echo "the built ipfs is not Kubo $KUBO_VERSION: $("$build/ipfs" version)" >&2; exit 1; }
  mkdir -p "$KUBO_CACHE"
  mv "$build/ipfs" "$kubo_bin.tmp" && mv "$kubo_bin.tmp" "$kubo_bin"
  echo "built $kubo_bin in $(($(date +%s) - started)) s"
fi

echo "==> IPFS Cluster $CLUSTER_VERSION for the cluster tier's tests (tests/cluster)"
# Built like Kubo: `go install pkg@version` is refused here (the proxy does not list the
# module's versions, and go install asks for them to check deprecation), so the module is
# downloaded and built in a temp copy. Both commands into one cached directory.
cluster_bin="$CLUSTER_CACHE/ipfs-cluster-service"
if [ -x "$cluster_bin" ] && [ -x "$CLUSTER_CACHE/ipfs-cluster-ctl" ] \
  && "$cluster_bin" --version 2>/dev/null | grep -qx "ipfs-cluster-service version ${CLUSTER_VERSION#v}"; then
  echo "cached: $CLUSTER_CACHE"
else
  command -v go >/dev/null || { echo "IPFS Cluster needs Go (1.26 or newer) on PATH" >&2; exit 1; }
  started=$(date +%s)
  cbuild=$(mktemp -d "${TMPDIR:-/tmp}/pinwarden-cluster-build.XXXXXX")
  src=$(go mod download -json "github.com/ipfs-cluster/ipfs-cluster@$CLUSTER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { echo "go mod download did not give IPFS Cluster $CLUSTER_VERSION's source" >&2; exit 1; }
  cp -r "$src" "$cbuild/src"
  chmod -R u+w "$cbuild/src"
  (
    cd "$cbuild/src"
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$cbuild/" ./cmd/ipfs-cluster-service ./cmd/ipfs-cluster-ctl
  )
  "$cbuild/ipfs-cluster-service" --version | grep -qx "ipfs-cluster-service version ${CLUSTER_VERSION#v}" \
    || { echo "the built ipfs-cluster-service is not $CLUSTER_VERSION: $("$cbuild/ipfs-cluster-service" --version)" >&2; exit 1; }
  mkdir -p "$CLUSTER_CACHE"
  for b in ipfs-cluster-service ipfs-cluster-ctl; do
    mv "$cbuild/$b" "$CLUSTER_CACHE/$b.tmp" && mv "$CLUSTER_CACHE/$b.tmp" "$CLUSTER_CACHE/$b"
  done
  chmod -R u+w "$cbuild" 2>/dev/null; rm -rf "$cbuild"
  echo "built $CLUSTER_CACHE in $(($(date +%s) - started)) s"
fi
command -v unshare >/dev/null && command -v ip >/dev/null \
  || { echo "the cluster tests run in their own network namespace: they need unshare and ip (util-linux, iproute2)" >&2; exit 1; }

echo "==> js-ipfs for the smaller js-ipfs smoke set"
# npm ci is slow (~3 min cold); skip it when node_modules matches the lockfile already.
if ! cmp -s tests/ipfs-node/package-lock.json tests/ipfs-node/node_modules/.pinwarden-lock; then
  (cd tests/ipfs-node && npm ci --no-audit --no-fund --loglevel=error)
  cp tests/ipfs-node/package-lock.json tests/ipfs-node/node_modules/.pinwarden-lock
fi

echo "==> the PSA compliance suite (tests/psa-compliance) and schemathesis (scripts/fuzz-api.sh)"
# tests/it/psa.rs runs the official compliance suite offline and tests/it/fuzz.rs fuzzes both
# APIs; both tools are installed here so the tests themselves never reach a registry.
# --ignore-scripts: the suite depends on the `kubo` npm package, whose install script would
# download a Kubo binary; the suite never runs it.
if ! cmp -s tests/psa-compliance/package-lock.json tests/psa-compliance/node_modules/.pinwarden-lock; then
  (cd tests/psa-compliance && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp tests/psa-compliance/package-lock.json tests/psa-compliance/node_modules/.pinwarden-lock
fi
bash scripts/fuzz-api.sh --install

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
