#!/usr/bin/env bash
# One MSRV, declared once (rust-version in the root Cargo.toml's [workspace.package]) and
# checked two ways: clippy's incompatible_msrv lint (the clippy step in .ci/run) flags standard
# library items newer than it in our own code, and this script fails when a member does not
# inherit it or a locked dependency (build and dev dependencies included) needs a newer Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --locked --filter-platform "$host" | python3 -c '
import json, sys

def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
ours = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
declared = set(ours.values())
if len(declared) != 1 or None in declared:
    sys.exit(f"every member must inherit the workspace rust-version: {ours}")
msrv = declared.pop()
newer = sorted(
    "%s %s needs %s" % (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] not in members and p.get("rust_version")
    and version(p["rust_version"]) > version(msrv)
)
if newer:
    sys.exit(f"the workspace declares rust-version {msrv}, but: " + "; ".join(newer))
print(f"rust-version {msrv}: inherited by {len(ours)} members, no locked dependency needs newer")
'
