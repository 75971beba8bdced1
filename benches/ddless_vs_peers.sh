#!/usr/bin/env bash
# ddless against the tools an administrator would otherwise use (dd, rsync),
# side by side in one run, printing times and ratios. Not a test: run it by
# hand and copy the table into docs/performance.md.
#
#   bash benches/ddless_vs_peers.sh [SIZE_GIB]        (default 4)
#
# Environment: BENCH_DIR (default /var/tmp/santools-bench; needs ~3x SIZE free),
# SANTOOLS (binary; default: target/release/santools, built if missing), REPS (default 3).
set -euo pipefail

SIZE_GIB=${1:-4}
REPS=${REPS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/santools-bench}
SANTOOLS=${SANTOOLS:-$ROOT/target/release/santools}
[ -x "$SANTOOLS" ] || (cd "$ROOT" && cargo build --release --quiet)
for t in dd rsync python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

mkdir -p "$BENCH_DIR"
cd "$BENCH_DIR"
SRC=src.img; TGT=tgt.img; SUMS=tgt.ddless; COPY=copy.img
SIZE=$((SIZE_GIB << 30))
SEGS=$((SIZE / 16384))

now() { date +%s.%N; }
# elapsed CMD...: run CMD, print seconds.
elapsed() { local s e; s=$(now); "$@" >/dev/null 2>&1; e=$(now); python3 -c "print(f'{$e - $s:.3f}')"; }
median() { python3 -c "import sys,statistics; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.3f}')" "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
gbs() { python3 -c "print(f'{$SIZE / $1 / 1e9:.2f}')"; }
# Drop one file's pages from the page cache (POSIX_FADV_DONTNEED via dd).
uncache() { for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; sync "$f"; done; }
# Page cache hot, filled the way a plain read fills it (large folios), so
# every hot scenario starts from the same state whatever ran before.
warm() { uncache "$@"; cat "$@" > /dev/null; }
# mutate N_SEGMENTS MAPFILE: overwrite random segments of SRC; write a ddmap of them.
mutate() {
  python3 - "$SRC" "$1" "$SIZE" > extents.txt <<'PY'
import os, random, sys
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
segs = size // 16384
fd = os.open(path, os.O_WRONLY)
for s in random.sample(range(segs), n):
    os.pwrite(fd, os.urandom(16384), s * 16384)
    print(s * 16384, 16384)
os.fsync(fd); os.close(fd)
PY
  rm -f "$2"
  "$SANTOOLS" ddmap --from-extents extents.txt --size "$SIZE" --name bench.0 -t "$2"
}

echo "# ddless benchmark: $SIZE_GIB GiB source, $REPS repetitions (median), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# binary: $SANTOOLS ($("$SANTOOLS" --version))"
if [ ! -f $SRC ] || [ "$(stat -c %s $SRC)" != "$SIZE" ]; then
  echo "# creating random source..."
  head -c "$SIZE" /dev/urandom > $SRC
fi
warm $SRC

echo
echo "## (a) first copy, source in page cache"
a_dd=(); a_dl=()
for i in $(seq "$REPS"); do
  rm -f $COPY; a_dd+=("$(elapsed dd if=$SRC of=$COPY bs=8M conv=fsync)")
  rm -f $TGT $SUMS $SUMS.stats; a_dl+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT)")
done
A_DD=$(median "${a_dd[@]}"); A_DL=$(median "${a_dl[@]}")
echo "dd bs=8M conv=fsync     ${A_DD}s"
echo "ddless (new checksums)  ${A_DL}s   ratio dd/ddless = $(ratio "$A_DD" "$A_DL")"
cmp $SRC $TGT

echo
echo "## (b) second run, no changes, source in page cache"
warm $SRC
b_dd=(); b_rs=(); b_dl=()
for i in $(seq "$REPS"); do
  b_dd+=("$(elapsed dd if=$SRC of=$COPY bs=8M conv=notrunc,fsync)")
  b_rs+=("$(elapsed rsync --inplace --no-whole-file $SRC $COPY)")
  b_dl+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT)")
done
B_DD=$(median "${b_dd[@]}"); B_RS=$(median "${b_rs[@]}"); B_DL=$(median "${b_dl[@]}")
echo "dd bs=8M conv=fsync                 ${B_DD}s"
echo "rsync --inplace --no-whole-file     ${B_RS}s"
echo "ddless                              ${B_DL}s   faster than dd: $(ratio "$B_DD" "$B_DL")x   than rsync: $(ratio "$B_RS" "$B_DL")x   ($(gbs "$B_DL") GB/s)"

