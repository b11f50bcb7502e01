#!/usr/bin/env bash
# A long fuzzing campaign for one target: resume from its corpus, run for a given time, minimise
# the corpus, print the figures (executions, rate, libFuzzer's cov/ft, corpus size, crashes).
#
#   fuzz/campaign.sh TARGET SECONDS            # e.g. fuzz/campaign.sh fuse_server 3600
#   FUZZ_SANITIZER=address RUSTC_BOOTSTRAP=1 fuzz/campaign.sh fuse_server 3600
#   FUZZ_TARGET_DIR=/tmp/fuzz-target fuzz/campaign.sh ...   # where cargo builds (default fuzz/target)
#   FUZZ_NO_BUILD=1 fuzz/campaign.sh ...        # use the binary an earlier build left
#   FUZZ_RUNS=2000000 fuzz/campaign.sh ...      # stop after that many executions (or the time)
#
# The corpus is fuzz/corpus/TARGET: the committed seeds (seed-*) plus whatever earlier campaigns
# and smoke runs left there (ignored by git). Each run starts from it, adds what it finds, then
# minimises it with libFuzzer's merge (the seeds are always kept). A crash, timeout or
# out-of-memory input lands in fuzz/artifacts/TARGET/; the script then prints it and exits 1
# (the figures are printed first). The last line is one row for docs/security-testing.md:
#   | TARGET | seconds run | executions | execs/s | cov | ft | corpus | crashes |
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:?usage: fuzz/campaign.sh TARGET SECONDS}"
seconds="${2:?usage: fuzz/campaign.sh TARGET SECONDS}"
sanitizer="${FUZZ_SANITIZER:-none}"
target_dir=()
bin_root="fuzz/target"
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$FUZZ_TARGET_DIR")
  bin_root="$FUZZ_TARGET_DIR"
fi
# cargo fuzz builds for the host triple in release mode (with debug assertions).
bin="$bin_root/$(rustc -vV | sed -n 's/^host: //p')/release/$target"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

corpus="fuzz/corpus/$target"
artifacts="fuzz/artifacts/$target"
mkdir -p "$corpus" "$artifacts"
crashes_before=$(find "$artifacts" -type f | wc -l)
log="$(mktemp)"
merged="$(mktemp -d)"
trap 'rm -rf "$log" "$merged"' EXIT

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  echo "== $target: building (sanitizer: $sanitizer)"
  cargo fuzz build "${target_dir[@]}" --sanitizer "$sanitizer" "$target"
fi
[ -x "$bin" ] || { echo "FAIL: no fuzz binary at $bin" >&2; exit 1; }

echo "== $target: ${seconds}s from $(find "$corpus" -type f | wc -l) corpus inputs"
runs=()
if [ -n "${FUZZ_RUNS:-}" ]; then
  runs=(-runs="$FUZZ_RUNS")
fi
status=0
started=$(date +%s)
# -timeout: one input taking 10 s is a hang, not slowness. -print_final_stats gives the totals.
# The binary is run directly (what `cargo fuzz run` does after its build), so a campaign in the
# background never runs cargo. -artifact_prefix is where cargo fuzz would put findings.
"$bin" -artifact_prefix="$artifacts/" "$corpus" \
  -max_total_time="$seconds" "${runs[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  >"$log" 2>&1 || status=$?

elapsed=$(( $(date +%s) - started ))
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n1)
# The last status line libFuzzer printed (#N  DONE/pulse/NEW ... cov: X ft: Y corp: Z/..).
last=$(grep -a -E '^#[0-9]+[[:space:]]' "$log" | grep -a ' cov: ' | tail -n1 || true)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")

echo "== $target: minimising the corpus"
"$bin" -artifact_prefix="$artifacts/" "$merged" "$corpus" -merge=1 -timeout=10 -rss_limit_mb=2048 >>"$log" 2>&1 || true
if [ -n "$(ls -A "$merged")" ]; then
  find "$corpus" -type f ! -name 'seed-*' -delete
  cp -n "$merged"/* "$corpus"/ 2>/dev/null || true
fi
kept=$(find "$corpus" -type f | wc -l)
crashes=$(( $(find "$artifacts" -type f | wc -l) - crashes_before ))

echo "== $target: ${execs:-?} executions in ${elapsed}s (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus $kept after minimising, peak RSS ${rss:-?} MB, new crashes $crashes"
if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
  grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
  echo "FAIL: $target found $crashes crash(es) (exit $status); see $artifacts/" >&2
fi
echo "| $target | $elapsed | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $kept | $crashes |"
[ "$status" -eq 0 ] && [ "$crashes" -eq 0 ]
