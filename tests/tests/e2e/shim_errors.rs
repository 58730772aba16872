//! containerd end to end: what hull's shim leaves behind — nothing after a delete, nothing after
//! a failed create — and the errors containerd gets for a broken spec, a missing kernel, a bad
//! hull configuration, hull-vmm asked for on a host without hardware KVM, a VM that cannot boot
//! (its log kept and named, a real code), bad sizing annotations, and a VMM that stops its guest.

use std::time::Duration;

use hull_tests::containerd::{Containerd, Options, RUNTIME};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A containerd started with `options` (`None`: the test skips) in which `ctr run --rm` of
/// container `id` has failed, and that run's output.
fn failed_run(options: &Options, id: &str) -> Option<(Containerd, std::process::Output)> {
    let c = Containerd::start_with(options)?;
    let out = c.run_rm(id, &["true"]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    Some((c, out))
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
    let options = Options {
        kernel: Some("/nonexistent/hull/vmlinuz".into()),
        ..Options::default()
    };
    let Some((c, out)) = failed_run(&options, "nokernel") else {
        return;
    };
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
    let options = Options {
        extra_config: "default_vcpus = \"two\"".into(),
        ..Options::default()
    };
    let Some((c, out)) = failed_run(&options, "badconf") else {
        return;
    };
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
    let options = Options {
        hypervisor: Some("hull-vmm".into()),
        ..Options::default()
    };
    let Some((c, out)) = failed_run(&options, "nokvm") else {
        return;
    };
    let err = text(&out.stderr);
    assert!(
        err.contains("needs hardware KVM") && err.contains("/dev/kvm"),
        "{}",
        c.explain(&out)
    );
    c.assert_clean("nokvm", Duration::from_secs(10));
}

/// The file a boot failure's message says its logs are kept in.
fn kept_log(message: &str) -> Option<std::path::PathBuf> {
    let at = message.find("its logs are kept in ")? + "its logs are kept in ".len();
    let path = message[at..].split_whitespace().next()?;
    Some(path.trim_end_matches([':', ';', ',']).into())
}

#[test]
fn a_vm_that_cannot_boot_leaves_a_log_the_error_names_and_a_real_code() {
    // A real guest that cannot start: its kernel finds no init and panics.
    let options = Options {
        extra_config: "kernel_params = [\"rdinit=/nonexistent\"]".into(),
        ..Options::default()
    };
    let Some((c, out)) = failed_run(&options, "noinit") else {
        return;
    };
    let err = text(&out.stderr);
    // FAILED_PRECONDITION, which containerd passes on (INTERNAL would reach ctr as `unknown`).
    assert!(
        err.trim_end().ends_with(": failed precondition"),
        "{}",
        c.explain(&out)
    );
    assert!(
        err.contains("cannot start the pod VM") && err.contains("Kernel panic"),
        "the VMM's and the console's last words: {}",
        c.explain(&out)
    );
    assert!(
        !err.contains(&c.run_dir().display().to_string()),
        "names a removed file: {err}"
    );
    let log = kept_log(&err).unwrap_or_else(|| panic!("no kept log named: {}", c.explain(&out)));
    assert_eq!(log, c.log_dir().join("noinit.log"));
    let kept = std::fs::read_to_string(&log).expect("the kept log is readable");
    for part in [
        "pod noinit failed to start",
        "the VMM exited",
        "--- VMM output",
        "--- guest console",
        "Kernel panic - not syncing",
    ] {
        assert!(
            kept.contains(part),
            "{part:?} not in {}:\n{kept}",
            log.display()
        );
    }
    // The shim's log, which containerd keeps, has the console's end too.
    assert!(
        c.log().contains("Kernel panic - not syncing"),
        "{}",
        c.log()
    );
    c.assert_clean("noinit", Duration::from_secs(10));
    let _ = c.ctr(&["container", "delete", "noinit"]);
}

#[test]
fn bad_sizing_annotations_are_errors_naming_the_annotation() {
    let Some(c) = Containerd::start() else { return };
    for (i, (name, value, says)) in [
        ("io.hull.memory_mib", "0", "out of range"),
        ("io.hull.memory_mib", "1", "out of range"),
        ("io.hull.memory_mib", "abc", "not a whole number"),
        ("io.hull.memory_mib", "999999", "out of range"),
        ("io.hull.memory_mib", "", "not a whole number"),
        ("io.hull.vcpus", "0", "out of range"),
        ("io.hull.vcpus", "two", "not a whole number"),
        ("io.hull.vcpus", "65", "out of range"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("badsize{i}");
        let annotation = format!("{name}={value}");
        let out = c.ctr(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--annotation",
            &annotation,
            hull_tests::containerd::IMAGE,
            &id,
            "true",
        ]);
        assert!(!out.status.success(), "{annotation}: {}", c.explain(&out));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("annotation {name}=\"{value}\"")) && err.contains(says),
            "{annotation}: {}",
            c.explain(&out)
        );
        assert!(
            err.trim_end().ends_with(": invalid argument"),
            "{annotation}: {}",
            c.explain(&out)
        );
        c.assert_clean(&id, Duration::from_secs(10));
        let _ = c.ctr(&["container", "delete", &id]);
    }
}

