#!/usr/bin/env bash
# Make a test image that says it is for another architecture (arm64 on amd64, amd64 elsewhere),
# from the static test program, without a registry: a `docker load` archive written by hand.
# Prints the image name.
set -euo pipefail
image="${1:-stigmer-test/otherarch:1}"
here="$(cd "$(dirname "$0")" && pwd)"
if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
case "$(uname -m)" in x86_64) arch=arm64 ;; *) arch=amd64 ;; esac
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/root"
"$here/noshell.sh" stigmer-test/noshell:1 "$dir/root/probe" >/dev/null
tar -C "$dir/root" -cf "$dir/layer.tar" probe
layer=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/probe"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$arch" "$layer" > "$dir/config.json"
printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$image" > "$dir/manifest.json"
tar -C "$dir" -cf "$dir/image.tar" manifest.json config.json layer.tar
docker load -i "$dir/image.tar" >/dev/null
echo "$image"
