#!/usr/bin/env bash
# Installs this checkout's build (target/hull/, from scripts/build.sh) as the set-up does: the
# binaries under /usr/local/bin, the guest images under /usr/local/share/hull.
set -euo pipefail
cd "$(dirname "$0")/.."
install -d /usr/local/bin /usr/local/share/hull
install -m 0755 target/hull/bin/hull target/hull/bin/containerd-shim-hull-v2 \
  target/hull/bin/hull-jailer target/hull/bin/hull-vmm target/hull/bin/hull-bench target/hull/bin/hull-bench-probe /usr/local/bin/
# vmlinux (PVH entry) is the kernel pods boot; vmlinuz (bzImage) stays as the fallback.
install -m 0644 target/hull/vmlinux target/hull/vmlinuz target/hull/initramfs.img /usr/local/share/hull/
install -m 0644 target/hull/kernel.config /usr/local/share/hull/kernel.config
