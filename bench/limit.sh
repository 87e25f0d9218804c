#!/usr/bin/env bash
# The machine's limit: hnth-limit's bare SRTP forwarder (CPU 0) fed by its blaster (CPU 1) over
# the namespace's veth addresses (forwarder 10.77.0.1, blaster 10.77.0.2), release build; prints
# packets in/out per second, loss, and the forwarder's CPU per forwarded packet and per Mbit.
#
#   bench/limit.sh [PPS_IN] [FANOUT] [SIZE] [SECONDS] [hnth-limit run options...]
#   e.g. bench/limit.sh 1000 7 1000 10          one rate
#        bench/limit.sh 20000 7 1000 3 --max    raise the rate ×1.5 per 3 s step until saturation
#        bench/limit.sh 1000 7 1000 10 --json   one JSON line (fields in BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    cargo build --release -p hnth-limit >&2
    exec scripts/in-netns.sh "$0" "$@"
fi
PPS=${1:-1000}
FANOUT=${2:-7}
SIZE=${3:-1000}
SECS=${4:-10}
shift $(( $# < 4 ? $# : 4 ))
exec target/release/hnth-limit run --pps-in "$PPS" --fanout "$FANOUT" --size "$SIZE" \
    --seconds "$SECS" --addr 10.77.0.1 --peer-addr 10.77.0.2 "$@"
