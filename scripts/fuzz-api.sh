#!/usr/bin/env bash
# Fuzz an HTTP API against its OpenAPI document with schemathesis (property-based: examples,
# boundary "coverage" cases, random fuzzing and stateful sequences), and exit non-zero if it
# found anything.
#
#   scripts/fuzz-api.sh DOC BASE_URL TOKEN [extra `schemathesis run` arguments...]
#   scripts/fuzz-api.sh --install     # only install schemathesis (scripts/setup.sh does)
#
#   # pinwarden's own API, on a TCP listener (`serve --listen 127.0.0.1:7070`):
#   scripts/fuzz-api.sh host/openapi.json http://127.0.0.1:7070 "$PINWARDEN_TOKEN"
#   # a Pinning Services API server (the spec's paths start at /pins, so BASE_URL is the endpoint):
#   scripts/fuzz-api.sh /work/shared/psa/ipfs-pinning-service.yaml http://127.0.0.1:8080 "$KEY"
#
# schemathesis 4.32.5 is installed once into a virtualenv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/schemathesis-4.32.5/ (needs Python >= 3.11 and
# PyPI); later runs reuse it.
#
# Knobs (environment):
#   FUZZ_CHECKS          checks to run, e.g. not_a_server_error,response_schema_conformance
#                        (default: not passed, which means every check; "all" also overrides
#                        per-operation check settings in FUZZ_CONFIG, so leave it unset then)
#   FUZZ_EXCLUDE_CHECKS  checks to skip (default: positive_data_acceptance,use_after_free:
#                        the first fails a server that is stricter than its document, e.g. 400
#                        for a cid that is no CID where the document says any string; the second
#                        one that still answers a GET after a DELETE, as a cancelled job does).
#                        Empty string: skip none. An extra --exclude-checks argument adds to it.
#   FUZZ_MAX_EXAMPLES    generated cases per operation and phase (default 25)
#   FUZZ_SEED            seed (default 1, so two runs send the same cases); "random" for none
#   FUZZ_PHASES          default examples,coverage,fuzzing,stateful
#   FUZZ_TIMEOUT         hard wall-clock limit in seconds (default 120; exit 124 when hit)
#   FUZZ_MAX_TIME        if set, passed as --max-time: fuzzing and stateful phases then repeat
#                        until that many seconds are spent (the run takes that long)
#   FUZZ_REQUEST_TIMEOUT per-request timeout in seconds (default 10)
#   FUZZ_OUT             where reports, the crash cache and the generated config go
#                        (default target/fuzz-api/<document name>)
#   FUZZ_CONFIG_EXTRA    TOML appended to the generated config, e.g. [dictionaries] of real
#                        request ids and CIDs bound to parameters, so generated cases reach
#                        stored resources and not only 400s and 404s (ignored with FUZZ_CONFIG)
#   FUZZ_CONFIG          your own schemathesis.toml instead of the generated one (e.g. to disable
#                        one check on one operation with [[operations]]); it then also has to ask
#                        for `warnings = { fail-on = [...] }` itself
#   PYTHON               interpreter for the virtualenv (default: first of python3.13, 3.12, 3.11,
#                        python3 that is >= 3.11)
#
# Exit status: schemathesis's (1 when a check failed, an operation errored, or a fatal warning such
# as "only 401/403 responses", i.e. a wrong token or a refused Host, fired), 124 on FUZZ_TIMEOUT,
# 2 on bad usage. Reading failures: each one under FAILURES names the check's code (ST101 server
# error, ST102 undocumented status, ST105 content type, ST103 response schema, ST201 negative data
# accepted, ...), the response, and a curl line; `st explain CODE` says more. JUnit XML: $OUT/junit.xml.
set -euo pipefail

