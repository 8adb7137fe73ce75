#!/usr/bin/env bash
# Captures raw Kubo RPC replies (status line, headers, chunked framing, trailers) from real
# Kubo daemons on 127.0.0.1, for the recorded replies the replay tests serve.
#
#   scripts/capture-kubo-replies.sh [OUT_DIR]
#
# IPFS_BIN        the kubo binary (default: $PINWARDEN_KUBO_BIN, else the one scripts/setup.sh
#                 caches at ${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/kubo-v0.43.1/ipfs)
# OUT_DIR         where the replies go, one file per reply (default: host/src/kubo/recorded-kubo/)
# KUBO_PORT_BASE  first of the loopback ports used (default 25100; uses base+1..base+33)
#
# Three throw-away nodes (A, B, C) are made under a temp dir with `init --profile=test`, no
# bootstrap, no MDNS, Routing.Type=none, fixed loopback ports. Nothing leaves 127.0.0.1.
# Every wait is bounded; the daemons are killed and the temp dir removed on exit.
# Each reply is written as `curl -i --raw` prints it, with the `Date:` header removed.
# OUT_DIR/INDEX.tsv lists every file with curl's exit code (28 = we cut a stalled reply
# off after --max-time on purpose) and the request.
set -euo pipefail
# Kubo's telemetry plugin would report to the Internet: off for every node and CLI call here.
export IPFS_TELEMETRY=off

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IPFS_BIN="${IPFS_BIN:-${PINWARDEN_KUBO_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/kubo-v0.43.1/ipfs}}"
OUT="${1:-$ROOT_DIR/host/src/kubo/recorded-kubo/}"
BASE="${KUBO_PORT_BASE:-25100}"

