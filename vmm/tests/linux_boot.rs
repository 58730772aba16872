//! Linux boots under hull-vmm.
//!
//! - `test_kernel_boots_to_init_on_this_kvm`: the test-only kernel variant
//!   (`guest-kernel/build-test-kernel.sh`) boots with 2 vCPUs and hull's initramfs on any
//!   `/dev/kvm`, PVM included, with a vsock device that Linux's virtio-mmio driver must activate
//!   and a virtio-fs share served by a real virtiofsd through hull-vmm's vhost-user frontend,
//!   and a virtio-net NIC on a tap hull-vmm creates in a network namespace of the test's own
//!   (Linux's virtio-net driver must activate it), runs the agent's self-test (which mounts the
//!   share and prints the file the test wrote there)
//!   to its ready line, and the guest's stop
//!   (`reboot=k` → i8042 reset) ends hull-vmm with status 0. 1.5–2 min on PVM (guest kernel mode
//!   is emulated, and every system call is a fault there); the KVM paravirtual hypercall features
//!   are hidden because PVM's emulator does not run them. This proves the Linux boot path: PVH entry,
//!   start info, e820, CPUID, MP table, serial, initrd. Never skipped under CI.
//! - `production_kernel_boots_to_ready_*`: the real kernel and initramfs to the agent's ready
//!   line with 1 and 2 vCPUs. Needs hardware KVM; skips LOUDLY elsewhere (PVM cannot run it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kvm_available, run_kernel, run_kernel_via, NetNs};
use hull_runtime::share::{CacheMode, Virtiofsd};
use hull_vmm::host::{self, KvmKind};
use hull_vmm::testing::tiny_initramfs;

/// Arguments the test kernel needs on a PVM host (see FACTS.md): no CX16 in CPUID, no XSAVE,
/// and the listed features hidden so the kernel stays off instructions PVM cannot emulate. RCU
/// stall reports are off: on a loaded host the emulated CPUs stall, and the NMI backtrace they
/// trigger runs code PVM's emulator cannot.
const TEST_KERNEL_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 noxsave nopti \
     clearcpuid=smap,smep,popcnt,pku,rdpid,serialize,umip,erms,fsrm pty.legacy_count=0 \
     8250.nr_uarts=1 rcupdate.rcu_cpu_stall_suppress=1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The test kernel: `HULL_TEST_KERNEL`, or what the (cached) build script prints.
fn test_kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("HULL_TEST_KERNEL") {
        return k.into();
    }
    let script = repo_root().join("guest-kernel/build-test-kernel.sh");
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("vmlinux")
}

/// The initramfs for the test-kernel boot: hull's real one (`HULL_INITRAMFS`, else
/// `target/hull/initramfs.img`; required under CI), or a tiny one whose /init only exits.
fn test_initramfs(dir: &Path) -> (PathBuf, bool) {
    let real = std::env::var_os("HULL_INITRAMFS").map_or_else(
        || repo_root().join("target/hull/initramfs.img"),
        PathBuf::from,
    );
    if real.is_file() {
        return (real, true);
    }
    assert!(
        !hull_test_support::under_ci(),
        "{} is missing under CI (scripts/build.sh builds it)",
        real.display()
    );
    eprintln!(
        "NOTE: {} not built; booting a tiny initramfs instead",
        real.display()
    );
    let tiny = dir.join("initramfs.cpio");
    std::fs::write(&tiny, tiny_initramfs()).unwrap();
    (tiny, false)
}

