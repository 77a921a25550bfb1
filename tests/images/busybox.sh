#!/usr/bin/env bash
# Make the tests' sandbox image without any registry: busybox-static's applets in an image
# imported from a tarball. Prints the image name. Used by the Rust and the Python tests.
set -euo pipefail
image="${1:-stigmer-test/busybox:1}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
busybox=""
for p in /bin/busybox /usr/bin/busybox; do [ -x "$p" ] && busybox="$p" && break; done
[ -n "$busybox" ] || { echo "busybox-static is needed to make test images (apt-get install busybox-static)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/root/bin" "$dir/root/tmp" "$dir/root/run" "$dir/root/etc"
cp "$busybox" "$dir/root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/root/bin/$applet"
done
chmod 1777 "$dir/root/tmp"
echo "root:x:0:0:root:/root:/bin/sh" > "$dir/root/etc/passwd"
tar -C "$dir/root" -cf "$dir/rootfs.tar" .
docker import --change 'CMD ["/bin/sh"]' "$dir/rootfs.tar" "$image" >/dev/null
echo "$image"
