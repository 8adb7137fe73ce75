#!/usr/bin/env bash
# Run the official IPFS Pinning Services API (PSA) v1.0.0 compliance suite
# (@ipfs-shipyard/pinning-service-compliance 1.8.1, locked in tests/psa-compliance/) against a PSA
# endpoint, offline, and exit 0 only if every one of its 9 checks passed.
#
#   scripts/psa-compliance.sh URL TOKEN [SECOND_TOKEN]
#
#   URL           the PSA endpoint, without /pins (e.g. http://127.0.0.1:8080)
#   TOKEN         an access token; best a user with no pins (the suite creates up to 15 and
#                 deletes them all again, and it compares counts with the count it saw first)
#   SECOND_TOKEN  optional, another user's token: a second copy of the suite then runs as that
#                 user at the same time, and both must pass (which they cannot if one user's pins
#                 show up in the other's listings or counts)
#
# Knobs (environment):
#   PSA_SPEC                the frozen spec file the suite validates responses against (default:
#                           shared/psa/ipfs-pinning-service.yaml beside this checkout)
#   PSA_COMPLIANCE_TIMEOUT  seconds one suite run may take before it is killed (default 300; a
#                           passing run takes about 55 s: the suite sends at most 1 request/s)
#   PSA_COMPLIANCE_OUT      directory for the reports (default: a new temporary directory, removed
#                           when everything passed, kept and named otherwise)
#   PSA_COMPLIANCE_VERBOSE  1: pass -v, so the console shows every request and response
#
# Reports, per run: <hostname>.md (each check with its requests, responses and which expectation
# failed), <hostname>.json ({total, passed, failed, success}), <hostname>/{combined,error}.log, and
# console.log. The suite itself exits 0 even when checks fail; this script reads the JSON.
# Exit status: 0 when every run's JSON says failed 0 and passed == total == 9; 1 when a check
# failed or a report is missing; 124 when a run hit the timeout; 2 on bad usage.
set -euo pipefail

