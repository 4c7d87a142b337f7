#!/usr/bin/env bash
# Debian 13 (trixie) skopeo, whose ocicrypt supports key providers (Debian 12's skopeo 1.9.3
# links ocicrypt 1.0.3, which answers "Provided protocol not recognized"). It is unpacked into
# /opt/skopeo-trixie with its own glibc and run through trixie's loader; the system's apt
# sources and packages are left untouched. Used by `cocoon image keyprovider`'s interop test.
set -euo pipefail
DEST=/opt/skopeo-trixie
if [ -x "$DEST/skopeo" ] && "$DEST/skopeo" --version >/dev/null 2>&1; then
  exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/lists/partial" "$T/cache/archives/partial" "$T/debs" "$T/root"
# The same Debian mirror the system uses (deb822 or one-line sources), suite trixie.
MIRROR=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$MIRROR" ]; then
  MIRROR=$(awk '/^deb / && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^http/) {print $i; exit}}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" > "$T/sources.list"
APT=(-o "Dir::Etc::sourcelist=$T/sources.list" -o Dir::Etc::sourceparts=/nonexistent
     -o "Dir::State::lists=$T/lists" -o "Dir::Cache=$T/cache" -o APT::Sandbox::User=root)
apt-get "${APT[@]}" update -qq
(cd "$T/debs" && apt-get "${APT[@]}" download skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)
for d in "$T"/debs/*.deb; do dpkg-deb -x "$d" "$T/root"; done
mkdir -p "$DEST" && rm -rf "$DEST/root" && mv "$T/root" "$DEST/root"
cat > "$DEST/skopeo" <<'WRAP'
#!/bin/sh
R=/opt/skopeo-trixie/root
exec "$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$R/usr/lib/x86_64-linux-gnu" "$R/usr/bin/skopeo" "$@"
WRAP
chmod +x "$DEST/skopeo"
"$DEST/skopeo" --version
