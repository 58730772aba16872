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
  if ! leftovers && ((rc == 0)); then
    exit 1
  fi
}
# leftovers: the VMM-side processes (QEMU named hull, hull-vmm, hull-jailer, virtiofsd, the
# shim) that started during this run and still run after it: a test leaked them. Fails on any
# orphan (parent PID 1: nothing will ever stop it; a jailed QEMU was seen so twice after whole
# runs), and under CI=true on any at all (a fresh machine runs nothing else); elsewhere another
# engineer's run may own a live one, so it is only listed. The start times say which test.
leftovers() {
  local run_secs=$(($(date +%s) - t_start)) pid ppid etimes argv0 args bad=0 n=0
  while read -r pid ppid etimes argv0 args; do
    ((etimes <= run_secs)) || continue
    case "$(basename "$argv0")" in
      hull-vmm | hull-jailer | virtiofsd | containerd-shim-hull-v2) ;;
      qemu-system-x86_64) [[ " $args " == *" -name hull "* ]] || continue ;;
      *) continue ;;
    esac
    n=$((n + 1))
    if ((ppid == 1)) || [[ ${CI:-} == true ]]; then bad=1; fi
    echo "hull: LEFT RUNNING pid $pid (parent $ppid, started $(ps -o lstart= -p "$pid")): $argv0 ${args:0:200}" >&2
  done < <(ps -eo pid=,ppid=,etimes=,args=)
  ((n == 0)) && echo "hull: no VMM, jailer, virtiofsd or shim of this run left running" >&2
  ((bad == 0))
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
# Budget: ~9 min on a quiet 2-core machine with its one L1 vCPU (~17 min at load 4-12); L1 is killed after
# HULL_NESTED_TIMEOUT seconds. Always run under CI; a local run may leave it out with HULL_NESTED=0.
if [[ ${CI:-} == true || ${HULL_NESTED:-1} != 0 ]]; then
  stage nested-kvm env HULL_NESTED_TIMEOUT="${HULL_NESTED_TIMEOUT:-1200}" scripts/nested-kvm.sh
fi

# Every fuzz target for a bounded time from its committed seed corpus (no sanitizer here: the
# targets are safe Rust, and the build stays short; scripts/fuzz.sh alone runs them under ASan).
stage fuzz env HULL_FUZZ_SANITIZER="${HULL_FUZZ_SANITIZER:-none}" scripts/fuzz.sh "${HULL_FUZZ_SECONDS:-10}"