echo
echo "## (c) 1% of segments changed at random"
N=$((SEGS / 100))
c_full=(); c_map=(); h_full=(); h_map=()
for i in $(seq "$REPS"); do
  mutate $N change.ddmap; uncache $SRC; c_full+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT)")
  mutate $N change.ddmap; uncache $SRC; c_map+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT -m change.ddmap)")
  cmp $SRC $TGT
done
warm $SRC
for i in $(seq "$REPS"); do
  mutate $N change.ddmap; h_full+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT)")
  mutate $N change.ddmap; h_map+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT -m change.ddmap)")
done
C_FULL=$(median "${c_full[@]}"); C_MAP=$(median "${c_map[@]}")
H_FULL=$(median "${h_full[@]}"); H_MAP=$(median "${h_map[@]}")
echo "source not in page cache (a snapshot on disk, the production case):"
echo "  ddless, reads everything            ${C_FULL}s  ($N segments changed)"
echo "  ddless -m ddmap, reads flagged only ${C_MAP}s   speed-up with -m: $(ratio "$C_FULL" "$C_MAP")x"
echo "source in page cache (both runs still write and fsync the same $((N * 16)) KiB):"
echo "  ddless, reads everything            ${H_FULL}s"
echo "  ddless -m ddmap, reads flagged only ${H_MAP}s   speed-up with -m: $(ratio "$H_FULL" "$H_MAP")x"
echo "the floor for both: the changed data itself, written to $TGT and fsynced"
python3 - "$TGT" "$N" <<'PY'
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY); size = os.fstat(fd).st_size; n = int(sys.argv[2])
buf = os.urandom(16384); t = time.time()
for s in sorted(random.sample(range(size // 16384), n)):
    os.pwrite(fd, buf, s * 16384)
w = time.time(); os.fdatasync(fd); e = time.time()
print(f"  {n} scattered 16 KiB pwrites {w - t:.3f}s + fdatasync {e - w:.3f}s = {e - t:.3f}s")
PY
# that scribbled on the target: repair it for the next steps
"$SANTOOLS" ddless -s $SRC -c /dev/null -t $TGT
"$SANTOOLS" ddless -s $TGT -c $SUMS

echo
echo "## (d) checksum only, page cache hot"
warm $SRC
d1=(); d2=()
for i in $(seq "$REPS"); do
  d1+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c sums.only -w 1)")
  d2+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c sums.only -w 2)")
done
D1=$(median "${d1[@]}"); D2=$(median "${d2[@]}")
echo "ddless -w 1   ${D1}s   $(gbs "$D1") GB/s"
echo "ddless -w 2   ${D2}s   $(gbs "$D2") GB/s   ($(python3 -c "print(f'{$SIZE / $D2 / 2 / 1e9:.2f}')") GB/s per worker)"
cmp sums.only $SUMS

echo
echo "## (e) page cache cold, no changes"
e_dd=(); e_dl=(); e_db=()
for i in $(seq "$REPS"); do
  uncache $SRC; e_dd+=("$(elapsed dd if=$SRC iflag=direct bs=8M of=/dev/null)")
  uncache $SRC; e_dl+=("$(elapsed "$SANTOOLS" ddless -d -s $SRC -c $SUMS -t $TGT)")
  uncache $SRC; e_db+=("$(elapsed "$SANTOOLS" ddless -s $SRC -c $SUMS -t $TGT)")
done
E_DD=$(median "${e_dd[@]}"); E_DL=$(median "${e_dl[@]}"); E_DB=$(median "${e_db[@]}")
echo "dd iflag=direct bs=8M of=/dev/null   ${E_DD}s   $(gbs "$E_DD") GB/s"
echo "ddless -d (O_DIRECT)                 ${E_DL}s   $(gbs "$E_DL") GB/s   = $(python3 -c "print(f'{$E_DD / $E_DL * 100:.0f}')")% of dd's read rate"
echo "ddless (buffered, readahead)         ${E_DB}s   $(gbs "$E_DB") GB/s   = $(python3 -c "print(f'{$E_DD / $E_DB * 100:.0f}')")% of dd's read rate"

echo
echo "## summary"
echo "(b) vs dd $(ratio "$B_DD" "$B_DL")x (target >= 3), vs rsync $(ratio "$B_RS" "$B_DL")x (target >= 5)"
echo "(c) -m speed-up $(ratio "$C_FULL" "$C_MAP")x cold (target >= 20), $(ratio "$H_FULL" "$H_MAP")x hot"
echo "(d) $(python3 -c "print(f'{$SIZE / $D1 / 1e9:.2f}')") GB/s with one worker (target >= 2.5)"
echo "(e) $(python3 -c "print(f'{$E_DD / $E_DL * 100:.0f}')")% of dd's direct read rate (target >= 90%)"