#[test]
fn test_kernel_boots_to_init_on_this_kvm() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let dir = tempfile::tempdir().unwrap();
    let (initrd, real_agent) = test_initramfs(dir.path());
    let cmdline = format!("{TEST_KERNEL_CMDLINE} hull.selftest=1 hull.share=hull");
    let vsock = dir.path().join("vsock.sock");
    // The share: a file whose content only this run knows, read back by the guest's agent.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let nonce = format!("written by the host {}", std::process::id());
    std::fs::write(shared.join("hull-selftest.txt"), format!("{nonce}\n")).unwrap();
    let virtiofsd = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .expect("virtiofsd (scripts/install-tools.sh installs it)");
    // A NIC too, on a tap hull-vmm creates itself in a network namespace of the test's own.
    let netns = NetNs::new("boot");
    let run = run_kernel_via(
        &["ip", "netns", "exec", &netns.0],
        dir.path(),
        &kernel,
        &[
            "--net-tap",
            "hvboot0",
            "--net-mac",
            "52:54:00:12:34:56",
            "--vsock-uds",
            vsock.to_str().unwrap(),
            "--fs-socket",
            virtiofsd.socket().to_str().unwrap(),
            "--balloon",
            "--initrd",
            initrd.to_str().unwrap(),
            "--mem-mib",
            "128",
            "--vcpus",
            "2",
            "--cpuid-clear",
            "cx16,kvm_pv_send_ipi,kvm_pv_tlb_flush,kvm_pv_sched_yield",
            "--cmdline",
            &cmdline,
            "--exit-stats",
        ],
        Duration::from_secs(600),
    );
    eprintln!(
        "test kernel: {:?} to exit; {}",
        run.elapsed,
        run.stderr.trim()
    );
    let c = &run.console;
    let mut expected = vec![
        "Command line: console=ttyS0",
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable",
        "Hypervisor detected: KVM",
        "found SMP MP-table",
        "MPTABLE: OEM ID: HULL",
        "smp: Brought up 1 node, 2 CPUs",
        "Unpacking initramfs",
        "Run /init as init process",
    ];
    let share_line = format!("hull-agent share hull: {nonce}");
    if real_agent {
        // The agent's self-test (hull.selftest=1): it mounted the virtio-fs share and read the
        // host's file, saw both CPUs, and stopped the VM.
        expected.push(&share_line);
        expected.push("hull-agent ready: cpus=2 ");
        expected.push("reboot: Restarting system");
    }
    for e in expected {
        assert!(c.contains(e), "no {e:?} on the console:\n{c}");
    }
    // Linux's virtio-mmio and virtio-vsock drivers found the device on the command line and
    // completed the handshake with hull-vmm's transport.
    // Linux's virtio-fs driver activated the fs device, and hull-vmm handed its queues to
    // virtiofsd; Linux's virtio-net driver activated the NIC, and its virtio-balloon driver
    // (free page reporting) the balloon.
    for line in [
        "virtio device (id 1) activated by the driver",
        "virtio device (id 5) activated by the driver",
        "virtio device (id 19) activated by the driver",
        "virtio device (id 26) activated by the driver",
        "virtio-fs: vhost-user backend serves the queues",
    ] {
        assert!(run.stderr.contains(line), "no {line:?} in:\n{}", run.stderr);
    }
    run.assert_exit(0);
}

fn production_boot(vcpus: &str) {
    let h = host::check();
    if h.kind != KvmKind::Hardware {
        eprintln!(
            "SKIPPED (loudly): production Linux boot under hull-vmm needs hardware KVM; {}",
            h.reason
        );
        return;
    }
    let images = repo_root().join("target/hull");
    let kernel = std::env::var_os("HULL_KERNEL").map_or(images.join("vmlinux"), PathBuf::from);
    let initrd =
        std::env::var_os("HULL_INITRAMFS").map_or(images.join("initramfs.img"), PathBuf::from);
    assert!(
        kernel.is_file() && initrd.is_file(),
        "build the guest images first (scripts/build.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let run = run_kernel(
        dir.path(),
        &kernel,
        &[
            "--initrd",
            initrd.to_str().unwrap(),
            "--vcpus",
            vcpus,
            "--balloon",
            "--cmdline",
            "console=ttyS0 reboot=k panic=-1 quiet hull.selftest=1",
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.console
            .contains(&format!("hull-agent ready: cpus={vcpus} ")),
        "{run:#?}"
    );
    // The guest's virtio-balloon driver (free page reporting) took the device.
    assert!(
        run.stderr
            .contains("virtio device (id 5) activated by the driver"),
        "{run:#?}"
    );
    run.assert_exit(0);
}

#[test]
fn production_kernel_boots_to_ready_with_1_vcpu() {
    production_boot("1");
}

#[test]
fn production_kernel_boots_to_ready_with_2_vcpus() {
    production_boot("2");
}
