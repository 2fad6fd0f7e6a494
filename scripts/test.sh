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
# Some tests measure rates and latencies (open-loop pacing, least-connections
# balancing); on 2 cores they must not share the CPU with the heavy ones
# (64 MiB data-generation checks) running beside them. One test at a time
# per binary costs almost nothing here (the suite is I/O-bound).
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-1}
cargo test --workspace --locked "$@"
