"""Print the paths of test binaries the workspace's `cargo test` builds, for the given test
names: `cargo test --workspace --no-run --message-format=json` on stdin, names as arguments.
Running these binaries again (for a second engine) reuses that build: a `cargo test` that
selects other targets unifies features differently and builds everything again."""
import json
import sys

wanted = set(sys.argv[1:])
found = {}
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target") or {}
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and "test" in target.get("kind", []) and target.get("name") in wanted:
        found[target["name"]] = msg["executable"]
missing = wanted - set(found)
if missing:
    sys.exit(f"not built: {', '.join(sorted(missing))}")
for name in sys.argv[1:]:
    print(found[name])
