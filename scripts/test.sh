#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine: installs what the tests need (with
# sudo when not root), then runs every test and prints one closing line. The installer tests
# build release bundles (and the Tauri CLI, once): the first run takes a while longer.
#
# Sandbox tests use the machine's Docker Engine; without one they say SKIPPED loudly (set
# STIGMER_TEST_REQUIRE_ENGINE=1 to make that a failure, as CI does). `--install-only` installs
# and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps test

[ "${1:-}" = "--install-only" ] && exit 0

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
t0=$SECONDS
took() { echo "== $1 took $((SECONDS - t0)) s"; t0=$SECONDS; }
# Every test binary runs even after one fails (the closing line counts them all).
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
took "cargo test"
# The MCP server driven by a real MCP client (the official Python SDK), over stdio and HTTP.
STIGMER_BIN="$PWD/target/debug/stigmer" target/pyenv/bin/python -m pytest tests/mcp -q 2>&1 | tee -a "$log" || status=$?
took "pytest"
# The HTTP API fuzzed from its OpenAPI document (schemathesis); needs the container engine.
if docker version >/dev/null 2>&1; then
  tests/fuzz/run.sh target/debug/stigmer 2>&1 | tee -a "$log" || status=$?
elif [ -n "${STIGMER_TEST_REQUIRE_ENGINE:-}" ]; then
  echo "fuzz phase 0 (no container engine, and STIGMER_TEST_REQUIRE_ENGINE is set): FAIL" | tee -a "$log"
  status=1
else
  echo "!!!!! SKIPPED the API fuzzing: no container engine on this machine !!!!!"
fi
took "the API fuzzing"
# The sandbox suite again on Podman's Docker-compatible service, a second engine: images,
# the exec contract in any image, workspaces, orphans and TTL. The test binaries built above
# are run again as they are (from their package's folder, as cargo runs them): a `cargo test`
# naming only these would unify features differently and build everything again (4 min).
if docker version >/dev/null 2>&1 && command -v podman >/dev/null 2>&1; then
  echo "== the sandbox tests on Podman"
  podman_bins=$(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
    python3 tests/engines/built_tests.py sandbox sandbox_images sandbox_any_image sandbox_workspaces admitted_folder \
      sandbox_remote sandbox_hostile sandbox_hostrun) || { echo "podman pass (the test binaries): FAIL" | tee -a "$log"; status=1; }
  # shellcheck disable=SC2016
  [ -n "${podman_bins:-}" ] && tests/engines/podman.sh with bash -c \
    'cd crates/cli && s=0; for b in "$@"; do echo "     Running $b"; "$b" || s=1; done; exit $s' podman-pass \
    $podman_bins 2>&1 | tee -a "$log" || status=$?
elif [ -n "${STIGMER_TEST_REQUIRE_ENGINE:-}" ]; then
  echo "podman pass (podman is missing, and STIGMER_TEST_REQUIRE_ENGINE is set): FAIL" | tee -a "$log"
  status=1
fi
took "the Podman pass"
# The installers: built, installed in a clean Debian container, updated from A to B there.
if docker version >/dev/null 2>&1; then
  tests/install/run.sh 2>&1 | tee -a "$log" || status=$?
elif [ -n "${STIGMER_TEST_REQUIRE_ENGINE:-}" ]; then
  echo "install test (no container engine, and STIGMER_TEST_REQUIRE_ENGINE is set): FAIL" | tee -a "$log"
  status=1
else
  echo "!!!!! SKIPPED the installer tests: no container engine on this machine !!!!!"
fi
took "the installer tests"
# One closing line for the whole suite, summed over every test binary, pytest and the fuzzing.
awk '/^test result:/ || /^(=+ )?[0-9]+ (passed|failed|error)/ {
       for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|error)/) f += $i } }
     /^fuzz phase [0-9].*: PASS/ || /^install test .*: PASS$/ { p++ }
     /^fuzz phase [0-9].*: FAIL/ || /^install test .*: FAIL$/ { f++ }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit $status
