#!/usr/bin/env bash
# hull set-up: installs what is needed from Debian, builds everything (guest kernel included),
# installs the binaries under /usr/local/bin and the guest images under /usr/local/share/hull,
# boots the guest once, printing its ready line, then registers hull with containerd and runs a
# container in a microVM (scripts/setup-containerd.sh), and registers `hull` with Podman and Docker
# where they are installed (scripts/setup-engines.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "hull: the set-up installs system files; run it as root" >&2; exit 1; }

scripts/install-deps.sh
scripts/install-tools.sh
scripts/build.sh

echo "hull: installing" >&2
scripts/install-hull.sh

echo "hull: booting the installed guest once" >&2
env -u HULL_KERNEL -u HULL_INITRAMFS hull boot --vcpus 1 --memory 256
env -u HULL_KERNEL -u HULL_INITRAMFS scripts/setup-containerd.sh
scripts/setup-engines.sh
hull check
