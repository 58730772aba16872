#!/usr/bin/env bash
# Builds the TEST-ONLY variant of hull's guest kernel: hull.config + hull-test.config on top of
# tinyconfig, plus three source changes, so that hull-vmm's Linux boot path can be tested on a PVM
# /dev/kvm (see ../../shared/FACTS.md, "Guest kernel on this host"). It is never installed.
#
#   build-test-kernel.sh       build (or reuse) and print the output directory
#   HULL_CACHE=/path ...       cache root (default /var/cache/hull)
#
# Its source and object trees are its own ($HULL_CACHE/kernel-test/): the production kernel's tree
# and outputs are never touched. Output: $HULL_CACHE/kernel-test/out/<key>/{vmlinux,config,build-seconds}
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base="$here/hull.config"
fragment="$here/hull-test.config"
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${HULL_CACHE:-/var/cache/hull}/kernel-test
jobs=${HULL_KERNEL_JOBS:-$(nproc)}

log() { echo "[test-kernel] $*" >&2; }
# shellcheck source=kbuild-lib.sh
source "$here/kbuild-lib.sh"

[[ -f $tarball ]] || { log "error: $tarball is missing (run scripts/install-deps.sh)"; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( { cat "$base" "$fragment" "$0" "$here/kbuild-lib.sh"; echo "$srcver"; } | sha256sum | cut -c1-16)
out="$cache/out/$key"

if [[ -f $out/vmlinux && -f $out/config ]]; then
  log "cached: $out (built in $(cat "$out/build-seconds" 2>/dev/null || echo '?') s)"
  echo "$out"
  exit 0
fi

src="$cache/src-$srcver"
obj="$cache/obj-$srcver"
mkdir -p "$cache/out"
if [[ ! -f $src/.hull-patched ]]; then
  log "extracting $tarball (Debian linux-source $srcver)"
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$tarball" -C "$src" --strip-components=1
  # 1. The int3 self-test: PVM's emulator cannot run int3 in guest kernel mode.
  alt="$src/arch/x86/kernel/alternative.c"
  grep -q '^	int3_selftest();$' "$alt" || { log "error: int3_selftest() call not found in $alt"; exit 1; }
  sed -i 's/^	int3_selftest();$/	\/* hull test kernel: no int3 self-test *\//' "$alt"
  # 2. The fwait in fpu__drop(): not emulated either.
  fpu="$src/arch/x86/kernel/fpu/core.c"
  grep -q '"1: fwait\\n"' "$fpu" || { log "error: fwait not found in $fpu"; exit 1; }
  sed -i 's/"1: fwait\\n"/"1:\\n"/' "$fpu"
  touch "$src/.hull-patched"
fi
if [[ ! -f $src/.hull-patched-syscall ]]; then
  # 3. PVM delivers a user-mode `syscall` of a non-PVM guest as an instruction-fetch page fault on
  #    entry_SYSCALL_64 (the CPU is still at user privilege there). Recognise that fault and run the
  #    system call from it, so /init can run (slowly: every system call is a fault).
  fault="$src/arch/x86/mm/fault.c"
  anchor='	prefetchw(&current->mm->mmap_lock);'
  grep -qxF "$anchor" "$fault" || { log "error: anchor not found in $fault"; exit 1; }
  snippet=$(mktemp)
  cat >"$snippet" <<'C'
	/* hull test kernel: a user `syscall` that faulted on the entry point (PVM). */
	if (user_mode(regs) && address == (unsigned long)entry_SYSCALL_64 &&
	    regs->ip == address) {
		regs->ip = regs->cx;
		regs->flags = regs->r11;
		regs->orig_ax = regs->ax;
		regs->ax = -ENOSYS;
		do_syscall_64(regs, (int)regs->orig_ax);
		return;
	}
C
  sed -i "\|^${anchor}\$|r $snippet" "$fault"
  rm -f "$snippet"
  sed -i 's|^#include <asm/irq_stack.h>$|#include <asm/irq_stack.h>\n#include <asm/proto.h>\n#include <asm/syscall.h>|' "$fault"
  touch "$src/.hull-patched-syscall"
fi
mkdir -p "$obj"

start=$(date +%s)
log "configuring: tinyconfig + hull.config + hull-test.config"
make -s -C "$src" O="$obj" ARCH=x86_64 tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$base" "$fragment" >/dev/null
make -s -C "$src" O="$obj" ARCH=x86_64 olddefconfig >/dev/null

check_fragment "$fragment" || { log "error: the test fragment does not apply cleanly"; exit 1; }

log "building vmlinux with -j$jobs (log: $obj/build.log)"
make_with_progress 30 "test kernel" nice -n 10 make -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" vmlinux
secs=$(( $(date +%s) - start ))
publish "$out" "$secs" vmlinux
log "built in ${secs}s: vmlinux $(du -h "$out/vmlinux" | cut -f1)"
echo "$out"
