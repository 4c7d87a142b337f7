#!/usr/bin/env bash
# Installs everything Cocoon needs on a Debian 12 machine and builds the workspace and the
# guest image. Idempotent: re-running only does what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  qemu-system-x86 ovmf            # the VMM and firmware
  containerd runc                 # real containerd for shim tests
  docker-registry skopeo umoci    # a loopback OCI registry and image tools (incl. encryption)
  busybox-static                  # test rootfs contents and the guest-side relay
  kmod cpio lz4 jq strace openssl # inspection tools used by tests
  gcc libc6-dev binutils          # tests compile a static C /init; strip
  python3-venv ca-certificates    # the sev-snp-measure oracle
  osslsigncode                    # Authenticode digest oracle (TDX RTMR kernel measurement)
  protobuf-compiler               # protoc for the CRI client (k8s-cri) in the kubelet-path test
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Hybrid vsock backend (used when /dev/vhost-vsock is absent).
if [ ! -x /opt/cocoon/bin/vhost-device-vsock ]; then
  echo "setup: cargo install vhost-device-vsock 0.3.0"
  cargo install vhost-device-vsock --version 0.3.0 --root /opt/cocoon
fi

# Independent implementations used as test oracles: sev-snp-measure (SNP launch digests)
# and jwcrypto (JWE interop of the KBS client/server).
VENV=/opt/cocoon-tools/venv
if [ ! -x "$VENV/bin/sev-snp-measure" ] || ! "$VENV/bin/python" -c "import jwcrypto" 2>/dev/null; then
  echo "setup: installing sev-snp-measure and jwcrypto into $VENV"
  mkdir -p /opt/cocoon-tools
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "sev-snp-measure==0.0.13" "jwcrypto==1.5.6"
fi

# A published TDVF with a published MRTD: the golden vector of the MRTD test
# (measured-boot/tests/data/tdx_mrtd_golden.json). Ubuntu 25.04's ovmf package, pinned by
# the sha256 of the .deb and of the firmware. Optional: without it the test checks only the
# record and says so.
./scripts/fetch-golden-tdvf.sh || echo "setup: WARNING: golden TDVF not installed (the MRTD golden test will only check its record)"

# A skopeo whose ocicrypt has key providers (interop test of `cocoon image keyprovider`).
./scripts/install-skopeo-keyprovider.sh

./scripts/build-guest.sh
