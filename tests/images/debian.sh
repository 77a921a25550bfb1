#!/usr/bin/env bash
# A clean Debian 12 image made from Debian's packages (no registry): debootstrap's minbase, as
# a fresh machine has it (no Rust, no -dev packages). Prints the image name. About a minute the
# first time; kept afterwards under its test-only tag.
set -euo pipefail
image="${1:-stigmer-test/debian:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# What a user's Debian has beyond minbase: security updates come from the same mirror here.
echo "deb $mirror bookworm main" > "$root/etc/apt/sources.list"
rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/*.bin
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "$image"
