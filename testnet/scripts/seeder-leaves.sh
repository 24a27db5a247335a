#!/usr/bin/env bash
# How many copies must a seeder upload before the swarm survives its leaving?
# (issue 12). Repeats tests/tests/seeder_leaves.rs's run on 127.0.0.1 (32 MiB
# in 512 chunks, seeder --max-upload 8MiB killed with SIGKILL once its
# /metrics show COPIES copies uploaded, 4 leechers --max-upload 2MiB) RUNS
# times per copy count, and appends one CSV row per run to CSV.
# Usage: testnet/scripts/seeder-leaves.sh LABEL [NODE_BIN]
# Env: COPIES (default 1.00,1.05,1.10,1.20,1.36), RUNS (default 3),
#      CSV (default testnet/results/seeder-leaves/runs.csv).
# NODE_BIN: the node binary to measure (default: this tree's release build),
# e.g. one built from the commit before first-copy-first in a worktree.
set -euo pipefail
cd "$(dirname "$0")/../.."
LABEL=${1:?usage: seeder-leaves.sh LABEL [NODE_BIN]}
CSV=${CSV:-$PWD/testnet/results/seeder-leaves/runs.csv}
mkdir -p "$(dirname "$CSV")"
if [ ! -s "$CSV" ]; then
    echo "build,copies_goal,copies_at_kill,survived,identical,min_have,total,secs_after_kill,leecher_copies_last,said_unavailable" >"$CSV"
fi
[ -n "${2:-}" ] && export KADSWARM_NODE_BIN=$2
SEEDER_LEAVES_COPIES=${COPIES:-1.00,1.05,1.10,1.20,1.36} \
SEEDER_LEAVES_RUNS=${RUNS:-3} \
SEEDER_LEAVES_LABEL=$LABEL \
SEEDER_LEAVES_CSV=$CSV \
    cargo test --release -p kadswarm-tests --test seeder_leaves measure_survival -- --ignored --nocapture
