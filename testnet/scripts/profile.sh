#!/usr/bin/env bash
# Where the nodes' CPU goes in one `testnet distribution` run (root): samples
# every CPU with `perf record` (DWARF call stacks) while the run lasts, keeps
# the samples of the node processes (those that exec'd as `node`), and writes
# text summaries to OUT:
#   summary.txt     the run's result line, CPU by libp2p/tokio layer (each
#                   sample goes to the innermost layer on its stack), CPU by
#                   thread name, the top leaf functions, machine load
#   stacks-top.txt  the heaviest folded call stacks (root;...;leaf count)
#   distribution.csv, run.log   what testnet wrote
# The run folder (node logs, timeline.csv) goes to RUN_DIR; perf.data is
# removed (hundreds of MB) unless KEEP_DATA=1.
#
# Usage: sudo testnet/scripts/profile.sh [testnet distribution flags...]
#   default flags: the issue's N=30 run,
#   --n 30 --modes p2p --size 16MiB --upload 8mbit --server-upload 80mbit
# Env: TESTNET_BIN (target/release/testnet; its `node` sibling is profiled),
#      OUT (testnet-runs/profile-<UTC time>), RUN_DIR (OUT/run), FREQ
#      (sampling Hz, 199), KEEP_DATA (0), ANALYZE_ONLY (1: summarise the
#      perf.data a KEEP_DATA=1 run left in OUT, without running again).
# Sampling at 199 Hz with 16 KiB stack copies costs a few % of CPU and
# slows the run a little; compare profiles with each other, and take
# distribution times from runs without perf.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
TESTNET_BIN=${TESTNET_BIN:-$REPO/target/release/testnet}
FREQ=${FREQ:-199}
OUT=${OUT:-$REPO/testnet-runs/profile-$(date -u +%Y%m%dT%H%M%SZ)}
[ "$(id -u)" = 0 ] || { echo "profile.sh needs root (testnet distribution and perf -a)" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
[ -x "$TESTNET_BIN" ] || { echo "no $TESTNET_BIN: cargo build --release -p node -p testnet" >&2; exit 1; }
[ "$#" -gt 0 ] || set -- --n 30 --modes p2p --size 16MiB --upload 8mbit --server-upload 80mbit
RUN_DIR=${RUN_DIR:-$OUT/run}
mkdir -p "$OUT"
DATA=$OUT/perf.data

if [ "${ANALYZE_ONLY:-0}" != 1 ]; then
    LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
    perf record -a -F "$FREQ" --call-graph dwarf,16384 -o "$DATA" >"$OUT/perf-record.log" 2>&1 &
    PERF=$!
    stop_perf() { kill -INT "$PERF" 2>/dev/null || true; wait "$PERF" 2>/dev/null || true; }
    trap stop_perf EXIT
    sleep 1
    set +e
    "$TESTNET_BIN" --run-dir "$RUN_DIR" distribution "$@" >"$OUT/run.log" 2>&1
    STATUS=$?
    set -e
    LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
    stop_perf
    trap - EXIT
    [ "$STATUS" = 0 ] || { echo "testnet distribution failed ($STATUS); see $OUT/run.log and $RUN_DIR" >&2; exit 1; }
    cp "$RUN_DIR/distribution.csv" "$OUT/" 2>/dev/null || true
    echo "load average before $LOAD0, after $LOAD1" >"$OUT/load.txt"
fi
[ -f "$DATA" ] || { echo "no $DATA to analyse" >&2; exit 1; }

# One pass over the samples (without inline frames: resolving those takes
# minutes). The node processes are the pids that exec'd as `node`.
SCRIPT=$OUT/perf-script.txt
perf script -i "$DATA" -F pid,comm,ip,sym,dso --show-task-events --no-inline >"$SCRIPT" 2>"$OUT/perf-script.log"
awk '/PERF_RECORD_COMM exec: node:/ { sub(/.*exec: node:/, ""); split($0, a, "/"); print a[1] }' "$SCRIPT" \
    | sort -u >"$OUT/pids.txt"
[ -s "$OUT/pids.txt" ] || { echo "perf saw no node process; see $OUT/perf-record.log" >&2; exit 1; }

# Folded stacks of node samples: "thread-name<TAB>root;...;leaf".
awk -v pids="$OUT/pids.txt" '
    BEGIN { while ((getline p < pids) > 0) keep[p] = 1 }
    function flush() { if (take && stack != "") print comm "\t" stack; stack = ""; take = 0 }
    /PERF_RECORD_/ { flush(); next }
    /^[^ \t]/ {            # sample header: "<comm> <pid>" (comm may hold spaces)
        flush(); n = split($0, w, " "); pid = w[n]; comm = $0; sub(/[ \t]+[0-9]+[ \t]*$/, "", comm)
        take = (pid in keep); next
    }
    /^[ \t]*$/ { flush(); next }
    {                      # frame: "<ip> <sym>+0x.. (<dso>)", innermost first
        line = $0; sub(/^[ \t]*[0-9a-f]+ /, "", line)
        dso = ""; if (match(line, / \([^()]*\)$/)) { dso = substr(line, RSTART + 2, RLENGTH - 3); line = substr(line, 1, RSTART - 1) }
        sub(/\+0x[0-9a-f]+$/, "", line)
        # Kernel and libc frames are marked: the layers fall back on them.
        if (dso ~ /kernel/) line = "[kernel] " line
        else if (dso ~ /libc\.so|libm\.so|ld-linux/) line = "[libc] " line
        gsub(/;/, ",", line); stack = (stack == "" ? line : line ";" stack)
    }
    END { flush() }' "$SCRIPT" >"$OUT/stacks.tsv"
rm -f "$SCRIPT"

# `head` closes its pipe early; that is no failure here.
set +o pipefail
TOTAL=$(wc -l <"$OUT/stacks.tsv")
{
    echo "# CPU profile of the nodes in one testnet distribution run"
    echo "command: testnet distribution $*"
    echo "node binary: $(dirname "$TESTNET_BIN")/node ($(stat -c %y "$(dirname "$TESTNET_BIN")/node" | cut -d. -f1))"
    echo "repository HEAD when profiled (the binary may be older): $(git -C "$REPO" log -1 --format='%h %s' 2>/dev/null | cut -c1-80)"
    echo "machine: $(nproc) CPUs; $(cat "$OUT/load.txt" 2>/dev/null || echo "load not recorded")"
    echo "perf: $FREQ Hz on all CPUs, DWARF stacks; $TOTAL samples in $(wc -l <"$OUT/pids.txt") node processes"
    echo
    echo "## result (testnet's own line; its CPU-s figure is from /proc, not perf)"
    grep -E '^N=' "$OUT/run.log" || true
    echo
    echo "## CPU by layer (innermost recognised frame of each sample)"
    cut -f2 "$OUT/stacks.tsv" | awk -f "$REPO/testnet/scripts/profile-layers.awk" | sort -rn
    echo
    echo "## CPU by thread name"
    cut -f1 "$OUT/stacks.tsv" | sort | uniq -c | sort -rn | awk -v t="$TOTAL" '{ c = $1; $1 = ""; printf "%5.1f%% %s\n", 100 * c / t, $0 }'
    echo
    echo "## top 40 leaf functions (self time)"
    cut -f2 "$OUT/stacks.tsv" | awk -F';' '{ print $NF }' | sort | uniq -c | sort -rn | head -40 \
        | awk -v t="$TOTAL" '{ c = $1; $1 = ""; printf "%5.1f%% %s\n", 100 * c / t, substr($0, 2, 160) }'
} >"$OUT/summary.txt"
cut -f2 "$OUT/stacks.tsv" | sort | uniq -c | sort -rn | head -300 | awk '{ c = $1; $1 = ""; print substr($0, 2) " " c }' >"$OUT/stacks-top.txt"
rm -f "$OUT/stacks.tsv"
[ "${KEEP_DATA:-0}" = 1 ] || rm -f "$DATA"
cat "$OUT/summary.txt"
echo "profile in $OUT"
