#!/usr/bin/env bash
# pjdfstest (the POSIX filesystem conformance suite, crate pjdfstest 0.2.2) in a real Linux guest,
# on the virtiofs share and on a local ext4 filesystem of the same guest: through `fsjail serve`
# with its defaults and through an unprivileged broker (uid 65534, ownership emulated). Fails
# when a test fails on the share that does not fail on ext4 (.ci/guest/pjdfstest.sh).
#   usage: .ci/vm-pjdfstest.sh FSJAIL     (run from the repository root, as root)
# Needs ../shared/vm (it builds the guest's kernel and initramfs on first use), mkfs.ext4, and
# cargo with crates.io to build pjdfstest once (cached in target/pjdfstest).
set -euo pipefail
fsjail=$(realpath "$1")
vm=${VM_HARNESS:-../shared/vm/run-guest.sh}
vm_work=${VM_WORK:-/tmp/vm-work}
pjd_root=$PWD/target/pjdfstest
log() { printf '\n== %s\n' "$*"; }

if [ ! -x "$pjd_root/bin/pjdfstest" ]; then
  log "building pjdfstest 0.2.2 as a static binary (the guest has no libc of its own)"
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo install pjdfstest --version 0.2.2 --locked --root "$pjd_root" \
    --target "$(rustc -vV | sed -n 's/^host: //p')" --quiet
fi

# The guest kernel's loop module (ext4 is built in), from the kernel the harness unpacked.
[ -f "$vm_work/initramfs.cpio.gz" ] || "$(dirname "$vm")/build-initramfs.sh"
loop=$(find "$vm_work"/kroot-*/lib/modules -name 'loop.ko*' | head -1)
[ -n "$loop" ] || { echo "error: no loop.ko under $vm_work" >&2; exit 1; }
stage=$(mktemp -d /tmp/fsjail-pjd.XXXXXX)
trap 'rm -rf "$stage"' EXIT
case $loop in
  *.xz) xz -dc "$loop" > "$stage/loop.ko" ;;
  *.zst) zstd -qdc "$loop" > "$stage/loop.ko" ;;
  *) cp "$loop" "$stage/loop.ko" ;;
esac
cp "$pjd_root/bin/pjdfstest" "$stage/"
truncate -s 64M "$stage/ext4.img"
mkfs.ext4 -q -F "$stage/ext4.img"

fresh_share() {
  local share
  share=$(mktemp -d /tmp/fsjail-pjd-share.XXXXXX)
  chmod 755 "$share"
  mkdir "$share/.pjd"
  cp "$stage"/* "$share/.pjd/"
  echo "$share"
}

# The comparison the guest made, from the run's results (the harness names its directory).
compare() {
  local dir
  dir=$(sed -n 's/.* dir=\([^ ]*\).*/\1/p' "$1" | tail -1)
  [ -n "$dir" ] && [ -f "$dir/results.txt" ] || { echo "error: no results for this run" >&2; return 1; }
  log "comparison (share against ext4 in the same guest)"
  grep -E '^@@VMFS check guest_pjd' "$dir/results.txt" | sed 's/^@@VMFS check guest_//'
}

# Both boots run even when the first fails, so one run shows every difference.
rc=0
log "pjdfstest in a guest: fsjail serve (defaults) against ext4"
share=$(fresh_share)
SHARED_DIR=$share GUEST_SCRIPT=.ci/guest/pjdfstest.sh NFILES=10 BIGMB=1 \
  "$vm" "$fsjail" serve --socket-path {socket} --shared-dir {shared_dir} | tee "$stage/serve.out" || rc=1
rm -rf "$share"
compare "$stage/serve.out" || rc=1

log "pjdfstest in a guest: an unprivileged broker (uid 65534, ownership emulated) against ext4"
share=$(fresh_share)
sockdir=$(mktemp -d /tmp/fsjail-pjd-sock.XXXXXX)
chown 65534:65534 "$sockdir"
SHARED_DIR=$share SOCKET=$sockdir/vfs.sock GUEST_SCRIPT=.ci/guest/pjdfstest.sh NFILES=10 BIGMB=1 \
  "$vm" .ci/fsjail-unpriv-backend.sh "$fsjail" {socket} {shared_dir} | tee "$stage/unpriv.out" || rc=1
rm -rf "$share" "$sockdir"
compare "$stage/unpriv.out" || rc=1
exit "$rc"
