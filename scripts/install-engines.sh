#!/usr/bin/env bash
# Installs the second and third container engines the end-to-end tests drive hull through, beside
# Debian bookworm's containerd 1.6 (which stays the host's engine), under $HULL_ENGINES_DIR
# (default /usr/local/lib/hull/engines), nothing on PATH:
#   - containerd 1.7: Debian 13 (trixie)'s package, fetched with `apt-get download` through a
#     private apt configuration (the host's sources stay bookworm-only) and unpacked with
#     `dpkg-deb -x` into containerd-1.7/ (bin/containerd, bin/ctr, bin/containerd-shim-runc-v2);
#     it needs only libc6 and runc, both there.
#   - CRI-O 1.26.4: not packaged by Debian; the binaries built offline from its source (`crio`,
#     `pinns`) are copied from the shared tools directory beside the checkout
#     (../shared/tools/cri-o, or HULL_CRIO_SOURCE) into cri-o/. It runs with Debian's `conmon`
#     (scripts/install-deps.sh installs it).
# Cached and idempotent: an engine already at its version is left alone, without network.
# Tests find them in the same place (tests/src/engines.rs); `hull check` reports them.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${HULL_ENGINES_DIR:-/usr/local/lib/hull/engines}
cache=${HULL_ENGINES_CACHE:-/var/cache/hull/engines}
mkdir -p "$dest" "$cache"

# containerd 1.7 from trixie.
ctrd=$dest/containerd-1.7
if [[ $("$ctrd/bin/containerd" --version 2>/dev/null | awk '{print $3}') == 1.7.* ]]; then
  echo "hull: containerd $("$ctrd/bin/containerd" --version | awk '{print $3}') already in $ctrd"
else
  apt_dir=$cache/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$apt_dir/sources.list"
  apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
    -o "Dir::Cache::Archives=$apt_dir/archives" -o Acquire::Languages=none
    -o APT::Sandbox::User=root
  )
  echo "hull: fetching containerd 1.7 from Debian trixie (apt-get download, private sources)"
  apt-get "${apt_opts[@]}" -qq update
  version=$(apt-cache "${apt_opts[@]}" show containerd | awk '/^Version: 1\.7\./ {print $2; exit}')
  [[ -n $version ]] || { echo "hull: Debian trixie has no containerd 1.7" >&2; exit 1; }
  (cd "$cache" && apt-get "${apt_opts[@]}" -qq download "containerd=$version")
  deb=$(ls -t "$cache"/containerd_*.deb | head -1)
  unpack=$(mktemp -d)
  trap 'rm -rf "$unpack"' EXIT
  dpkg-deb -x "$deb" "$unpack"
  rm -rf "$ctrd.new"
  mkdir -p "$ctrd.new/bin"
  for b in containerd ctr containerd-shim-runc-v2; do
    install -m 0755 "$unpack/usr/bin/$b" "$ctrd.new/bin/$b"
  done
  rm -rf "$ctrd"
  mv "$ctrd.new" "$ctrd"
  echo "hull: containerd $("$ctrd/bin/containerd" --version | awk '{print $3}') installed in $ctrd (from $(basename "$deb"))"
fi

# CRI-O 1.26.4 from the shared tools directory.
crio=$dest/cri-o
if [[ -n ${HULL_CRIO_SOURCE:-} ]]; then
  src=$HULL_CRIO_SOURCE
else
  # The tools sit beside the checkout (../shared); a git worktree's checkout is elsewhere, so also
  # look beside the main checkout.
  src=../shared/tools/cri-o
  if [[ ! -x $src/crio ]]; then
    common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    [[ -n $common ]] && src=$(dirname "$common")/../shared/tools/cri-o
  fi
fi
if [[ -x $crio/crio ]] && [[ -x $src/crio ]] && cmp -s "$src/crio" "$crio/crio" && cmp -s "$src/pinns" "$crio/pinns"; then
  echo "hull: CRI-O $("$crio/crio" --version 2>/dev/null | awk '/^Version:/ {print $2}') already in $crio"
elif [[ -x $src/crio && -x $src/pinns ]]; then
  rm -rf "$crio.new"
  mkdir -p "$crio.new"
  install -m 0755 "$src/crio" "$src/pinns" "$crio.new/"
  rm -rf "$crio"
  mv "$crio.new" "$crio"
  echo "hull: CRI-O $("$crio/crio" --version 2>/dev/null | awk '/^Version:/ {print $2}') installed in $crio (from $(realpath "$src"))"
elif [[ -x $crio/crio ]]; then
  echo "hull: CRI-O already in $crio (no source at $src to compare)"
else
  echo "hull: warning: no CRI-O at $src (set HULL_CRIO_SOURCE): the CRI-O tests cannot run" >&2
  [[ ${CI:-} != true ]] || exit 1
fi
