#!/usr/bin/env bash
# zfs-copy against `zfs send | zfs receive`, in one run (zfs-fuse pools on
# files; the machine is shared, so compare the ratios, not the seconds).
#   bash benches/zfs_copy.sh [SIZE_MIB]      (as root, zfs-fuse running)
# Prints hyperfine's table: a full copy of one snapshot of a SIZE_MIB image
# between two pools by the plain pipe, by zfs-copy through this process
# (the ssh data path, local), and by zfs-copy over its TCP data path.
set -euo pipefail
size=${1:-256}
bin=${SANTOOLS:-target/release/santools}
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d /tmp/santools-bench-copy.XXXXXX)
a=bcpa$$; b=bcpb$$
# zfs-fuse may call a pool busy right after a receive: retry the destroy.
gone() { for try in 1 2 3 4 5 6 7 8 9 10; do zpool destroy -f "$1" 2>/dev/null && return; zpool list "$1" >/dev/null 2>&1 || return; sleep 1; done; echo "pool $1 left behind" >&2; }
cleanup() { gone "$a"; gone "$b"; rm -rf "$work"; }
trap cleanup EXIT
truncate -s $((size * 3 + 512))M "$work/a.img" "$work/b.img"
zpool create -m "$work/ma" "$a" "$work/a.img"
zpool create -m "$work/mb" "$b" "$work/b.img"
zfs create "$a/iscsi_bench_bk"
head -c "${size}M" /dev/urandom > "$work/ma/iscsi_bench_bk/image"
sync
zfs snapshot "$a/iscsi_bench_bk@2011-03-29_23:00:01"
cat > "$work/santools.toml" <<TOML
[archive]
log_dir = "$work/log"
lock_dir = "$work/lock"
[archive.pools.$a]
backend = "zfs"
[archive.pools.$b]
backend = "zfs"
[archive.copy]
ports = "47100-47199"
TOML
snap="$a/iscsi_bench_bk@2011-03-29_23:00:01"
# Before each run the target goes: zfs-copy holds what it received (so
# rotation keeps the next base), so release that hold first, and fail
# loudly if the target survived (a run would then measure "up to date").
# zfs-fuse may call a just-received file system busy for a moment: retry.
tag="santools-copy-local_${b}_iscsi_bench_bk"
reset="for s in \$(zfs list -H -o name -t snapshot -r $b 2>/dev/null); do zfs release $tag \$s 2>/dev/null; done; for try in 1 2 3 4 5 6 7 8 9 10; do zfs destroy -r $b/iscsi_bench_bk 2>/dev/null && break; sleep 0.5; done; ! zfs list $b/iscsi_bench_bk >/dev/null 2>&1"
hyperfine --runs 5 --export-markdown "$work/result.md" \
  --prepare "$reset" \
  -n "zfs send | zfs receive" "zfs send $snap | zfs receive $b/iscsi_bench_bk" \
  -n "zfs-copy (local, relayed)" "$bin zfs-copy -q --config $work/santools.toml -s $snap -t $b/iscsi_bench_bk" \
  -n "zfs-copy --transport tcp" "$bin zfs-copy -q --config $work/santools.toml --transport tcp -s $snap -t $b/iscsi_bench_bk"
cat "$work/result.md"
# The copies were real: the received snapshot is the source's (GUID), and
# zfs-copy moved the stream's bytes.
sh -c "$reset"
"$bin" zfs-copy -q --json --config "$work/santools.toml" --transport tcp -s "$snap" -t "$b/iscsi_bench_bk" | grep -E '"bytes"|mb_per_s'
[ "$(zfs get -Hp -o value guid "$snap")" = "$(zfs get -Hp -o value guid "$b/iscsi_bench_bk@2011-03-29_23:00:01")" ] && echo "guid matches"
