#!/usr/bin/env bash
# Builds the workspace (profile dev: tests, host tools) and the guest image into build/guest.
# The guest's agent is built a second time with the `guest` profile (size-optimised, fat
# LTO, see Cargo.toml), statically linked and non-PIE: it is the binary every pod's guest
# runs, its RSS and its bytes in the initramfs are guest memory. Measured in the TCG guest
# (smaps_rollup Rss, idle): dynamic `guest` build 11.9 MB file, 8.2 MiB RSS, exec round trip
# 48 ms; static non-PIE + LTO 9.4 MB file, 6.3 MiB RSS, 16 ms (no loader or shared libraries
# to map and relocate, and TCG reuses its translations at the same fixed addresses). With the
# functions it runs up to idle laid out first (agent/agent/symbol-order.txt): 2.9 MiB RSS
# (text resident 1.2 of 6.5 MiB, instead of 4.5 MiB spread over the whole text).
# Static glibc still resolves names from /etc/hosts (nss "files" is built in).
# GUEST_OUT (default build/guest) chooses the output directory.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST_OUT="${GUEST_OUT:-build/guest}"
# Binaries AND test targets in one invocation: dependencies are then built once, with the
# feature set `cargo test --workspace` uses too (dev-dependencies unify features), so the
# test run that follows compiles nothing again.
cargo build --workspace --bins --tests
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
mkdir -p build
# The shipped agent: profile `guest` (stripped, size-optimised, hot crates at opt-level 3),
# static and non-PIE. The explicit --target keeps these RUSTFLAGS away from build scripts and
# proc macros (they run on the host and must stay dynamic).
# The functions the agent runs up to idle are laid out first (agent/agent/build.rs; the list
# comes from scripts/agent-symbol-order.sh).
COCOON_AGENT_SYMBOL_ORDER="$PWD/agent/agent/symbol-order.txt" \
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  cargo build --profile guest --target x86_64-unknown-linux-gnu -p cocoon-agent --bin cocoon-agent
mkdir -p "$(dirname "$GUEST_OUT")"
AGENT_BIN="$TARGET_DIR/x86_64-unknown-linux-gnu/guest/cocoon-agent"
ORDER=agent/agent/symbol-order.txt
ordered=$(nm --defined-only "$AGENT_BIN" | awk '{print $NF}' | sort -u | grep -cFxf "$ORDER" || true)
listed=$(wc -l < "$ORDER")
echo "build-guest: $ordered of $listed functions of $ORDER are in the agent"
if [ $((ordered * 10)) -lt $((listed * 9)) ]; then
  echo "build-guest: WARNING: the agent's symbol order is stale; run scripts/agent-symbol-order.sh" >&2
fi
# Cargo keeps the symbols (see [profile.guest]); the initramfs gets a stripped copy.
strip --strip-all -o "$GUEST_OUT.cocoon-agent" "$AGENT_BIN"
# A busybox rootfs baked into the (measured) initrd, for containers before image pull exists.
ROOTFS=build/rootfs-busybox
if [ ! -x "$ROOTFS/bin/busybox" ] || ! cmp -s /bin/busybox "$ROOTFS/bin/busybox"; then
  rm -rf "$ROOTFS" && mkdir -p "$ROOTFS"/{bin,etc,proc,sys,dev,tmp,root}
  cp /bin/busybox "$ROOTFS/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ROOTFS/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOTFS/etc/passwd"
  printf 'root:x:0:\n' > "$ROOTFS/etc/group"
fi
# The CA bundle the guest's HTTPS clients (registry, KBS) trust; measured with the initrd.
CERTS=build/guest-certs
mkdir -p "$CERTS" && cp /etc/ssl/certs/ca-certificates.crt "$CERTS/ca-certificates.crt"
# The binary just built (`cargo run -p cocoon` would resolve features for one package
# and rebuild dependencies).
"$TARGET_DIR/debug/cocoon" guest build --agent "$GUEST_OUT.cocoon-agent" --out "$GUEST_OUT" \
  --extra-tree /opt/cocoon/rootfs/busybox="$ROOTFS" \
  --extra-tree /opt/cocoon/rootfs/pause="$ROOTFS" \
  --extra-tree /etc/ssl/certs="$CERTS"
