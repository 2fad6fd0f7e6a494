#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# builds every binary the end-to-end tests start, runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p chorus-common   # extra args go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# The only toolchain needed is Rust (protoc comes from a vendored crate).
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
scripts/install-test-deps.sh

# End-to-end tests run the real `controller` and `agent` binaries.
cargo build --workspace --bins --locked
if [ $# -gt 0 ]; then
  exec cargo test --workspace --locked "$@"
fi
# The library's tests include ones that measure rates and latencies
# (open-loop pacing, least-connections balancing); on 2 cores they must not
# share the CPU with the heavy ones (64 MiB data-generation checks) beside
# them, so they run one at a time (it costs ~2 s). The end-to-end tests
# run in parallel: tests sharing one slow-to-start server rely on it.
RUST_TEST_THREADS=1 cargo test --locked -p chorus-common
cargo test --workspace --locked --exclude chorus-common
