#!/usr/bin/env bash
# The same synthetic sites through Janus's VideoRoom plugin (Debian package `janus`, 1.1.x),
# inside a private network namespace: Janus on CPU 0, the load generator on CPU 1; prints the
# generator's table and Janus's CPU time per forwarded packet and resident memory, from /proc.
# Every site publishes (Opus + VP8 simulcast) and subscribes to a fixed set of up to 8 feeds.
#
#   bench/janus.sh [SITES] [SECONDS]        e.g. bench/janus.sh 8 20
#   bench/janus.sh smoke                    3 sites, 5 s; exit 1 unless media flowed everywhere
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    if ! command -v janus >/dev/null; then
        apt-get install -y janus >&2 || { apt-get update >&2 && apt-get install -y janus >&2; }
    fi
    cargo build --release --bin hnth-bench >&2
    exec scripts/in-netns.sh "$0" "$@"
fi
# Janus's libnice sends from 10.77.0.1 out of hnth0, so its packets reach hnth1 with a source
# address that is local to the namespace: the kernel drops them as martians unless told not to.
for dev in all hnth0 hnth1; do
    sysctl -qw "net.ipv4.conf.$dev.accept_local=1" "net.ipv4.conf.$dev.rp_filter=0"
done
if [ "${1:-}" = smoke ]; then
    exec python3 bench/run_janus.py smoke
fi
exec python3 bench/run_janus.py "${1:-8}" "${2:-20}"
