#!/usr/bin/env bash
# Real live migration of a guest with open files: two QEMU processes on this host (the source, and
# the destination started with -incoming defer, then migrate-incoming on a unix socket, the return
# path on at both ends), each with its own jailed `fsjail serve` (default sandbox) on the same host
# directory; QMP `migrate` moves the guest.
# The guest (../shared/vm's kernel and initramfs; GUEST_SCRIPT .ci/guest/migrate-checks.sh runs
# the static helper .ci/guest/migholder.c) holds a file open mid-read, a directory mid-listing, a
# file written without fsync and one more file open; it makes mig/ready in the share and waits for
# mig/go, which the host makes once the migration ended. Then it finishes the read (right bytes),
# lists the rest, fsyncs (the host checks the data) and reads the other file again.
#
# Scenarios:
#   plain        nothing changes on the host: the migration completes, every check passes.
#   guest-error  mig/gone is deleted on the host during the migration, --migration-on-error
#                guest-error: the migration completes and the guest gets EIO on that handle.
#   abort        the same deletion, --migration-on-error abort: the destination's load fails, the
#                migration fails, and the source guest keeps running (its read still works).
#
#   usage: .ci/vm-migrate.sh [path/to/fsjail] [scenario...]   (default: all three)
# Prints "check NAME PASS|FAIL" lines; exits 1 if any failed, 2 on a harness problem.
set -uo pipefail
cd "$(dirname "$0")/.."
fsjail=$(realpath "${1:-target/release/fsjail}")
shift || true
if [ $# -gt 0 ]; then scenarios=("$@"); else scenarios=(plain guest-error abort); fi
HERE=$PWD
VMDIR=${VM_DIR:-../shared/vm}
VM_WORK=${VM_WORK:-/tmp/vm-work}
[ -f "$VMDIR/lib.sh" ] || { echo "no VM harness at $VMDIR (set VM_DIR)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$VMDIR/lib.sh"
ensure_qemu
ensure_pkgs python3 gcc libc6-dev
if [ ! -f "$VM_WORK/initramfs.cpio.gz" ] || [ ! -f "$VM_WORK/vmlinuz" ]; then
  VM_WORK=$VM_WORK "$VMDIR/build-initramfs.sh" || die "guest build failed"
fi
[ -x "$fsjail" ] || die "no fsjail binary at $fsjail"

WORK=$(mktemp -d /tmp/fsjail-migrate.XXXXXX)
gcc -static -O2 -o "$WORK/migholder" .ci/guest/migholder.c || die "building the guest helper"
FAILS=0
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

check() { # check NAME 0|1 [detail]
  if [ "$2" = 0 ]; then echo "check $1 PASS ${3:-}"; else echo "check $1 FAIL ${3:-}"; FAILS=$((FAILS + 1)); fi
}

# qmp SOCKET COMMAND [ARGS-JSON]: prints the "return" (or "error") member as JSON.
qmp() {
  python3 - "$@" <<'PY'
import json, socket, sys
path, cmd = sys.argv[1], sys.argv[2]
args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
def recv(f):
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("rw")
    recv(f)  # greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n"); f.flush(); recv(f)
    msg = {"execute": cmd}
    if args is not None:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n"); f.flush()
    m = recv(f)
    print(json.dumps(m.get("return", m)))
except (OSError, ValueError) as e:
    # QEMU went away (quit, or a failed incoming migration ends the destination).
    print(json.dumps({"error": str(e)}))
PY
}

wait_for() { # wait_for SECONDS TEST...
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}

start_backend() { # start_backend NAME POLICY SHARE
  local sock=$RUN/$1.vhost.sock
  "$fsjail" serve --socket-path "$sock" --shared-dir "$3" --migration-on-error "$2" \
    > "$RUN/$1.backend.log" 2>&1 &
  PIDS+=($!)
  wait_for 20 test -S "$sock" || die "$1 backend did not listen (see $RUN/$1.backend.log)"
}

start_qemu() { # start_qemu NAME [extra args...]
  local name=$1; shift
  qemu-system-x86_64 -accel tcg -M q35 -cpu max -smp 1 -m 256M \
    -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
    -chardev "socket,id=vfs,path=$RUN/$name.vhost.sock" \
    -device vhost-user-fs-pci,chardev=vfs,tag=vfs,queue-size=1024 \
    -kernel "$VM_WORK/vmlinuz" -initrd "$VM_WORK/initramfs.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4 vmfs_tag=vfs vmfs_nfiles=10 vmfs_bigmb=1 vmfs_iters=1 vmfs_dax=0" \
    -nodefaults -no-user-config -display none -no-reboot \
    -serial "file:$RUN/$name.console.log" -qmp "unix:$RUN/$name.qmp.sock,server=on,wait=off" \
    "$@" > "$RUN/$name.qemu.log" 2>&1 &
  PIDS+=($!)
  eval "${name}_QEMU=$!"
  wait_for 20 test -S "$RUN/$name.qmp.sock" || die "$name QEMU did not start (see $RUN/$name.qemu.log)"
}

migrate_status() { qmp "$RUN/src.qmp.sock" query-migrate | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status", "none"))'; }
migration_done() { case "$(migrate_status)" in completed|failed|cancelled) return 0 ;; esac; return 1; }

run_scenario() { # run_scenario NAME
  local sc=$1 policy=guest-error expect=ok
  [ "$sc" = abort ] && policy=abort
  [ "$sc" = guest-error ] && expect=eio
  RUN=$WORK/$sc
  mkdir -p "$RUN"
  local share=$RUN/share
  mkdir -p "$share/mig/list"
  python3 -c 'import sys; sys.stdout.buffer.write(bytes(i * 7 % 251 for i in range(1 << 20)))' > "$share/mig/big"
  python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 11 + 3) % 253 for i in range(4 << 20)))' > "$share/mig/churn"
  for i in $(seq -w 1 200); do : > "$share/mig/list/entry-$i"; done
  echo "held open across the migration" > "$share/mig/gone"
  echo "$expect" > "$share/mig/expect"
  cp "$WORK/migholder" "$share/mig/migholder"
  head -c 1048576 /dev/urandom > "$share/hostfile.bin"
  md5sum "$share/hostfile.bin" | awk '{print $1}' > "$share/hostfile.md5"
  cp .ci/guest/migrate-checks.sh "$share/vmfs-guest-script.sh"

  echo "== scenario $sc (--migration-on-error $policy)"
  start_backend src "$policy" "$share"
  start_backend dst "$policy" "$share"
  start_qemu src
  # The return path lets the destination tell the source that loading failed (the device
  # state among it): without it the source counts a migration as completed once it sent
  # everything, and stays paused whatever the destination made of it.
  start_qemu dst -incoming defer
  qmp "$RUN/dst.qmp.sock" migrate-set-capabilities '{"capabilities": [{"capability": "return-path", "state": true}]}' > /dev/null
  qmp "$RUN/dst.qmp.sock" migrate-incoming "{\"uri\": \"unix:$RUN/mig.sock\"}" > /dev/null
  qmp "$RUN/src.qmp.sock" migrate-set-capabilities '{"capabilities": [{"capability": "return-path", "state": true}]}' > /dev/null
  local t0=$SECONDS
  if ! wait_for 240 test -e "$share/mig/ready"; then
    check "${sc}_guest_ready" 1 "no mig/ready; source console: $(tail -3 "$RUN/src.console.log" | tr '\n' ' ')"
    return
  fi
  echo "guest ready after $((SECONDS - t0)) s"
  [ "$sc" = plain ] || rm -f "$share/mig/gone"
  qmp "$RUN/src.qmp.sock" migrate "{\"uri\": \"unix:$RUN/mig.sock\"}" > /dev/null
  wait_for 180 migration_done
  local status
  status=$(migrate_status)
  echo "migration: $status after $((SECONDS - t0)) s; $(qmp "$RUN/src.qmp.sock" query-migrate | head -c 300)"
  local live=src
  if [ "$sc" = abort ]; then
    check "${sc}_migration_failed" "$([ "$status" = failed ]; echo $?)" "status=$status"
    local run_state
    run_state=$(qmp "$RUN/src.qmp.sock" query-status | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status"))')
    check "${sc}_source_keeps_running" "$([ "$run_state" = running ]; echo $?)" "status=$run_state"
    grep -h -i "migrat\|load\|error" "$RUN/dst.backend.log" | tail -3
  else
    check "${sc}_migration_completed" "$([ "$status" = completed ]; echo $?)" "status=$status"
    live=dst
    qmp "$RUN/src.qmp.sock" quit > /dev/null 2>&1
  fi
  touch "$share/mig/go"
  local qpid_var=${live}_QEMU
  if ! wait_for 240 bash -c "! kill -0 ${!qpid_var} 2>/dev/null"; then
    check "${sc}_guest_finished" 1 "the $live guest did not power off"
  fi
  local console=$RUN/$live.console.log
  grep -q '@@VMFS end' "$console"; check "${sc}_guest_end_marker" $? "($live)"
  local line name res rest n=0
  while read -r _ _ name res rest; do
    n=$((n + 1))
    check "${sc}_$name" "$([ "$res" = PASS ]; echo $?)" "$rest"
  done < <(grep -a '^@@VMFS check guest_' "$console")
  check "${sc}_guest_checks_seen" "$([ "$n" -ge 12 ]; echo $?)" "n=$n"
  [ "$(cat "$share/mig/unsynced" 2>/dev/null)" = "written before the migration, fsynced after" ]
  check "${sc}_host_sees_unsynced" $?
  echo "scenario $sc took $((SECONDS - t0)) s"
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  PIDS=()
}

for sc in "${scenarios[@]}"; do run_scenario "$sc"; done
if [ "$FAILS" = 0 ]; then echo "vm-migrate: PASS"; exit 0; fi
echo "vm-migrate: FAIL ($FAILS failed checks; KEEP=1 keeps $WORK)"
exit 1
