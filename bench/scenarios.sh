#!/usr/bin/env bash
# The benchmark scenarios: meetings of 9 (3×3 all-to-all), 10, 25, 50, 100 and 200 synthetic
# sites, each site receiving a fixed set of 8 (the server's view), through release builds inside a
# private network namespace; server on CPU 0, load generator on CPU 1. Prints one table.
#
#   bench/scenarios.sh [--sites 9,10,25] [--seconds 20] [--limit] [--verbose]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    cargo build --release --bin hnth --bin hnth-bench >&2
    exec scripts/in-netns.sh "$0" "$@"
fi
exec python3 bench/scenarios.py "$@"