ST_VERSION=4.32.5

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
INSTALL_ONLY=0
[[ ${1-} == --install ]] && INSTALL_ONLY=1
[[ $INSTALL_ONLY -eq 1 || $# -ge 3 ]] || usage
if [[ $INSTALL_ONLY -eq 0 ]]; then
doc=$1 base_url=$2 token=$3
shift 3
[[ -f $doc || $doc == http://* || $doc == https://* ]] || { echo "fuzz-api: no such document: $doc" >&2; exit 2; }
[[ -n $token ]] || { echo "fuzz-api: empty token" >&2; exit 2; }
if [[ -f $doc ]]; then doc=$(cd "$(dirname "$doc")" && pwd)/$(basename "$doc"); fi
fi

# --- install (once) ------------------------------------------------------------------------------
venv="${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/schemathesis-$ST_VERSION"
stamp="$venv/.installed"

pick_python() {
    local candidates=("${PYTHON:-}" python3.13 python3.12 python3.11 python3) c
    for c in "${candidates[@]}"; do
        [[ -n $c ]] && command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$c"
            return
        fi
    done
    echo "fuzz-api: schemathesis $ST_VERSION needs Python >= 3.11 with the venv module" \
        "(Debian: apt-get install python3-venv); set PYTHON=..." >&2
    exit 2
}

install() {
    local py
    py=$(pick_python)
    echo "==> installing schemathesis==$ST_VERSION into $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
    "$venv/bin/schemathesis" --version | grep -qF "$ST_VERSION"
    touch "$stamp"
}

if [[ ! -f $stamp || ! -x $venv/bin/schemathesis ]]; then
    mkdir -p "$(dirname "$venv")"
    if command -v flock >/dev/null 2>&1; then
        # Two runs at once (both APIs in parallel) must not install over each other.
        exec 9>"$venv.lock"
        flock 9
    fi
    [[ -f $stamp && -x $venv/bin/schemathesis ]] || install
    if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
fi

[[ $INSTALL_ONLY -eq 0 ]] || exit 0

# --- run -----------------------------------------------------------------------------------------
repo=$(cd "$(dirname "$0")/.." && pwd)
name=$(basename "$doc")
out=${FUZZ_OUT:-$repo/target/fuzz-api/${name%.*}}
mkdir -p "$out"
out=$(cd "$out" && pwd)

config=${FUZZ_CONFIG:-}
if [[ -z $config ]]; then
    config=$out/schemathesis.toml
    # Without fail-on, a wrong token (every answer 401) or a refused Host (every answer 403)
    # is only a warning and the run passes having tested nothing. unmatched_filter: an
    # --exclude-*/--include-* that matches no operation (a typo) fails instead of being ignored.
    cat >"$config" <<EOF
# Generated by scripts/fuzz-api.sh; edit a copy and pass it as FUZZ_CONFIG.
warnings = { fail-on = ["missing_auth", "unmatched_filter"] }

[cache]
directory = "$out/cache"
EOF
    if [[ -n ${FUZZ_CONFIG_EXTRA:-} ]]; then printf '\n%s\n' "$FUZZ_CONFIG_EXTRA" >>"$config"; fi
fi

args=(
    run "$doc"
    --url "$base_url"
    -H "Authorization: Bearer $token"
    --max-examples "${FUZZ_MAX_EXAMPLES:-25}"
    --phases "${FUZZ_PHASES:-examples,coverage,fuzzing,stateful}"
    --workers 1
    --request-timeout "${FUZZ_REQUEST_TIMEOUT:-10}"
    --generation-database none
    --report junit --report-junit-path "$out/junit.xml"
)
# No --checks by default: every check is then on, and a per-operation
# `checks.NAME.enabled = false` in FUZZ_CONFIG still applies (a check named by --checks, even
# through "all", overrides it).
[[ -n ${FUZZ_CHECKS:-} ]] && args+=(--checks "$FUZZ_CHECKS")
exclude=${FUZZ_EXCLUDE_CHECKS-positive_data_acceptance,use_after_free}
[[ -n $exclude ]] && args+=(--exclude-checks "$exclude")
seed=${FUZZ_SEED:-1}
[[ $seed != random ]] && args+=(--seed "$seed")
[[ -n ${FUZZ_MAX_TIME:-} ]] && args+=(--max-time "$FUZZ_MAX_TIME")
# The caller's arguments come last: for single-valued options the last one given wins.
args+=("$@")

echo "==> schemathesis ${args[*]//"Bearer $token"/Bearer ***}" >&2
echo "    reports and crash cache: $out" >&2
# Hypothesis keeps a .hypothesis/ (unicode tables, constants) in the working directory otherwise.
export HYPOTHESIS_STORAGE_DIRECTORY="$out/hypothesis"
status=0
# SIGINT first: schemathesis then prints its summary and writes its reports.
timeout --signal=INT --kill-after=15 "${FUZZ_TIMEOUT:-120}" \
    "$venv/bin/schemathesis" --config-file "$config" "${args[@]}" || status=$?
if [[ $status -eq 124 ]]; then
    echo "fuzz-api: stopped after FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-120}s" >&2
elif [[ $status -ne 0 ]]; then
    echo "fuzz-api: schemathesis exited $status (see FAILURES above, $out/junit.xml)" >&2
fi
exit "$status"
