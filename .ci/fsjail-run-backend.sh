#!/usr/bin/env bash
# A vhost-user-fs backend command for ../shared/vm/run-guest.sh that goes through the broker:
# writes a one-share policy for the harness's socket and directory, then becomes
# `fsjail run` (exec, so the harness's SIGTERM reaches the broker).
#   usage: fsjail-run-backend.sh FSJAIL SOCKET SHARED_DIR [extra policy lines...]
set -euo pipefail
fsjail=$1 socket=$2 shared_dir=$3
shift 3
dir=$(mktemp -d /tmp/fsjail-ci-policy.XXXXXX)
{
  printf '[broker]\nruntime_dir = "%s/run"\n\n' "$dir"
  printf '[[share]]\ntag = "vfs"\npath = "%s"\nsocket = "%s"\n' "$shared_dir" "$socket"
  for line in "$@"; do printf '%s\n' "$line"; done
} > "$dir/policy.toml"
"$fsjail" check --policy "$dir/policy.toml" >&2
exec "$fsjail" run --policy "$dir/policy.toml"
