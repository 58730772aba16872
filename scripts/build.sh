#!/usr/bin/env bash
# Builds everything hull is made of into target/hull/:
#   bin/hull, bin/containerd-shim-hull-v2, bin/hull-jailer, bin/hull-vmm, bin/hull-bench,
#   bin/hull-initramfs
#                                                  host tools (release)
#   bin/containerd-shim-hull-v2                    the containerd runtime io.containerd.hull.v2
#   bin/hull-agent                                 the guest's /init (static, profile "agent")
#   bin/hull-fs-probe, bin/hull-bench-probe        static probes copied into test/benchmark containers
#   vmlinuz, vmlinux, kernel.config                the guest kernel (cached, see guest-kernel/)
#   initramfs.img                                  hull-agent packed as /init
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/hull
mkdir -p "$out/bin"
t0=$(date +%s)

echo "hull: building the guest kernel" >&2
kdir=$(guest-kernel/build-kernel.sh)
cp "$kdir/bzImage" "$out/vmlinuz"
cp "$kdir/vmlinux" "$out/vmlinux"
cp "$kdir/config" "$out/kernel.config"

echo "hull: building host binaries" >&2
cargo build --release --locked -p hull-runtime -p hull-vmm -p hull-bench -p hull-guest-image
for b in hull containerd-shim-hull-v2 hull-jailer hull-vmm hull-bench hull-initramfs; do cp "target/release/$b" "$out/bin/"; done

echo "hull: building the static agent" >&2
# +crt-static only for the target (with --target, build scripts and proc macros stay dynamic).
# libseccomp (OCI seccomp profiles) is linked statically from Debian's libseccomp.a.
RUSTFLAGS='-C target-feature=+crt-static' \
  LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
  cargo build --locked --profile agent \
  --target x86_64-unknown-linux-gnu -p hull-agent
cp target/x86_64-unknown-linux-gnu/agent/hull-agent "$out/bin/hull-agent"

echo "hull: building the static test and benchmark probes" >&2
RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --profile agent \
  --target x86_64-unknown-linux-gnu -p hull-fs-probe -p hull-bench-probe
cp target/x86_64-unknown-linux-gnu/agent/hull-fs-probe "$out/bin/hull-fs-probe"
cp target/x86_64-unknown-linux-gnu/agent/hull-bench-probe "$out/bin/hull-bench-probe"

"$out/bin/hull-initramfs" --agent "$out/bin/hull-agent" --output "$out/initramfs.img"
echo "hull: built in $(( $(date +%s) - t0 ))s into $out" >&2
