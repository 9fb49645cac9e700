#!/usr/bin/env bash
# Runs a command in a private network namespace that has nothing but loopback, so every
# packet of a LiveKit test provably stays on 127.0.0.0/8:
#   scripts/livekit/netns.sh CMD [ARGS...]          (needs root, or user namespaces)
# Why the veth: libwebrtc (inside the Python `livekit` SDK) gathers no ICE candidate on an
# interface flagged LOOPBACK, so with `lo` alone the caller cannot connect. A veth pair whose
# end holds 127.0.0.2/32 gives it a non-loopback-flagged interface with a loopback address:
# the caller's candidate is 127.0.0.2, the server's is 127.0.0.1 (rtc.enable_loopback_candidate).
# Outside such a namespace the caller's candidate is the machine's own eth0 address instead
# (still local: the kernel delivers it over lo), which works too.
set -euo pipefail
if [ "${BV_IN_NETNS:-}" != 1 ]; then
  # -r maps us to root in a new user namespace when we are not root already.
  flags=(-n)
  [ "$(id -u)" -eq 0 ] || flags=(-r -n)
  exec env BV_IN_NETNS=1 unshare "${flags[@]}" "$0" "$@"
fi
ip link set lo up
ip link add bv0 type veth peer name bv1
ip addr add 127.0.0.2/32 dev bv0
ip link set bv0 up
ip link set bv1 up
# No IPv6 link-local candidates on the veth either (the server only listens on 127.0.0.1).
for dev in bv0 bv1; do
  echo 1 >"/proc/sys/net/ipv6/conf/$dev/disable_ipv6" 2>/dev/null || true
done
exec "$@"
