#!/usr/bin/env bash
# The real-guest run through QEMU 11.1 (../shared/vm/qemu-11.sh, the first QEMU with vhost-user
# SHMEM_MAP): its generic vhost-user device as a virtio-fs device whose shared memory region 0
# is a 1 GiB DAX window, the tag read from fsjail with GET_CONFIG (--tag), fsjail serving
# through the jailed worker (seccomp kill, the default).
#
#   .ci/guest/dax-run.sh                 CI: the whole harness workload on a mount without DAX,
#                                        and the guest's dax=always mount probe must succeed
#                                        (dax_always=ok in the summary)
#   DAX_WORKLOAD=1 .ci/guest/dax-run.sh  the whole workload on a dax=always mount, then
#                                        .ci/guest/dax-checks.sh (mmap write read by the host,
#                                        host write seen in a mapping, a file bigger than the
#                                        window, read-only to read-write upgrade, truncate under
#                                        a mapping). QEMU 11.1.3 fails it: it maps every
#                                        SHMEM_MAP read-write and refuses mappings past the end
#                                        of a file (README, DAX), so reads of short files and
#                                        through read-only handles get EIO in the guest.
#
# Extra arguments go to run-guest.sh's environment (e.g. VERBOSE=1). VM_DIR is the harness
# (default ../shared/vm, beside the clone, as .ci/run has it). Exit status: 0 when every check
# passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
vmdir=$(cd "${VM_DIR:-../shared/vm}" && pwd)
log() { printf '[dax] %s\n' "$*"; }

work=$(mktemp -d /tmp/fsjail-dax-work.XXXXXX)
share=
helper_pid=
cleanup() {
  if [ -n "$helper_pid" ]; then kill "$helper_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  if [ -n "$share" ]; then rm -rf "$share"; fi
}
trap cleanup EXIT

env_args=(QEMU_BIN="$vmdir/qemu-11.sh" FS_DEVICE=generic LABEL=fsjail-qemu11 DAX_PROBE=1)
if [ "${DAX_WORKLOAD:-0}" = 1 ]; then
  if ! command -v gcc >/dev/null 2>&1 || [ ! -e /usr/lib/x86_64-linux-gnu/libc.a ]; then
    log "installing gcc libc6-dev (the static guest helper)"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc libc6-dev
  fi
  share=$(mktemp -d /tmp/fsjail-dax-share.XXXXXX)
  gcc -static -O2 -Wall -Wextra -Werror -o "$share/daxmap" .ci/guest/daxmap.c
  # For the coherence check: a file the guest maps, then the host writes.
  head -c 8192 /dev/zero | tr '\0' '.' > "$share/dax-coherent"
  # A file bigger than the 1 GiB window (sparse, data every 64 MiB): reading it whole needs
  # the guest to reclaim mappings.
  truncate -s $(( (1024 + 64) << 20 )) "$share/dax-big.bin"
  for i in $(seq 0 16); do
    head -c 1048576 /dev/urandom |
      dd of="$share/dax-big.bin" bs=1M seek=$(( i * 64 )) conv=notrunc status=none
  done
  md5sum "$share/dax-big.bin" | cut -d' ' -f1 > "$share/dax-big.md5"
  # The host side of the coherence check: when the guest asks, write into the file it has
  # mapped, then answer.
  (
    for _ in $(seq 1 12000); do
      if [ -e "$share/dax-req" ]; then
        printf 'host-wrote-this' | dd of="$share/dax-coherent" bs=1 seek=100 conv=notrunc status=none
        touch "$share/dax-ack"
        exit 0
      fi
      sleep 0.1
    done
  ) &
  helper_pid=$!
  env_args+=(MOUNTOPTS=dax=always GUEST_SCRIPT=.ci/guest/dax-checks.sh SHARED_DIR="$share"
             LABEL=fsjail-dax)
fi

out="$work/run-guest.out"
set +e
env "${env_args[@]}" "$@" \
  "$vmdir/run-guest.sh" target/release/fsjail serve --socket-path {socket} --shared-dir {shared_dir} \
  --dax-window 1G --tag vfs 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e

fails=0
if [ "$rc" != 0 ]; then log "FAIL: run-guest.sh exited $rc"; fails=$((fails + 1)); fi
if ! grep -q 'dax_always=ok' "$out"; then
  log "FAIL: the summary does not say dax_always=ok"; fails=$((fails + 1))
fi
if [ "${DAX_WORKLOAD:-0}" = 1 ]; then
  rundir=$(sed -n 's/^\[vm\] run dir: //p' "$out" | head -1)
  n=$(grep -c '^@@VMFS check guest_dax_[a-z_]* PASS' "$rundir/console.log" || true)
  if [ "$n" -lt 11 ]; then log "FAIL: $n of 11 DAX guest checks passed"; fails=$((fails + 1)); fi
  # What the guest wrote through its shared mapping and msync'd, read on the host.
  got=$(dd if="$share/dax-results/written" bs=1 skip=5000 count=29 status=none 2>/dev/null || true)
  if [ "$got" = "written-through-a-dax-mapping" ]; then
    log "the host reads the guest's write through its mapping: ok"
  else
    log "FAIL: the host reads \"$got\" where the guest wrote through its mapping"
    fails=$((fails + 1))
  fi
fi
[ "$fails" = 0 ] || exit 1
log "PASS"
