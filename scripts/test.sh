#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), formatting, lints, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
./scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
export COCOON_GUEST_DIR="$PWD/build/guest" COCOON_GUEST_TESTS=1
export KBS_TEST_PYTHON=/opt/cocoon-tools/venv/bin/python
cargo test --workspace -- --test-threads=2
echo "test.sh: done in $(( $(date +%s) - start )) s"
