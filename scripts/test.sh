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
# The desktop app (Tauri v2 on WebKitGTK) and its end-to-end tests: a display, a session bus,
# a tray host, a notification daemon, WebKit's WebDriver.
for pkg in build-essential pkg-config libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev \
           libxdo-dev libssl-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev \
           xvfb xauth dbus-x11 at-spi2-core imagemagick webkit2gtk-driver dunst libnotify-bin \
           haskell-gtk-sni-tray-utils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# tauri-driver bridges WebDriver to the app (a crate; builds in about a minute).
command -v tauri-driver >/dev/null 2>&1 || cargo install tauri-driver --locked --quiet

[ "${1:-}" = "--install-only" ] && exit 0

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit $status
