#!/usr/bin/env bash
# What idle nodes cost (issue 9's scale test): starts `testnet up --nodes N`
# on 127.0.0.1 (no root), waits WARMUP seconds, then over WINDOW seconds
# measures the CPU all node processes use together (from /proc/<pid>/stat),
# and at the end of the window each node's established TCP connections
# (ss) and RSS. Prints one summary line; the run folder keeps every log.
# Usage: testnet/scripts/idle-nodes.sh   Env: NODES (200), WARMUP (60),
#        WINDOW (30), TESTNET_BIN (target/release/testnet), RUN_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${NODES:-200}
WARMUP=${WARMUP:-60}
WINDOW=${WINDOW:-30}
TESTNET_BIN=${TESTNET_BIN:-$PWD/target/release/testnet}
[ -x "$TESTNET_BIN" ] || cargo build --release -p node -p testnet
RUN_DIR=${RUN_DIR:-$(mktemp -d /tmp/kadswarm-idle.XXXXXX)}
rmdir "$RUN_DIR" 2>/dev/null || true

"$TESTNET_BIN" --run-dir "$RUN_DIR" up --nodes "$NODES" >"$RUN_DIR.out" 2>"$RUN_DIR.err" &
UP=$!
cleanup() { kill -INT "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Node processes: every `node` whose data dir lies in the run folder.
pids() { pgrep -f -- "--data-dir $RUN_DIR/" || true; }
ticks() { # summed utime+stime of the given pids, in clock ticks (one read of all)
    local files=()
    for p in "$@"; do files+=("/proc/$p/stat"); done
    # The command name is "(node)", without spaces: utime and stime are fields 14 and 15.
    cat "${files[@]}" 2>/dev/null | awk '{ t += $14 + $15 } END { print t + 0 }'
}
now_ms() { date +%s%3N; }

sleep "$WARMUP"
mapfile -t P < <(pids)
[ "${#P[@]}" -gt "$NODES" ] || { echo "only ${#P[@]} node processes are running; see $RUN_DIR.err" >&2; exit 1; }
W0=$(now_ms); T0=$(ticks "${P[@]}")
sleep "$WINDOW"
W1=$(now_ms); T1=$(ticks "${P[@]}")
HZ=$(getconf CLK_TCK)
# The wall time between the two readings, not the nominal window.
CPU_PCT=$(awk -v d=$((T1 - T0)) -v hz="$HZ" -v ms=$((W1 - W0)) 'BEGIN { printf "%.1f", 100 * d / hz / (ms / 1000) }')

# Established TCP connections per node process.
{ ss -tnpH state established 2>/dev/null || true; } | { grep -o 'pid=[0-9]*' || true; } | sort | uniq -c | awk '{ sub("pid=", "", $2); print $2, $1 }' >"$RUN_DIR/conns.txt"
MAX_CONNS=0; SUM_CONNS=0
for p in "${P[@]}"; do
    c=$(awk -v p="$p" '$1 == p { print $2 }' "$RUN_DIR/conns.txt")
    c=${c:-0}
    SUM_CONNS=$((SUM_CONNS + c))
    [ "$c" -gt "$MAX_CONNS" ] && MAX_CONNS=$c
done
MAX_RSS=0; SUM_RSS=0
for p in "${P[@]}"; do
    r=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    SUM_RSS=$((SUM_RSS + r))
    [ "$r" -gt "$MAX_RSS" ] && MAX_RSS=$r
done
N=${#P[@]}
echo "idle nodes: $N processes, from ${WARMUP}s to $((WARMUP + WINDOW))s after start:" \
     "CPU ${CPU_PCT}% of one core in all," \
     "connections max $MAX_CONNS per node (mean $((SUM_CONNS / N)))," \
     "RSS max $((MAX_RSS / 1024)) MiB (mean $((SUM_RSS / N / 1024)) MiB); load $(cut -d' ' -f1-3 /proc/loadavg); run $RUN_DIR"
