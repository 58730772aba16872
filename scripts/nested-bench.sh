#!/usr/bin/env bash
# hull bench on real KVM, on a host whose own /dev/kvm cannot run Linux: runs
# scripts/nested/bench.sh inside the nested-KVM tier's L1 (scripts/nested-kvm.sh) and unpacks its
# results into DIR (default bench/results/<date>-nested-kvm). Build first (scripts/build.sh).
# Under double emulation absolute times mean little: read the ratios between hull-vmm, QEMU+KVM
# and runc measured in the same run, the exit counts and the memory.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-bench/results/$(date +%F)-nested-kvm}
log=$(mktemp /tmp/hull-nested-bench.XXXXXX)
trap 'rm -f "$log"' EXIT
set +e
scripts/nested-kvm.sh scripts/nested/bench.sh | tee "$log" | sed '/^@@hull-bench-tar@@$/,/^@@hull-bench-end@@$/d'
rc=${PIPESTATUS[0]}
set -e
mkdir -p "$dest"
if sed -n '/^@@hull-bench-tar@@$/,/^@@hull-bench-end@@$/p' "$log" | sed '1d;$d' | base64 -d | tar -C "$dest" -xz; then
  echo "hull: results in $dest" >&2
else
  echo "hull: no results came back from L1" >&2
  rc=${rc/#0/1}
fi
exit "$rc"
