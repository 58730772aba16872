//! hull-vmm behind the runtime's hypervisor seam (`hull_runtime::vm::hull_vmm::HullVmm`): a test
//! guest started through the trait, its console read back, and a stop request (SIGTERM) that
//! ends a guest which would otherwise spin forever.

mod common;

use std::time::Duration;

use common::{kvm_available, vmm_bin, write_guest};
use hull_runtime::images::GuestImages;
use hull_runtime::vm::hull_vmm::HullVmm;
use hull_runtime::vm::{Hypervisor, VmConfig};
use hull_vmm::testing::{guest, Cmd, SCRATCH};

fn config(dir: &std::path::Path, cmds: &[Cmd]) -> VmConfig {
    let kernel = write_guest(dir, &guest(cmds));
    let initramfs = dir.join("initramfs.img");
    std::fs::write(&initramfs, b"unused by test guests").unwrap();
    VmConfig {
        images: GuestImages { kernel, initramfs },
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 64,
        devices: vec![],
        run_dir: dir.to_owned(),
    }
}

fn text(s: &str) -> Vec<Cmd> {
    s.bytes()
        .map(|b| Cmd::Out8 {
            port: 0x3f8,
            value: b,
        })
        .collect()
}

#[test]
fn a_guest_started_through_the_seam_prints_and_exits_cleanly() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &text("hull-agent ready: cpus=1\n"));
    let hv = HullVmm::new(vmm_bin());
    assert_eq!(hv.name(), "hull-vmm");
    let mut vm = hv.start(&cfg).unwrap();
    let line = hull_runtime::vm::console::wait_for_line(
        &mut *vm,
        "hull-agent ready:",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(line, "hull-agent ready: cpus=1");
    let status = vm.wait_timeout(Duration::from_secs(30)).unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn stop_ends_a_spinning_guest_with_status_zero() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmds = text("up\n");
    cmds.push(Cmd::Poll32 {
        addr: SCRATCH,
        mask: 1,
        value: 1,
    });
    let cfg = config(dir.path(), &cmds);
    let mut vm = HullVmm::new(vmm_bin()).start(&cfg).unwrap();
    hull_runtime::vm::console::wait_for_line(&mut *vm, "up", Duration::from_secs(30)).unwrap();
    assert!(vm
        .wait_timeout(Duration::from_millis(200))
        .unwrap()
        .is_none());
    let status = vm.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(vm.log_path()).unwrap();
    assert!(log.contains("Stopped"), "{log}");
}
