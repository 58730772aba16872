#!/usr/bin/env bash
# Builds, on the host, what the nested-KVM tier runs inside L1 (scripts/nested/tier.sh): hull's
# images and binaries (scripts/build.sh) and the test binaries the tier picks, and writes their
# paths to target/nested/tests.env (`<test target>=<executable>` lines).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build.sh
mkdir -p target/nested
echo "hull: building the nested tier's test binaries" >&2
cargo test --locked --no-run --message-format=json \
  -p hull-vmm --test linux_boot -p hull-runtime --test cli_boot \
  -p hull-tests --test agent_basics --test agent_stdio --test virtiofs --test network --test jail \
  --test shim_run --test shim_task --test shim_faults --test cri_pod --test shim_template |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"] + "=" + m["executable"])
' >target/nested/tests.env
echo "hull: $(wc -l <target/nested/tests.env) test binaries in target/nested/tests.env" >&2
