#!/usr/bin/env bash
# Regenerates agent/agent/symbol-order.txt: the functions the shipped agent runs from start-up
# to idle and for a container's life, which lld places first in the binary (see
# agent/agent/build.rs; scripts/build-guest.sh passes the file). Laid out together they
# share a few pages instead of being spread over the whole text, and the idle agent maps
# fewer pages (the kernel maps 64 KiB around every page fault of a file mapping).
#
# Two profiles of the binary build-guest.sh ships (profile `guest`, static, non-PIE; its
# symbols are kept in target/, the initramfs copy is stripped):
# - in a TCG guest: the agent benchmark of tests/tests/agent_guest.rs (boot, idle probe,
#   containers, execs) with QEMU logging every block of guest code it translates
#   (`-d in_asm`); this is exact for what a guest's agent runs, PID-1 start-up included;
# - on this host under valgrind's callgrind: the `idle_workload_for_symbol_ordering` test of
#   agent/agent/tests/host_lifecycle.rs, for paths the benchmark does not take.
# scripts/symbol_order.py turns both into the list.
#
# Re-run after dependency upgrades or larger agent changes: names that no longer exist are
# skipped at link time, so a stale list costs locality, never correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || {
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends valgrind
}
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
./scripts/build-guest.sh
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp "$TARGET_DIR/x86_64-unknown-linux-gnu/guest/cocoon-agent" "$WORK/cocoon-agent"
cat > "$WORK/qemu" <<WRAP
#!/bin/sh
exec /usr/bin/qemu-system-x86_64 "\$@" -d in_asm,nochain -D "$WORK/qemu-in_asm.log"
WRAP
chmod +x "$WORK/qemu"
COCOON_QEMU="$WORK/qemu" COCOON_GUEST_DIR="$PWD/build/guest" COCOON_GUEST_TESTS=1 \
  cargo test -p cocoon-tests --test agent_guest -- --ignored --exact agent_guest_bench
COCOON_AGENT_BIN="$WORK/cocoon-agent" \
COCOON_AGENT_WRAPPER="valgrind --tool=callgrind --demangle=no --callgrind-out-file=$WORK/callgrind.%p --log-file=$WORK/valgrind.%p.log" \
  cargo test -p cocoon-agent --test host_lifecycle -- --ignored --exact idle_workload_for_symbol_ordering
python3 scripts/symbol_order.py "$WORK/cocoon-agent" "$WORK" "$WORK/qemu-in_asm.log" \
  agent/agent/symbol-order.txt
echo "agent-symbol-order: now run ./scripts/build-guest.sh to link the agent with the new list"
