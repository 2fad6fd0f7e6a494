#!/usr/bin/env bash
# Installs the system tools the tests use, where missing. Idempotent.
#   zstd: to inspect op-logs by hand and in shell checks.
#   chromium: renders report.html headless in tests/tests/report.rs, and
#     drives its charts (hover, zoom) over the DevTools protocol there.
#   iproute2: `ip netns` gives agents their own hosts (tests/src/netns.rs).
#   faketime: libfaketime skews agents' clocks (tests/src/agents.rs).
#   util-linux: `taskset` pins agents and a CPU hog (tests/tests/client_health.rs).
set -euo pipefail
need=()
command -v zstd >/dev/null || need+=(zstd)
command -v chromium >/dev/null || need+=(chromium)
# `ip` is in /usr/sbin, which a non-root PATH may lack.
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v faketime >/dev/null || need+=(faketime)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
