#!/usr/bin/env bash
# Snapshot start in L1 (run inside it by scripts/nested-kvm.sh, never on the host):
#   HULL_SNAP_STEPS="tier bench idle" (default "tier bench"):
#   tier:  the tier's "templates: snapshot start" group (shim_template, CI=true);
#   bench: `hull-bench start --runs ${HULL_SNAP_RUNS:-5}` (restore against boot, interleaved), its
#          report printed;
#   idle:  `hull-bench start --runs 0 --pods ${HULL_SNAP_IDLE:-10}` (host PSS of idle restored
#          and booted pods through containerd), killed after 240 s with the blocked tasks shown.
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
    nice -n 5 target/hull/bin/hull-bench start --runs "${HULL_SNAP_RUNS:-5}" || rc=1
    echo "snap: bench in $((SECONDS - t0))s"
  fi
  if [[ $steps == *" idle "* ]]; then
    t0=$SECONDS
    nice -n 5 target/hull/bin/hull-bench start --runs 0 --pods "${HULL_SNAP_IDLE:-10}" &
    local bench=$! waited=0
    while kill -0 "$bench" 2>/dev/null && ((waited < 240)); do sleep 5; waited=$((waited + 5)); done
    if kill -0 "$bench" 2>/dev/null; then
      echo "snap: idle pods did not finish within 240 s; blocked tasks:"
      ps -eo pid,stat,etime,wchan:32,args | awk '$2 ~ /D/' | cut -c1-200
      for pid in $(ps -eo pid,stat | awk '$2 ~ /D/ {print $1}'); do echo "-- $pid"; cat "/proc/$pid/stack" 2>/dev/null; done
      ps -eo pid,ppid,stat,rss,args | grep -E 'hull-vmm|virtiofsd|hull-jailer' | grep -v grep | cut -c1-200
      free -m
      kill "$bench"; rc=1
    else
      wait "$bench" || rc=1
    fi
    echo "snap: idle pods in $((SECONDS - t0))s"
  fi
  return "$rc"
}
main "$@"
