# DAX checks for a real guest (busybox ash), run by ../shared/vm/run-guest.sh as GUEST_SCRIPT
# on a share mounted with -o dax=always. `.ci/run` compiles daxmap.c (static) into the share
# as `daxmap` and runs a host helper that answers the coherence check's request.
# Every line "check NAME PASS|FAIL detail" is a harness check (guest_NAME).
# Runs in a fresh directory of the share; the results for the host go to ../dax-results.
H=/mnt/daxmap
R=/mnt/dax-results
mkdir -p "$R"

check() { # check NAME RC DETAIL
    if [ "$2" = 0 ]; then echo "check $1 PASS $3"; else echo "check $1 FAIL $3"; fi
}

grep -q ' /mnt .*dax=always' /proc/mounts; check dax_mounted $? "$(grep ' /mnt ' /proc/mounts | cut -d' ' -f4)"
[ -x "$H" ]; check dax_helper_present $? "$H"

# mmap(MAP_SHARED), write through the mapping, msync: the host reads the bytes afterwards
# (.ci/run compares $R/written with what it expects).
dd if=/dev/zero of="$R/written" bs=4096 count=4 2>/dev/null
out=$("$H" write "$R/written" 5000 "written-through-a-dax-mapping" 2>&1); check dax_mmap_write $? "$out"
out=$("$H" read "$R/written" 5000 29 2>&1)
[ "$out" = "written-through-a-dax-mapping" ]; check dax_mmap_readback $? "$out"

# The host writes while the guest holds the mapping: the mapping shows it. The host helper
# waits for dax-req, writes "host-wrote-this" at offset 100 of dax-coherent, then creates
# dax-ack.
if [ -f /mnt/dax-coherent ]; then
    out=$("$H" watch /mnt/dax-coherent 100 host-wrote-this /mnt/dax-req /mnt/dax-ack 120 2>&1)
    check dax_host_write_visible $? "$out"
else
    check dax_host_write_visible 1 "no /mnt/dax-coherent from the host"
fi

# A file bigger than the window, read whole: the guest must reclaim mappings as it goes.
if [ -f /mnt/dax-big.bin ] && [ -f /mnt/dax-big.md5 ]; then
    m=$(md5sum /mnt/dax-big.bin | cut -d' ' -f1)
    h=$(cat /mnt/dax-big.md5)
    [ "$m" = "$h" ]; check dax_bigger_than_window $? "size=$(stat -c %s /mnt/dax-big.bin) guest=$m host=$h"
else
    check dax_bigger_than_window 1 "no /mnt/dax-big.bin from the host"
fi

# Two files mapped read-only (read faults), then one written: a SETUPMAPPING over the live
# read-only range, which the worker turns into an exact unmap and a new map.
printf 'AAAAAAAA' > up1; dd if=/dev/zero bs=4096 count=1 2>/dev/null >> up1
printf 'BBBBBBBB' > up2; dd if=/dev/zero bs=4096 count=1 2>/dev/null >> up2
out=$("$H" upgrade up1 up2 2>&1); check dax_upgrade_ro_to_rw $? "$out"
[ "$(head -c 2 up1)" = "AW" ] && [ "$(head -c 2 up2)" = "BB" ]; check dax_upgrade_content $? "$(head -c 8 up1)/$(head -c 8 up2)"

# Truncate a mapped file: the page that stays still reads, the one cut off raises SIGBUS.
dd if=/dev/zero of=trunc bs=4096 count=4 2>/dev/null
out=$("$H" truncate trunc 2>&1); check dax_truncate_mapped $? "$out"
[ "$(stat -c %s trunc)" = 4096 ]; check dax_truncate_size $? "size=$(stat -c %s trunc)"

# After all that, the ordinary paths still agree with DAX: write with dd, read through a map.
echo "plain-write" > plain
out=$("$H" read plain 0 11 2>&1); [ "$out" = "plain-write" ]; check dax_plain_write_mapped_read $? "$out"
exit 0
