#!/bin/bash
# PID 1 of the nested-KVM tier's L1 guest (scripts/nested-kvm.sh), once stage 1 has switched to the
# host's root filesystem under an overlay with a tmpfs upper. Sets L1 up as the set-up sets up a
# host (mounts, kvm_amd, this checkout's hull installed, containerd with hull registered and the
# busybox image), runs the job's command with its output on the second serial port, reports its
# status there on a marker line, and powers L1 off. Never exits: PID 1's exit would panic L1.
# One function, read in full before it runs: the file may change on the host while L1 runs.
main() {
local job=$1
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=/dev/ttyS1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/root/.cargo/bin
export HOME=/root LANG=C.UTF-8
exec </dev/null >/dev/console 2>&1

t0=$(cut -d' ' -f1 /proc/uptime)
step() { echo "l1-init: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
finish() {
  printf '\n@@hull-nested-rc=%s@@\n' "$1" >"$out"
  sync
  poweroff -f
  reboot -f
  sleep infinity
}
must() { "$@" || { step "FAILED: $*"; echo "L1 set-up failed: $*" >"$out"; finish 125; }; }

step "stage 2 after $t0 s of kernel and stage 1"
stty -F "$out" raw -echo -onlcr
# What a host has mounted. The overlay root cannot be an overlay's upper, so containerd's
# snapshots and everything hull writes live on tmpfs mounts of their own.
mkdir -p /var/lib/containerd /var/lib/hull
must mount -t tmpfs -o mode=0755 run /run
must mount -t tmpfs -o mode=1777 tmp /tmp
must mount -t tmpfs -o mode=0711 containerd /var/lib/containerd
mkdir -p /dev/pts /dev/shm /run/lock /run/netns /lib/modules
must mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
must mount -t tmpfs -o mode=1777 shm /dev/shm
must mount -t tmpfs -o mode=0755 hull /var/lib/hull
if grep -qw 'hull.nested.cgroup=v2' /proc/cmdline; then
  must mount -t cgroup2 cgroup2 /sys/fs/cgroup
  # What systemd does on a cgroup-v2 host: the root delegates its controllers.
  for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control; done
else
  # Hybrid, as this project's hosts (and CI's) are: v1 controllers, v2 at /sys/fs/cgroup/unified.
  must mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
  for c in cpuset cpu,cpuacct blkio memory devices freezer net_cls,net_prio perf_event hugetlb pids; do
    mkdir -p "/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || rmdir "/sys/fs/cgroup/$c"
  done
  ln -s cpu,cpuacct /sys/fs/cgroup/cpu
  ln -s cpu,cpuacct /sys/fs/cgroup/cpuacct
  ln -s net_cls,net_prio /sys/fs/cgroup/net_cls
  ln -s net_cls,net_prio /sys/fs/cgroup/net_prio
  mkdir -p /sys/fs/cgroup/unified
  must mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
fi
mount -t debugfs debugfs /sys/kernel/debug  # KVM's exit counters (hull-bench vmm)
[[ -e /dev/ptmx ]] || ln -s pts/ptmx /dev/ptmx
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
hostname hull-l1
ip link set lo up

# The L1 kernel's modules (from the package scripts/install-nested-kernel.sh unpacked), so modprobe
# and the kernel's own module requests (tun, bridge, tc, netfilter) work as on a host.
release=$(uname -r)
tree=$(readlink -f /var/cache/hull/nested/current)
mkdir -p "/lib/modules/$release"
must mount --bind "$tree/lib/modules/$release" "/lib/modules/$release"
echo /sbin/modprobe >/proc/sys/kernel/modprobe
must modprobe kvm_amd
must modprobe tun
must test -c /dev/kvm
step "kvm_amd: npt=$(cat /sys/module/kvm_amd/parameters/npt) nested=$(cat /sys/module/kvm_amd/parameters/nested)"

# hull as the set-up installs it: this checkout's build, `hypervisor = "auto"`.
if [[ -x $repo/target/hull/bin/hull ]]; then
  must "$repo/scripts/install-hull.sh"
fi
mkdir -p /etc/hull
printf 'hypervisor = "auto"\n' >/etc/hull/config.toml
step "hull installed; containerd"
# The busybox image was built on the host (hundreds of forks are slow under emulation).
must env HULL_SETUP_DEMO=0 HULL_BUSYBOX_IMAGE="$job/busybox.tar" "$repo/scripts/setup-containerd.sh"
step "set up; running the job"

echo '@@hull-nested-ready@@' >"$out"
bash "$job/cmd.sh" </dev/null >"$out" 2>&1
rc=$?
step "job ended with status $rc"
finish "$rc"
}
main "$@"
