#!/usr/bin/env bash
# Inside a clean Debian container: version A of the app, installed from its .deb, sees version
# B on a real update server on 127.0.0.1, installs it when asked (signature checked) and
# restarts as B. First, a tampered package, a download cut off halfway and an endpoint that
# is down are each refused with a clear message, and A keeps working.
#   update.sh /pkg  (a.deb, b.deb, b.deb.sig, b.version, tauri-driver, serve_update.py)
set -Eeuo pipefail
pkg="$1"
export DEBIAN_FRONTEND=noninteractive
step() { echo "== $*"; }
# The script's own output: a failure inside a command whose output goes to /dev/null still
# says so here.
exec 3>&1
# Every failure says where and shows what the app and the driver printed (the app's output
# goes to tauri-driver's log), so a red run can be read without running it again.
fail() {
  exec 1>&3 2>&3
  trap - ERR
  echo "FAIL: $*"
  [ -f /tmp/driver.log ] && { echo "-- tauri-driver and app output (last 40 lines)"; tail -40 /tmp/driver.log; }
  for f in "$HOME"/.local/share/stigmer/logs/*; do
    [ -f "$f" ] && { echo "-- $f (last 20 lines)"; tail -20 "$f"; }
  done
  echo "-- processes"; ps -eo pid,ppid,stat,etime,args | grep -E 'stigmer|WebKit|tauri' | grep -v grep || true
  exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND (exit $?)"' ERR

step "install A and the test tools"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$pkg/a.deb" >/tmp/install.log 2>&1 || { tail /tmp/install.log; fail "A did not install"; }
apt-get install -y -qq --no-install-recommends xvfb xauth dbus dbus-x11 procps webkit2gtk-driver \
  python3 openssl ca-certificates sudo curl >/tmp/tools.log 2>&1 || { tail /tmp/tools.log; fail "test tools"; }
version_a=$(dpkg-query -W -f '${Version}' stigmer)
version_b=$(cat "$pkg/b.version")
echo "A is $version_a, B is $version_b"

step "a certificate of the test's own for 127.0.0.1"
cd /tmp
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=stigmer test CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
cp ca.crt /usr/local/share/ca-certificates/stigmer-test.crt && update-ca-certificates >/dev/null

export HOME=/root XDG_RUNTIME_DIR=/tmp/rt NO_AT_BRIDGE=1
mkdir -p "$XDG_RUNTIME_DIR" "$HOME/.config/stigmer" && chmod 700 "$XDG_RUNTIME_DIR"
echo '{"welcomed": true}' > "$HOME/.config/stigmer/desktop.json"
export STIGMER_UPDATE_ENDPOINT=https://127.0.0.1:8443/latest.json
Xvfb :5 -screen 0 1280x800x24 >/dev/null 2>&1 &
export DISPLAY=:5
eval "$(dbus-launch --sh-syntax)"

server_pid=""
serve() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  server_pid=""
  [ "$1" = down ] && return
  python3 "$pkg/serve_update.py" "$1" 8443 server.crt server.key "$version_b" "$pkg/b.deb" "$pkg/b.deb.sig" &
  server_pid=$!
  for _ in $(seq 1 50); do curl -sf https://127.0.0.1:8443/latest.json >/dev/null && return; sleep 0.1; done
  fail "the update server did not start"
}

# WebDriver over plain HTTP to tauri-driver, which starts the installed app.
wd() { curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "http://127.0.0.1:4444$2"; }
value() { python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(v if isinstance(v, str) else json.dumps(v))'; }
js() { wd POST "/session/$S/execute/sync" "$(python3 -c 'import json,sys; print(json.dumps({"script": sys.argv[1], "args": []}))' "$1")" | value; }
click() {
  local id
  id=$(wd POST "/session/$S/element" "{\"using\":\"css selector\",\"value\":\"$1\"}" | python3 -c 'import json,sys; print(list(json.load(sys.stdin)["value"].values())[0])')
  wd POST "/session/$S/element/$id/click" '{}' >/dev/null
}
wait_text() {  # wait_text WANT: the update text shows WANT
  for _ in $(seq 1 300); do
    t=$(js "return document.getElementById('update-text').textContent" 2>/dev/null || true)
    case "$t" in *"$1"*) return 0 ;; esac
    sleep 0.1
  done
  fail "the window never said '$1'; it says '$t'"
}
start_app() {
  "$pkg/tauri-driver" --port 4444 --native-port 4445 >/tmp/driver.log 2>&1 &
  driver_pid=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:4444/status >/dev/null && break; sleep 0.1; done
  S=$(wd POST /session '{"capabilities":{"alwaysMatch":{"tauri:options":{"application":"/usr/bin/stigmer-desktop"}}}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["sessionId"])')
  click '.tab[data-view=settings]'
}
stop_app() {
  wd DELETE "/session/$S" >/dev/null 2>&1 || true
  kill "$driver_pid" 2>/dev/null || true
  wait "$driver_pid" 2>/dev/null || true
  # The window and its tray process (which outlives a window by design).
  pkill -x stigmer-desktop 2>/dev/null || true
  pkill -x stigmer-tray 2>/dev/null || true
  for _ in $(seq 1 100); do pgrep '^stigmer' >/dev/null || break; sleep 0.1; done
}
still_a() {
  [ "$(dpkg-query -W -f '${Version}' stigmer)" = "$version_a" ] || fail "$1: the installed version changed"
  js "return document.getElementById('server-state').textContent" | grep -q Running || fail "$1: A stopped working"
}

for mode in down tampered truncated; do
  step "refused: $mode"
  serve "$mode"
  start_app
  if [ "$mode" = down ]; then
    wait_text "could not reach its update server"
  else
    wait_text "Version $version_b is available"
    js "return document.getElementById('update-notes-text').textContent" | grep -q "what is new" || fail "no release notes shown"
    click '#update-install'
    case "$mode" in
      tampered) wait_text "does not match Stigmer's signature" ;;
      truncated) wait_text "nothing was installed" ;;
    esac
  fi
  still_a "$mode"
  stop_app
done

step "installed: B"
serve good
start_app
wait_text "Version $version_b is available"
old_pids=$(pgrep -x stigmer-desktop || true)
# The window ends as the update restarts the app: the click's own answer may never come.
click '#update-install' || true
for _ in $(seq 1 600); do
  [ "$(dpkg-query -W -f '${Version}' stigmer)" = "$version_b" ] && break
  sleep 0.1
done
[ "$(dpkg-query -W -f '${Version}' stigmer)" = "$version_b" ] || fail "B was not installed"
# Restarted as B: a new process of the new binary, which finds nothing newer.
new_pid=""
for _ in $(seq 1 300); do
  new_pid=$(pgrep -x stigmer-desktop | grep -vxF "${old_pids:-none}" | head -1 || true)
  [ -n "$new_pid" ] && break
  sleep 0.1
done
[ -n "$new_pid" ] || fail "the app did not restart"
case "$(readlink "/proc/$new_pid/exe")" in *deleted*) fail "the restarted app is the old binary" ;; esac
# Its tray process too: one, the new binary.
trays=$(pgrep -x stigmer-tray || true)
[ "$(wc -w <<<"$trays")" = 1 ] || fail "tray processes after the update: '${trays}'"
case "$(readlink "/proc/$trays/exe")" in *deleted*) fail "the tray process is the old binary" ;; esac
for _ in $(seq 1 300); do [ -s "$HOME/.local/share/stigmer/server.json" ] && break; sleep 0.1; done
stigmer run -- echo after-the-update | grep -qx after-the-update || fail "no command after the update"
kill -TERM "$new_pid" || fail "the restarted app (pid $new_pid) ended by itself"
stop_app
echo "PASS"
