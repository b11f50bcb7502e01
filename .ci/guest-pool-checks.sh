# Guest checks for the request pool (run by the real-guest harness as GUEST_SCRIPT, busybox ash):
# large writes and reads of one file keep their bytes and order, and stats of other files are
# answered while FSYNCs of dirty data run in the background.
dd if=/dev/urandom of=src bs=1M count=8 2>/dev/null
want=$(md5sum < src)
ok=PASS
for i in 1 2 3 4 5 6 7 8; do
  # 1 MiB WRITEs and READs (the pool's large I/O); the guest's page cache is dropped between
  # them so the READs reach the device.
  dd if=src of=copy bs=1M conv=fsync 2>/dev/null || ok=FAIL
  sync
  echo 3 > /proc/sys/vm/drop_caches
  got=$(dd if=copy bs=1M 2>/dev/null | md5sum)
  [ "$got" = "$want" ] || { ok=FAIL; echo "round $i: $got != $want"; }
done
echo "check pool_large_io_round_trip $ok"

# Two FSYNCs of 32 MiB of dirty data each in the background; stat of other files meanwhile.
touch small
dd if=/dev/zero of=dirty1 bs=1M count=32 conv=fsync 2>/dev/null &
p1=$!
dd if=/dev/zero of=dirty2 bs=1M count=32 conv=fsync 2>/dev/null &
p2=$!
n=0
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null; do
  stat -c %s small >/dev/null || { echo "check pool_stat_during_fsync FAIL"; exit 1; }
  n=$((n + 1))
  [ $n -gt 100000 ] && break
done
wait $p1 && wait $p2 && s1=$(stat -c %s dirty1) && s2=$(stat -c %s dirty2)
if [ "$s1" = 33554432 ] && [ "$s2" = 33554432 ]; then
  echo "check pool_stat_during_fsync PASS ($n stats while the fsyncs ran)"
else
  echo "check pool_stat_during_fsync FAIL (sizes $s1 $s2)"
fi
rm -f src copy dirty1 dirty2 small
