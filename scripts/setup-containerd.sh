#!/usr/bin/env bash
# Registers hull with the host's containerd and runs a container in a microVM:
#   - io.containerd.hull.v2 as CRI runtime handler `hull` in /etc/containerd/config.toml (and
#     restrict_oom_score_adj = true, without which CRI pods fail on hosts that cannot lower
#     oom_score_adj), a backup of the file first;
#   - containerd started if it is not running (no systemd needed);
#   - a busybox image built offline from busybox-static, imported as hull.local/busybox:latest;
#   - `ctr run --rm --runtime io.containerd.hull.v2 … uname -a`, printing the guest's kernel
#     (HULL_SETUP_DEMO=0 leaves it out).
# Expects hull installed (scripts/setup.sh does that first).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
socket=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
image=hull.local/busybox:latest
cri='[plugins."io.containerd.grpc.v1.cri"]'
changed=0

mkdir -p "$(dirname "$config")"
[[ -s $config ]] || { echo 'version = 2' >"$config"; changed=1; }
if ! grep -q 'io.containerd.hull.v2' "$config"; then
  cp "$config" "$config.before-hull"
  if ! grep -qF "$cri" "$config"; then
    printf '\n%s\n' "$cri" >>"$config"
  fi
  if grep -q 'restrict_oom_score_adj' "$config"; then
    sed -i 's/restrict_oom_score_adj *= *false/restrict_oom_score_adj = true/' "$config"
  else
    # Right under the CRI plugin's table header.
    sed -i "/^[[:space:]]*\\[plugins.\"io.containerd.grpc.v1.cri\"\\][[:space:]]*$/a\\    restrict_oom_score_adj = true" "$config"
  fi
  # A runtimes table replaces CRI's built-in one: keep runc, its default handler.
  if ! grep -qF 'containerd.runtimes.runc]' "$config"; then
    cat >>"$config" <<'TOML'

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
TOML
  fi
  cat >>"$config" <<'TOML'

# hull: VM-isolated containers (`ctr run --runtime io.containerd.hull.v2`, CRI handler "hull",
# Kubernetes RuntimeClass handler "hull"). Pod annotations io.hull.* (VM sizing, where
# /etc/hull/config.toml allows them) reach the shim.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull]
  runtime_type = "io.containerd.hull.v2"
  pod_annotations = ["io.hull.*"]
  container_annotations = ["io.hull.*"]
TOML
  changed=1
  echo "hull: registered io.containerd.hull.v2 in $config (backup: $config.before-hull)" >&2
fi

# Registrations made before hull read pod annotations: add them.
if grep -qF 'containerd.runtimes.hull]' "$config" && ! grep -q 'pod_annotations = \["io.hull' "$config"; then
  cp "$config" "$config.before-hull-annotations"
  sed -i '/containerd\.runtimes\.hull\]/a\  pod_annotations = ["io.hull.*"]\n  container_annotations = ["io.hull.*"]' "$config"
  changed=1
  echo "hull: added pod_annotations for the hull handler in $config" >&2
fi

if ctr --address "$socket" version >/dev/null 2>&1; then
  if ((changed)); then
    echo "hull: containerd is running with the old configuration; restart it for CRI to see the 'hull' handler (ctr --runtime works now)" >&2
  fi
else
  echo "hull: starting containerd (log: /var/log/containerd-hull.log)" >&2
  setsid containerd --config "$config" </dev/null >>/var/log/containerd-hull.log 2>&1 &
  for _ in $(seq 1 100); do
    ctr --address "$socket" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  ctr --address "$socket" version >/dev/null || { echo "hull: containerd did not start; see /var/log/containerd-hull.log" >&2; exit 1; }
fi

if [[ -n ${HULL_BUSYBOX_IMAGE:-} ]]; then
  tarball=$HULL_BUSYBOX_IMAGE  # built already by scripts/busybox-image.sh
else
  tarball=$(mktemp --suffix=.tar)
  trap 'rm -f "$tarball"' EXIT
  scripts/busybox-image.sh "$tarball" "$image"
fi
ctr --address "$socket" images import "$tarball" >/dev/null
[[ ${HULL_SETUP_DEMO:-1} == 1 ]] || exit 0
echo "hull: running a container in a microVM: ctr run --rm --runtime io.containerd.hull.v2 $image hull-demo uname -a" >&2
ctr --address "$socket" run --rm --runtime io.containerd.hull.v2 "$image" "hull-demo-$$" uname -a
