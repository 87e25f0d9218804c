#!/usr/bin/env bash
# The long-meeting soak: N synthetic sites in one meeting for M minutes (release builds, inside
# the private network namespace; server on CPU 0, load generator on CPU 1, as bench/scenarios.sh).
# While media flows the operator cycles the floor among the sites for the whole run, changes the
# frame (layout) every 30 s and drops one site every 30 s: the site closes its WebSocket and its
# peer, comes back 3 s later (every other time with a new login) and is joined again.
#
# Printed: the server's resident memory, open files and threads before dialing, at the warm-up
# mark (2 min after dialing: growth is measured from there), every 5 min and at the end; whether
# the server crashed; drops, rejoins that got media back, floor and frame changes acknowledged;
# the server log's warnings and errors. Targets (printed, not asserted): no crash, RSS growth
# under 5 % from the warm-up mark, no growth in open files or threads. Exit status 1 if the
# server crashed, a rejoined site got no media back or a change was not acknowledged.
#
#   bench/soak.sh [--sites 50] [--minutes 60] [hnth-bench options, e.g. --sample-every 60
#                 --drop-every 20 --frame-every 15 --warmup-secs 300]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    cargo build --release --bin hnth --bin hnth-bench >&2
    exec scripts/in-netns.sh "$0" "$@"
fi

SITES=50
MINUTES=60
EXTRA=()
while [ "$#" -gt 0 ]; do
    case "$1" in
    --sites) SITES="$2"; shift 2 ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
    esac
done

REL=target/release
PW="Soak-matkhau-2026"
HTTP=127.0.0.1:18443
DATA=$(mktemp -d /tmp/hnth-soak-XXXXXX)
LOG="$DATA/server.log"
BENCH_SITES=$((SITES > 8 ? SITES - 8 : 0))

echo "--- soak: $SITES sites, $MINUTES min; server log $LOG" >&2
RUST_LOG=warn taskset -c 0 "$REL/hnth" demo --data-dir "$DATA" --http "$HTTP" \
    --udp 10.77.0.1:18444 --announce 10.77.0.1 --tls off --demo-password "$PW" \
    --bench-sites "$BENCH_SITES" >"$LOG" 2>&1 &
SERVER=$!

server_running() {
    # Running and not a zombie (a crashed child stays one until it is waited for).
    kill -0 "$SERVER" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$SERVER/status" 2>/dev/null
}

stop_server() {
    if server_running; then
        kill -INT "$SERVER"
        local deadline=$((SECONDS + 20))
        while server_running && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        server_running && kill -KILL "$SERVER"
    fi
    wait "$SERVER" 2>/dev/null || true
}
trap stop_server EXIT

deadline=$((SECONDS + 60))
until curl -sf "http://$HTTP/healthz" >/dev/null; do
    if ! server_running || [ "$SECONDS" -gt "$deadline" ]; then
        echo "server did not start; log in $LOG" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done

set +e
taskset -c 1 "$REL/hnth-bench" --server "http://$HTTP" --password "$PW" --sites "$SITES" \
    --layout 1+7 --soak-minutes "$MINUTES" --server-pid "$SERVER" "${EXTRA[@]}"
STATUS=$?
set -e

echo
if server_running; then
    echo "server: still running after the soak (pid $SERVER)"
    CRASHED=0
else
    wait "$SERVER"
    echo "server: CRASHED during the soak (exit status $?); last lines of $LOG:"
    tail -30 "$LOG"
    CRASHED=1
fi
stop_server
trap - EXIT

# The server log's warnings and errors, counted by message (times and colours stripped; the
# sites' sound without the floor is expected: every site sends its tone all along).
# (The fields after the message, `key=value`, are cut; pipefail is off for `head`.)
set +o pipefail
echo "server log ($LOG): $(grep -c . "$LOG") lines; warnings and errors by message:"
sed -e 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -E ' (WARN|ERROR) ' \
    | sed -E 's/^[^ ]+ +//; s/ [a-z_]+=.*$//' \
    | sort | uniq -c | sort -rn | head -20
grep -n -i 'panic' "$LOG" | head -5
set -o pipefail

if [ "$CRASHED" = 1 ]; then
    exit 1
fi
exit "$STATUS"
