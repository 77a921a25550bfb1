#!/usr/bin/env bash
# Inside a clean Debian container: install the .deb as a user would (its dependencies from
# Debian), find `stigmer` on PATH, start the app from its desktop entry under a virtual display,
# run a command through the server it started, quit, and remove the package.
#   fresh.sh /pkg/stigmer_VERSION_amd64.deb
set -euo pipefail
deb="$1"
export DEBIAN_FRONTEND=noninteractive
step() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }
now() { date +%s.%N; }

t0=$(now)
step "apt-get install ./$(basename "$deb")"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$deb" >/tmp/install.log 2>&1 || { tail -20 /tmp/install.log; fail "the package did not install"; }
t_installed=$(now)

step "stigmer on PATH"
[ "$(command -v stigmer)" = /usr/bin/stigmer ] || fail "stigmer is not /usr/bin/stigmer: $(command -v stigmer)"
stigmer --version | grep -q '^stigmer ' || fail "stigmer --version: $(stigmer --version 2>&1)"

step "the desktop entry"
entry=$(dpkg -L stigmer | grep '^/usr/share/applications/.*\.desktop$' | head -1)
[ -n "$entry" ] || fail "no desktop entry in the package"
grep -q '^Icon=' "$entry" || fail "the desktop entry has no icon"
icon=$(sed -n 's/^Icon=//p' "$entry")
dpkg -L stigmer | grep -q "/usr/share/icons/hicolor/.*/apps/$icon.png" || fail "the icon $icon is not installed"
exec_line=$(sed -n 's/^Exec=//p' "$entry" | sed 's/ %[fFuU]//')
[ -n "$exec_line" ] || fail "the desktop entry has no Exec line"
echo "Exec=$exec_line"

# Test tools only (a display and a session bus): not what the package needs.
apt-get install -y -qq --no-install-recommends xvfb xauth dbus dbus-x11 procps >/tmp/tools.log 2>&1 || { tail -20 /tmp/tools.log; fail "test tools"; }

step "start it from the desktop entry"
export HOME=/root XDG_RUNTIME_DIR=/tmp/rt NO_AT_BRIDGE=1
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# First runs go to loopback only (no update server here).
export STIGMER_UPDATE_ENDPOINT=https://127.0.0.1:9/latest.json
t_start=$(now)
xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- sh -c "$exec_line" >/tmp/app.log 2>&1 &
discovery="$HOME/.local/share/stigmer/server.json"
for _ in $(seq 1 300); do [ -s "$discovery" ] && break; sleep 0.1; done
[ -s "$discovery" ] || { tail -30 /tmp/app.log; fail "the app did not start a server"; }
out=$(stigmer run -- echo installed-and-running) || fail "stigmer run failed: $out"
[ "$out" = installed-and-running ] || fail "unexpected output: $out"
t_first=$(now)
status=$(stigmer server status) || fail "stigmer server status: $status"
grep -qi running <<<"$status" || fail "stigmer server status: $status"
app_pid=$(pgrep -x stigmer-desktop | head -1 || true)
[ -n "$app_pid" ] || fail "no app process"
# The window started the tray process, which started the server.
pgrep -x stigmer-tray >/dev/null || fail "no tray process"

step "quit"
# Ending the window quits the app. Programs named stigmer* (the window, the tray, the server, the CLI): not this script, whose arguments name the package.
kill -TERM "$app_pid"
for _ in $(seq 1 150); do pgrep '^stigmer' >/dev/null || break; sleep 0.1; done
left=$(pgrep -a '^stigmer' || true)
[ -z "$left" ] || fail "processes left after quitting: $left"

step "apt-get remove"
apt-get remove -y -qq stigmer >/dev/null 2>&1 || fail "remove"
for f in /usr/bin/stigmer /usr/bin/stigmer-desktop /usr/bin/stigmer-tray "$entry"; do
  [ ! -e "$f" ] || fail "$f is still there after removal"
done

awk -v a="$t0" -v b="$t_installed" -v c="$t_start" -v d="$t_first" 'BEGIN {
  printf "measure: install %.1f s; app start to first command %.1f s; install to first command %.1f s (without the test tools)\n", b - a, d - c, (b - a) + (d - c) }'
echo "PASS"
