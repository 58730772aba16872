#!/usr/bin/env bash
# The nested-KVM tier's content, run inside L1 by scripts/nested-kvm.sh (never on the host): the
# test binaries scripts/nested/build-tier.sh built, under CI=true (nothing may skip), on L1's real
# /dev/kvm with the production guest kernel:
#   1. hull-vmm boots the production kernel + initramfs to the agent's ready line (1 and 2 vCPUs),
#      and `hull boot` boots the configured hull-vmm;
#   2. the VM-level tests on hull-vmm, then on QEMU -accel kvm: agent Check, a container created,
#      started and exec'd with stdio both ways (vsock streams), the rootfs and rw/ro volumes over
#      virtio-fs, the NIC on a tap, the VMM jailed under its seccomp filter;
#   3. containerd end to end with `hypervisor = "auto"` (which must resolve to hull-vmm): ctr run
#      --rm exit codes 0, 1, 42 and 3, stdout/stderr, stdin, ctr task exec, kill -9 of the VMM, one
#      CRI pod; and ctr run --rm's exit codes and stdio again with `hypervisor = "qemu"` (-accel kvm);
#   4. pods restored from a template snapshot (`start = "snapshot"`).
# Prints a line per group and a closing "N passed, N failed" line; exits non-zero if any failed.
set -uo pipefail
# One function, read in full before it runs: the file may change on the host while L1 runs.
main() {
cd "$(dirname "$0")/../.."
export CI=true RUST_BACKTRACE=1
# Pods boot the PVH vmlinux, as the installed set-up makes them do; the bzImage (the fallback
# when no vmlinux is installed) gets its own production boots.
export HULL_KERNEL=$PWD/target/hull/vmlinux
export HULL_INITRAMFS=$PWD/target/hull/initramfs.img
export HULL_KERNEL_CONFIG=$PWD/target/hull/kernel.config
export HULL_JAILER=$PWD/target/hull/bin/hull-jailer HULL_VMM=$PWD/target/hull/bin/hull-vmm
export HULL_SHIM=$PWD/target/hull/bin/containerd-shim-hull-v2
passed=0 failed=0 failures=() retried=()

bin() { sed -n "s/^$1=//p" target/nested/tests.env; }

# group NAME BACKEND TEST-TARGET TEST…: runs the named tests of one test binary on BACKEND.
group() {
  local name=$1 backend=$2 target=$3 t0=$SECONDS out status
  shift 3
  local exe
  exe=$(bin "$target")
  [[ -x $exe ]] || { echo "tier: no test binary for $target (scripts/nested/build-tier.sh)"; failed=$((failed + $#)); failures+=("$name: not built"); return; }
  out=$(mktemp)
  local attempt
  for attempt in 1 2; do
    # A group that hangs is killed after its own limit, so the groups after it still run and the
    # tier still reports: the processes it left are listed, then killed (L1 is throw-away).
    HULL_TEST_HYPERVISOR=$backend timeout -s KILL "${HULL_NESTED_GROUP_TIMEOUT:-480}" \
      "$exe" --exact --test-threads="${HULL_NESTED_TEST_THREADS:-1}" "$@" >"$out" 2>&1
    status=$?
    # An L2 guest that triple-faulted before its console said anything (seen once in ~200 hull-vmm
    # boots here; no host with real VT-x/AMD-V to compare; docs/nested-kvm.md) gets the group
    # one more run: its output, with hull-vmm's register dump, is printed and the retry is named in
    # the summary. A second triple fault fails the group.
    if ((status != 0 && attempt == 1)) && grep -q 'guest stopped: TripleFault' "$out"; then
      echo "tier: $name ($backend): an L2 guest triple-faulted; its output, then the group once more:"
      grep -E 'triple fault|TripleFault|^test |panicked' "$out" | head -n 20
      retried+=("$name ($backend)")
      continue
    fi
    break
  done
  if ((status == 137)); then
    echo "tier: $name ($backend) did not finish within ${HULL_NESTED_GROUP_TIMEOUT:-480}s; what it left:" >>"$out"
    ps -eo pid,ppid,etime,stat,wchan:24,args | grep -E 'qemu-system|hull-|virtiofsd|containerd' | grep -v grep | cut -c1-300 >>"$out"
    dmesg | tail -n 20 >>"$out"
    pkill -KILL -f 'qemu-system-x86_64 -name hull'; pkill -KILL -x hull-vmm; pkill -KILL -x hull-jailer
    pkill -KILL -f 'virtiofsd --socket-path /tmp/'; pkill -KILL -f 'containerd --config /tmp/hull-ctrd-'
    pkill -KILL -f containerd-shim-hull-v2
  fi
  local p f
  p=$(sed -n 's/^test result: .* \([0-9]\+\) passed; \([0-9]\+\) failed.*/\1/p' "$out" | tail -1)
  f=$(sed -n 's/^test result: .* \([0-9]\+\) passed; \([0-9]\+\) failed.*/\2/p' "$out" | tail -1)
  p=${p:-0} f=${f:-0}
  if ((status != 0 || p != $#)); then
    cat "$out"
    ((f == 0)) && f=$(($# - p))
    failures+=("$name")
  fi
  passed=$((passed + p)) failed=$((failed + f))
  printf 'tier: %-34s %-8s %d/%d passed in %ds\n' "$name" "$backend" "$p" "$#" $((SECONDS - t0))
  rm -f "$out"
}

# `hypervisor = "auto"` must pick hull-vmm here: the containerd groups rely on it.
backend_line=$(hull check 2>&1 | grep -m1 'backend:')
echo "tier: $(nproc) L1 CPUs; hull check: ${backend_line:-no backend line}"
if [[ $backend_line != *"backend: hull-vmm"* ]]; then
  failed=$((failed + 1)) failures+=("hull check: auto does not resolve to hull-vmm")
fi
group "production boots" hull-vmm linux_boot \
  production_kernel_boots_to_ready_with_1_vcpu production_kernel_boots_to_ready_with_2_vcpus
HULL_KERNEL=$PWD/target/hull/vmlinuz group "production boots: bzImage" hull-vmm linux_boot \
  production_kernel_boots_to_ready_with_1_vcpu production_kernel_boots_to_ready_with_2_vcpus
group "hull boot: the configured VMM" hull-vmm cli_boot boot_runs_the_configured_hull_vmm_or_says_why_it_cannot

for backend in hull-vmm qemu; do
  # Guest details (vCPUs, RAM, kernel) check hull-vmm's CPUID, e820 and memory set-up; stdin is
  # hull-vmm's in-process vsock, where QEMU's is the vhost-user backend the host tier already runs.
  # The jail test asks the agent's Check on both.
  if [[ $backend == hull-vmm ]]; then
    group "agent: details, exec, stdio" "$backend" agent_basics \
      check_and_guest_details_answer exit_code_42_comes_back sigterm_ends_an_exec_and_sigkill_the_init
    group "agent: stdin both ways" "$backend" agent_stdio \
      stdin_eof_reaches_the_process_and_close_stdin_without_a_stream
  else
    group "agent: exec, stdio" "$backend" agent_basics \
      exit_code_42_comes_back sigterm_ends_an_exec_and_sigkill_the_init
  fi
  group "virtio-fs: rootfs, rw and ro volumes" "$backend" virtiofs \
    busybox_rootfs_from_the_host_runs_and_writes_reach_the_host \
    read_only_volume_gives_erofs_and_symlinks_resolve_inside
  group "net: NIC on a tap" "$backend" network a_pod_vm_answers_at_the_pod_ip_and_reaches_its_gateway
  group "jail: Check, jailed, seccomp" "$backend" jail a_booted_pods_vmm_is_jailed_and_filtered
done

# Each of these tests starts its own containerd (~20 s in L1). `ctr run --rm` runs on both VMMs:
# `auto` (hull-vmm) and `qemu` (QEMU -accel kvm); the rest on `auto`.
group "containerd: ctr run --rm" auto shim_run run_rm_exit_codes stdout_and_stderr_apart stdin_round_trip
group "containerd: ctr run --rm" qemu shim_run run_rm_exit_codes stdout_and_stderr_apart
group "containerd: ctr task exec" auto shim_task exec_with_and_without_terminal
group "containerd: kill -9 of the VMM" auto shim_faults vmm_killed_under_a_task
group "CRI: one pod, two containers" auto cri_pod a_pod_is_one_vm_with_its_containers
# Pods from a template snapshot (start = "snapshot", docs/snapshot.md): made once, ctr run --rm,
# exec, own entropy and clock, a damaged template refused, a killed restored VMM cleaned up.
group "templates: snapshot start" auto shim_template pods_start_from_one_template

for r in "${retried[@]}"; do echo "tier: retried after an L2 triple fault: $r"; done
for f in "${failures[@]}"; do echo "tier: FAILED: $f"; done
echo "nested: $passed passed, $failed failed"
((failed == 0 && ${#failures[@]} == 0))
}
main "$@"
