#!/usr/bin/env bash
# hull bench on real KVM: run inside L1 by scripts/nested-bench.sh (never on the host).
#   1. `hull-bench vmm`: hull-vmm's own test guests, and production boots to the agent's ready line,
#      hull-vmm against QEMU -accel kvm, interleaved, with each VM's KVM exits by reason;
#   2. `hull-bench --quick --only start,memory`: `ctr run --rm … true` and idle-pod memory, hull on
#      hull-vmm and on QEMU+KVM against runc, in one run;
#   3. with HULL_NESTED_BENCH_SUITES naming `start`: `hull-bench start` (snapshot start against boot,
#      and HULL_NESTED_BENCH_PODS (10) idle pods held at once, restored against booted).
# L1's writes land in its tmpfs, so the results come back on stdout: a gzip'd tar in base64 between
# two marker lines, which scripts/nested-bench.sh unpacks on the host.
set -uo pipefail
# One function, read in full before it runs: the file may change on the host while L1 runs.
main() {
  cd "$(dirname "$0")/../.."
  local out bench rc=0
  out=$(mktemp -d /tmp/hull-bench.XXXXXX)
  bench=$PWD/target/hull/bin/hull-bench
  export HULL_KERNEL=$PWD/target/hull/vmlinuz HULL_INITRAMFS=$PWD/target/hull/initramfs.img
  export HULL_KERNEL_CONFIG=$PWD/target/hull/kernel.config
  echo "bench: $(nproc) L1 CPUs; $(hull check 2>&1 | grep -m1 'backend:')"
  # ${HULL_NESTED_BENCH_SUITES:-vmm compare}: any of vmm, compare, start.
  if [[ " ${HULL_NESTED_BENCH_SUITES:-vmm compare} " == *" vmm "* ]]; then
    "$bench" vmm --runs "${HULL_NESTED_BENCH_RUNS:-5}" --out "$out/vmm" || rc=1
  fi
  if [[ " ${HULL_NESTED_BENCH_SUITES:-vmm compare} " == *" compare "* ]]; then
    "$bench" --out "$out/compare" --quick --only start,memory \
      --runs "${HULL_NESTED_BENCH_STARTS:-10}" || rc=1
  fi
  if [[ " ${HULL_NESTED_BENCH_SUITES:-vmm compare} " == *" start "* ]]; then
    "$bench" start --runs "${HULL_NESTED_BENCH_RUNS:-5}" --pods "${HULL_NESTED_BENCH_PODS:-10}" \
      --out "$out/start" || rc=1
  fi
  echo '@@hull-bench-tar@@'
  tar -C "$out" -cz . | base64 -w 0
  echo
  echo '@@hull-bench-end@@'
  return "$rc"
}
main "$@"