#[test]
fn sizing_annotations_the_config_does_not_allow_are_ignored_with_a_warning() {
    let Some(c) = Containerd::start_with(&Options {
        extra_config: "sizing_annotations = []".into(),
        ..Options::default()
    }) else {
        return;
    };
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--annotation",
        "io.hull.memory_mib=abc",
        hull_tests::containerd::IMAGE,
        "ignored",
        "head",
        "-n",
        "1",
        "/proc/meminfo",
    ]);
    assert!(out.status.success(), "{}", c.explain(&out));
    // The default 256 MiB.
    let kib: u64 = text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (200 * 1024..=256 * 1024).contains(&kib),
        "MemTotal {kib} KiB"
    );
    let log = c.log();
    assert!(
        log.contains("sizing annotation ignored") && log.contains("io.hull.memory_mib"),
        "{}",
        hull_tests::containerd::tail(&log, 40)
    );
    c.assert_clean("ignored", Duration::from_secs(10));
}

#[test]
fn a_vmm_that_stops_its_guest_is_reported_with_its_words() {
    // KVM forced on a host whose KVM cannot run Linux (PVM): QEMU fails, and the pod's error
    // quotes it. With hardware KVM there is nothing to check.
    let probe = hull_runtime::vm::accel::HostProbe::read(&Default::default());
    if !probe.kvm_device {
        hull_tests::skip_or_fail("no /dev/kvm: KVM cannot be forced");
        return;
    }
    if hull_runtime::vm::accel::choose(&probe).accel == hull_runtime::vm::Accel::Kvm {
        eprintln!("this host has hardware KVM: a forced KVM boots; nothing to check");
        return;
    }
    // The PVH vmlinux reaches the instruction PVM cannot emulate sooner than the bzImage.
    let images = hull_runtime::images::GuestImages::from_env();
    let vmlinux = images.kernel.with_file_name("vmlinux");
    let options = Options {
        kernel: vmlinux.is_file().then_some(vmlinux),
        env: vec![("HULL_ACCEL".into(), "kvm".into())],
        ..Options::default()
    };
    let Some((c, out)) = failed_run(&options, "forcedkvm") else {
        return;
    };
    let err = text(&out.stderr);
    // Which words depends on the host's PVM: QEMU either stops the guest at its first
    // unemulated instruction ("KVM internal error"; the shim reads it off QEMU's output, since
    // QEMU does not exit) or aborts before the guest runs (a host on which PVM refuses an MSR:
    // "failed to set MSR 0x10a", exit 134). Either way the error quotes QEMU.
    let stopped = err.contains("the VMM stopped the guest: KVM internal error");
    let aborted = err.contains("the VMM exited") && err.contains("VMM: qemu-system-x86_64: ");
    assert!(
        stopped || aborted,
        "the VMM's words, not a boot timeout: {}",
        c.explain(&out)
    );
    assert!(!err.contains("within"), "not a timeout: {err}");
    assert!(err.trim_end().ends_with(": failed precondition"), "{err}");
    c.assert_clean("forcedkvm", Duration::from_secs(10));
    let _ = c.ctr(&["container", "delete", "forcedkvm"]);
}
