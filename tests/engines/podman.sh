#!/usr/bin/env bash
# Podman's Docker-compatible service as a second engine for the sandbox tests, on a socket of
# its own with its own storage, configured for these VMs (runc, cgroupfs, file events, modest
# ulimits, host network namespace). Usage:
#   podman.sh start DIR   start the service under DIR, load the test images; prints DOCKER_HOST
#   podman.sh stop DIR    stop it and remove its containers, images and storage
#   podman.sh with CMD... start one in a temporary folder, run CMD with DOCKER_HOST set, stop
set -euo pipefail
if [ "${1:-}" = with ]; then
  shift
  tmp=$(mktemp -d /tmp/stigmer-podman.XXXXXX)
  host=$("$0" start "$tmp")
  status=0
  DOCKER_HOST="$host" "$@" || status=$?
  "$0" stop "$tmp"
  exit $status
fi
cmd="${1:?start|stop}"
dir="${2:?a folder for the service}"
here="$(cd "$(dirname "$0")/.." && pwd)"
sock="$dir/podman.sock"
export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf" \
  CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
case "$cmd" in
start)
  command -v podman >/dev/null || { echo "podman is needed (apt-get install podman runc)" >&2; exit 1; }
  mkdir -p "$dir/storage" "$dir/run"
  cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
  # The tests' registries on loopback (crates/cli/tests/common/engine.rs REGISTRY_PORTS): plain HTTP.
  { echo 'unqualified-search-registries = []'
    for port in $(seq 47100 47199); do printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$port"; done
  } > "$CONTAINERS_REGISTRIES_CONF"
  podman system service --time=0 "unix://$sock" >"$dir/service.log" 2>&1 &
  echo $! > "$dir/service.pid"
  for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || { cat "$dir/service.log" >&2; exit 1; }
  # The test images, made as for Docker (the scripts run `docker`; point it at Podman).
  export DOCKER_HOST="unix://$sock"
  "$here/images/busybox.sh" stigmer-test/busybox:1 >/dev/null
  "$here/images/noshell.sh" stigmer-test/noshell:1 >/dev/null
  echo "unix://$sock"
  ;;
stop)
  if [ -f "$dir/service.pid" ]; then
    DOCKER_HOST="unix://$sock" podman --url "unix://$sock" rm -fa >/dev/null 2>&1 || true
    kill "$(cat "$dir/service.pid")" 2>/dev/null || true
  fi
  sleep 0.5
  umount -R "$dir/storage/overlay" 2>/dev/null || true
  rm -rf "$dir" 2>/dev/null || { sleep 2; umount -lR "$dir/storage/overlay" 2>/dev/null || true; rm -rf "$dir" || true; }
  ;;
esac
