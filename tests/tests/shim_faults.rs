//! containerd end to end: a pod's VMM or shim killed with SIGKILL under a running task — the task
//! ends, containerd can delete it, and nothing is left behind.

use std::time::Duration;

use hull_tests::containerd::{processes, Containerd};

fn kill9(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn vmm_killed_under_a_task() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("vmmkill", &["sleep", "100000"]);
    c.wait_status("vmmkill", "RUNNING", Duration::from_secs(60));
    kill9(c.task_pid("vmmkill").expect("VMM pid"));
    c.wait_status("vmmkill", "STOPPED", Duration::from_secs(20));
    assert!(
        c.delete_task("vmmkill").is_some(),
        "delete after the VMM died"
    );
    let _ = c.ctr(&["container", "delete", "vmmkill"]);
    c.assert_clean("vmmkill", Duration::from_secs(10));
}

#[test]
fn shim_killed_under_a_task() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("shimkill", &["sleep", "100000"]);
    c.wait_status("shimkill", "RUNNING", Duration::from_secs(60));
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
    kill9(shim);
    // containerd notices, runs `containerd-shim-hull-v2 delete`, which kills the VM and cleans
    // the pod directory.
    // containerd 1.6 then drops the task (or shows it STOPPED until deleted).
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
    c.assert_clean("shimkill", Duration::from_secs(15));
}
