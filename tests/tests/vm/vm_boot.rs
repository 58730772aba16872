//! Boots the real guest kernel and initramfs through the QEMU backend (TCG on hosts whose KVM
//! cannot run Linux) and checks what the guest reports and how the VM ends.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use hull_runtime::images::GuestImages;
use hull_runtime::selftest::{boot_selftest, SelftestError, SelftestSpec, READY_PREFIX};
use hull_runtime::vm::qemu::HostShape;
use hull_runtime::vm::qemu::Qemu;
use hull_runtime::vm::{Accel, Hypervisor, VmConfig, VmError};
use hull_tests::{guest_images, qemu};

const TIMEOUT: Duration = Duration::from_secs(90);

const TCG_HOST: HostShape = HostShape {
    accel: Accel::Tcg,
    host_cpus: 2,
    tsc_khz: None,
};

fn pid_alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, None).is_ok()
}

/// Boots with `vcpus` and `memory_mib` and checks the ready line, the clean stop and the cleanup.
fn boot_and_check(vcpus: u32, memory_mib: u32) {
    let (Some(images), Some(qemu)) = (guest_images(), qemu()) else {
        return;
    };
    let run_dir = tempfile::tempdir().unwrap();
    let spec = SelftestSpec {
        vcpus,
        memory_mib,
        timeout: TIMEOUT,
    };
    let report = boot_selftest(&qemu, &images, &spec, run_dir.path())
        .unwrap_or_else(|e| panic!("boot failed: {e:?}"));

    assert_eq!(report.facts.cpus, vcpus, "{}", report.ready_line);
    let asked_kib = u64::from(memory_mib) * 1024;
    // The kernel keeps its image and early reservations out of MemTotal: a few MiB, not a quarter.
    assert!(
        report.facts.mem_total_kib <= asked_kib && report.facts.mem_total_kib > asked_kib * 3 / 4,
        "MemTotal {} KiB for {} MiB of guest RAM",
        report.facts.mem_total_kib,
        memory_mib
    );
    for controller in ["cpuset", "cpu", "io", "memory", "pids"] {
        assert!(
            report.facts.cgroup2.iter().any(|c| c == controller),
            "cgroup v2 controller {controller} missing: {}",
            report.ready_line
        );
    }
    assert!(report.status.success(), "VMM exit: {}", report.status);
    assert!(
        report.console.contains("hull-agent: stopping the VM"),
        "{}",
        report.console
    );
    assert!(
        !report.console.contains("Kernel panic"),
        "{}",
        report.console
    );
    assert!(report.to_exit >= report.to_ready);
}

#[test]
fn boots_with_one_vcpu_and_128_mib() {
    boot_and_check(1, 128);
}

#[test]
fn boots_with_two_vcpus_and_512_mib() {
    boot_and_check(2, 512);
}

fn running_vm(run_dir: &std::path::Path) -> Option<Box<dyn hull_runtime::vm::Vm>> {
    let (Some(images), Some(qemu)) = (guest_images(), qemu()) else {
        return None;
    };
    let config = VmConfig {
        images,
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 128,
        devices: vec![],
        run_dir: run_dir.to_owned(),
    };
    Some(qemu.start(&config).unwrap())
}

#[test]
fn stop_ends_a_running_vm_and_reaps_it() {
    let run_dir = tempfile::tempdir().unwrap();
    let Some(mut vm) = running_vm(run_dir.path()) else {
        return;
    };
    let pid = vm.pid();
    assert!(pid_alive(pid));
    // Stopped long before the guest could finish booting. SIGTERM ends QEMU (cleanly once its
    // handlers are installed, by the default action before that); SIGKILL would mean the grace
    // period ran out.
    let status = vm.stop(Duration::from_secs(10)).unwrap();
    assert!(!pid_alive(pid), "QEMU {pid} still there after stop");
    assert!(
        status.code() == Some(0)
            || status.signal() == Some(nix::sys::signal::Signal::SIGTERM as i32),
        "QEMU ended with {status}, not by SIGTERM"
    );
    let console = std::fs::read_to_string(vm.console_path()).unwrap_or_default();
    assert!(console.find(READY_PREFIX).is_none(), "{console}");
}

#[test]
fn dropping_a_vm_kills_the_vmm() {
    let run_dir = tempfile::tempdir().unwrap();
    let Some(vm) = running_vm(run_dir.path()) else {
        return;
    };
    let pid = vm.pid();
    drop(vm);
    assert!(!pid_alive(pid), "QEMU {pid} survived the drop of its Vm");
}

fn spec() -> SelftestSpec {
    SelftestSpec {
        vcpus: 1,
        memory_mib: 128,
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn missing_kernel_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("initramfs.img"), b"x").unwrap();
    let images = GuestImages::in_dir(dir.path());
    let qemu = Qemu::for_host(Accel::Tcg);
    let err = boot_selftest(&qemu, &images, &spec(), dir.path()).unwrap_err();
    assert!(
        matches!(&err, SelftestError::Vm(VmError::KernelMissing(p)) if p == &images.kernel),
        "{err:?}"
    );
    let text = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        text.contains("vmlinuz") && text.contains("does not exist"),
        "{text}"
    );
}

#[test]
fn missing_initramfs_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vmlinuz"), b"x").unwrap();
    let images = GuestImages::in_dir(dir.path());
    let qemu = Qemu::for_host(Accel::Tcg);
    let err = boot_selftest(&qemu, &images, &spec(), dir.path()).unwrap_err();
    assert!(
        matches!(&err, SelftestError::Vm(VmError::InitramfsMissing(p)) if p == &images.initramfs),
        "{err:?}"
    );
}

#[test]
fn missing_qemu_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vmlinuz"), b"x").unwrap();
    std::fs::write(dir.path().join("initramfs.img"), b"x").unwrap();
    let images = GuestImages::in_dir(dir.path());
    for binary in ["/nonexistent/qemu-system-x86_64", "hull-no-such-qemu"] {
        let qemu = Qemu::new(binary, TCG_HOST);
        let err = boot_selftest(&qemu, &images, &spec(), dir.path()).unwrap_err();
        match err {
            SelftestError::Vm(e @ VmError::VmmMissing(_)) => {
                assert!(e.to_string().contains(binary), "{e}");
            }
            other => panic!("expected VmmMissing, got {other:?}"),
        }
    }
}

#[test]
fn out_of_range_sizing_is_refused_before_any_vmm_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vmlinuz"), b"x").unwrap();
    std::fs::write(dir.path().join("initramfs.img"), b"x").unwrap();
    let images = GuestImages::in_dir(dir.path());
    let qemu = Qemu::new("hull-no-such-qemu", TCG_HOST);
    for (vcpus, memory_mib) in [(0, 128), (65, 128), (1, 16)] {
        let spec = SelftestSpec {
            vcpus,
            memory_mib,
            timeout: Duration::from_secs(1),
        };
        let err = boot_selftest(&qemu, &images, &spec, dir.path()).unwrap_err();
        assert!(
            matches!(err, SelftestError::Vm(VmError::InvalidSizing(_))),
            "{err:?}"
        );
    }
}
