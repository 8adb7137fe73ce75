#!/usr/bin/env bash
# End-to-end benchmarks (BENCHMARKS.md): real local Kubo nodes and the release binary.
#
#   scripts/bench.sh                      # everything: e2e overhead, CLI cold start, daemon
#   scripts/bench.sh --only daemon        # one part (e2e, cold, daemon; comma-separated; also
#                                         # check: the retrievability check alone, a diagnostic)
#   scripts/bench.sh --only size          # not in "everything": pin + verify + check of 100 MB,
#                                         # 600 MB, 2.5 GB sets (about 30 minutes, a few GB in
#                                         # $TMPDIR; --sizes 100,600 for less)
#   scripts/bench.sh --only cluster       # not in "everything": time to replication-min on an
#                                         # IPFS Cluster tier against ipfs-cluster-ctl pin add
#                                         # --wait (about 1 minute; runs in a private network
#                                         # namespace; --size-kb for the video size), then
#                                         # the 50-video outage drill against IPFS Cluster
#                                         # alone (--only cluster-drill: the drill only)
#   scripts/bench.sh --only drain --drain-jobs 300 [--drain-reps 3]
#                                         # not in "everything": lazy jobs drained behind a
#                                         # stalling Kubo primary, against the backup's own
#                                         # pin rate, repetitions interleaved (about 3 minutes
#                                         # for 300 jobs, 10 for 1,000)
#   scripts/bench.sh --only notify --drain-jobs 200 --size-kb 64
#                                         # not in "everything": rounds with completion
#                                         # webhooks off / on / on with a hanging receiver
#   scripts/bench.sh --only rollout       # not in "everything": 10,000 simulated rounds
#                                         # recorded, replayed, and run beside a shadow
#                                         # (about 10 s; no node)
#   scripts/bench.sh --only policy-load [--drain-jobs 200 --size-kb 64]
#                                         # not in "everything": /v1/health while lazy jobs
#                                         # drain under a clean, a slow (50 ms a decision)
#                                         # and a shadowed policy (about 3 minutes; 6 with
#                                         # 200 jobs)
#   scripts/bench.sh --pins 10 --jobs 20000
#
# Options go to host/examples/bench_e2e.rs (see its header). The micro-benchmarks are separate:
#   cargo bench -p pinwarden --bench policy
#
# Installs what it needs (scripts/setup.sh: Kubo, built once), builds `pinwarden` and the
# benchmark with `cargo build --release` (a few minutes on a fresh clone), prints the machine, the
# date and the load, then the figures (about 3 minutes). Everything it starts is stopped when it
# ends. Measure on an otherwise idle machine: with a load average above ~1.5 the figures are noise.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "==> cargo build --release (pinwarden, bench_e2e)"
cargo build --release -p pinwarden --bin pinwarden --example bench_e2e

target_dir="$(realpath "${CARGO_TARGET_DIR:-target}")"
echo "==> machine"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "nproc: $(nproc)"
free -g | sed -n 2p | awk '{print "memory: " $2 " GiB"}'
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
# The build (and npm) just kept both cores busy: wait, up to 3 minutes, for the 1-minute load
# average to fall below 1.5 so that it does not colour the figures.
for _ in $(seq 36); do
  awk '{exit !($1 < 1.5)}' /proc/loadavg && break
  sleep 5
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

exec "$target_dir/release/examples/bench_e2e" --bin "$target_dir/release/pinwarden" "$@"
