//! containerd end to end: what hull's shim leaves behind — nothing after a delete, nothing after
//! a failed create — and the errors containerd gets for a broken spec, a missing kernel, a bad
//! hull configuration, and hull-vmm asked for on a host without hardware KVM.

use std::time::Duration;

use hull_tests::containerd::{Containerd, Options, RUNTIME};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn delete_leaves_nothing_behind() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("gone", &["sleep", "600"]);
    c.wait_status("gone", "RUNNING", Duration::from_secs(60));
    let pod = c.run_dir().join("gone");
    assert!(pod.join("console.log").is_file(), "pod dir while running");
    assert!(!c.leftovers("gone").is_empty(), "a running task shows up");
    assert_eq!(c.remove("gone"), Some(137));
    c.assert_clean("gone", Duration::from_secs(10));
    assert!(!c.run_dir().join("gone").exists());
}

#[test]
fn broken_spec_is_a_clear_error() {
    let Some(c) = Containerd::start() else { return };
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin"],
            "rlimits": [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]
        },
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    });
    let path = c.dir().join("bad-spec.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--config",
        path.to_str().unwrap(),
        "badspec",
    ]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    let err = text(&out.stderr);
    assert!(err.contains("RLIMIT_BOGUS"), "{}", c.explain(&out));
    let _ = c.ctr(&["container", "delete", "badspec"]);
    c.assert_clean("badspec", Duration::from_secs(10));
}

#[test]
fn missing_kernel_is_a_clear_error() {
    let Some(c) = Containerd::start_with(&Options {
        kernel: Some("/nonexistent/hull/vmlinuz".into()),
        ..Options::default()
    }) else {
        return;
    };
    let out = c.run_rm("nokernel", &["true"]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("kernel") && err.contains("/nonexistent/hull/vmlinuz"),
        "{}",
        c.explain(&out)
    );
    c.assert_clean("nokernel", Duration::from_secs(10));
    assert!(c.ctr(&["container", "ls", "-q"]).stdout.is_empty());
}

#[test]
fn bad_hull_config_names_the_key() {
    let Some(c) = Containerd::start_with(&Options {
        extra_config: "default_vcpus = \"two\"".into(),
        ..Options::default()
    }) else {
        return;
    };
    let out = c.run_rm("badconf", &["true"]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    let err = text(&out.stderr);
    assert!(err.contains("default_vcpus"), "{}", c.explain(&out));
    c.assert_clean("badconf", Duration::from_secs(10));
}

#[test]
fn hull_vmm_without_hardware_kvm_is_a_clear_error() {
    if hull_runtime::vm::hull_vmm::usable().is_ok() {
        eprintln!("this host has hardware KVM: hull-vmm would run; nothing to check");
        return;
    }
    let Some(c) = Containerd::start_with(&Options {
        hypervisor: Some("hull-vmm".into()),
        ..Options::default()
    }) else {
        return;
    };
    let out = c.run_rm("nokvm", &["true"]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("needs hardware KVM") && err.contains("/dev/kvm"),
        "{}",
        c.explain(&out)
    );
    c.assert_clean("nokvm", Duration::from_secs(10));
}
