#!/usr/bin/env bash
# Make the tests' no-shell image: one static test program (probe.c) as its only file, no shell,
# no libc, no /tmp, no /run. Also leaves the program at OUT (for the other ways of running it).
# Usage: noshell.sh [IMAGE] [OUT]. Prints the image name.
set -euo pipefail
image="${1:-stigmer-test/noshell:1}"
out="${2:-}"
here="$(cd "$(dirname "$0")" && pwd)"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
command -v gcc >/dev/null || { echo "gcc is needed to build the test program (apt-get install build-essential)" >&2; exit 1; }
gcc -static -O2 -o "$dir/probe" "$here/probe.c"
[ -z "$out" ] || cp "$dir/probe" "$out"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  mkdir -p "$dir/root"
  cp "$dir/probe" "$dir/root/probe"
  tar -C "$dir/root" -cf "$dir/rootfs.tar" probe
  docker import --change 'CMD ["/probe"]' "$dir/rootfs.tar" "$image" >/dev/null
fi
echo "$image"
