#!/usr/bin/env bash
# hull's whole test suite: formatting, lints, unit tests, and the VM tests against a fresh build
# of the guest kernel and initramfs. Installs and builds what it needs first (cached).
# Each stage prints its duration; a summary of all of them ends the run.
set -euo pipefail
cd "$(dirname "$0")/.."

t_start=$(date +%s)
stages=()
# stage NAME CMD…: runs CMD, prints how long it took, and remembers it for the summary.
stage() {
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s)
  echo "hull: stage '$name' starts at $(date -u +%T)" >&2
  "$@" || rc=$?
  local dt=$(($(date +%s) - t0))
  stages+=("$(printf '%-28s %5ss%s' "$name" "$dt" "$( ((rc)) && echo "  FAILED ($rc)")")")
  echo "hull: stage '$name' took ${dt}s (rc $rc)" >&2
  return "$rc"
}
summary() {
  local rc=$?
  echo "hull: stage durations" >&2
  for s in "${stages[@]}"; do echo "  $s" >&2; done
  echo "hull: total $(($(date +%s) - t_start))s, rc $rc" >&2
  disk_report
}
# The disk is shared and sometimes nearly full; a linker that runs out of it dies with SIGBUS,
# which reads like a toolchain bug. Say how much room there was, before and after.
disk_report() {
  echo "hull: disk: $(df -h --output=avail,size . | tail -1 | awk '{print $1 " free of " $2}'), target/ $(du -sh target 2>/dev/null | cut -f1)" >&2
}
disk_report
trap summary EXIT

stage install-deps scripts/install-deps.sh
stage install-tools scripts/install-tools.sh
stage build scripts/build.sh
# hull-vmm's test-only kernel variant (cached; ~8 min cold)
stage test-kernel bash -c 'guest-kernel/build-test-kernel.sh >/dev/null'

stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --locked --workspace --all-targets -- -D warnings

export HULL_KERNEL=$PWD/target/hull/vmlinux
export HULL_INITRAMFS=$PWD/target/hull/initramfs.img
export HULL_KERNEL_CONFIG=$PWD/target/hull/kernel.config
# --no-fail-fast: one failing test binary does not hide the others' results.
stage cargo-test cargo test --locked --workspace --no-fail-fast "$@"

# The nested-KVM tier: hull-vmm and QEMU+KVM run pods on real (emulated AMD SVM) KVM inside an L1
# guest under TCG (scripts/nested-kvm.sh, docs/nested-kvm.md): the path users with VT-x/AMD-V get.
# Budget: ~8 min on a quiet 2-core machine (~13 min at load 7-11); L1 is killed after
# HULL_NESTED_TIMEOUT seconds. Always run under CI; a local run may leave it out with HULL_NESTED=0.
if [[ ${CI:-} == true || ${HULL_NESTED:-1} != 0 ]]; then
  stage nested-kvm env HULL_NESTED_TIMEOUT="${HULL_NESTED_TIMEOUT:-1500}" scripts/nested-kvm.sh
fi

# Every fuzz target for a bounded time from its committed seed corpus (no sanitizer here: the
# targets are safe Rust, and the build stays short; scripts/fuzz.sh alone runs them under ASan).
stage fuzz env HULL_FUZZ_SANITIZER="${HULL_FUZZ_SANITIZER:-none}" scripts/fuzz.sh "${HULL_FUZZ_SECONDS:-10}"
