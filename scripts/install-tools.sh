#!/usr/bin/env bash
# Installs the pinned tools hull runs beside the VMM that Debian does not package, built from
# crates.io into /usr/local/bin. A tool already at its pinned version is left alone.
set -euo pipefail

# name version
tools=(
  "vhost-device-vsock 0.3.0"   # vsock for the QEMU backend (vhost-user), see docs/vsock.md
  "virtiofsd 1.14.0"           # virtio-fs: container rootfs and volumes, see docs/virtio-fs.md
  "cargo-fuzz 0.13.2"          # the fuzz targets in fuzz/ (scripts/fuzz.sh; a short run is part of the tests)
)

for entry in "${tools[@]}"; do
  read -r name version <<<"$entry"
  have=$("/usr/local/bin/$name" --version 2>/dev/null | awk '{print $2}' || true)
  if [[ $have == "$version" ]]; then
    echo "hull: $name $version already installed"
    continue
  fi
  echo "hull: installing $name $version from crates.io (a few minutes)"
  cargo install --locked --quiet --root /usr/local "$name" --version "$version"
done