SUITE_VERSION=1.8.1
EXPECTED_TOTAL=9 # checkEmptyBearerToken ... deleteAllPins: one pass/fail per check

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[[ $# -eq 2 || $# -eq 3 ]] || usage
url=${1%/} token=$2 second_token=${3-}
[[ $url == http://* || $url == https://* ]] || { echo "psa-compliance: URL must start with http:// or https://: $url" >&2; exit 2; }
[[ $url != */pins ]] || { echo "psa-compliance: give the endpoint without /pins (the suite appends it): $url" >&2; exit 2; }
[[ -n $token ]] || { echo "psa-compliance: empty TOKEN" >&2; exit 2; }
[[ $# -lt 3 || -n $second_token ]] || { echo "psa-compliance: empty SECOND_TOKEN" >&2; exit 2; }
[[ $# -lt 3 || $second_token != "$token" ]] || { echo "psa-compliance: SECOND_TOKEN must be another user's" >&2; exit 2; }
# The suite takes the token on its command line (yargs): one that looks like a number would be
# sent as that number (0x10 -> "Bearer 16"), one that starts with - would be read as an option.
for t in "$token" "$second_token"; do
  if [[ $t == -* ]] || [[ ${t,,} =~ ^[+-]?(0x[0-9a-f]+|[0-9]*\.?[0-9]+(e[+-]?[0-9]+)?)$ ]]; then
    echo "psa-compliance: the suite cannot be given a token that starts with - or looks like a number: $t" >&2
    exit 2
  fi
done

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/tests/psa-compliance
suite=$dir/node_modules/@ipfs-shipyard/pinning-service-compliance/dist/src/index.js
spec=${PSA_SPEC:-$root/../shared/psa/ipfs-pinning-service.yaml}
[[ -f $spec ]] || { echo "psa-compliance: no spec at $spec (set PSA_SPEC to the PSA v1.0.0 YAML)" >&2; exit 2; }
spec=$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")
timeout_s=${PSA_COMPLIANCE_TIMEOUT:-300}
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || { echo "psa-compliance: PSA_COMPLIANCE_TIMEOUT must be whole seconds" >&2; exit 2; }
node -e 'process.exit(typeof require("node:module").register === "function" ? 0 : 1)' 2>/dev/null \
  || { echo "psa-compliance: needs node 20.6 or newer on PATH (for module.register)" >&2; exit 2; }

# Install from the lockfile only when node_modules does not match it (as scripts/setup.sh does for
# tests/ipfs-node). --ignore-scripts: the suite depends on the `kubo` package, whose install script
# downloads a Kubo binary (impossible offline); the suite never runs it.
if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.pinwarden-lock"; then
  echo "==> npm ci in tests/psa-compliance (compliance suite $SUITE_VERSION)"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.pinwarden-lock"
fi
[[ -f $suite ]] || { echo "psa-compliance: the suite is not installed at $suite" >&2; exit 1; }

if [[ -n ${PSA_COMPLIANCE_OUT:-} ]]; then
  out=$PSA_COMPLIANCE_OUT keep=1
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
else
  out=$(mktemp -d "${TMPDIR:-/tmp}/psa-compliance.XXXXXX") keep=0
fi

labels=(first) tokens=("$token")
[[ -z $second_token ]] || { labels+=(second); tokens+=("$second_token"); }
if [[ ${#labels[@]} -eq 1 ]]; then dirs=("$out"); else dirs=("$out/first" "$out/second"); fi
verbose=()
[[ ${PSA_COMPLIANCE_VERBOSE:-0} != 1 ]] || verbose=(-v)

# One suite run: offline.mjs points the suite at the local spec and at this run's own report
# directory (its default is a fixed folder inside its package, named after the URL's hostname, so
# runs would clash). cwd is the report directory, so the suite's `git rev-parse` finds no repository
# and its report names the npm version. npm_package_*: what the suite sees under npx (it puts
# npm_package_name into every pin's meta as createdBy, and both into the report header).
run_one() { # REPORT_DIR TOKEN LABEL
  local rdir=$1 tok=$2 label=$3 rc=0
  mkdir -p "$rdir"
  (
    cd "$rdir"
    PSA_SPEC=$spec PSA_REPORT_DIR=$rdir \
      npm_package_name=@ipfs-shipyard/pinning-service-compliance npm_package_version=$SUITE_VERSION \
      timeout --kill-after=10 "$timeout_s" \
      node --import "$dir/offline.mjs" "$suite" -s "$url" "$tok" "${verbose[@]}"
  ) >"$rdir/console.log" 2>&1 || rc=$?
  echo "$rc" >"$rdir/exit-code"
  if [[ ${#labels[@]} -gt 1 ]]; then sed "s/^/[$label] /" "$rdir/console.log"; else cat "$rdir/console.log"; fi
}

echo "==> PSA compliance suite $SUITE_VERSION against $url (${#labels[@]} user(s), reports in $out)"
started=$(date +%s)
pids=()
for i in "${!labels[@]}"; do
  run_one "${dirs[$i]}" "${tokens[$i]}" "${labels[$i]}" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "==> suite finished in $(($(date +%s) - started)) s"

status=0 passed_all=0
for i in "${!labels[@]}"; do
  rdir=${dirs[$i]} label=${labels[$i]}
  rc=$(cat "$rdir/exit-code")
  if [[ $rc == 124 || $rc == 137 ]]; then
    echo "psa-compliance [$label]: FAILED: the suite did not finish within ${timeout_s} s (PSA_COMPLIANCE_TIMEOUT); partial reports in $rdir" >&2
    status=124
    continue
  fi
  shopt -s nullglob
  reports=("$rdir"/*.json)
  shopt -u nullglob
  if [[ ${#reports[@]} -ne 1 ]]; then
    # The suite quits quietly (exit 0, no report) when a request gets no HTTP response at all, e.g.
    # connection refused: it then waits forever on a promise that nothing will settle.
    echo "psa-compliance [$label]: FAILED: no <hostname>.json report in $rdir (found ${#reports[@]}; suite exit code $rc). The suite stops without one when a request gets no HTTP response at all: is $url up? See $rdir/console.log" >&2
    [[ $status -ne 0 ]] || status=1
    continue
  fi
  report=${reports[0]}
  # total/passed/failed count checks (top-level calls), not single expectations; a check that threw
  # before its expectations ran counts in neither, hence the comparison with EXPECTED_TOTAL.
  read -r total passed failed < <(node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const n = (v) => (Number.isInteger(v) ? v : -1);
    console.log(n(r.total), n(r.passed), n(r.failed));' "$report") || { total=-1 passed=-1 failed=-1; }
  md=${report%.json}.md
  if [[ $failed -eq 0 && $passed -eq $total && $total -eq $EXPECTED_TOTAL ]]; then
    echo "psa-compliance [$label]: passed $passed/$total"
    passed_all=$((passed_all + passed))
  else
    echo "psa-compliance [$label]: FAILED: passed $passed/$total, failed $failed (expected $EXPECTED_TOTAL/$EXPECTED_TOTAL); details in $md" >&2
    [[ $passed -lt 0 ]] || passed_all=$((passed_all + passed))
    [[ $status -ne 0 ]] || status=1
  fi
done

expected=$((EXPECTED_TOTAL * ${#labels[@]}))
echo "psa-compliance: $passed_all passed, $((expected - passed_all)) failed"
if [[ $status -eq 0 && $keep -eq 0 ]]; then
  rm -rf "$out"
else
  echo "psa-compliance: reports kept in $out"
fi
exit "$status"
