#!/usr/bin/env bash
# The archive's nightly cost, measured against bare ddless (docs/performance.md).
#
#   bash benches/archive_nightly.sh [BACKEND...]     BACKEND: btrfs zfs (default both)
#
# VOLUMES volumes of SIZE_MB MiB (default 20 x 256), 1% of segments changed
# (and flagged in a CLEAN ddmap) between nights. Each of NIGHTS nights runs,
# on the same data, in one go:
#   (a) bare:    ddless -m for every volume, one after the other (sum of wall times)
#   (b) archive: backup -a with 2 workers (locks, history, snapshot, properties)
# and reports (b)/(a). Then HISTORY_NIGHTS more nights on HISTORY_VOLUMES
# volumes measure the space the checksum history takes against as many full
# copies of the checksum file.
# Needs root, zfs-fuse and/or btrfs-progs; uses loop devices and a zfs-fuse
# pool on files under $WORK (default /var/tmp), all removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
VOLUMES=${VOLUMES:-20}
SIZE_MB=${SIZE_MB:-256}
NIGHTS=${NIGHTS:-3}
HISTORY_VOLUMES=${HISTORY_VOLUMES:-2}
HISTORY_NIGHTS=${HISTORY_NIGHTS:-30}
WORK=${WORK:-/var/tmp}
BACKENDS=("$@")
[ ${#BACKENDS[@]} -eq 0 ] && BACKENDS=(btrfs zfs)

cargo build --release --quiet
S=$PWD/target/release/santools
ROOT=$(mktemp -d "$WORK/santools-archive-bench.XXXXXX")
POOLNAME="sabench$$"
LOOP=""
cleanup() {
  set +e
  [ -n "$LOOP" ] && { umount "$ROOT/mnt" 2>/dev/null; losetup -d "$LOOP"; }
  zpool destroy -f "$POOLNAME" 2>/dev/null
  rm -rf "$ROOT"
}
trap cleanup EXIT

# Changes 1% of each source's segments and writes a CLEAN map flagging them.
mutate() { # DIR COUNT SEED
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, struct, sys
d, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
SEG = 16384
for v in range(count):
    src = os.path.join(d, f"src{v}.img")
    size = os.path.getsize(src)
    segs = (size + SEG - 1) // SEG
    rnd = random.Random(seed * 1000 + v)
    chosen = rnd.sample(range(segs), max(1, segs // 100))
    words = [0] * ((size + 524287) // 524288)
    with open(src, "r+b") as f:
        for s in chosen:
            f.seek(s * SEG)
            f.write(rnd.randbytes(SEG))
            words[s // 32] |= 1 << (s % 32)
    with open(os.path.join(d, f"src{v}.ddmap"), "wb") as m:
        m.write(b"ddmap\0\0\0" + struct.pack("<III", 1, 0, len(words)))
        m.write(struct.pack(f"<{len(words)}I", *words))
PY
}

# Writes an all-clear CLEAN map for each source (before the first night).
empty_maps() { # DIR COUNT
  python3 - "$1" "$2" <<'PY'
import os, struct, sys
d, count = sys.argv[1], int(sys.argv[2])
for v in range(count):
    words = (os.path.getsize(os.path.join(d, f"src{v}.img")) + 524287) // 524288
    with open(os.path.join(d, f"src{v}.ddmap"), "wb") as m:
        m.write(b"ddmap\0\0\0" + struct.pack("<III", 1, 0, words) + bytes(4 * words))
PY
}

setup_backend() { # BACKEND -> sets POOL_TOML, BASE (where bare targets live)
  case "$1" in
    btrfs)
      truncate -s $(( VOLUMES * SIZE_MB * 3 + 2048 ))M "$ROOT/btrfs.img"
      LOOP=$(losetup -f --show "$ROOT/btrfs.img")
      mkfs.btrfs -q "$LOOP" >/dev/null 2>&1
      mkdir -p "$ROOT/mnt"; mount "$LOOP" "$ROOT/mnt"
      POOL_TOML="[archive.pools.bench]\nbackend = \"btrfs\"\npath = \"$ROOT/mnt\""
      POOL=bench; BASE="$ROOT/mnt/bare"; mkdir -p "$BASE";;
    zfs)
      zpool list >/dev/null 2>&1 || { zfs-fuse -p "$ROOT/zfs-fuse.pid"; sleep 2; }
      truncate -s $(( VOLUMES * SIZE_MB * 3 + 2048 ))M "$ROOT/zpool.img"
      zpool create -m "$ROOT/zmnt" "$POOLNAME" "$ROOT/zpool.img"
      zfs create "$POOLNAME/bare"
      POOL_TOML="[archive.pools.$POOLNAME]\nbackend = \"zfs\""
      POOL=$POOLNAME; BASE="$ROOT/zmnt/bare";;
  esac
}

teardown_backend() {
  if [ -n "$LOOP" ]; then umount "$ROOT/mnt"; losetup -d "$LOOP"; LOOP=""; rm -f "$ROOT/btrfs.img"; fi
  zpool destroy -f "$POOLNAME" 2>/dev/null || true; rm -f "$ROOT/zpool.img"
}

write_config() { # COUNT
  {
    printf '[archive]\nnamespace = "org.bench"\nlog_dir = "%s/log"\nlock_dir = "%s/lock"\nconcurrent_workers = 2\nddless_workers = 2\n\n' "$ROOT" "$ROOT"
    printf "$POOL_TOML\n\n"
    for v in $(seq 0 $(( $1 - 1 ))); do
      printf '[[archive.volumes]]\nname = "lv%s"\npool = "%s"\nsource = { kind = "file", path = "%s/src/src%s.img", ddmap = "%s/src/src%s.ddmap", ddmap_state = "CLEAN" }\n' \
        "$v" "$POOL" "$ROOT" "$v" "$ROOT" "$v"
    done
  } > "$ROOT/santools.toml"
}

now() { date +%s.%N; }

for B in "${BACKENDS[@]}"; do
  echo "== $B: $VOLUMES volumes of $SIZE_MB MiB, 1% changed per night"
  setup_backend "$B"
  rm -rf "$ROOT/src"; mkdir -p "$ROOT/src"
  for v in $(seq 0 $(( VOLUMES - 1 ))); do head -c ${SIZE_MB}M /dev/urandom > "$ROOT/src/src$v.img"; done
  empty_maps "$ROOT/src" "$VOLUMES"
  write_config "$VOLUMES"
  # Night 0: the first copy, for both.
  "$S" backup --config "$ROOT/santools.toml" -a -q >/dev/null
  for v in $(seq 0 $(( VOLUMES - 1 ))); do
    "$S" ddless -q -s "$ROOT/src/src$v.img" -c "$BASE/t$v.ddless" -t "$BASE/t$v.img" -w 2
  done
  for n in $(seq 1 "$NIGHTS"); do
    mutate "$ROOT/src" "$VOLUMES" "$n"
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(now)
    for v in $(seq 0 $(( VOLUMES - 1 ))); do
      "$S" ddless -q -s "$ROOT/src/src$v.img" -m "$ROOT/src/src$v.ddmap" -c "$BASE/t$v.ddless" -t "$BASE/t$v.img" -w 2
    done
    t1=$(now)
    sync; echo 3 > /proc/sys/vm/drop_caches
    t2=$(now)
    "$S" backup --config "$ROOT/santools.toml" -a -q --concurrent 2 >/dev/null
    t3=$(now)
    python3 -c "b=$t1-$t0; a=$t3-$t2; print(f'night $n: bare ddless -m (sum) {b:.2f} s, backup -a {a:.2f} s, ratio {a/b:.2f}x')"
  done

  # Space of the checksum history over many nights (fewer volumes).
  write_config "$HISTORY_VOLUMES"
  for n in $(seq 1 "$HISTORY_NIGHTS"); do
    mutate "$ROOT/src" "$HISTORY_VOLUMES" $(( 100 + n ))
    "$S" backup --config "$ROOT/santools.toml" -a -q >/dev/null
  done
  case "$B" in btrfs) DD="$ROOT/mnt/ddless";; zfs) DD="$ROOT/zmnt/ddless";; esac
  full=$(stat -c %s "$DD/iscsi_lv0.ddless")
  hist=$(du -sb "$DD/history/iscsi_lv0" | cut -f1)
  snaps=$(ls "$DD/history/iscsi_lv0" | grep -c '\.delta$' || true)
  python3 -c "h=$hist; f=$full; n=$HISTORY_NIGHTS; s=$snaps+1; print(f'history of lv0 ({s} snapshots): {h} bytes = {h/f:.2f} full checksum files of {f} bytes; {s} full copies would be {s*f} bytes')"
  teardown_backend
done
