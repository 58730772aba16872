#!/usr/bin/env bash
# Builds hull's guest kernel from Debian's linux-source-6.1 plus hull's patches (patches/*.patch):
# `make tinyconfig`, then the fragment hull.config on top, then bzImage + vmlinux. Results are cached
# outside the checkout, keyed by the fragment, the patches, this script and the source package
# version; a cache hit costs nothing.
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

[[ -f $tarball ]] || { log "error: $tarball is missing (run scripts/install-deps.sh)"; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
patches=("$here"/patches/*.patch)
[[ -e ${patches[0]} ]] || patches=()
patchsum=$(cat /dev/null "${patches[@]}" | sha256sum | cut -c1-8)
key=$( { cat "$fragment" "$0" "${patches[@]}"; echo "$srcver"; } | sha256sum | cut -c1-16)
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
bad=0
while IFS= read -r line; do
  [[ $line =~ ^(CONFIG_[A-Z0-9_]+)=(.*)$ ]] || continue
  opt=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
  if [[ $want == n ]]; then
    grep -q "^$opt=[ym]" "$obj/.config" && { log "option $opt should be off"; bad=1; }
  else
    grep -qx "$opt=$want" "$obj/.config" || { log "option $opt=$want did not survive Kconfig (got: $(grep "^$opt=" "$obj/.config" || echo unset))"; bad=1; }
  fi
done <"$fragment"
((bad == 0)) || { log "error: the config fragment does not apply cleanly"; exit 1; }

log "building bzImage + vmlinux with -j$jobs (log: $obj/build.log)"
make -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" bzImage vmlinux >"$obj/build.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  kill -0 "$pid" 2>/dev/null || break
  log "$(( $(date +%s) - start ))s elapsed, $(grep -cE '^\s+(CC|AS|LD|AR)\s' "$obj/build.log" || true) steps done"
done
if ! wait "$pid"; then
  tail -30 "$obj/build.log" >&2
  log "error: kernel build failed (full log: $obj/build.log)"
  exit 1
fi
secs=$(( $(date +%s) - start ))

tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
cp "$obj/arch/x86/boot/bzImage" "$tmp/bzImage"
cp "$obj/vmlinux" "$tmp/vmlinux"
cp "$obj/.config" "$tmp/config"
echo "$secs" >"$tmp/build-seconds"
rm -rf "$out" && mv "$tmp" "$out"
log "built in ${secs}s: bzImage $(du -h "$out/bzImage" | cut -f1), vmlinux $(du -h "$out/vmlinux" | cut -f1)"
echo "$out"