[ -x "$IPFS_BIN" ] || { echo "no kubo binary at $IPFS_BIN (run scripts/setup.sh, or set IPFS_BIN)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d /tmp/kubo-capture-work.XXXXXX)"
INDEX="$OUT/INDEX.tsv"
printf 'file\tcurl_exit\trequest\n' >"$INDEX"

declare -A PID=()      # node -> daemon pid
declare -A API=()      # node -> API port
declare -A SWARM=()    # node -> swarm port
API[A]=$((BASE + 1)); API[B]=$((BASE + 2)); API[C]=$((BASE + 3))
SWARM[A]=$((BASE + 21)); SWARM[B]=$((BASE + 22)); SWARM[C]=$((BASE + 23))
GW_A=$((BASE + 11)); GW_B=$((BASE + 12)); GW_C=$((BASE + 13))

log() { printf '==> %s\n' "$*" >&2; }

stop_node() { # node
  local n=$1 p=${PID[$1]:-}
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
  PID[$n]=""
}

cleanup() {
  local rc=$?
  for n in A B C; do stop_node "$n"; done
  [ -f "$INDEX" ] && sed -i "s|$WORK|\$WORK|g" "$INDEX"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ipfs_on() { # node args...  (CLI; talks to the node's daemon when it runs)
  local n=$1; shift
  IPFS_PATH="$WORK/$n" "$IPFS_BIN" "$@"
}

init_node() { # node gateway-port
  local n=$1 gw=$2
  ipfs_on "$n" init --profile=test -e >/dev/null
  ipfs_on "$n" config --json Addresses.API "\"/ip4/127.0.0.1/tcp/${API[$n]}\""
  ipfs_on "$n" config --json Addresses.Gateway "\"/ip4/127.0.0.1/tcp/$gw\""
  ipfs_on "$n" config --json Addresses.Swarm "[\"/ip4/127.0.0.1/tcp/${SWARM[$n]}\"]"
  ipfs_on "$n" config --json Bootstrap '[]'
  ipfs_on "$n" config --json Discovery.MDNS.Enabled false
  ipfs_on "$n" config Routing.Type none
}

start_node() { # node
  local n=$1
  IPFS_PATH="$WORK/$n" "$IPFS_BIN" daemon >"$WORK/$n.log" 2>&1 &
  PID[$n]=$!
  for _ in $(seq 1 150); do
    kill -0 "${PID[$n]}" 2>/dev/null || { cat "$WORK/$n.log" >&2; echo "daemon $n died" >&2; return 1; }
    # any HTTP status (403 with API.Authorizations) means the API is up
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST \
      "http://127.0.0.1:${API[$n]}/api/v0/version" || true)
    [ "$code" != "000" ] && [ -n "$code" ] && return 0
    sleep 0.2
  done
  echo "daemon $n did not answer in 30 s" >&2
  return 1
}

# rpc FILE NODE MAXTIME PATH?QUERY [extra curl args...]: POST, save the raw reply.
rpc() {
  local file=$1 n=$2 maxt=$3 path=$4; shift 4
  local rc=0
  curl -sS -i --raw --max-time "$maxt" -X POST "$@" \
    "http://127.0.0.1:${API[$n]}/api/v0/$path" >"$WORK/reply.raw" 2>"$WORK/curl.err" || rc=$?
  sed '/^Date: /d' "$WORK/reply.raw" >"$OUT/$file"
  printf '%s\t%s\t%s %s %s\n' "$file" "$rc" "$n" "POST /api/v0/$path" "$*" >>"$INDEX"
  if [ "$rc" != 0 ] && [ "$rc" != 28 ]; then
    echo "curl failed ($rc) for $file: $(cat "$WORK/curl.err")" >&2
    return 1
  fi
  return 0
}

# rpc_bg: as rpc, in the background; sets BG_PID. Call rpc_bg_done afterwards.
rpc_bg() {
  local file=$1 n=$2 maxt=$3 path=$4; shift 4
  (
    rc=0
    curl -sS -i --raw --max-time "$maxt" -X POST "$@" \
      "http://127.0.0.1:${API[$n]}/api/v0/$path" >"$WORK/$file.raw" 2>/dev/null || rc=$?
    sed '/^Date: /d' "$WORK/$file.raw" >"$OUT/$file"
    printf '%s\t%s\t%s %s %s\n' "$file" "$rc" "$n" "POST /api/v0/$path" "$*" >>"$INDEX"
  ) &
  BG_PID=$!
}
rpc_bg_done() { wait "$1" || true; }

# Silent JSON call (no file), for setup steps.
call() { # node maxtime path?query [curl args]
  local n=$1 maxt=$2 path=$3; shift 3
  curl -sS --max-time "$maxt" -X POST "$@" "http://127.0.0.1:${API[$n]}/api/v0/$path"
}

# Deterministic pseudo-random bytes (same CIDs on every run); /dev/urandom without openssl.
prand() { # seed bytes
  if command -v openssl >/dev/null; then
    head -c "$2" /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:pinwarden-$1" 2>/dev/null
  else
    head -c "$2" /dev/urandom
  fi
}

# Remove one block's file from a STOPPED node's flatfs (`block rm` refuses pinned blocks).
drop_block_file() { # node cid
  local key f
  key=$("$IPFS_BIN" cid format -f '%M' -b base32upper "$2")
  f=$(find "$WORK/$1/blocks" -name "$key.data" | head -n 1)
  [ -n "$f" ] || { echo "block file for $2 not found" >&2; return 1; }
  rm -f "$f"
}

peer_id() { call "$1" 10 id | sed -n 's/^{"ID":"\([^"]*\)".*/\1/p'; }

D="$WORK/data"
mkdir -p "$D/dir" "$D/repin" "$D/big"
for i in 1 2 3; do prand "dir-$i" 1000000 >"$D/dir/f$i.bin"; done
for i in 1 2 3; do prand "repin-$i" 1000000 >"$D/repin/r$i.bin"; done
for i in 1 2 3 4; do prand "big-$i" 16000000 >"$D/big/h$i.bin"; done
printf 'hello\n' >"$D/small.txt"
prand gc 300000 >"$D/gc.bin"
prand nobody 100 >"$D/nobody.bin"
printf '\xff\xff\xffgarbage-not-protobuf' >"$D/bad.bin"

log "init nodes in $WORK"
init_node A "$GW_A"
init_node B "$GW_B"
init_node C "$GW_C"
start_node A
start_node B
ID_A=$(peer_id A); ID_B=$(peer_id B)

log "8. version, id, swarm/addrs/local"
rpc version.http A 10 version
rpc id.http A 10 id
rpc swarm-addrs-local.http A 10 swarm/addrs/local
rpc swarm-peers-none.http A 10 swarm/peers

log "9. add (multipart, wrap-with-directory, pin=false, progress=false, cid-version=1)"
rpc add-wrap-pin-false-cidv1.http A 30 \
  "add?wrap-with-directory=true&pin=false&progress=false&cid-version=1" \
  -F "file=@$D/small.txt;filename=small.txt" -F "file=@$D/dir/f1.bin;filename=f1.bin"
WRAP=$(sed -n 's/^{"Name":"","Hash":"\([^"]*\)".*/\1/p' "$OUT/add-wrap-pin-false-cidv1.http" | tr -d '\r')
[ -n "$WRAP" ] || { echo "no wrapping directory CID in the add reply" >&2; exit 1; }

log "1. refs on a DAG with one leaf missing / the root missing; block/stat"
ROOT=$(ipfs_on A add -r -Q --pin=false --cid-version=1 --raw-leaves "$D/dir")
FILE2=$(ipfs_on A refs "$ROOT" | sed -n 2p)
LEAF=$(ipfs_on A refs "$FILE2" | sed -n 2p)
PRESENT=$(ipfs_on A refs "$FILE2" | sed -n 1p)
rpc block-rm-leaf.http A 10 "block/rm?arg=$LEAF"
rpc refs-recursive-offline-missing-leaf.http A 10 "refs?arg=$ROOT&recursive=true&offline=true"
rpc refs-recursive-unique-offline-missing-leaf.http A 10 "refs?arg=$ROOT&recursive=true&unique=true&offline=true"
rpc refs-recursive-online-missing-leaf-stalls.http A 3 "refs?arg=$ROOT&recursive=true"
rpc block-stat-offline-missing.http A 10 "block/stat?arg=$LEAF&offline=true"
rpc block-stat-offline-present.http A 10 "block/stat?arg=$PRESENT&offline=true"
rpc block-stat-online-missing-stalls.http A 3 "block/stat?arg=$LEAF"
call A 10 "block/rm?arg=$WRAP" >/dev/null
rpc refs-recursive-offline-missing-root.http A 10 "refs?arg=$WRAP&recursive=true&offline=true"

log "5. an error after pin/add has started streaming (X-Stream-Error trailer)"
BAD=$(ipfs_on B block put --cid-codec=dag-pb "$D/bad.bin")
BADROOT=$(printf '{"Data":{"/":{"bytes":"CAE"}},"Links":[{"Hash":{"/":"%s"},"Name":"x","Tsize":22}]}' "$BAD" \
  | ipfs_on B dag put --input-codec=dag-json --store-codec=dag-pb --pin=false)
# A is not connected to B yet: A emits {} lines, we connect after 1.2 s, A fetches the
# root and the undecodable child, and the pin fails mid-stream.
rpc_bg pin-add-progress-stream-error.http A 15 "pin/add?arg=$BADROOT&progress=true"
p=$BG_PID
sleep 1.2
rpc swarm-connect.http A 10 "swarm/connect?arg=/ip4/127.0.0.1/tcp/${SWARM[B]}/p2p/$ID_B"
rpc_bg_done "$p"
# the same failure with nothing streamed yet: a plain 500
rpc pin-add-decode-error.http A 10 "pin/add?arg=$BADROOT"
rpc swarm-peers-one.http A 10 swarm/peers

log "2. pin/add?progress=true of content held by a connected node"
BIG=$(ipfs_on B add -r -Q --cid-version=1 --raw-leaves "$D/big")
rpc pin-add-progress-remote.http A 120 "pin/add?arg=$BIG&progress=true"
rpc pin-add-already-pinned.http A 30 "pin/add?arg=$BIG&progress=true"

log "2. pin/add?progress=true of a CID nobody has (cut off after 5 s)"
NOBODY=$(ipfs_on A add -n -Q --cid-version=1 --raw-leaves "$D/nobody.bin")
rpc bitswap-stat-idle.http A 10 bitswap/stat
rpc_bg pin-add-progress-unavailable-5s.http A 5 "pin/add?arg=$NOBODY&progress=true"
p=$BG_PID
sleep 2
rpc bitswap-stat-wanting.http A 10 bitswap/stat
rpc bitswap-wantlist-wanting.http A 10 bitswap/wantlist
rpc_bg_done "$p"

log "4. garbage collection, then pin/add with no provider"
rpc add-pin-false.http A 30 "add?pin=false&cid-version=1" -F "file=@$D/gc.bin;filename=gc.bin"
GCC=$(sed -n 's/^{"Name":"gc.bin","Hash":"\([^"]*\)".*/\1/p' "$OUT/add-pin-false.http" | tr -d '\r')
[ -n "$GCC" ] || { echo "no CID in the add reply" >&2; exit 1; }
rpc repo-gc.http A 60 repo/gc
rpc pin-add-progress-after-gc-stalls.http A 3 "pin/add?arg=$GCC&progress=true"
rpc pin-add-no-progress-after-gc-stalls.http A 3 "pin/add?arg=$GCC"
rpc pin-ls-recursive-not-pinned.http A 10 "pin/ls?arg=$GCC&type=recursive"
rpc pin-ls-all-not-pinned.http A 10 "pin/ls?arg=$GCC"
rpc pin-ls-recursive-pinned.http A 10 "pin/ls?arg=$BIG&type=recursive"
rpc pin-ls-recursive-stream.http A 10 "pin/ls?type=recursive&stream=true"

log "5. errors before any output"
rpc pin-add-malformed-cid.http A 10 "pin/add?arg=notacid&progress=true"
rpc pin-add-missing-arg.http A 10 "pin/add?progress=true"
rpc pin-add-bad-bool.http A 10 "pin/add?arg=$GCC&recursive=maybe"
rpc pin-add-offline-missing-root.http A 10 "pin/add?arg=$NOBODY&offline=true&progress=true"
rpc pin-add-name-too-long.http A 10 "pin/add?arg=$GCC&name=$(printf 'x%.0s' $(seq 1 300))"
rpc pin-rm-not-pinned.http A 10 "pin/rm?arg=$GCC"
rpc pin-ls-invalid-path.http A 10 "pin/ls?arg=notacid&type=recursive"
rpc unknown-command.http A 10 "no/such/command"
rpc_get_rc=0
curl -sS -i --raw --max-time 10 "http://127.0.0.1:${API[A]}/api/v0/version" 2>/dev/null \
  | sed '/^Date: /d' >"$OUT/get-method-not-allowed.http" || rpc_get_rc=$?
printf '%s\t%s\t%s\n' get-method-not-allowed.http "$rpc_get_rc" "A GET /api/v0/version" >>"$INDEX"

log "3. a cancelled re-pin of a recursively pinned CID (one of its blocks gone)"
REPIN=$(ipfs_on B add -r -Q --cid-version=1 --raw-leaves "$D/repin")   # pinned recursively
RFILE2=$(ipfs_on B refs "$REPIN" | sed -n 2p)
RLEAF=$(ipfs_on B refs "$RFILE2" | sed -n 2p)
stop_node B
drop_block_file B "$RLEAF"
start_node B
rpc pin-ls-before-cancelled-repin.http B 10 "pin/ls?arg=$REPIN&type=recursive"
rpc pin-add-repin-cancelled-after-2s.http B 2 "pin/add?arg=$REPIN&progress=true"
sleep 1
rpc pin-ls-after-cancelled-repin.http B 10 "pin/ls?arg=$REPIN&type=recursive"

log "7. repo/stat with Datastore.StorageMax = 10GB (init default), unset, 1GiB; config"
rpc repo-stat-storagemax-10GB.http A 10 repo/stat
rpc repo-stat-size-only.http A 10 "repo/stat?size-only=true"
rpc config-show.http A 10 config/show
rpc config-storagegcwatermark.http A 10 "config?arg=Datastore.StorageGCWatermark"
rpc config-storagemax.http A 10 "config?arg=Datastore.StorageMax"
stop_node A
ipfs_on A config Datastore.StorageMax ""
start_node A
rpc repo-stat-storagemax-empty.http A 10 repo/stat
stop_node A
ipfs_on A config Datastore.StorageMax 1GiB
start_node A
rpc repo-stat-storagemax-1GiB.http A 10 repo/stat

log "6. API.Authorizations"
ipfs_on C config --json API.Authorizations \
  '{"alice":{"AuthSecret":"bearer:TOKEN1","AllowedPaths":["/api/v0"]},"bob":{"AuthSecret":"basic:bob:pw","AllowedPaths":["/api/v0/version","/api/v0/pin"]}}'
start_node C
rpc auth-none-id.http C 10 id
rpc auth-none-version.http C 10 version
rpc auth-wrong-bearer-id.http C 10 id -H "Authorization: Bearer WRONG"
rpc auth-wrong-bearer-version.http C 10 version -H "Authorization: Bearer WRONG"
rpc auth-bearer-version.http C 10 version -H "Authorization: Bearer TOKEN1"
rpc auth-bearer-id.http C 10 id -H "Authorization: Bearer TOKEN1"
rpc auth-bearer-lowercase-scheme-version.http C 10 version -H "Authorization: bearer TOKEN1"
rpc auth-basic-version.http C 10 version -u bob:pw
rpc auth-basic-id-not-allowed.http C 10 id -u bob:pw
rpc auth-basic-pin-ls.http C 10 "pin/ls?type=recursive" -u bob:pw
rpc auth-basic-ping-prefix-match.http C 10 ping -u bob:pw
rpc auth-basic-wrong-password-version.http C 10 version -u bob:nope
stop_node C

log "5. daemon shut down while pin/add?progress=true streams"
rpc_bg pin-add-progress-daemon-shutdown.http A 15 "pin/add?arg=$NOBODY&progress=true"
p=$BG_PID
sleep 1.2
rpc shutdown.http A 10 shutdown
rpc_bg_done "$p"
stop_node A    # bounded: waits for the exit, kills it after 15 s

stop_node B
log "wrote $(($(wc -l <"$INDEX") - 1)) replies to $OUT"
