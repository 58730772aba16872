#!/usr/bin/env bash
# hull's whole test suite: formatting, lints, unit tests, and the VM tests against a fresh build
# of the guest kernel and initramfs. Installs and builds what it needs first (cached).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/install-tools.sh
scripts/build.sh
guest-kernel/build-test-kernel.sh >/dev/null  # hull-vmm's test-only kernel variant (cached; ~8 min cold)

echo "hull: cargo fmt --check" >&2
cargo fmt --all -- --check
echo "hull: cargo clippy -D warnings" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings

export HULL_KERNEL=$PWD/target/hull/vmlinuz
export HULL_INITRAMFS=$PWD/target/hull/initramfs.img
export HULL_KERNEL_CONFIG=$PWD/target/hull/kernel.config
echo "hull: cargo test" >&2
cargo test --locked --workspace "$@"

# The nested-KVM tier: hull-vmm and QEMU+KVM run pods on real (emulated AMD SVM) KVM inside an L1
# guest under TCG (scripts/nested-kvm.sh). Budget: ~12 min on a 2-core machine; L1 is killed after
# HULL_NESTED_TIMEOUT seconds. HULL_NESTED=0 leaves it out (not under CI).
if [[ ${HULL_NESTED:-1} == 1 ]] || [[ ${CI:-} == true ]]; then
  echo "hull: nested-KVM tier" >&2
  t0=$SECONDS
  HULL_NESTED_TIMEOUT=${HULL_NESTED_TIMEOUT:-1200} scripts/nested-kvm.sh
  echo "hull: nested-KVM tier took $((SECONDS - t0))s" >&2
fi

# Every fuzz target for a bounded time from its committed seed corpus (no sanitizer here: the
# targets are safe Rust, and the build stays short; scripts/fuzz.sh alone runs them under ASan).
echo "hull: fuzz targets, ${HULL_FUZZ_SECONDS:-10}s each" >&2
HULL_FUZZ_SANITIZER=${HULL_FUZZ_SANITIZER:-none} scripts/fuzz.sh "${HULL_FUZZ_SECONDS:-10}"
