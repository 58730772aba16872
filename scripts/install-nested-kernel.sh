#!/usr/bin/env bash
# The L1 kernel of the nested-KVM tier (scripts/nested-kvm.sh): Debian bookworm's packaged 6.1
# kernel, whose kvm, kvm-amd, ccp and irqbypass modules give an L1 guest under QEMU's TCG (which
# emulates AMD SVM with nested paging) a hardware-style /dev/kvm.
#
# The package is fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# /var/cache/hull/nested/ (HULL_NESTED_CACHE), with its modules.dep made by depmod there: it is
# never installed, so the host's /boot and /lib/modules are left alone. Cached: a complete tree is
# reused without asking apt. Prints the unpacked tree (boot/vmlinuz-*, boot/vmlinux-* (the same kernel,
# uncompressed, for a PVH boot), lib/modules/<release>/).
set -euo pipefail
cache=${HULL_NESTED_CACHE:-/var/cache/hull/nested}
current=$cache/current

if [[ -f $current/.complete-v2 ]]; then
  readlink -f "$current"
  exit 0
fi

# The ABI of the archive's current kernel: linux-image-amd64 depends on linux-image-<abi>-amd64.
signed=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $signed ]]; then
  apt-get update -qq
  signed=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n $signed ]] || { echo "hull: cannot tell which linux-image package is current (apt-cache depends linux-image-amd64)" >&2; exit 1; }
package=$signed-unsigned
version=$(apt-cache show "$package" | awk '/^Version:/ {print $2; exit}')
tree=$cache/${package}_$version
release=${signed#linux-image-}

if [[ ! -f $tree/.complete-v2 ]]; then
  echo "hull: fetching $package $version for the nested-KVM tier's L1 guest" >&2
  rm -rf "$tree" "$tree.tmp"
  mkdir -p "$tree.tmp/deb"
  # apt's sandbox user must be able to write the download directory.
  chmod 0755 "$cache" "$tree.tmp/deb"
  chown _apt "$tree.tmp/deb" 2>/dev/null || true
  (cd "$tree.tmp/deb" && apt-get download -q "$package=$version" >&2)
  dpkg-deb -x "$tree.tmp/deb/"*.deb "$tree.tmp"
  rm -rf "$tree.tmp/deb"
  depmod -b "$tree.tmp" "$release"
  [[ -f $tree.tmp/boot/vmlinuz-$release && -f $tree.tmp/lib/modules/$release/modules.dep ]] ||
    { echo "hull: $package did not unpack as expected in $tree.tmp" >&2; exit 1; }
  # The uncompressed kernel, booted through its PVH entry: decompressing the bzImage's XZ payload
  # takes L1 20-40 s under TCG, and the firmware's real-mode setup code more.
  python3 - "$tree.tmp/boot/vmlinuz-$release" "$tree.tmp/boot/vmlinux-$release" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("no XZ payload in " + sys.argv[1])
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
if elf[:4] != b"\x7fELF":
    sys.exit("the payload of " + sys.argv[1] + " is not an ELF kernel")
open(sys.argv[2], "wb").write(elf)
PY
  echo "$release" >"$tree.tmp/release"
  touch "$tree.tmp/.complete-v2"
  mv "$tree.tmp" "$tree"
fi
ln -sfn "$(basename "$tree")" "$current"
echo "$tree"
