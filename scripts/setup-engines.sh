#!/usr/bin/env bash
# Registers hull (the runc command line of `hull`, docs/oci-cli.md) with the OCI engines installed:
#   - Podman: `hull = ["<hull>"]` in /etc/containers/containers.conf's [engine.runtimes]
#     (`podman --runtime hull run …`);
#   - Docker: `"runtimes": {"hull": {"path": "<hull>"}}` in /etc/docker/daemon.json
#     (`docker run --runtime hull …`; a running dockerd reads it on SIGHUP).
# Each file is merged, never replaced: other settings stay as they are, an entry for hull already
# there is left alone, and a file that does not parse is refused untouched (exit 1).
# Idempotent. HULL_ETC (default /etc) moves both files, for tests; HULL_OCI_BIN names the binary.
set -euo pipefail
etc=${HULL_ETC:-/etc}
hull=${HULL_OCI_BIN:-/usr/local/bin/hull}
status=0

if command -v podman >/dev/null 2>&1 || [[ -n ${HULL_ETC:-} ]]; then
  conf=$etc/containers/containers.conf
  mkdir -p "$(dirname "$conf")"
  python3 - "$conf" "$hull" <<'EOF' || status=1
import json, os, re, sys, tomllib
path, hull = sys.argv[1], sys.argv[2]
text = open(path).read() if os.path.exists(path) else ""
try:
    doc = tomllib.loads(text)
except tomllib.TOMLDecodeError as e:
    sys.exit(f"hull: {path} is not valid TOML ({e}); left untouched, add hull by hand")
runtimes = doc.get("engine", {}).get("runtimes", {})
if "hull" in runtimes:
    print(f"hull: Podman already has a runtime named hull in {path}: {runtimes['hull']}")
    sys.exit(0)
line = f"hull = {json.dumps([hull])}\n"
header = re.search(r"(?m)^[ \t]*\[[ \t]*engine[ \t]*\.[ \t]*runtimes[ \t]*\][^\n]*\n?", text)
if header:
    end = header.end()
    new = text[:end] + ("" if text[:end].endswith("\n") else "\n") + line + text[end:]
else:
    new = text + ("" if text == "" or text.endswith("\n") else "\n") + "\n[engine.runtimes]\n" + line
if tomllib.loads(new).get("engine", {}).get("runtimes", {}).get("hull") != [hull]:
    sys.exit(f"hull: cannot add hull to {path} safely; left untouched, add it by hand")
tmp = path + ".hull-tmp"
open(tmp, "w").write(new)
os.chmod(tmp, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644)
os.replace(tmp, path)
print(f"hull: registered with Podman in {path} (podman --runtime hull)")
EOF
fi

if command -v dockerd >/dev/null 2>&1 || [[ -n ${HULL_ETC:-} ]]; then
  conf=$etc/docker/daemon.json
  mkdir -p "$(dirname "$conf")"
  python3 - "$conf" "$hull" <<'EOF' || status=1
import json, os, sys
path, hull = sys.argv[1], sys.argv[2]
text = open(path).read() if os.path.exists(path) else ""
try:
    doc = json.loads(text) if text.strip() else {}
except json.JSONDecodeError as e:
    sys.exit(f"hull: {path} is not valid JSON ({e}); left untouched, add hull by hand")
if not isinstance(doc, dict) or not isinstance(doc.get("runtimes", {}), dict):
    sys.exit(f"hull: {path} has no object for runtimes; left untouched, add hull by hand")
runtimes = doc.setdefault("runtimes", {})
if "hull" in runtimes:
    print(f"hull: Docker already has a runtime named hull in {path}: {runtimes['hull']}")
    sys.exit(0)
runtimes["hull"] = {"path": hull}
tmp = path + ".hull-tmp"
open(tmp, "w").write(json.dumps(doc, indent=2) + "\n")
os.chmod(tmp, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644)
os.replace(tmp, path)
print(f"hull: registered with Docker in {path} (docker run --runtime hull; SIGHUP a running dockerd)")
EOF
fi
exit $status
