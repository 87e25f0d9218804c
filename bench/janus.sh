#!/usr/bin/env bash
# The same synthetic sites through Janus's VideoRoom plugin only (Debian package `janus`, 1.1.x;
# config in bench/janus/), without hnth: a shorthand for bench/scenarios.sh --janus-only.
#
#   bench/janus.sh [SITES] [SECONDS] [scenarios.py options]    e.g. bench/janus.sh 8 20
#   bench/janus.sh smoke                                        3 sites, 5 s; exit 1 unless media flowed
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = smoke ]; then
    exec bench/scenarios.sh --janus --janus-only --sites 3 --seconds 5
fi
sites=${1:-8}
secs=${2:-20}
shift $(( $# < 2 ? $# : 2 ))
exec bench/scenarios.sh --janus --janus-only --sites "$sites" --seconds "$secs" "$@"
