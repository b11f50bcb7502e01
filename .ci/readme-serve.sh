#!/usr/bin/env bash
# README's first command, run as written from the repository root:
#   cargo run --release -- run --policy policies/example.toml
# It serves until stopped, so: start it in the background, wait for the example's socket, prove
# it serves (examples/probe.rs connects as a guest, INIT, LOOKUP and READ of a file put in
# ./share), then SIGTERM it and check that it exits 0 and removes its socket. `cargo run`
# execs the binary in its own place, so the pid started here is the broker's.
set -euo pipefail
cd "$(dirname "$0")/.."

sock=/tmp/fsjail-example.sock   # policies/example.toml's socket
probe=${CARGO_TARGET_DIR:-target}/release/examples/probe
if [ -e "$sock" ]; then
  echo "error: $sock exists: is the example already running?" >&2
  exit 1
fi
created_share=
[ -e share ] || created_share=1
log=$(mktemp)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f share/.readme-probe "$log"
  if [ -n "$created_share" ]; then rmdir share 2>/dev/null || true; fi
}
trap cleanup EXIT

cargo build --release --quiet --example probe
cargo run --release -- run --policy policies/example.toml >"$log" 2>&1 &
pid=$!

# Bounded wait: cargo may have to build the binary first (features differ from the workspace
# build's), which takes a few minutes on two busy cores.
for _ in $(seq 1200); do
  [ -S "$sock" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: the README's command exited before its socket appeared:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.5
done
if [ ! -S "$sock" ]; then
  echo "error: no $sock after 10 minutes:" >&2
  cat "$log" >&2
  exit 1
fi

echo "served by the README's command" >share/.readme-probe
got=$("$probe" "$sock" .readme-probe) || {
  echo "error: the probe was not served:" >&2
  cat "$log" >&2
  exit 1
}
if [ "$got" != "served by the README's command" ]; then
  echo "error: the probe read '$got'" >&2
  exit 1
fi
echo "the README's command serves ./share on $sock"

kill -TERM "$pid"
status=0
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "error: the README's command still runs 10 s after SIGTERM:" >&2
  cat "$log" >&2
  exit 1
fi
wait "$pid" || status=$?
pid=
if [ "$status" -ne 0 ]; then
  echo "error: after SIGTERM the README's command exited with status $status:" >&2
  cat "$log" >&2
  exit 1
fi
if [ -e "$sock" ]; then
  echo "error: $sock is still there after a clean stop" >&2
  exit 1
fi
echo "SIGTERM: exit 0, socket removed"
