#!/usr/bin/env bash
# Fuzz the stigmer server's HTTP API from its own OpenAPI document with schemathesis.
#
#   tests/fuzz/run.sh PATH_TO_STIGMER_BINARY
#
# Phase 1: a server in sandbox mode (commands run in throwaway busybox containers); every
#   operation but POST /v1/shutdown (stops the server), GET /v1/events (an endless stream) and
#   PUT /v1/mode and POST /v1/clients (could switch it, or a client, to local mode), and removing or remaking sandbox images (the fuzzing's own image; a download). All checks, plus the hooks' own
#   `no_run_from_invalid_request`. The server must still be up afterwards.
# Phase 2: a server in local mode; only GET/PUT /v1/mode, GET /v1/status and GET/POST /v1/clients
#   (no run can start), then `stigmer config list` and `stigmer clients list` must still accept
#   the config file the fuzzing wrote.
#
# tests/fuzz/hooks.py keeps the fuzzed runs harmless (never `mode: local`, short timeouts, no
# existing host folder as `cwd`, only the test image) and adds checks: no run from a refused
# request, and run streams (NDJSON, SSE, frames) that match the document.
# Needs Docker, busybox-static (for the test image) and PyPI; the venv is target/pyenv. Logs and
# reports (JUnit, JSON, server logs) go to target/fuzz-report/. FUZZ_MAX_EXAMPLES (per operation,
# default 300) and FUZZ_SEED override the defaults.
# Exits non-zero when a phase fails; the servers are always stopped.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH_TO_STIGMER_BINARY" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[ -x "$bin" ] || { echo "not an executable: $1" >&2; exit 2; }
cd "$root"
# Settings come from the flags below and the servers' own fresh config, not from the caller.
for v in $(compgen -e); do
  case "$v" in STIGMER_*) unset "$v" ;; esac
done

max_examples="${FUZZ_MAX_EXAMPLES:-300}"
seed="${FUZZ_SEED:-20261127}"

# The same venv as the MCP tests (scripts/test.sh makes it; made here when missing).
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
python_env target/pyenv tests/mcp/requirements.txt tests/fuzz/requirements.txt tests/images/requirements.txt
st="$root/target/pyenv/bin/schemathesis"

image="$(tests/images/busybox.sh)"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/stigmer-fuzz.XXXXXX")"
report="$root/target/fuzz-report"
rm -rf "$report"
mkdir -p "$report"
homes=()
cleanup() {
  local h
  for h in ${homes[@]+"${homes[@]}"}; do
    STIGMER_HOME="$h/stigmer" "$bin" server stop >/dev/null 2>&1 || true
    cp -r "$h/stigmer/logs" "$report/$(basename "$h").server-logs" 2>/dev/null || true
  done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts the server of phase $1 (further arguments go to `server start`) with a fresh
# STIGMER_HOME. Its HOME and working directory are scratch folders too, so no fuzzed command sees
# the real home folder (a run without `cwd` works in HOME in local mode; in sandbox mode, in a
# scratch folder of the server's).
start_server() {
  local name="$1"
  shift
  local h="$scratch/$name"
  mkdir -p "$h/stigmer" "$h/home" "$h/cwd"
  homes+=("$h")
  # The fuzzed runs' folder is a workspace the user allowed (sandbox mode refuses any other).
  HOME="$h/home" STIGMER_HOME="$h/stigmer" "$bin" workspaces add "$h/cwd" >/dev/null 2>&1
  (cd "$h" && HOME="$h/home" STIGMER_HOME="$h/stigmer" "$bin" server start "$@") >"$h/start.log" 2>&1 || {
    cat "$h/start.log" >&2
    return 1
  }
}

# Runs schemathesis against the server of phase $1 with the remaining arguments (operation
# filters); returns its exit code. Log and reports: $report/$1.{log,json,junit.xml}.
fuzz() {
  local name="$1"
  shift
  local h="$scratch/$name"
  local url token
  url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$h/stigmer/data/server.json")"
  token="$(cat "$h/stigmer/data/token")"
  # From the report folder: schemathesis keeps its `.schemathesis/` (failures for `st replay`)
  # in the working directory.
  (cd "$report" && STIGMER_FUZZ_URL="$url" STIGMER_FUZZ_TOKEN="$token" STIGMER_FUZZ_CWD="$h/cwd" \
    STIGMER_FUZZ_IMAGE="$image" SCHEMATHESIS_HOOKS="$root/tests/fuzz/hooks.py" PYTHONDONTWRITEBYTECODE=1 \
    "$st" run "$url/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --workers 1 \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --generation-database none \
    --request-timeout 30 \
    --continue-on-failure \
    --no-color \
    --report junit,json \
    --report-junit-path "$report/$name.junit.xml" \
    --report-json-path "$report/$name.json" \
    "$@" 2>&1 | tee "$report/$name.log"
    exit "${PIPESTATUS[0]}")
}

# One line from a phase's JSON report: how many cases ran and what they found.
counts() {
  python3 - "$1" <<'EOF' 2>/dev/null || echo "no report"
import json, sys
d = json.load(open(sys.argv[1]))
t = d["test_cases"]
print(f"{t['generated']} cases, {t['unique_failures']} unique failures, {t['errored']} errors, "
      f"{d.get('filtered', 0)} known failures filtered out by hooks.py")
EOF
}

summary=()
failed=0

# Phase 1: everything that cannot stop the server, stream forever or leave sandbox mode.
t0=$SECONDS
# Sandbox containers without network, and no image downloads: fuzzed commands reach nothing.
STIGMER_SANDBOX_NETWORK=none STIGMER_SANDBOX_AUTO_PULL=false STIGMER_SANDBOX_MEMORY=512m \
  start_server phase1 --mode sandbox --image "$image"
pid1="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$scratch/phase1/stigmer/data/server.json")"
p1=0
fuzz phase1 \
  --exclude-name "POST /v1/shutdown" \
  --exclude-name "GET /v1/events" \
  --exclude-name "PUT /v1/mode" \
  --exclude-name "POST /v1/clients" \
  --exclude-name "POST /v1/sandbox/images/remove" \
  --exclude-name "POST /v1/sandbox/images/remake" || p1=$?
