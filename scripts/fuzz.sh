#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 20), starting from its committed
# seed corpus (fuzz/corpus/<target>); what libFuzzer finds on the way is kept under target/fuzz-corpus.
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/ (keep it as a regression seed).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1   # cargo-fuzz needs nightly flags; the stable compiler accepts them so
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
sanitizer=${HULL_FUZZ_SANITIZER:-address}
# Targets that need sockets make a directory under TMPDIR: give them one that goes away.
TMPDIR=$(mktemp -d /tmp/hull-fuzz.XXXXXX)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
cargo fuzz build -O -s "$sanitizer"
for t in "${targets[@]}"; do
  work=../target/fuzz-corpus/$t
  mkdir -p "$work"
  echo "hull: fuzzing $t for ${seconds}s" >&2
  cargo fuzz run -O -s "$sanitizer" "$t" "$work" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 |
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)|ERROR|SUMMARY|panicked|deadly' || true
  # `cargo fuzz run` exits non-zero on a crash; with the grep above, check the artifacts instead.
  if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/oom-*" >/dev/null; then
    echo "hull: fuzz target $t crashed: see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
