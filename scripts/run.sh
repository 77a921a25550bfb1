#!/usr/bin/env bash
# Run Stigmer's desktop app (it starts the server, local mode by default; no Docker needed).
# Installs the build dependencies when missing, builds the server and the app, and starts it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps app
# The window starts the tray program next to it, which starts the server program next to it.
cargo build --locked -p stigmer-cli -p stigmer-tray -p stigmer-desktop
exec target/debug/stigmer-desktop "$@"
