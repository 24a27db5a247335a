#!/usr/bin/env bash
# What idle nodes cost (issue 9's scale test): starts `testnet up --nodes N`
# on 127.0.0.1 (no root), waits WARMUP seconds, then over WINDOW seconds
# measures the CPU all node processes use together (from /proc/<pid>/stat),
# and at the end of the window each node's established TCP connections
# (ss) and RSS. Prints one summary line; the run folder keeps every log.
# With SAMPLE=<s> it also prints, every SAMPLE seconds of the warmup, the
# CPU the nodes used since the last line and their established sockets.
# Usage: testnet/scripts/idle-nodes.sh   Env: NODES (200), WARMUP (60),
#        WINDOW (30), SAMPLE (off), UP_ARGS (extra `testnet up` flags, e.g.
#        "--join-interval 0"), TESTNET_BIN (target/release/testnet), RUN_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${NODES:-200}
WARMUP=${WARMUP:-60}
WINDOW=${WINDOW:-30}
SAMPLE=${SAMPLE:-0}
TESTNET_BIN=${TESTNET_BIN:-$PWD/target/release/testnet}
[ -x "$TESTNET_BIN" ] || cargo build --release -p node -p testnet
RUN_DIR=${RUN_DIR:-$(mktemp -d /tmp/kadswarm-idle.XXXXXX)}
rmdir "$RUN_DIR" 2>/dev/null || true

# shellcheck disable=SC2086 # UP_ARGS is a list of flags
"$TESTNET_BIN" --run-dir "$RUN_DIR" up --nodes "$NODES" ${UP_ARGS:-} >"$RUN_DIR.out" 2>"$RUN_DIR.err" &
UP=$!
cleanup() { kill -INT "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Node processes: every `node` whose data dir lies in the run folder.
pids() { pgrep -f -- "--data-dir $RUN_DIR/" || true; }
ticks() { # summed utime+stime of the given pids, in clock ticks (one read of all)
    local files=()
    [ "$#" -gt 0 ] || { echo 0; return; }
    for p in "$@"; do files+=("/proc/$p/stat"); done
    # The command name is "(node)", without spaces: utime and stime are fields 14 and 15.
    cat "${files[@]}" 2>/dev/null | awk '{ t += $14 + $15 } END { print t + 0 }'
}
now_ms() { date +%s%3N; }

HZ=$(getconf CLK_TCK)
START=$(now_ms)
if [ "$SAMPLE" -gt 0 ]; then
    LAST_MS=$START; LAST_T=0
    while [ $(( $(now_ms) - START + SAMPLE * 1000 )) -le $((WARMUP * 1000)) ]; do
        sleep "$SAMPLE"
        mapfile -t S < <(pids)
        T=$(ticks "${S[@]}"); MS=$(now_ms)
        # Ticks of the live processes: a node that exited takes its ticks along.
        awk -v t=$((MS - START)) -v n="${#S[@]}" -v d=$((T - LAST_T)) -v hz="$HZ" -v ms=$((MS - LAST_MS)) \
            -v socks="$( { ss -tnH state established 2>/dev/null || true; } | wc -l)" \
            'BEGIN { printf "t=%3ds nodes=%d CPU %.0f%% of one core, %d established TCP sockets on the machine\n", t / 1000, n, 100 * d / hz / (ms / 1000), socks }'
        LAST_T=$T; LAST_MS=$MS
    done
fi
sleep $(( WARMUP - ($(now_ms) - START) / 1000 > 0 ? WARMUP - ($(now_ms) - START) / 1000 : 0 ))
mapfile -t P < <(pids)
[ "${#P[@]}" -gt "$NODES" ] || { echo "only ${#P[@]} node processes are running; see $RUN_DIR.err" >&2; exit 1; }
W0=$(now_ms); T0=$(ticks "${P[@]}")
sleep "$WINDOW"
W1=$(now_ms); T1=$(ticks "${P[@]}")
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
