#!/usr/bin/env bash
# Builds the workspace (one profile: dev) and the guest image into build/guest.
# The agent is the workspace's own dev build (one build of every dependency, which matters on
# a 2-core CI machine); the guest builder adds its ELF loader and glibc libraries to the
# initrd. (A static +crt-static agent needs a second --target build of its dependency tree.)
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
# Debug info is not needed in the guest: strip it (6 MB instead of 21 MB in the initrd).
mkdir -p "$(dirname "$GUEST_OUT")"; strip -o "$GUEST_OUT.cocoon-agent" "$TARGET_DIR/debug/cocoon-agent"
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
