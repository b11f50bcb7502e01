# Guest script for .ci/vm-migrate.sh (busybox ash): runs the static helper the host put in
# /mnt/mig (see .ci/guest/migholder.c); what the gone file must read after the migration is in
# /mnt/mig/expect.
/mnt/mig/migholder /mnt/mig "$(cat /mnt/mig/expect)"