alive=0
STIGMER_HOME="$scratch/phase1/stigmer" "$bin" server status >/dev/null 2>&1 || alive=$?
STIGMER_HOME="$scratch/phase1/stigmer" "$bin" server stop >/dev/null 2>&1 || true
# Stopping the server removes its sandbox containers.
left="$(docker ps -aq --filter "label=dev.stigmer.owner=server-$pid1" | wc -l)"
if [ "$p1" -eq 0 ] && [ "$alive" -eq 0 ] && [ "$left" -eq 0 ]; then
  summary+=("fuzz phase 1 (sandbox, all operations but shutdown/events/PUT mode/POST clients): PASS in $((SECONDS - t0)) s, $(counts "$report/phase1.json")")
else
  failed=1
  summary+=("fuzz phase 1 (sandbox, all operations but shutdown/events/PUT mode/POST clients): FAIL in $((SECONDS - t0)) s (schemathesis exit $p1, server status exit $alive, containers left $left), $(counts "$report/phase1.json"); see $report/phase1.log")
fi

# Phase 2: the mode routes against a local-mode server (no operation here can start a run).
t0=$SECONDS
# No downloads either: a fuzzed mode change to a sandbox tier prepares its image at once.
STIGMER_SANDBOX_AUTO_PULL=false start_server phase2 --mode local
p2=0
fuzz phase2 \
  --include-name "GET /v1/mode" \
  --include-name "PUT /v1/mode" \
  --include-name "GET /v1/status" \
  --include-name "GET /v1/clients" \
  --include-name "POST /v1/clients" || p2=$?
alive=0
STIGMER_HOME="$scratch/phase2/stigmer" "$bin" server status >/dev/null 2>&1 || alive=$?
STIGMER_HOME="$scratch/phase2/stigmer" "$bin" server stop >/dev/null 2>&1 || true
cfg=0
STIGMER_HOME="$scratch/phase2/stigmer" HOME="$scratch/phase2/home" "$bin" config list >"$report/phase2.config.txt" 2>&1 || cfg=$?
STIGMER_HOME="$scratch/phase2/stigmer" HOME="$scratch/phase2/home" "$bin" clients list >>"$report/phase2.config.txt" 2>&1 || cfg=$?
if [ "$p2" -eq 0 ] && [ "$alive" -eq 0 ] && [ "$cfg" -eq 0 ]; then
  summary+=("fuzz phase 2 (local, GET/PUT /v1/mode, GET /v1/status, GET/POST /v1/clients): PASS in $((SECONDS - t0)) s, $(counts "$report/phase2.json")")
else
  failed=1
  summary+=("fuzz phase 2 (local, GET/PUT /v1/mode, GET /v1/status, GET/POST /v1/clients): FAIL in $((SECONDS - t0)) s (schemathesis exit $p2, server status exit $alive, config list exit $cfg), $(counts "$report/phase2.json"); see $report/phase2.log")
fi

echo
printf '%s\n' "${summary[@]}"
exit "$failed"
