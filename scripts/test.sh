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
cargo test --workspace --locked "$@"
