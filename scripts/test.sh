#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine: installs what the tests need (with
# sudo when not root), then runs every test and prints one closing line.
#
# Sandbox tests use the machine's Docker Engine; without one they say SKIPPED loudly (set
# STIGMER_TEST_REQUIRE_ENGINE=1 to make that a failure, as CI does). `--install-only` installs
# and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
[ -x /bin/busybox ] || need+=(busybox-static)            # test images, made without a registry
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)   # a real registry on 127.0.0.1
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

[ "${1:-}" = "--install-only" ] && exit 0

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit $status
