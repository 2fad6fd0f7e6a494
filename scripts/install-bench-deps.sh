#!/usr/bin/env bash
# Installs the system tools the benchmarks use, where missing. Idempotent.
#   fio:     the reference for file:// and direct:// I/O (scripts/bench/fio-compare.sh)
#   python3: reads fio's and Chorus's JSON results in the bench scripts
#   boto3:   the reference client of scripts/bench/large-object.sh
#   rclone:  a peer client of scripts/bench/s3-peers.sh (which makes its own
#            venvs for boto3 and awscrt, the other peers, on first use)
set -euo pipefail
need=()
command -v fio >/dev/null || need+=(fio)
command -v python3 >/dev/null || need+=(python3)
command -v rclone >/dev/null || need+=(rclone)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install -q boto3
fio --version
