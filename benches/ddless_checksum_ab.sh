#!/usr/bin/env bash
# Two santools builds alternated on one cached file, `ddless -c` (checksum
# only), in one run: wall and CPU seconds per GB of each, and the paired
# speed-up of the second against the first. Not a test: for A/B of a change
# to the hashing or reading path, on a shared machine where only paired
# ratios mean anything.
#
#   bash benches/ddless_checksum_ab.sh OLD_SANTOOLS NEW_SANTOOLS
#
# Environment: SRC (the file to read; default a 2 GiB file of random bytes
# made in BENCH_DIR, default /var/tmp/santools-bench), W (ddless -w, default 1),
# REPS (default 11). Both builds must write the same checksum file.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 OLD_SANTOOLS NEW_SANTOOLS" >&2; exit 2; }
OLD=$1 NEW=$2
W=${W:-1}
REPS=${REPS:-11}
BENCH_DIR=${BENCH_DIR:-/var/tmp/santools-bench}
mkdir -p "$BENCH_DIR"
SRC=${SRC:-$BENCH_DIR/ab-2g.img}
if [ ! -e "$SRC" ]; then
    head -c $((2 << 30)) /dev/urandom > "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi
cat "$SRC" > /dev/null
BYTES=$(stat -c %s "$SRC")
OUT=$(mktemp -d "$BENCH_DIR/ab.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

run() { # BINARY NAME -> "wall cpu" in s/GB
    rm -f "$OUT/$2" "$OUT/$2.stats" "$OUT/$2.lock"
    /usr/bin/time -f "%e %U %S" -o "$OUT/time" "$1" ddless -q -w "$W" -s "$SRC" -c "$OUT/$2"
    read -r e u s < "$OUT/time"
    python3 -c "import sys; e,u,s,b=map(float,sys.argv[1:]); print(f'{e/(b/1e9):.4f} {(u+s)/(b/1e9):.4f}')" "$e" "$u" "$s" "$BYTES"
}

: > "$OUT/rows"
for r in $(seq "$REPS"); do
    echo "$(run "$OLD" old) $(run "$NEW" new)" >> "$OUT/rows"
done
cmp -s "$OUT/old" "$OUT/new" || { echo "the two builds wrote different checksum files" >&2; exit 1; }
python3 - "$OUT/rows" "$W" "$REPS" <<'PY'
import statistics as st, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
ow, oc, nw, nc = (st.median(r[i] for r in rows) for i in range(4))
ratios = sorted(r[0] / r[2] for r in rows)
print(f"ddless -c -w {sys.argv[2]}, {sys.argv[3]} paired runs, medians")
print(f"old: {ow:.3f} s/GB wall, {oc:.3f} CPU s/GB")
print(f"new: {nw:.3f} s/GB wall, {nc:.3f} CPU s/GB")
print(f"new against old, paired: {st.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")
PY
