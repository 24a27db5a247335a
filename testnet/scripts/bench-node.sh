#!/usr/bin/env bash
# Benchmarks of one node binary on 127.0.0.1 (issue 3's figures):
#   throughput  one seeder -> one leecher, SIZE_MIB (default 1024) uncapped:
#               MiB/s end to end (hashing and disk included) and leecher peak RSS
#   provider    a 20-node network (bootstrap, 18 idle nodes, a seeder), then
#               RUNS `node get`s: ms from process start to first provider found
# Usage: testnet/scripts/bench-node.sh [throughput|provider|all]
# Env: NODE_BIN (default target/release/node), WORK (default a temp dir),
#      OUT_DIR (where the leecher writes; default under WORK; try /dev/shm to
#      leave the disk out), SIZE_MIB, RUNS, THREADS (node --threads; seeder and
#      leecher share this machine's cores, so 1 each avoids cross-thread wake-ups).
set -euo pipefail
cd "$(dirname "$0")/../.."
NODE_BIN=${NODE_BIN:-$PWD/target/release/node}
[ -x "$NODE_BIN" ] || cargo build --release -p node
WORK=${WORK:-$(mktemp -d /tmp/kadswarm-bench.XXXXXX)}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-5}
EXTRA=()
[ -n "${THREADS:-}" ] && EXTRA=(--threads "$THREADS")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# start NAME ARGS... : runs a node in the background, stdout to WORK/NAME.out.
start() {
    local name=$1; shift
    "$NODE_BIN" "$@" "${EXTRA[@]}" --listen /ip4/127.0.0.1/tcp/0 --data-dir "$WORK/$name-data" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
}
first_line() { # first_line FILE: waits for and prints FILE's first line
    for _ in $(seq 600); do [ -s "$1" ] && { head -1 "$1"; return; }; sleep 0.1; done
    echo "timed out waiting for $1" >&2; exit 1
}

boot_and_seed() { # boot_and_seed FILE: sets BOOT and ID
    start boot join
    BOOT=$(first_line "$WORK/boot.out")
    start seeder share "$1" --bootstrap "$BOOT"
    ID=$(first_line "$WORK/seeder.out")
}

throughput() {
    local src=$WORK/payload.bin out=${OUT_DIR:-$WORK/out}
    head -c "$((SIZE_MIB << 20))" /dev/urandom >"$src"
    boot_and_seed "$src"
    rm -rf "$out"
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v "$NODE_BIN" get "$ID" "${EXTRA[@]}" --no-seed --out "$out" --bootstrap "$BOOT" \
        --listen /ip4/127.0.0.1/tcp/0 --data-dir "$WORK/get-data" \
        >"$WORK/get.out" 2>"$WORK/get.log"
    t1=$(date +%s.%N)
    cmp "$src" "$out/payload.bin" || { echo "copy differs" >&2; exit 1; }
    awk -v a="$t0" -v b="$t1" -v m="$SIZE_MIB" \
        'BEGIN { printf "throughput: %d MiB in %.2f s = %.0f MiB/s (copy identical)\n", m, b - a, m / (b - a) }'
    grep "Maximum resident" "$WORK/get.log" | awk '{ printf "leecher peak RSS: %.1f MiB\n", $6 / 1024 }'
    rm -rf "$out" "$src"
}

provider() {
    local src=$WORK/small.bin
    head -c 1048576 /dev/urandom >"$src"
    start boot join
    BOOT=$(first_line "$WORK/boot.out")
    for i in $(seq 18); do start "n$i" join --bootstrap "$BOOT"; done
    for i in $(seq 18); do first_line "$WORK/n$i.out" >/dev/null; done
    start seeder share "$src" --bootstrap "$BOOT"
    ID=$(first_line "$WORK/seeder.out")
    sleep 3 # let the provider record land
    for r in $(seq "$RUNS"); do
        # Each getter joins through a different node, as a newcomer would.
        local via
        via=$(first_line "$WORK/n$(( (r % 18) + 1 )).out")
        "$NODE_BIN" get "$ID" --no-seed --out "$WORK/get$r" --bootstrap "$via" \
            --listen /ip4/127.0.0.1/tcp/0 --data-dir "$WORK/get$r-data" \
            >/dev/null 2>"$WORK/get$r.log"
        grep -o "found .* after start" "$WORK/get$r.log" | sed "s/^/run $r: /"
    done
}

case ${1:-all} in
    throughput) throughput ;;
    provider) provider ;;
    all) throughput; cleanup; PIDS=(); provider ;;
    *) echo "usage: $0 [throughput|provider|all]" >&2; exit 2 ;;
esac
