//! containerd end to end: a pod's host processes killed with SIGKILL under a running task — the
//! VMM (and its jailer), virtiofsd, the vsock backend, the shim. Each time the task ends with one
//! `TaskExit` of status 137, the shim's log names what died (pid, how), containerd can delete the
//! task, and nothing is left behind (see `docs/shim.md`, "Faults").

use std::time::Duration;

use hull_tests::containerd::{processes, Containerd};
use hull_tests::faults::{signal, wait_log_line, Events, PodPids};
use nix::sys::signal::Signal;

const SLEEP: &[&str] = &["sleep", "100000"];

/// Whether `pid` is a live process (not gone, not a zombie).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Runs `id` (a sleep), lets `kill` kill a part of its pod, and checks the task's end: STOPPED,
/// one `TaskExit` with 137, a log line with each of `said`, deleted with 137, nothing left.
fn fault_ends_the_task(id: &str, kill: impl FnOnce(&PodPids) -> u32, said: &[&str]) {
    let Some(c) = Containerd::start() else { return };
    let events = Events::watch(&c);
    c.run_detached(id, SLEEP);
    c.wait_status(id, "RUNNING", Duration::from_secs(60));
    let pids = PodPids::of(&c, id);
    let victim = kill(&pids);
    c.wait_status(id, "STOPPED", Duration::from_secs(30));
    let pid = format!("(pid {victim})");
    let mut needles = vec!["pod VM down:", pid.as_str()];
    needles.extend_from_slice(said);
    let line = wait_log_line(&c, &needles, Duration::from_secs(10));
    assert!(line.contains("ERROR"), "{line}");
    eprintln!("{line}");
    let line = wait_log_line(
        &c,
        &[
            &format!("container {id}: its pod VM is down"),
            "exit status 137",
        ],
        Duration::from_secs(10),
    );
    eprintln!("{line}");
    assert_eq!(
        events.wait_init_exits(id, Duration::from_secs(10)),
        vec![137]
    );
    assert_eq!(c.delete_task(id), Some(137), "delete after the fault");
    let _ = c.ctr(&["container", "delete", id]);
    c.assert_clean(id, Duration::from_secs(15));
}

#[test]
fn vmm_killed_under_a_task() {
    // The VMM itself, inside its jail: its jailer reports the signal as 128 + 9.
    fault_ends_the_task(
        "vmmkill",
        |p| {
            assert_ne!(p.vmm_inside, p.vmm, "the VMM runs under its jailer");
            signal(p.vmm_inside, Signal::SIGKILL);
            p.vmm
        },
        &[
            "the VMM",
            "exited with code 137: the jailed VMM was killed by SIGKILL",
        ],
    );
}

#[test]
fn vmm_jailer_killed_under_a_task() {
    // The pid containerd knows for the task: the jailer, whose death takes the VMM with it.
    fault_ends_the_task(
        "jailerkill",
        |p| {
            signal(p.vmm, Signal::SIGKILL);
            p.vmm
        },
        &["the VMM", "was killed by SIGKILL"],
    );
}

#[test]
fn virtiofsd_killed_under_a_task() {
    // The pod cannot get its files back: the shim stops its VM.
    fault_ends_the_task(
        "fskill",
        |p| {
            let pid = p.virtiofsd.expect("the pod has a share");
            signal(pid, Signal::SIGKILL);
            pid
        },
        &["virtiofsd", "was killed by SIGKILL"],
    );
}

#[test]
fn vsock_backend_killed_under_a_task() {
    // The host cannot reach the agent any more: the shim stops the VM.
    fault_ends_the_task(
        "vsockkill",
        |p| {
            signal(p.vsock, Signal::SIGKILL);
            p.vsock
        },
        &["the vsock backend", "was killed by SIGKILL"],
    );
}

#[test]
fn shim_killed_under_a_task() {
    let Some(c) = Containerd::start() else { return };
    let events = Events::watch(&c);
    c.run_detached("shimkill", SLEEP);
    c.wait_status("shimkill", "RUNNING", Duration::from_secs(60));
    let pids = PodPids::of(&c, "shimkill");
    let socket = c.socket().display().to_string();
    let shim = processes()
        .into_iter()
        .find(|(_, cmd)| {
            cmd.contains("containerd-shim-hull-v2")
                && cmd.contains(" -id shimkill ")
                && cmd.contains(&socket)
        })
        .map(|(pid, _)| pid)
        .expect("the shim");
    signal(shim, Signal::SIGKILL);
    // containerd notices, runs `containerd-shim-hull-v2 delete` (which kills the VMM, vsock
    // backend and virtiofsd and removes the pod directory) and publishes the exit it reports.
    assert_eq!(
        events.wait_init_exits("shimkill", Duration::from_secs(30)),
        vec![137],
        "{}\n{}",
        events.text(),
        c.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.task_status("shimkill").is_some_and(|s| s != "STOPPED") {
        assert!(
            std::time::Instant::now() < deadline,
            "task still listed as running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.ctr(&["task", "delete", "shimkill"]);
    let _ = c.ctr(&["container", "delete", "shimkill"]);
    // Processes (the jailed VMM by its uid), mounts, the pod directory with its sockets, the
    // shim's socket.
    c.assert_clean("shimkill", Duration::from_secs(15));
    let mut parts = vec![pids.vmm, pids.vmm_inside, pids.vsock];
    parts.extend(pids.virtiofsd);
    for pid in parts {
        assert!(!is_running(pid), "pod process {pid} survived its shim");
    }
}
