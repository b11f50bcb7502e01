# Guest side of .ci/vm-submounts.sh (busybox ash, run by ../shared/vm's init from the share).
# The share (/mnt) is a host tmpfs holding another tmpfs at vol/: both number their inodes
# from 1, so the host's st_ino collide between them. With submounts announced, vol/ must be
# its own mount in the guest, with its own st_dev, and no two paths may share (st_dev, st_ino).
check() { if [ "$2" = 0 ]; then echo "check $1 PASS $3"; else echo "check $1 FAIL $3"; fi; }

# The guest mounts vol/ on first access below it (stat of vol itself does not trigger that).
[ "$(cat /mnt/vol/inner)" = "from the tmpfs" ]; check submount_content $?
grep -q ' /mnt/vol virtiofs ' /proc/mounts; check submount_is_a_mount $? "$(grep ' /mnt/vol ' /proc/mounts | tr ' ' '|')"
root=$(stat -c '%d %i' /mnt)
vol=$(stat -c '%d %i' /mnt/vol)
[ "${root% *}" != "${vol% *}" ]; check submount_own_st_dev $? "root=[$root] vol=[$vol]"

# Every (st_dev, st_ino) pair is unique across both trees; the host-made twins have equal
# st_ino on the host.
dups=$(for f in /mnt /mnt/twin /mnt/vol /mnt/vol/twin /mnt/vol/inner; do stat -c '%d:%i' "$f"; done | sort | uniq -d | tr '\n' ' ')
[ -z "$dups" ]; check submount_no_inode_collision $? "duplicates=[$dups]"

# Writes inside the submount reach the host's tmpfs (checked by the host after the run).
echo "written by the guest" > /mnt/vol/from-guest && sync; check submount_write $?

# Leave the submount so the harness can unmount /mnt.
umount /mnt/vol; check submount_umount $?
