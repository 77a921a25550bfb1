#!/usr/bin/env python3
"""The updater's manifest (latest.json) for a release, from the signed bundles in a folder.

usage: latest_json.py VERSION BASE_URL FOLDER  (prints the JSON)

Each `X.sig` beside a bundle `X` becomes a platform entry the updater looks up as
`{os}-{arch}-{installer}` (linux-x86_64-deb, darwin-universal, windows-x86_64-msi...), and
`{os}-{arch}` for the installer an OS falls back to.
"""
import datetime
import json
import os
import sys

version, base, folder = sys.argv[1:4]


def arch_of(name):
    n = name.lower()
    if "universal" in n:
        return "universal"
    if "aarch64" in n or "arm64" in n:
        return "aarch64"
    return "x86_64"


platforms = {}
for sig in sorted(f for f in os.listdir(folder) if f.endswith(".sig")):
    bundle = sig[: -len(".sig")]
    kinds = [
        (".deb", "linux", "deb"), (".rpm", "linux", "rpm"), (".AppImage", "linux", "appimage"),
        (".app.tar.gz", "darwin", "app"), (".msi", "windows", "msi"), ("-setup.exe", "windows", "nsis"),
    ]
    for suffix, os_name, installer in kinds:
        if bundle.endswith(suffix):
            entry = {"url": f"{base}/{bundle}", "signature": open(os.path.join(folder, sig)).read().strip()}
            arch = arch_of(bundle)
            if os_name == "darwin":
                for a in ("aarch64", "x86_64") if arch == "universal" else (arch,):
                    platforms[f"darwin-{a}"] = entry
                    platforms[f"darwin-{a}-app"] = entry
            else:
                platforms[f"{os_name}-{arch}-{installer}"] = entry
                # The default for an OS: AppImage on Linux, NSIS on Windows.
                if installer in ("appimage", "nsis"):
                    platforms[f"{os_name}-{arch}"] = entry

json.dump({
    "version": version,
    "notes": f"Stigmer {version}",
    "pub_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "platforms": platforms,
}, sys.stdout, indent=2)
print()
