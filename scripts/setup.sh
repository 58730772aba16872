#!/usr/bin/env bash
# hull set-up: installs what is needed from Debian, builds everything (guest kernel included),
# installs the binaries under /usr/local/bin and the guest images under /usr/local/share/hull,
# boots the guest once, printing its ready line, then registers hull with containerd and runs a
# container in a microVM (scripts/setup-containerd.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "hull: the set-up installs system files; run it as root" >&2; exit 1; }

scripts/install-deps.sh
scripts/install-tools.sh
scripts/build.sh

echo "hull: installing" >&2
install -d /usr/local/bin /usr/local/share/hull
install -m 0755 target/hull/bin/hull target/hull/bin/containerd-shim-hull-v2 \
  target/hull/bin/hull-jailer target/hull/bin/hull-vmm target/hull/bin/hull-bench target/hull/bin/hull-bench-probe /usr/local/bin/
install -m 0644 target/hull/vmlinuz target/hull/initramfs.img /usr/local/share/hull/
install -m 0644 target/hull/kernel.config /usr/local/share/hull/kernel.config

echo "hull: booting the installed guest once" >&2
env -u HULL_KERNEL -u HULL_INITRAMFS hull boot --vcpus 1 --memory 256
env -u HULL_KERNEL -u HULL_INITRAMFS scripts/setup-containerd.sh
hull check
