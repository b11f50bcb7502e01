#!/usr/bin/env bash
# Real guest, submounts: the share is a tmpfs holding a second tmpfs at vol/ (both number their
# inodes from 1, so host inode numbers collide between them), served by fsjail-virtiofsd with
# Kata's arguments (--announce-submounts, --thread-pool-size=1, --cache=auto). The guest checks
# (.ci/vm/guest-submounts.sh) that vol/ is its own mount with its own st_dev and that no two
# paths share (st_dev, st_ino); the host then checks what the guest wrote into vol/.
# Runs in a private mount namespace: the two tmpfs vanish with it. Needs root.
#   usage: .ci/vm-submounts.sh [path/to/fsjail-virtiofsd]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${FSJAIL_SUBMOUNTS_INSIDE:-}" != 1 ]; then
  FSJAIL_SUBMOUNTS_INSIDE=1 exec unshare -m --propagation private "$PWD/.ci/vm-submounts.sh" "$@"
fi
daemon=${1:-target/release/fsjail-virtiofsd}
vm=${VM_HARNESS:-../shared/vm/run-guest.sh}
work=$(mktemp -d /tmp/fsjail-submounts.XXXXXX)
share=$work/share
mkdir "$share"
mount -t tmpfs -o size=256m,mode=0755 fsjail-share "$share"
# Made first on each tmpfs, so both get the same inode number (2) on their own filesystem.
: > "$share/twin"
mkdir "$share/vol"
mount -t tmpfs -o size=16m,mode=0755 fsjail-vol "$share/vol"
: > "$share/vol/twin"
echo "from the tmpfs" > "$share/vol/inner"
echo "host: share root $(stat -c '%d:%i' "$share"), vol $(stat -c '%d:%i' "$share/vol"), twins $(stat -c '%i' "$share/twin") $(stat -c '%i' "$share/vol/twin")"

status=0
GUEST_SCRIPT=.ci/vm/guest-submounts.sh SHARED_DIR=$share NFILES=${NFILES:-100} BIGMB=${BIGMB:-8} \
  HOSTFILE_MB=${HOSTFILE_MB:-1} LABEL=fsjail-submounts \
  "$vm" "$daemon" --socket-path={socket} --shared-dir={shared_dir} --cache=auto \
  --thread-pool-size=1 --announce-submounts || status=$?
if [ "$(cat "$share/vol/from-guest" 2>/dev/null)" = "written by the guest" ]; then
  echo "check host_submount_write PASS"
else
  echo "check host_submount_write FAIL"; status=1
fi
umount "$share/vol" "$share" || true
rm -rf "$work"
exit "$status"
