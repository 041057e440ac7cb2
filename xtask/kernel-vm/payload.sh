# Runs INSIDE the qemu guest as root (see build-vm.sh): the host's / is
# mounted read-only, /run is a tmpfs, and the out folder is writable. Starts
# cairn-nfs on the guest's loopback, mounts it with the Linux NFSv3 client,
# runs real tools on the mount, and leaves results in the out folder.
# `env` in the out folder (written by `cargo xtask e2e-kernel`) sets SERVER,
# CLI, FSX, PJD, PJDCONF, SRC, REPO, FSX_OPS, PJD_TIMEOUT and GROUPS.
set -u
O=$(sed -n 's/.*outdir=\([^ ]*\).*/\1/p' /proc/cmdline)
. "$O/env"
st() { echo "$1 $2" >> "$O/status"; }
PORT=2049
mkdir -p /run/x /run/store /run/tmp
$SERVER --store file:///run/store --nfs-listen 127.0.0.1:$PORT --rpc-listen 127.0.0.1:7049 \
  > "$O/server.out" 2> "$O/server.log" &
SPID=$!
for i in $(seq 1 100); do grep -q "NFS listening" "$O/server.out" 2>/dev/null && break; sleep 0.2; done
mount -t nfs -o nolock,vers=3,tcp,port=$PORT,mountport=$PORT,hard,timeo=600 127.0.0.1:/ /run/x
st mount $?

# cp -a and tar of a source tree, compared with diff.
cp -a "$SRC" /run/x/cp; st cp-a $?
diff -r "$SRC" /run/x/cp > "$O/cp.diff" 2>&1; st cp-a-diff $?
mkdir -p /run/x/tar
(cd "$SRC" && tar cf - .) | (cd /run/x/tar && tar xf -); st tar $?
diff -r "$SRC" /run/x/tar > "$O/tar.diff" 2>&1; st tar-diff $?

# git clone onto the mount, git fsck, and the checkout against a reference clone.
git clone -q "$REPO" /run/x/repo > "$O/git.log" 2>&1; st git-clone $?
(cd /run/x/repo && git fsck --full) >> "$O/git.log" 2>&1; st git-fsck $?
git clone -q "$REPO" /run/tmp/ref >> "$O/git.log" 2>&1
diff -r --exclude=.git /run/tmp/ref /run/x/repo > "$O/git.diff" 2>&1; st git-diff $?

# A snapshot through the kernel client: old bytes under .snapshots after a change.
echo before > /run/x/snapfile && sync
$CLI --endpoint http://127.0.0.1:7049 dataset snapshot root k1 >> "$O/snap.log" 2>&1; st snapshot $?
echo after > /run/x/snapfile && sync
[ "$(cat /run/x/.snapshots/k1/snapfile 2>>"$O/snap.log")" = before ]; st snapshot-read $?
[ "$(cat /run/x/snapfile)" = after ]; st live-read $?
( echo x > /run/x/.snapshots/k1/new ) 2>> "$O/snap.log"; [ $? -ne 0 ]; st snapshot-rofs $?

# Space per file: 50 KB at 100 MiB is one stored chunk, so du is small, and
# cp --sparse=always (and =auto, which looks at st_blocks) copies it sparse.
# 256 KiB is four default chunks.
dd if=/dev/urandom of=/run/x/sparse bs=51200 count=1 seek=2048 2>> "$O/sparse.log" && sync
echo 3 > /proc/sys/vm/drop_caches
K=$(du -k /run/x/sparse | cut -f1); echo "du -k on the mount: $K" >> "$O/sparse.log"
[ "$K" -le 256 ]; st du-sparse $?
cp --sparse=always /run/x/sparse /run/tmp/sparse.always 2>> "$O/sparse.log"
K=$(du -k /run/tmp/sparse.always | cut -f1); echo "du -k of cp --sparse=always: $K" >> "$O/sparse.log"
[ "$K" -le 256 ] && cmp /run/x/sparse /run/tmp/sparse.always >> "$O/sparse.log" 2>&1; st cp-sparse-always $?
cp /run/x/sparse /run/tmp/sparse.auto 2>> "$O/sparse.log"
K=$(du -k /run/tmp/sparse.auto | cut -f1); echo "du -k of cp (sparse=auto): $K" >> "$O/sparse.log"
[ "$K" -le 256 ] && cmp /run/x/sparse /run/tmp/sparse.auto >> "$O/sparse.log" 2>&1; st cp-sparse-auto $?

# An execute-only program (0711, root's) runs as another user: the client
# READs its pages with that user's credentials (caches dropped first, so
# it must). At 0700 it must not run.
cp /usr/bin/true /run/x/xonly && chmod 0711 /run/x/xonly && sync
echo 3 > /proc/sys/vm/drop_caches
setpriv --reuid=65534 --regid=65534 --clear-groups /run/x/xonly 2>> "$O/exec.log"; st exec-only $?
chmod 0700 /run/x/xonly && sync
echo 3 > /proc/sys/vm/drop_caches
setpriv --reuid=65534 --regid=65534 --clear-groups /run/x/xonly 2>> "$O/exec.log"; [ $? -ne 0 ]; st exec-refused $?

# fsx: random reads, writes, truncates and mmaps checked against a model.
(cd /run/x && timeout 600 $FSX -N "$FSX_OPS" -S 42 fsx.data) > "$O/fsx.log" 2>&1; st fsx $?

# pjdfstest, one group at a time, each in its own directory, under a timeout.
for g in $GROUPS; do
  mkdir -p /run/x/pjd-$g
  timeout "$PJD_TIMEOUT" $PJD -c "$PJDCONF" -p /run/x/pjd-$g "$g::" > "$O/pjd-$g.log" 2>&1
  st pjd-$g $?
done

cd /
umount /run/x; st umount $?
kill -TERM $SPID; wait $SPID; st server-exit $?
st done 0
