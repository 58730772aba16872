#!/usr/bin/env bash
# The nested-KVM tier: hull on real (hardware-style) KVM on a host whose own /dev/kvm cannot run
# Linux. An L1 guest runs under QEMU's TCG, which emulates AMD SVM with nested paging; Debian's
# packaged 6.1 kernel loads kvm_amd there, so hull-vmm and QEMU -accel kvm run pods inside L1 the
# way they run on VT-x/AMD-V hosts.
#
#   scripts/nested-kvm.sh           builds the tier's tests here, runs them inside L1 (scripts/nested/)
#   scripts/nested-kvm.sh CMD…      runs CMD as root inside L1, prints its output, exits with its status
#
# L1's root is this host's root filesystem, shared read-only over virtio-fs (virtiofsd) under an
# overlay with a tmpfs upper, so L1 has what the host has installed (QEMU, containerd, runc,
# virtiofsd, this checkout and its target/); scripts/nested/l1-init.sh sets L1 up as the set-up sets
# up a host: this checkout's target/hull installed, kvm_amd loaded, containerd running with hull
# registered (`hypervisor = "auto"`) and the busybox image imported. CMD runs in the caller's
# directory with the caller's CI, RUST_* and HULL_* variables; its output (stdout and stderr
# together) comes back over L1's second serial port, then its status on a marker line. L1 is always
# torn down; its console log is kept (and named) when something failed.
#
# Knobs: HULL_NESTED_CPUS (2; the tier 1), HULL_NESTED_MEMORY_MIB (4096), HULL_NESTED_TIMEOUT (seconds, 1800),
# HULL_NESTED_SILENCE (seconds without output after which L1 counts as wedged: exit 75; 0 = off,
# the tier's default 600, and a wedged tier runs once more),
# HULL_NESTED_KEEP=1 keeps the job directory, HULL_NESTED_CGROUP=v2 gives L1 cgroup v2 alone (default:
# hybrid, as this project's hosts).
set -euo pipefail
# The whole script is one function, read in full before it runs: editing the file while an L1 runs
# (it takes many minutes) cannot change what the running copy does next.
main() {
caller=$PWD
cd "$(dirname "$0")/.."
repo=$PWD
cpus=${HULL_NESTED_CPUS:-2}
memory=${HULL_NESTED_MEMORY_MIB:-4096}
limit=${HULL_NESTED_TIMEOUT:-1800}

if (($# == 0)); then
  # The tier. Its test binaries are built here: compiling inside L1 would run emulated.
  scripts/nested/build-tier.sh
  # An L1 that stops making progress (nothing printed for HULL_NESTED_SILENCE seconds, while every
  # group inside is killed after 480 s; or its kernel reporting a soft lockup of 100 s or more) is
  # a failure of the emulation under it, not a test result:
  # its vCPUs are shown, and the tier runs once more in a fresh L1.
  local attempt rc
  for attempt in 1 2; do
    set +e
    # One L1 vCPU: a single TCG thread has none of the cross-vCPU races behind the wedges (and
    # perhaps the one L2 triple fault) docs/nested-kvm.md describes; it costs ~200 s of a quiet run.
    HULL_NESTED_CPUS=${HULL_NESTED_CPUS:-1} HULL_NESTED_SILENCE=${HULL_NESTED_SILENCE:-600} \
      "$repo/scripts/nested-kvm.sh" scripts/nested/tier.sh
    rc=$?
    set -e
    ((rc == 75 && attempt == 1)) || return "$rc"
    echo "hull: running the tier once more in a fresh L1" >&2
  done
fi

kernel_tree=$(scripts/install-nested-kernel.sh)
release=$(cat "$kernel_tree/release")
for tool in qemu-system-x86_64 busybox cpio timeout; do
  command -v "$tool" >/dev/null || { echo "hull: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
virtiofsd=$(command -v virtiofsd || echo /usr/local/bin/virtiofsd)
[[ -x $virtiofsd ]] || { echo "hull: virtiofsd is missing (scripts/install-tools.sh)" >&2; exit 1; }

# The job directory is on the host's root filesystem, so L1 sees it at the same path.
job=$(mktemp -d /var/tmp/hull-nested.XXXXXX)
qemu_pid='' vfs_pid='' filter_pid='' watch_pid='' nudge_pid=''
cleanup() {
  local rc=$?
  # QEMU runs under timeout(1), which passes a TERM on to it.
  set +e
  for pid in $watch_pid $nudge_pid $qemu_pid $vfs_pid $filter_pid; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
  if [[ ${HULL_NESTED_KEEP:-0} == 1 ]]; then
    echo "hull: nested job kept in $job" >&2
  elif ((rc != 0)) && [[ -s $job/console.log ]]; then
    find "$job" -mindepth 1 -not -name console.log -delete 2>/dev/null
    echo "hull: L1's console log: $job/console.log" >&2
  else
    rm -rf "$job"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The command, as L1 runs it: the caller's directory and variables, then CMD.
{
  printf 'cd %q || exit 1\n' "$caller"
  while IFS='=' read -r -d '' name value; do
    case $name in
      CI | RUST_BACKTRACE | RUST_LOG | RUST_TEST_THREADS | HULL_*) printf 'export %s=%q\n' "$name" "$value" ;;
    esac
  done < <(env -0)
  printf 'exec'
  printf ' %q' "$@"
  echo
} >"$job/cmd.sh"

scripts/busybox-image.sh "$job/busybox.tar" 2>/dev/null

# Stage 1: a busybox initramfs that loads virtio-pci, virtio-fs and overlayfs, mounts the host's
# root read-only under a tmpfs upper, and switches to it (pivot_root needs a root that is not the
# initramfs: virtiofsd's sandbox and hull-jailer use it).
initrd=$job/initrd
mkdir -p "$initrd"/{bin,dev,proc,sys,mod}
cp "$(command -v busybox)" "$initrd/bin/busybox"
for m in virtio_pci virtiofs overlay; do
  modprobe -d "$kernel_tree" -S "$release" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$initrd/mod/"
  basename "$ko" >>"$initrd/mod/order"
done
cat >"$initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
fail() { echo "nested stage 1: $*"; poweroff -f; reboot -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mod/order); do insmod "/mod/$m" || fail "insmod $m"; done
for w in $(cat /proc/cmdline); do
  case $w in hull.nested.init=*) init=${w#*=} ;; hull.nested.job=*) job=${w#*=} ;; esac
done
mkdir -p /host /rw /newroot
tries=0
until mount -t virtiofs -o ro hostroot /host; do
  tries=$((tries + 1)); [ $tries -lt 50 ] || fail "cannot mount the host's root"; sleep 0.1
done
mount -t tmpfs -o mode=0755 upper /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work root /newroot || fail "overlay"
for d in proc sys dev; do mount --move /$d /newroot/$d || fail "move /$d"; done
exec switch_root /newroot /bin/bash "$init" "$job"
INIT
chmod +x "$initrd/init"
(cd "$initrd" && find . | cpio -o -H newc --quiet) >"$job/initrd.cpio"
rm -rf "$initrd"

# The host's root filesystem for L1, read-only: a plain (not recursive) bind of / in a mount
# namespace of virtiofsd's own, so the host's /proc, /sys, /dev and /run mounts stay out of it.
mkdir "$job/root"
unshare --mount --propagation private sh -c 'mount --bind / "$1" && shift && exec "$@"' sh "$job/root" \
  "$virtiofsd" --socket-path="$job/vfs.sock" --shared-dir="$job/root" --readonly --cache=always \
  --sandbox=namespace >"$job/virtiofsd.log" 2>&1 &
vfs_pid=$!
for _ in $(seq 100); do [[ -S $job/vfs.sock ]] && break; sleep 0.05; done
[[ -S $job/vfs.sock ]] || { cat "$job/virtiofsd.log" >&2; echo "hull: virtiofsd did not start" >&2; exit 1; }

# Output filter: CMD's output through, markers turned into the L1 boot time and CMD's status.
mkfifo "$job/out"
t0=$SECONDS
(
  blank=0  # an empty line is held back: the one before the status marker is the marker's own
  while IFS= read -r line || [[ -n $line ]]; do
    touch "$job/alive"
    case $line in
      *@@hull-nested-ready@@*) echo "hull: L1 up and set up in $((SECONDS - t0))s; running: $*" >&2 ;;
      *@@hull-nested-rc=*@@*) rc=${line##*@@hull-nested-rc=}; echo "${rc%%@@*}" >"$job/rc"; blank=0 ;;
      '') ((blank)) && echo; blank=1 ;;
      *) ((blank)) && echo; blank=0; printf '%s\n' "$line" ;;
    esac
  done <"$job/out"
) &
filter_pid=$!

# q35, not microvm: under a loaded host, microvm's L1 kernel sometimes never gets a timer tick
# (it has no HPET or ACPI PM timer to fall back on when TSC calibration against the PIT fails).
echo "hull: booting L1 (TCG, AMD SVM; ${cpus} vCPUs, ${memory} MiB, kernel $release)" >&2
set +e
# /usr/bin/time: L1's CPU time, which is what the tier costs on an idle machine (wall time on a
# shared one says more about the neighbours).
# A TCG thread per vCPU (thread=multi). Under a loaded host (load 7-10), L1 wedged twice in the
# middle of a tier (no progress, no message; the watchdog below catches that); with one thread for
# both vCPUs (HULL_NESTED_TCG_THREAD=single) L2 boots ran past their 60 s limits instead. The
# monitor socket lets the watchdog (or a person) look into a stuck L1; `nokaslr` keeps L1's
# kernel addresses those of its System.map.
timeout -s KILL "$limit" /usr/bin/time -f '%U %S' -o "$job/cpu" qemu-system-x86_64 \
  -M q35,memory-backend=mem -accel tcg,thread="${HULL_NESTED_TCG_THREAD:-multi}" -cpu max -smp "$cpus" -m "${memory}M" \
  -monitor "unix:$job/monitor.sock,server=on,wait=off" \
  -object memory-backend-memfd,id=mem,size="${memory}M",share=on \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$kernel_tree/boot/vmlinux-$release" -initrd "$job/initrd.cpio" \
  -append "console=ttyS0 panic=-1 nokaslr ${HULL_NESTED_APPEND:-quiet} hull.nested.cgroup=${HULL_NESTED_CGROUP:-hybrid} hull.nested.job=$job hull.nested.init=$repo/scripts/nested/l1-init.sh" \
  -serial "file:$job/console.log" \
  -chardev "file,id=out,path=$job/out" -device isa-serial,chardev=out \
  -chardev "socket,id=vfs,path=$job/vfs.sock" -device vhost-user-fs-pci,chardev=vfs,tag=hostroot,queue-size=1024 \
  </dev/null >"$job/qemu.log" 2>&1 &
qemu_pid=$!
touch "$job/alive"
# TCG can leave a halted L1 vCPU asleep with its timer interrupt pending; a key press every few
# seconds wakes it (scripts/nested/l1-nudge.py says what was seen).
scripts/nested/l1-nudge.py "$job/monitor.sock" "${HULL_NESTED_NUDGE:-5}" &
nudge_pid=$!
if ((${HULL_NESTED_SILENCE:-0} > 0)); then
  (
    while sleep 15; do
      age=$(($(date +%s) - $(stat -c %Y "$job/alive")))
      if grep -qE 'soft lockup - CPU#[0-9]+ stuck for [0-9]{3,}s' "$job/console.log"; then
        why="its kernel reports a CPU stuck for 100 s or more"
      elif ((age > HULL_NESTED_SILENCE)); then
        why="it printed nothing for ${age}s (HULL_NESTED_SILENCE)"
      else
        continue
      fi
      echo "hull: L1 is wedged: $why; its vCPUs:" >&2
      scripts/nested/l1-vcpus.py "$job/monitor.sock" "$kernel_tree/boot/System.map-$release" >&2
      touch "$job/wedged"
      kill -TERM "$qemu_pid"
      exit 0
    done
  ) &
  watch_pid=$!
fi
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=''
wait "$filter_pid"
filter_pid=''
set -e
read -r user sys <"$job/cpu" 2>/dev/null || user=0 sys=0
echo "hull: L1 ran ${SECONDS}s in all, using $(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.0f", u + s}')s of CPU" >&2

kill -TERM "$nudge_pid" 2>/dev/null || true
wait "$nudge_pid" 2>/dev/null || true
nudge_pid=''
if [[ -n $watch_pid ]]; then
  kill -TERM "$watch_pid" 2>/dev/null || true  # gone already when it was the one that stopped L1
  wait "$watch_pid" 2>/dev/null || true
  watch_pid=''
fi
if [[ -e $job/wedged ]]; then
  tail -n 20 "$job/console.log" >&2
  exit 75
fi
if [[ -s $job/rc ]]; then
  rc=$(cat "$job/rc")
  exit "$rc"
fi
if ((qemu_rc == 137)); then
  echo "hull: L1 did not finish within ${limit}s (HULL_NESTED_TIMEOUT)" >&2
else
  echo "hull: L1 ended (QEMU status $qemu_rc) without CMD's status" >&2
fi
cat "$job/qemu.log" >&2
tail -n 40 "$job/console.log" >&2
exit 125
}
main "$@"
