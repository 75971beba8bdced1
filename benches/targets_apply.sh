#!/usr/bin/env bash
# targets apply against tgt-admin on a private tgtd (root; tgt installed):
# N file-backed targets applied from empty, then applied again unchanged
# (santools: plan only, no tgtadm write; tgt-admin --update ALL). The same
# configuration for both: tgt-admin reads what `targets gen tgt` writes.
# Usage: benches/targets_apply.sh [N]   (SANTOOLS=path/to/santools)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SANTOOLS:-target/release/santools}
N=${1:-50}
work=$(mktemp -d)
ip="127.114.$((RANDOM % 250)).1"
# A fresh control port per start (another tgtd may hold one: try the next).
start_tgtd() {
  for _ in $(seq 10); do
    port=$((30000 + RANDOM % 5000))
    tgtd -f -C "$port" --iscsi "portal=$ip:3260" >/dev/null 2>&1 & pid=$!
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      tgtadm -C "$port" --op show --mode sys >/dev/null 2>&1 && return
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  echo "tgtd did not start" >&2; exit 1
}
stop_tgtd() { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap 'stop_tgtd; rm -rf "$work"' EXIT
mkdir "$work/luns" "$work/state"
{
  printf '[targets]\nprefix = "iqn.2024-01.bench:t"\nhosts = ["n1"]\n[targets.file_groups]\nvg_b = "%s"\n[targets.portal_groups.pg]\nn1 = ["%s"]\n' "$work/luns" "$ip"
  for i in $(seq -w 1 "$N"); do
    truncate -s 16M "$work/luns/lv_$i"
    printf '[[targets.target]]\nstate = "up"\ndevice = "%s/lv_%s"\nio = "fileio"\nserial = "BENCH-%s"\nportal_group = "pg"\ninitiators = ["iqn.2024-01.bench:i%s"]\n' "$work/luns" "$i" "$i" "$i"
  done
} >"$work/inv.toml"
"$BIN" targets gen tgt --node n1 --active-vg vg_b --inventory "$work/inv.toml" >"$work/targets.conf"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
apply() { "$BIN" targets apply -q --node n1 --active-vg vg_b --inventory "$work/inv.toml" -C "$port" --state-dir "$work/state" >/dev/null; }

start_tgtd
t0=$(now); apply; t1=$(now); apply; t2=$(now)
s_create=$(secs "$t0" "$t1"); s_noop=$(secs "$t1" "$t2")
count() { tgtadm -C "$port" --lld iscsi --op show --mode target | grep -c '^Target '; }
s_count=$(count)
stop_tgtd; start_tgtd
t0=$(now); tgt-admin -C "$port" -c "$work/targets.conf" -e >/dev/null 2>&1; t1=$(now)
tgt-admin -C "$port" -c "$work/targets.conf" --update ALL >/dev/null 2>&1; t2=$(now)
a_create=$(secs "$t0" "$t1"); a_noop=$(secs "$t1" "$t2")
a_count=$(count)
[ "$s_count" = "$N" ] && [ "$a_count" = "$N" ] || { echo "targets created: santools $s_count, tgt-admin $a_count, expected $N" >&2; exit 1; }
printf '%d targets      santools apply   tgt-admin   ratio (tgt-admin / santools)\n' "$N"
printf 'from empty      %8.2f s       %8.2f s   %s\n' "$s_create" "$a_create" "$(ratio "$a_create" "$s_create")"
printf 'unchanged       %8.2f s       %8.2f s   %s\n' "$s_noop" "$a_noop" "$(ratio "$a_noop" "$s_noop")"
