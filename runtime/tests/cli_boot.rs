//! `hull boot` boots on the backend pods get: the configuration's `hypervisor` (or `--hypervisor`),
//! jailed as the shim runs it. It used to boot QEMU whatever the configuration said, so on a host
//! with hardware KVM the set-up's check boot never ran hull-vmm, the VMM its pods use. Where
//! hull-vmm cannot run (no hardware KVM: this project's PVM machines), asking for it is a clear
//! error and nothing boots; in the nested-KVM tier (`scripts/nested-kvm.sh`) it boots.

use std::process::Command;

use hull_runtime::images::GuestImages;
use hull_runtime::vm::hull_vmm;

fn hull(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hull"));
    c.env("HULL_CONFIG", config);
    c
}

#[test]
fn an_unknown_hypervisor_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = hull(&dir.path().join("none.toml"))
        .args(["boot", "--hypervisor", "xen"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"xen\"") && err.contains("auto, hull-vmm or qemu"),
        "{err}"
    );
}

#[test]
fn boot_runs_the_configured_hull_vmm_or_says_why_it_cannot() {
    let images = GuestImages::from_env();
    if !(images.kernel.is_file() && images.initramfs.is_file()) {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true: {} is missing (scripts/test.sh sets HULL_KERNEL)",
            images.kernel.display()
        );
        eprintln!("*** SKIPPED: no guest images ***");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hull.toml");
    std::fs::write(&config, "hypervisor = \"hull-vmm\"\n").unwrap();
    let out = hull(&config)
        .args(["boot", "--vcpus", "1", "--timeout", "120"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    match hull_vmm::usable() {
        Ok(_) => {
            assert!(out.status.success(), "{stdout}\n{stderr}");
            assert!(stdout.contains("hull-agent ready: cpus=1 "), "{stdout}");
            assert!(
                stdout.contains("hull: hull-vmm booted to ready"),
                "{stdout}"
            );
        }
        Err(_) => {
            assert!(!out.status.success(), "{stdout}\n{stderr}");
            assert!(stderr.contains("needs hardware KVM"), "{stderr}");
            assert!(!stdout.contains("booted"), "{stdout}");
        }
    }
}
