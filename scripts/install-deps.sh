#!/usr/bin/env bash
# Installs, from Debian's archive, everything hull needs to build its guest kernel and to run guests.
# Idempotent: packages already present are skipped by apt.
set -euo pipefail

packages=(
  # guest kernel build
  linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev cpio lz4 xz-utils kmod patch
  # running guests (QEMU backend) and the busybox used by tests and the demo image
  qemu-system-x86 busybox-static
  # hull-agent links libseccomp statically (OCI seccomp profiles → BPF)
  libseccomp-dev
  # building virtiofsd (scripts/install-tools.sh)
  libcap-ng-dev
  # container engine and the baseline runtime
  containerd runc
  # CRI-O (the CRI tests' second engine, scripts/install-engines.sh) runs containers through conmon;
  # skopeo puts the tests' offline images into its storage
  conmon skopeo
  # Podman drives hull as a runc-compatible OCI runtime (`hull create/start/…`, docs/oci-cli.md);
  # it runs containers through conmon too
  podman
  # Docker 20.10 drives hull the same way (its runc shim, `--add-runtime hull=…`); without
  # recommends it takes only tini beside it and keeps this containerd (1.6) as it is (checked with
  # `apt-get -s`: "2 newly installed: docker.io tini"). The tests start their own dockerd and
  # containerd in a test netns; a packaged docker.service, where an init starts one, is not used.
  docker.io
  # containerd end-to-end tests: a terminal for `ctr run -t` (tmux; `script` is in bsdutils)
  tmux
  # CRI end-to-end tests: protoc for the CRI client's bindings (k8s-cri), CNI plugins for pods
  protobuf-compiler containernetworking-plugins iproute2 util-linux
  # CRI tests of pods that manage their own network (NET_ADMIN): the real iptables (legacy and nft
  # backends), nft, brctl and ip, copied with their libraries into a test image
  iptables nftables bridge-utils
  # hull-bench cri: pod ⇄ host TCP throughput
  iperf3
  # the nested-KVM tier (scripts/nested-kvm.sh): unpacking L1's kernel, listing test binaries,
  # L1's CPU time
  python3 time
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "hull: installing from Debian: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "hull: Debian packages already installed"
fi

# The nested-KVM tier's L1 kernel (scripts/nested-kvm.sh): Debian's packaged kernel, unpacked into
# /var/cache/hull/nested, not installed.
"$(dirname "$0")/install-nested-kernel.sh" >/dev/null

# The engines the end-to-end tests run hull under besides containerd 1.6: containerd 1.7 (Debian
# trixie's package, unpacked beside, not installed) and CRI-O 1.26 (../shared/tools/cri-o).
"$(dirname "$0")/install-engines.sh"
