#!/usr/bin/env bash
# Snapshot start in L1 (run inside it by scripts/nested-kvm.sh, never on the host):
#   HULL_SNAP_STEPS="tier bench" (default both):
#   tier:  the tier's "templates: snapshot start" group (shim_template, CI=true);
#   bench: `hull-bench start --runs ${HULL_SNAP_RUNS:-5} --idle-pods ${HULL_SNAP_IDLE:-0}` (restore
#          against boot, interleaved; idle pods' host PSS),
#          its report printed.
# Build first: scripts/nested/build-tier.sh (or scripts/build.sh for the bench alone).
set -uo pipefail
main() {
  cd "$(dirname "$0")/../.."
  export RUST_BACKTRACE=1
  export HULL_KERNEL=$PWD/target/hull/vmlinux HULL_INITRAMFS=$PWD/target/hull/initramfs.img
  export HULL_KERNEL_CONFIG=$PWD/target/hull/kernel.config
  export HULL_JAILER=$PWD/target/hull/bin/hull-jailer HULL_VMM=$PWD/target/hull/bin/hull-vmm
  export HULL_SHIM=$PWD/target/hull/bin/containerd-shim-hull-v2
  local rc=0 steps=" ${HULL_SNAP_STEPS:-tier bench} " t0
  echo "snap: $(nproc) L1 CPUs; $(hull check 2>&1 | grep -m1 'start:')"
  if [[ $steps == *" tier "* ]]; then
    t0=$SECONDS
    local exe
    exe=$(sed -n 's/^shim_template=//p' target/nested/tests.env)
    CI=true HULL_TEST_HYPERVISOR=auto timeout -s KILL 900 nice -n 5 "$exe" --exact --test-threads=1 \
      --nocapture pods_start_from_one_template 2>&1 | tail -n 60 || rc=1
    echo "snap: tier group in $((SECONDS - t0))s"
  fi
  if [[ $steps == *" bench "* ]]; then
    t0=$SECONDS
    nice -n 5 target/hull/bin/hull-bench start --runs "${HULL_SNAP_RUNS:-5}" --idle-pods "${HULL_SNAP_IDLE:-0}" || rc=1
    echo "snap: bench in $((SECONDS - t0))s"
  fi
  return "$rc"
}
main "$@"
