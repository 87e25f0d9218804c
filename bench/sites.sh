#!/usr/bin/env bash
# One meeting of N synthetic sites (N <= 8: the demo's site accounts) through a release build of
# hnth, inside a private network namespace; prints the load generator's table and the server's
# CPU time per forwarded packet and resident memory, measured from /proc in the same run.
#
#   bench/sites.sh [SITES] [SECONDS]        e.g. bench/sites.sh 8 20
set -euo pipefail
cd "$(dirname "$0")/.."
SITES=${1:-8}
SECS=${2:-20}
if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    cargo build --release --bin hnth --bin hnth-bench >&2
    exec scripts/in-netns.sh "$0" "$@"
fi
exec python3 bench/run_sites.py "$SITES" "$SECS"
