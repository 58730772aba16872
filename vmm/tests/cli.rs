//! The command line's error messages: each mistake is named before any VM is created.

mod common;

use std::process::Command;

use common::vmm_bin;
use hull_vmm::testing::{guest, guest_elf};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(vmm_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_err(args: &[&str], needle: &str) {
    let (code, err) = run(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
}

#[test]
fn configuration_mistakes_have_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("guest.elf");
    std::fs::write(&kernel, guest_elf(&guest(&[]))).unwrap();
    let k = kernel.to_str().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5a; 4096]).unwrap();
    let big = dir.path().join("big.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();

    assert_err(
        &["--kernel", "/nonexistent/vmlinux"],
        "kernel /nonexistent/vmlinux does not exist",
    );
    assert_err(
        &["--kernel", junk.to_str().unwrap()],
        "is neither an x86_64 ELF vmlinux nor a bzImage",
    );
    assert_err(
        &[
            "--kernel",
            k,
            "--initrd",
            big.to_str().unwrap(),
            "--mem-mib",
            "32",
        ],
        "larger than the guest's 32 MiB of RAM",
    );
    assert_err(
        &["--kernel", k, "--initrd", "/nonexistent/initrd"],
        "initrd /nonexistent/initrd does not exist",
    );
    assert_err(
        &["--kernel", k, "--mem-mib", "8"],
        "8 MiB of guest memory is too little",
    );
    assert_err(
        &["--kernel", k, "--vcpus", "0"],
        "0 vCPUs requested; hull-vmm runs 1 to 64",
    );
    assert_err(&["--kernel", k, "--vcpus", "65"], "65 vCPUs requested");
    assert_err(&["--kernel", k, "--vcpus", "300"], "300 vCPUs requested");
    assert_err(
        &["--kernel", k, "--fs-socket", "/nonexistent/fs.sock"],
        "virtio-fs socket /nonexistent/fs.sock does not exist",
    );
    assert_err(
        &["--kernel", k, "--net-tap", "tap0", "--net-mac", "52:54:00"],
        "is not a MAC address",
    );
    assert_err(
        &[
            "--kernel",
            k,
            "--net-tap",
            "a/b",
            "--net-mac",
            "52:54:00:12:34:56",
        ],
        "tap name \"a/b\"",
    );
    let (code, err) = run(&["--kernel", k, "--cpuid-clear", "cmpxchg32b"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown CPUID feature"), "{err}");
    let (code, err) = run(&[]);
    assert_ne!(code, 0);
    assert!(err.contains("--kernel"), "{err}");
}

#[test]
fn check_reports_the_kind_of_kvm() {
    let out = Command::new(vmm_bin()).arg("--check").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        ["Hardware:", "Pvm:", "None:"]
            .iter()
            .any(|k| text.starts_with(k)),
        "{text}"
    );
}

/// A restore takes the VM's shape from the snapshot: shape flags are refused, and a directory
/// that holds no snapshot is named.
#[test]
fn restore_mistakes_have_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_err(&["--restore", d, "--vcpus", "2"], "cannot be used with");
    assert_err(&["--restore", d, "--mem-mib", "64"], "cannot be used with");
    assert_err(&["--restore", d], "snapshot file");
    assert_err(&["--restore", d], "state");
}
