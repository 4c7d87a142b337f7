#!/bin/sh
# Installs Cocoon's containerd shim, runtime-class configurations and guest assets.
#
#   deploy/install.sh [--prefix /opt/cocoon] [--target-dir target/shim] [--guest-dir build/guest]
#
# Layout (the paths the shipped configurations use):
#   $PREFIX/bin/containerd-shim-cocoon-v2     (+ symlink in /usr/local/bin, containerd's PATH)
#   $PREFIX/bin/vhost-device-vsock            (hybrid-vsock backend, from $VHOST_DEVICE_VSOCK or PATH)
#   $PREFIX/share/defaults/configuration-qemu-{coco-dev,tdx,snp}.toml
#   $PREFIX/share/guest/{vmlinux,vmlinuz,initrd.img}
#   $PREFIX/share/containerd-config.toml      (deploy/containerd/config.toml for this prefix)
# Then merge $PREFIX/share/containerd-config.toml into containerd's config, restart containerd and
# apply deploy/runtimeclasses/*.yaml.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/cocoon
TARGET_DIR=$ROOT/target/shim
GUEST_DIR=$ROOT/build/guest
BIN_LINK_DIR=/usr/local/bin
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --target-dir) TARGET_DIR=$2; shift 2 ;;
        --guest-dir) GUEST_DIR=$2; shift 2 ;;
        --bin-link-dir) BIN_LINK_DIR=$2; shift 2 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

need() { [ -e "$1" ] || { echo "install.sh: missing $1 ($2)" >&2; exit 1; }; }
need "$TARGET_DIR/containerd-shim-cocoon-v2" "cargo build --profile shim -p runtime-shim --bins"
need "$GUEST_DIR/vmlinux" "scripts/build-guest.sh"
need "$GUEST_DIR/bzImage" "scripts/build-guest.sh"
INITRD=$(sed -n 's/.*"file": *"\(initrd[^"]*\)".*/\1/p' "$GUEST_DIR/manifest.json" | head -n 1)
need "$GUEST_DIR/$INITRD" "scripts/build-guest.sh"
VSOCK=${VHOST_DEVICE_VSOCK:-$(command -v vhost-device-vsock || true)}

install -d "$PREFIX/bin" "$PREFIX/share/defaults" "$PREFIX/share/guest"
install -m 0755 "$TARGET_DIR/containerd-shim-cocoon-v2" "$PREFIX/bin/"
if [ -n "$VSOCK" ] && [ "$VSOCK" != "$PREFIX/bin/vhost-device-vsock" ]; then
    install -m 0755 "$VSOCK" "$PREFIX/bin/vhost-device-vsock"
fi
# The shipped configurations and the containerd snippet name /opt/cocoon: another
# --prefix is written into the installed copies, so what is installed is self-consistent.
for f in "$ROOT"/runtime/config/configs/configuration-qemu-*.toml; do
    sed "s|/opt/cocoon/|$PREFIX/|g" "$f" > "$PREFIX/share/defaults/$(basename "$f")"
    chmod 0644 "$PREFIX/share/defaults/$(basename "$f")"
done
sed "s|/opt/cocoon/|$PREFIX/|g" "$ROOT/deploy/containerd/config.toml" > "$PREFIX/share/containerd-config.toml"
install -m 0644 "$GUEST_DIR/vmlinux" "$PREFIX/share/guest/vmlinux"
install -m 0644 "$GUEST_DIR/bzImage" "$PREFIX/share/guest/vmlinuz"
install -m 0644 "$GUEST_DIR/$INITRD" "$PREFIX/share/guest/initrd.img"
install -d "$BIN_LINK_DIR"
ln -sf "$PREFIX/bin/containerd-shim-cocoon-v2" "$BIN_LINK_DIR/containerd-shim-cocoon-v2"
echo "installed Cocoon under $PREFIX; shim linked in $BIN_LINK_DIR"
echo "next: merge $PREFIX/share/containerd-config.toml into containerd's config, restart containerd,"
echo "      kubectl apply -f deploy/runtimeclasses/ and label the nodes that have Cocoon:"
echo "      kubectl label node NODE katacontainers.io/kata-runtime=true"
