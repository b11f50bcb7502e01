#!/usr/bin/env bash
# Host-side check after .ci/guest/posix-checks.sh ran in a guest on SHARE: the host holds no
# device node anywhere in the share, and the two nodes the guest left in fsjail-special-keep
# are empty regular files, mode 0600, owned by OWNER (uid:gid), each with its record.
#   usage: check-host-special.sh SHARE OWNER
set -euo pipefail
share=$1 owner=$2
fail() { echo "host check FAILED: $*" >&2; exit 1; }
nodes=$(find "$share" \( -type b -o -type c \) -print)
[ -z "$nodes" ] || fail "device nodes on the host: $nodes"
keep=$share/fsjail-special-keep
for want in "cdev|v=1 type=c perm=0620 uid=0 gid=0 rdev=4:1" "bdev|v=1 type=b perm=0660 uid=0 gid=0 rdev=8:1"; do
  name=${want%%|*} record=${want#*|}
  f=$keep/$name
  [ -f "$f" ] && [ ! -L "$f" ] || fail "$f is not a regular file"
  got=$(stat -c '%F %a %s %u:%g' "$f")
  [ "$got" = "regular empty file 600 0 $owner" ] || fail "$f: $got"
  got=$(getfattr --absolute-names --only-values -n user.fsjail.stat "$f")
  [ "$got" = "$record" ] || fail "$f: record '$got', want '$record'"
done
echo "host check: no device node in $share; emulated nodes are regular files with their records"
