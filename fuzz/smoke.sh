#!/usr/bin/env bash
# Fuzz smoke test (run by .ci/run): builds every fuzz target and runs each for a bounded time.
#
#   fuzz/smoke.sh                       # 60 s per target, no sanitizer (stable toolchain)
#   FUZZ_SECONDS=10 fuzz/smoke.sh       # shorter
#   FUZZ_SANITIZER=address RUSTC_BOOTSTRAP=1 fuzz/smoke.sh   # with AddressSanitizer
#   fuzz/smoke.sh fuse_server dax_mapping                    # only these targets
#
# Installs cargo-fuzz (crates.io) when it is missing. Exits non-zero on the first target that
# crashes, panics, leaks past -rss_limit_mb or hangs past -timeout; the input that did it is in
# fuzz/artifacts/TARGET/ (replay it with `cargo fuzz run TARGET fuzz/artifacts/TARGET/FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuse_server fuse_server_readonly descriptor_chain dax_mapping policy_parser vhost_user_messages migration_state)
fi

# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing g++ (libFuzzer is C++)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "== building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  echo "== $t: ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  # -timeout: one input taking 10 s is a hang (a blocked worker thread, say), not slowness.
  status=0
  cargo fuzz run --sanitizer "$sanitizer" "$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|Done )' \
    "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "FAIL: fuzz target $t found a crash (exit $status); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "== fuzz smoke: all ${#targets[@]} targets ran ${seconds}s without a crash"
