#!/usr/bin/env bash
# Builds hull's guest kernel from Debian's linux-source-6.1 plus hull's patches (patches/*.patch):
# `make tinyconfig`, then the fragment hull.config on top, then bzImage + vmlinux. Results are cached
# outside the checkout, keyed by the fragment, the patches, this script, kbuild-lib.sh (the steps it
# shares with build-test-kernel.sh) and the source package version; a cache hit costs nothing.
#
#   build-kernel.sh            build (or reuse) and print the output directory
#   HULL_CACHE=/path ...       cache root (default /var/cache/hull)
#
# Output directory: $HULL_CACHE/kernel/out/<key>/{bzImage,vmlinux,config,build-seconds}
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/hull.config"
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${HULL_CACHE:-/var/cache/hull}/kernel
jobs=${HULL_KERNEL_JOBS:-$(nproc)}

log() { echo "[guest-kernel] $*" >&2; }
# shellcheck source=kbuild-lib.sh
source "$here/kbuild-lib.sh"

[[ -f $tarball ]] || { log "error: $tarball is missing (run scripts/install-deps.sh)"; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
patches=("$here"/patches/*.patch)
[[ -e ${patches[0]} ]] || patches=()
patchsum=$(cat /dev/null "${patches[@]}" | sha256sum | cut -c1-8)
key=$( { cat "$fragment" "$0" "$here/kbuild-lib.sh" "${patches[@]}"; echo "$srcver"; } | sha256sum | cut -c1-16)
out="$cache/out/$key"

if [[ -f $out/bzImage && -f $out/vmlinux && -f $out/config ]]; then
  log "cached: $out (built in $(cat "$out/build-seconds" 2>/dev/null || echo '?') s)"
  echo "$out"
  exit 0
fi

src="$cache/src-$srcver-$patchsum"
obj="$cache/obj-$srcver-$patchsum"
mkdir -p "$cache/out"
if [[ ! -f $src/.hull-extracted ]]; then
  log "extracting $tarball (Debian linux-source $srcver)"
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$tarball" -C "$src" --strip-components=1
  for p in "${patches[@]}"; do
    log "applying $(basename "$p")"
    patch -s -p1 -d "$src" <"$p"
  done
  touch "$src/.hull-extracted"
fi
mkdir -p "$obj"

start=$(date +%s)
log "configuring: tinyconfig + $(grep -c '^CONFIG_' "$fragment") options from hull.config"
make -s -C "$src" O="$obj" ARCH=x86_64 tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >/dev/null
make -s -C "$src" O="$obj" ARCH=x86_64 olddefconfig >/dev/null

# Every option of the fragment must have survived Kconfig's dependency resolution.
check_fragment "$fragment" || { log "error: the config fragment does not apply cleanly"; exit 1; }

log "building bzImage + vmlinux with -j$jobs (log: $obj/build.log)"
make_with_progress 15 "kernel" make -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" bzImage vmlinux
secs=$(( $(date +%s) - start ))
publish "$out" "$secs" arch/x86/boot/bzImage vmlinux
log "built in ${secs}s: bzImage $(du -h "$out/bzImage" | cut -f1), vmlinux $(du -h "$out/vmlinux" | cut -f1)"
echo "$out"
