#!/usr/bin/env bash
# Installs the system tools the tests use, where missing. Idempotent.
#   zstd: to inspect op-logs by hand and in shell checks.
#   chromium: renders report.html headless in tests/tests/report.rs.
set -euo pipefail
need=()
command -v zstd >/dev/null || need+=(zstd)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
