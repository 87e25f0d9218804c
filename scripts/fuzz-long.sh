#!/usr/bin/env bash
# Runs the property tests against hostile input (every test named fuzz_* in hnth-media,
# hnth-rules and hnth-server: the signaling hub, every page and API route) in release mode, each with many inputs, and prints per target the number of
# inputs and the time taken.
#
#   scripts/fuzz-long.sh                # 1,000,000 inputs per target
#   scripts/fuzz-long.sh -n 100000      # fewer
#   scripts/fuzz-long.sh -n 100000 vp8  # only the targets whose name contains "vp8"
#
# One input is one case of the target: a datagram batch, a command sequence, an SDP, a payload.
# A failure prints the smallest input found and the script exits non-zero.
set -euo pipefail

cases=1000000
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        -n | --cases) cases="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) break ;;
    esac
done
filter="${1:-}"
case "$cases" in '' | *[!0-9]*) echo "cases: a number, not '$cases'" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
echo "building the tests (release)…" >&2
# "crate executable" per test binary.
exes=$(cargo test --release -p hnth-media -p hnth-rules -p hnth-server --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"package_id":"[^"]*\/\([a-z0-9_-]*\)#[^"]*".*"executable":"\([^"]*\)".*/\1 \2/p' | sort -u)
[ -n "$exes" ] || { echo "no test executables (does 'cargo test --release -p hnth-media -p hnth-rules -p hnth-server --no-run' build?)" >&2; exit 1; }

printf '%-62s %12s %10s\n' "target" "inputs" "seconds"
failed=0
total_start=$(date +%s.%N)
while read -r crate exe; do
    bin=$(basename "$exe" | sed 's/-[0-9a-f]*$//')
    for t in $("$exe" --list 2>/dev/null | sed -n 's/^\(.*fuzz_[^:]*\): test$/\1/p'); do
        case "$t" in *"$filter"*) ;; *) continue ;; esac
        start=$(date +%s.%N)
        log=$(mktemp)
        if HNTH_FUZZ_CASES="$cases" RUST_BACKTRACE=0 "$exe" --exact "$t" --test-threads=1 >"$log" 2>&1; then
            status=""
        else
            status="  FAILED"
            failed=1
        fi
        end=$(date +%s.%N)
        printf '%-62s %12s %10.1f%s\n' "$crate/$bin::$t" "$cases" "$(echo "$end - $start" | bc)" "$status"
        if [ -n "$status" ]; then
            grep -v '^$' "$log" | grep -v 'panicked at\|^note: run with' | tail -40 >&2
        fi
        rm -f "$log"
    done
done <<<"$exes"
printf 'total %.1f s\n' "$(echo "$(date +%s.%N) - $total_start" | bc)"
exit "$failed"
