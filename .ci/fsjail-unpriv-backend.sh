#!/usr/bin/env bash
# A vhost-user-fs backend command for ../shared/vm/run-guest.sh that runs the broker as an
# unprivileged user (uid/gid 65534, no groups), as a user without root would run fsjail: the
# share and a private runtime directory are handed to that user, then this script becomes
# `setpriv ... fsjail run` (exec, so the harness's SIGTERM reaches the broker).
#   usage: fsjail-unpriv-backend.sh FSJAIL SOCKET SHARED_DIR [extra policy lines...]
# SOCKET's directory must be writable by uid 65534 (the harness's SOCKET knob).
set -euo pipefail
fsjail=$(realpath "$1") socket=$2 shared_dir=$3
shift 3
id=65534
dir=$(mktemp -d /tmp/fsjail-ci-unpriv.XXXXXX)
{
  printf '[broker]\nruntime_dir = "%s/run"\n\n' "$dir"
  printf '[[share]]\ntag = "vfs"\npath = "%s"\nsocket = "%s"\n' "$shared_dir" "$socket"
  for line in "$@"; do printf '%s\n' "$line"; done
} > "$dir/policy.toml"
chown -R "$id:$id" "$dir" "$shared_dir"
chmod 0755 "$dir"
run=(setpriv --reuid "$id" --regid "$id" --clear-groups --)
"${run[@]}" "$fsjail" check --policy "$dir/policy.toml" >&2
exec "${run[@]}" "$fsjail" run --policy "$dir/policy.toml"
