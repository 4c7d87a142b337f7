#!/usr/bin/env bash
# Installs the TDVF image of the MRTD golden vector (measured-boot/tests/data/tdx_mrtd_golden.json)
# into /opt/cocoon/share/firmware: Ubuntu 25.04's OVMF.fd from the package
# ovmf_2025.02-3ubuntu2_all.deb, whose MRTD is published (virtee/tdx-measure fixtures; the
# MRTD of real TDX attestations booted from it). Both the .deb and the firmware are pinned by
# sha256; nothing unverified is installed. Idempotent.
set -euo pipefail
DEST_DIR=/opt/cocoon/share/firmware
DEST="$DEST_DIR/OVMF-ubuntu-2025.02-3ubuntu2.fd"
URL=http://archive.ubuntu.com/ubuntu/pool/main/e/edk2/ovmf_2025.02-3ubuntu2_all.deb
DEB_SHA256=7b8e6436df7cb735ddfc3d4f0bcf6a7dbd6613a6206dd4aec0bc981224e8dd49
FD_SHA256=9e807cb2cd4313406a3aa4becc0836671a5c64ca7bdc08a45e15260184b446bf

if [ -f "$DEST" ] && echo "$FD_SHA256  $DEST" | sha256sum -c --quiet - 2>/dev/null; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-golden-tdvf: downloading $URL"
curl -fsS --retry 3 --max-time 120 -o "$tmp/ovmf.deb" "$URL"
echo "$DEB_SHA256  $tmp/ovmf.deb" | sha256sum -c --quiet - || {
  echo "fetch-golden-tdvf: $URL does not have the pinned sha256 $DEB_SHA256" >&2
  exit 1
}
dpkg-deb --fsys-tarfile "$tmp/ovmf.deb" | tar -x -C "$tmp" ./usr/share/ovmf/OVMF.fd
echo "$FD_SHA256  $tmp/usr/share/ovmf/OVMF.fd" | sha256sum -c --quiet - || {
  echo "fetch-golden-tdvf: OVMF.fd in the package does not have the pinned sha256 $FD_SHA256" >&2
  exit 1
}
mkdir -p "$DEST_DIR"
install -m 0644 "$tmp/usr/share/ovmf/OVMF.fd" "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
echo "fetch-golden-tdvf: installed $DEST"
