# What building and testing Stigmer needs from Debian/Ubuntu, installed when missing (with sudo
# when not root). Sourced by scripts/run.sh ("app") and scripts/test.sh ("test").
install_deps() {
  local sudo="" need=() pkg
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # The desktop app: Tauri v2 on WebKitGTK, with a tray (ayatana appindicator); bubblewrap for
  # the protected tier.
  local app=(build-essential pkg-config libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev
             libxdo-dev libssl-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev bubblewrap)
  # The tests: test images without a registry (busybox-static), a registry on 127.0.0.1, a
  # headless desktop (display, session bus, tray host, notification daemon, WebKit's WebDriver),
  # and for the installers a clean Debian image (debootstrap) and `rpm` to read the .rpm.
  local test=(python3-venv busybox-static docker-registry xvfb xauth dbus-x11 at-spi2-core imagemagick xdotool webkit2gtk-driver
              dunst libnotify-bin haskell-gtk-sni-tray-utils python3-xlib
              debootstrap rpm podman runc openssl)
  local wanted=("${app[@]}")
  [ "$1" = "test" ] && wanted+=("${test[@]}")
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
  if [ "$1" = "test" ]; then
    # The MCP tests' client (the official MCP Python SDK) and the API fuzzer, in a venv.
    python_env target/pyenv tests/mcp/requirements.txt tests/fuzz/requirements.txt tests/images/requirements.txt
  fi
  if [ "$1" = "test" ] && ! command -v tauri-driver >/dev/null 2>&1; then
    # tauri-driver bridges WebDriver to the app (a crate; builds in about a minute).
    cargo install tauri-driver --locked --quiet
  fi
}

# python_env DIR REQUIREMENTS...: a virtualenv in DIR with the pinned requirements (reinstalled
# only when a requirements file changes).
python_env() {
  local dir="$1" stamp
  shift
  stamp=$(cat "$@" | sha256sum | cut -c1-16)
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "== python test tools into $dir"
    python3 -m venv "$dir"
    local args=() req
    for req in "$@"; do args+=(-r "$req"); done
    "$dir/bin/pip" install --quiet --disable-pip-version-check "${args[@]}"
    echo "$stamp" > "$dir/.stamp"
  fi
}
