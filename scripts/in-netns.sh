#!/bin/sh
# Run CMD... inside a private network namespace with loopback up and a veth pair
#   hnth0 = 10.77.0.1/24   hnth1 = 10.77.0.2/24   (both ends inside the namespace)
# The server binds/announces 10.77.0.1 for media; browsers and aiortc reach it over
# the veth pair, so ICE never uses loopback and never touches the host's real address.
#
# Usage: scripts/in-netns.sh CMD [ARGS...]      (needs root: unshare --net)
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

if [ "${HNTH_IN_NETNS:-}" != "1" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "$0: must run as root (unshare --net)" >&2
        exit 1
    fi
    HNTH_IN_NETNS=1
    export HNTH_IN_NETNS
    exec unshare --net -- "$0" "$@"
fi

ip link set lo up
ip link add hnth0 type veth peer name hnth1
ip addr add 10.77.0.1/24 dev hnth0
ip addr add 10.77.0.2/24 dev hnth1
ip link set hnth0 up
ip link set hnth1 up

# Wait (bounded) until both ends are operational so the first ICE checks don't race link-up.
i=0
while :; do
    # (/sys/class/net still shows the parent namespace, so ask ip(8).)
    s0=$(ip -br link show dev hnth0 | awk '{print $2}')
    s1=$(ip -br link show dev hnth1 | awk '{print $2}')
    if [ "$s0" = UP ] && [ "$s1" = UP ]; then
        break
    fi
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
        echo "$0: veth hnth0/hnth1 did not come up (hnth0=$s0 hnth1=$s1)" >&2
        exit 1
    fi
    sleep 0.05
done

exec "$@"
