#!/usr/bin/env bash
# Installs the system tools the tests use, where missing. Idempotent.
#   zstd: to inspect op-logs by hand and in shell checks.
set -euo pipefail
need=()
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
