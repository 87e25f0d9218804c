#!/usr/bin/env bash
# The benchmark scenarios: meetings of 9 (3×3 all-to-all), 10, 25, 50, 100 and 200 synthetic
# sites, each site receiving a fixed set of 8 (the server's view), through release builds inside a
# private network namespace; server on CPU 0, load generator on CPU 1. Prints one table.
#
# With --limit, the minimal SRTP forwarder (hnth-limit) under the same packet load; with --janus,
# the same sites through Janus's VideoRoom (Debian package `janus`, installed when missing).
#
#   bench/scenarios.sh [--sites 9,10,25] [--seconds 20] [--limit] [--janus] [--verbose]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    case " $* " in
    *" --janus "*)
        if ! command -v janus >/dev/null; then
            apt-get install -y janus >&2 || { apt-get update >&2 && apt-get install -y janus >&2; }
        fi ;;
    esac
    cargo build --release --bin hnth --bin hnth-bench --bin hnth-limit >&2
    exec scripts/in-netns.sh "$0" "$@"
fi
# Janus's libnice sends from 10.77.0.1 out of hnth0, so its packets reach hnth1 with a source
# address that is local to the namespace: the kernel drops them as martians unless told not to.
for dev in all hnth0 hnth1; do
    sysctl -qw "net.ipv4.conf.$dev.accept_local=1" "net.ipv4.conf.$dev.rp_filter=0"
done
exec python3 bench/scenarios.py "$@"
