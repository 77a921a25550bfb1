#!/usr/bin/env bash
# The installers, tested for real: the Linux bundles built by scripts/bundle.sh, installed in a
# clean Debian container (made from Debian's packages, no Rust, no -dev packages), and updated
# from version A to B through a real update server on 127.0.0.1 in that container. Prints one
# line per part, "install test (...): PASS" or "FAIL", and the measured sizes and times.
#
# A and B are signed with a key pair the test makes; released builds carry the project's key.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
report() { echo "install test ($1): $2"; [ "$2" = PASS ] || status=1; }

if ! docker version >/dev/null 2>&1; then
  report "needs a container engine" FAIL
  exit 1
fi
image=$(tests/images/debian.sh) || { report "clean Debian image" FAIL; exit 1; }

echo "== a signing key pair for the test's updates"
./scripts/bundle.sh --tools-only >"$work/tools.log" 2>&1 || { tail -20 "$work/tools.log"; report "the Tauri CLI" FAIL; exit 1; }
cargo tauri signer generate --ci -p "" -w "$work/test.key" >/dev/null 2>&1 || { report "signing key" FAIL; exit 1; }
pubkey=$(cat "$work/test.key.pub")
version_a=$(python3 -c 'import json; print(json.load(open("src-tauri/tauri.conf.json"))["version"])')
version_b=$(python3 -c 'import sys; v=sys.argv[1].split("."); v[-1]=str(int(v[-1])+1); print(".".join(v))' "$version_a")

echo "== version A ($version_a): .deb and .rpm"
t0=$SECONDS
if ! ./scripts/bundle.sh --config "{\"plugins\":{\"updater\":{\"pubkey\":\"$pubkey\"}}}" >"$work/bundle-a.log" 2>&1; then
  tail -30 "$work/bundle-a.log"; report "bundle A" FAIL; exit 1
fi
echo "measure: bundles of A built in $((SECONDS - t0)) s"
deb=$(ls target/release/bundle/deb/*_"$version_a"_*.deb | head -1)
rpm=$(ls target/release/bundle/rpm/*-"$version_a"-*.rpm | head -1)
mkdir -p "$work/pkg"
cp "$deb" "$work/pkg/a.deb"
cp "$deb" "$work/pkg/"

echo "== the .rpm's files and requirements"
files=$(rpm -qpl "$rpm" 2>/dev/null); requires=$(rpm -qpR "$rpm" 2>/dev/null)
ok=PASS
for f in /usr/bin/stigmer /usr/bin/stigmer-desktop /usr/bin/stigmer-tray /usr/share/applications/Stigmer.desktop; do
  grep -qx "$f" <<<"$files" || { echo "the .rpm lacks $f"; ok=FAIL; }
done
grep -q "/usr/share/icons/hicolor/.*/apps/stigmer-desktop.png" <<<"$files" || { echo "the .rpm lacks the icon"; ok=FAIL; }
for r in 'libwebkit2gtk-4.1.so.0()' 'libgtk-3.so.0()' 'libayatana-appindicator3.so.1()' 'bubblewrap'; do
  grep -qF "$r" <<<"$requires" || { echo "the .rpm does not require $r"; ok=FAIL; }
done
report "rpm files and requirements" "$ok"

echo "== sizes"
tar -C target/release -czf "$work/stigmer-$version_a-$(rustc -vV | sed -n 's/^host: //p').tar.gz" stigmer
for f in "$deb" "$rpm" "$work"/stigmer-*.tar.gz; do
  echo "measure: $(basename "$f") $(stat -c %s "$f") bytes ($(awk -v s="$(stat -c %s "$f")" 'BEGIN{printf "%.1f MB", s/1e6}'))"
done

echo "== a fresh machine installs A and runs a command"
if docker run --rm -v "$work/pkg:/pkg:ro" -v "$root/tests/install:/t:ro" "$image" \
    bash /t/fresh.sh "/pkg/$(basename "$deb")" >"$work/fresh.log" 2>&1; then
  grep '^measure:' "$work/fresh.log"; report "fresh install from the .deb" PASS
else
  cat "$work/fresh.log"; report "fresh install from the .deb" FAIL
fi

echo "== version B ($version_b), signed"
t0=$SECONDS
if ! TAURI_SIGNING_PRIVATE_KEY="$(cat "$work/test.key")" TAURI_SIGNING_PRIVATE_KEY_PASSWORD="" \
    ./scripts/bundle.sh --bundles deb \
    --config "{\"version\":\"$version_b\",\"plugins\":{\"updater\":{\"pubkey\":\"$pubkey\"}}}" >"$work/bundle-b.log" 2>&1; then
  tail -30 "$work/bundle-b.log"; report "bundle B" FAIL; exit 1
fi
echo "measure: bundle of B built in $((SECONDS - t0)) s"
b=$(ls target/release/bundle/deb/*_"$version_b"_*.deb | head -1)
cp "$b" "$work/pkg/b.deb"
cp "$b.sig" "$work/pkg/b.deb.sig"
echo "$version_b" > "$work/pkg/b.version"
cp "$(command -v tauri-driver)" "$work/pkg/tauri-driver"
cp tests/install/serve_update.py "$work/pkg/"

echo "== A updates itself to B (and refuses bad updates)"
if docker run --rm -v "$work/pkg:/pkg:ro" -v "$root/tests/install:/t:ro" "$image" \
    bash /t/update.sh /pkg >"$work/update.log" 2>&1; then
  grep '^== ' "$work/update.log"; report "update A to B, bad updates refused" PASS
else
  cat "$work/update.log"; report "update A to B, bad updates refused" FAIL
fi
# B's bundle must not stay where a later bundle.sh would list it.
rm -f "$b" "$b.sig"
exit $status
