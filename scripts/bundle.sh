#!/usr/bin/env bash
# The installers, built with the Tauri CLI: on Linux the .deb and .rpm (AppImage downloads its
# tooling from outside, so the release workflow builds it), with the `stigmer` CLI and the
# `stigmer-tray` program bundled next to the app (`externalBin`). Prints the paths of what it built.
#
#   ./scripts/bundle.sh [--bundles deb,rpm] [tauri build options...]
#   ./scripts/bundle.sh --tools-only
#
# Update signatures are made when TAURI_SIGNING_PRIVATE_KEY is set (the release workflow's
# secret); without it the bundles are built unsigned, and this says so.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps app
TAURI_CLI_VERSION=2.12.4
if [ "$(cargo tauri --version 2>/dev/null)" != "tauri-cli $TAURI_CLI_VERSION" ]; then
  echo "== installing tauri-cli $TAURI_CLI_VERSION (a few minutes, once)"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install tauri-cli --version "$TAURI_CLI_VERSION" --locked --quiet
fi
# `--tools-only`: the Tauri CLI and the build dependencies, nothing built (the installer tests
# need `cargo tauri signer` before their first bundle).
[ "${1:-}" = "--tools-only" ] && exit 0
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked -p stigmer-cli -p stigmer-tray
mkdir -p src-tauri/binaries
cp target/release/stigmer "src-tauri/binaries/stigmer-$triple"
cp target/release/stigmer-tray "src-tauri/binaries/stigmer-tray-$triple"
args=(--config src-tauri/tauri.bundle.json)
if [ -n "${TAURI_SIGNING_PRIVATE_KEY:-}" ]; then
  args+=(--config '{"bundle":{"createUpdaterArtifacts":true}}')
else
  echo "== no TAURI_SIGNING_PRIVATE_KEY: bundles without update signatures"
fi
case " $* " in
  *" --bundles "*|*" -b "*) ;;
  *) [ "$(uname)" = Linux ] && args+=(--bundles deb,rpm) ;;
esac
cargo tauri build "${args[@]}" "$@"
# Debian and RPM name packages in lower case (stigmer_0.1.0_amd64.deb), as apt users type them.
for f in target/release/bundle/deb/Stigmer_* target/release/bundle/rpm/Stigmer-*; do
  # Files only: Tauri's staging folders (Stigmer_0.1.0_amd64/) keep their names, so a second
  # build does not move one into the other.
  if [ -f "$f" ]; then mv -f "$f" "$(dirname "$f")/stigmer${f##*/Stigmer}"; fi
done
find target/release/bundle -maxdepth 2 -type f \( -name '*.deb' -o -name '*.rpm' -o -name '*.AppImage' -o -name '*.dmg' -o -name '*.msi' -o -name '*setup.exe' -o -name '*.sig' \) -newer "src-tauri/binaries/stigmer-$triple" -print
