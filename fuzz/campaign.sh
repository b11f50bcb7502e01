#!/usr/bin/env bash
# A long fuzzing campaign for one target: resume from its corpus, run for a given time, minimise
# the corpus, print the figures (executions, rate, libFuzzer's cov/ft, corpus size, crashes).
#
#   fuzz/campaign.sh TARGET SECONDS            # e.g. fuzz/campaign.sh fuse_server 3600
#   FUZZ_SANITIZER=address RUSTC_BOOTSTRAP=1 fuzz/campaign.sh fuse_server 3600
#   FUZZ_TARGET_DIR=/tmp/fuzz-target fuzz/campaign.sh ...   # where cargo builds (default fuzz/target)
#   FUZZ_NO_BUILD=1 fuzz/campaign.sh ...        # use the binary an earlier build left
#   FUZZ_RUNS=2000000 fuzz/campaign.sh ...      # stop after that many executions (or the time)
#   FUZZ_JOBS=3 fuzz/campaign.sh ...            # that many fuzzing processes on one shared corpus
#
# With FUZZ_JOBS=N, libFuzzer runs N processes (-jobs, -workers), each taking FUZZ_RUNS/N
# executions; each reloads the corpus directory the others add to, so it is one campaign. The
# figures are summed (executions) or the largest of the jobs (cov, ft, RSS). Worth it for a
# target whose harness waits (vhost_user_messages waits for kicks): one process used about
# two thirds of a core.
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
jobs_dir="$(mktemp -d)"
trap 'rm -rf "$log" "$merged" "$jobs_dir"' EXIT

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  echo "== $target: building (sanitizer: $sanitizer)"
  cargo fuzz build "${target_dir[@]}" --sanitizer "$sanitizer" "$target"
fi
[ -x "$bin" ] || { echo "FAIL: no fuzz binary at $bin" >&2; exit 1; }

echo "== $target: ${seconds}s from $(find "$corpus" -type f | wc -l) corpus inputs"
jobs="${FUZZ_JOBS:-1}"
case "$jobs" in ''|*[!0-9]*|0) echo "FUZZ_JOBS must be a positive number, not '$jobs'" >&2; exit 2;; esac
runs=()
if [ -n "${FUZZ_RUNS:-}" ]; then
  runs=(-runs="$(( (FUZZ_RUNS + jobs - 1) / jobs ))")
fi
parallel=()
if [ "$jobs" -gt 1 ]; then
  parallel=(-jobs="$jobs" -workers="$jobs")
fi
abs() { case "$1" in /*) echo "$1";; *) echo "$PWD/$1";; esac; }
status=0
started=$(date +%s)
# -timeout: one input taking 10 s is a hang, not slowness. -print_final_stats gives the totals.
# The binary is run directly (what `cargo fuzz run` does after its build), so a campaign in the
# background never runs cargo. -artifact_prefix is where cargo fuzz would put findings.
# With -jobs, libFuzzer writes each job's output to fuzz-JOB.log in its working directory.
bin_abs=$(abs "$bin") artifacts_abs=$(abs "$artifacts") corpus_abs=$(abs "$corpus")
(cd "$jobs_dir" && "$bin_abs" -artifact_prefix="$artifacts_abs/" "$corpus_abs" \
  -max_total_time="$seconds" "${runs[@]}" "${parallel[@]}" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1) >"$log" 2>&1 || status=$?

elapsed=$(( $(date +%s) - started ))
job_logs=("$log")
if [ "$jobs" -gt 1 ]; then
  job_logs=("$jobs_dir"/fuzz-*.log)
fi
execs=0; cov=0; ft=0; rss=0
for job_log in "${job_logs[@]}"; do
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$job_log" | tail -n1)
  r=$(sed -n 's/^stat::peak_rss_mb: *//p' "$job_log" | tail -n1)
  # The last status line libFuzzer printed (#N  DONE/pulse/NEW ... cov: X ft: Y corp: Z/..).
  last=$(grep -a -E '^#[0-9]+[[:space:]]' "$job_log" | grep -a ' cov: ' | tail -n1 || true)
  c=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  f=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  execs=$(( execs + ${n:-0} ))
  [ "${c:-0}" -gt "$cov" ] && cov=$c
  [ "${f:-0}" -gt "$ft" ] && ft=$f
  [ "${r:-0}" -gt "$rss" ] && rss=$r
  # A job's crash report is in its own log; keep it with the parent's for the summary below.
  [ "$job_log" = "$log" ] || cat "$job_log" >>"$log"
done
rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))

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
