//! containerd end to end: pod semantics through `ctr` — containers naming a sandbox (CRI's
//! `io.kubernetes.cri.sandbox-id`) share its shim and VM and join its namespaces in the guest;
//! the VM lives until the last of them is deleted; sizing annotations size the VM.

use std::time::Duration;

use hull_tests::containerd::Containerd;

const SLEEP: &[&str] = &["sleep", "100000"];

#[test]
fn pod_containers_share_the_sandbox_vm_and_namespaces() {
    let Some(c) = Containerd::start() else { return };
    let sandbox = "io.kubernetes.cri.sandbox-id=pod1";
    c.run_detached_with(
        "pod1",
        &[
            "--annotation",
            sandbox,
            "--annotation",
            "io.hull.memory_mib=384",
        ],
        SLEEP,
    );
    c.wait_status("pod1", "RUNNING", Duration::from_secs(60));
    let vmm = c.task_pid("pod1").expect("pod1's pid");
    let ipc = format!("ipc:/proc/{vmm}/ns/ipc");
    let uts = format!("uts:/proc/{vmm}/ns/uts");
    c.run_detached_with(
        "app1",
        &[
            "--annotation",
            sandbox,
            "--with-ns",
            &ipc,
            "--with-ns",
            &uts,
        ],
        SLEEP,
    );
    c.wait_status("app1", "RUNNING", Duration::from_secs(60));
    assert_eq!(c.task_pid("app1"), Some(vmm), "same VMM");
    let pods: Vec<_> = std::fs::read_dir(c.run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(pods, vec!["pod1"], "one VM for the pod");
    let boot = |id: &str| c.exec_out(id, "b", &["cat", "/proc/sys/kernel/random/boot_id"]);
    assert_eq!(boot("pod1"), boot("app1"));
    let ns = |id: &str, kind: &str| {
        c.exec_out(id, kind, &["readlink", &format!("/proc/self/ns/{kind}")])
    };
    assert_eq!(ns("pod1", "uts"), ns("app1", "uts"), "joined UTS");
    assert_eq!(ns("pod1", "ipc"), ns("app1", "ipc"), "joined IPC");
    assert_ne!(ns("pod1", "mnt"), ns("app1", "mnt"), "own mount namespace");
    // The sizing annotation of the sandbox sized the VM.
    let meminfo = c.exec_out("app1", "m", &["head", "-n", "1", "/proc/meminfo"]);
    let kib: u64 = meminfo
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (300 * 1024..=384 * 1024).contains(&kib),
        "MemTotal {kib} KiB"
    );

    assert_eq!(c.remove("app1"), Some(137));
    assert_eq!(c.task_status("pod1").as_deref(), Some("RUNNING"));
    assert!(c.run_dir().join("pod1").exists(), "the VM outlives app1");
    assert_eq!(c.remove("pod1"), Some(137));
    c.assert_clean("pod1", Duration::from_secs(10));
    c.assert_clean("app1", Duration::from_secs(10));
}
