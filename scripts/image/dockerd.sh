#!/usr/bin/env bash
# A Docker daemon of our own for the image test: Debian's docker.io (installed when
# missing), on a private socket, its images cached under /var/cache/bella-vista/docker
# (a temporary directory when that is not writable). No bridge network and no iptables:
# the test's containers use --network host on loopback.
#   env=$(scripts/image/dockerd.sh start) && eval "$env"   # DOCKER_HOST, BELLA_VISTA_DOCKER
#   scripts/image/dockerd.sh stop
set -euo pipefail

run=/run/bella-vista-docker
socket=$run/docker.sock

case "${1:-start}" in
  start)
    if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ]; then
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2
    fi
    data=/var/cache/bella-vista/docker
    if ! mkdir -p "$data" 2>/dev/null || [ ! -w "$data" ]; then
      data=$(mktemp -d "${TMPDIR:-/tmp}/bv-docker.XXXXXX")
    fi
    mkdir -p "$run"
    if ! DOCKER_HOST=unix://$socket /usr/bin/docker version >/dev/null 2>&1; then
      rm -f "$socket" "$run/dockerd.pid"
      /usr/sbin/dockerd --data-root "$data" --exec-root "$run/exec" --host "unix://$socket" \
        --pidfile "$run/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
        >"$run/dockerd.log" 2>&1 &
      for _ in $(seq 1 60); do
        DOCKER_HOST=unix://$socket /usr/bin/docker version >/dev/null 2>&1 && break
        sleep 0.5
      done
      DOCKER_HOST=unix://$socket /usr/bin/docker version >/dev/null \
        || { tail -20 "$run/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
    fi
    echo "export DOCKER_HOST=unix://$socket BELLA_VISTA_DOCKER=/usr/bin/docker"
    ;;
  stop)
    if [ -f "$run/dockerd.pid" ]; then
      kill "$(cat "$run/dockerd.pid")" 2>/dev/null || true
      for _ in $(seq 1 40); do [ -f "$run/dockerd.pid" ] || break; sleep 0.25; done
    fi
    ;;
esac
