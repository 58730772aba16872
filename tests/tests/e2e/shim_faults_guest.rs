//! containerd end to end: faults inside the guest — a container's processes killed by another
//! process of the pod, a guest kernel panic, a guest that stops answering. Each ends (or fails
//! a call) the way `docs/shim.md` "Faults" says, and nothing is left behind.

use std::time::{Duration, Instant};

use hull_tests::containerd::Containerd;
use hull_tests::faults::{signal, wait_log_line, Events, PodPids};
use nix::sys::signal::Signal;

const SLEEP: &[&str] = &["sleep", "100000"];

#[test]
fn a_container_killed_inside_the_guest_ends_with_137() {
    let Some(c) = Containerd::start() else { return };
    let events = Events::watch(&c);
    // A pod whose second container shares the sandbox's PID namespace (as Kubernetes'
    // shareProcessNamespace does): the sandbox's processes can kill the victim's.
    let sandbox = "io.kubernetes.cri.sandbox-id=killpod";
    c.run_detached_with("killpod", &["--annotation", sandbox], SLEEP);
    c.wait_status("killpod", "RUNNING", Duration::from_secs(60));
    let vmm = c.task_pid("killpod").expect("the pod's pid");
    let pid_ns = format!("pid:/proc/{vmm}/ns/pid");
    c.run_detached_with(
        "victim",
        &["--annotation", sandbox, "--with-ns", &pid_ns],
        &["sh", "-c", "sleep 100000 & sleep 100000"],
    );
    c.wait_status("victim", "RUNNING", Duration::from_secs(60));
    // Every process the sandbox's exec may signal, but its namespace's init and itself.
    let out = c.exec_out("killpod", "k", &["sh", "-c", "kill -9 -1; echo rc=$?"]);
    assert_eq!(out, "rc=0\n");
    c.wait_status("victim", "STOPPED", Duration::from_secs(30));
    let line = wait_log_line(
        &c,
        &[
            "container victim was killed by SIGKILL in the guest",
            "exit status 137",
        ],
        Duration::from_secs(10),
    );
    eprintln!("{line}");
    assert_eq!(
        events.wait_init_exits("victim", Duration::from_secs(10)),
        vec![137]
    );
    // The pod lives on.
    assert_eq!(c.task_status("killpod").as_deref(), Some("RUNNING"));
    assert_eq!(c.exec_out("killpod", "a", &["echo", "alive"]), "alive\n");
    assert_eq!(c.delete_task("victim"), Some(137));
    let _ = c.ctr(&["container", "delete", "victim"]);
    assert_eq!(c.remove("killpod"), Some(137));
    c.assert_clean("victim", Duration::from_secs(10));
    c.assert_clean("killpod", Duration::from_secs(10));
}

#[test]
fn a_guest_kernel_panic_ends_the_task_and_is_logged() {
    let Some(c) = Containerd::start() else { return };
    // Unprivileged, the trigger is read-only (the default spec's readonlyPaths): no panic.
    let out = c.run_rm(
        "nopanic",
        &["sh", "-c", "echo c > /proc/sysrq-trigger; echo rc=$?"],
    );
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rc=1\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        c.explain(&out)
    );
    c.assert_clean("nopanic", Duration::from_secs(10));
    assert!(!c.log().contains("Kernel panic"), "{}", c.log());

    // Privileged, it crashes the guest kernel.
    let events = Events::watch(&c);
    c.run_detached_with("panic", &["--privileged"], SLEEP);
    c.wait_status("panic", "RUNNING", Duration::from_secs(60));
    let pids = PodPids::of(&c, "panic");
    let _ = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "crash",
        "panic",
        "sh",
        "-c",
        "echo c > /proc/sysrq-trigger",
    ]);
    c.wait_status("panic", "STOPPED", Duration::from_secs(60));
    let line = wait_log_line(
        &c,
        &[
            "pod VM down: the guest kernel panicked",
            "Kernel panic - not syncing: sysrq triggered crash",
            &format!("the VMM (pid {}) exited with code 0", pids.vmm),
        ],
        Duration::from_secs(10),
    );
    assert!(line.contains("ERROR"), "{line}");
    eprintln!("{line}");
    assert_eq!(
        events.wait_init_exits("panic", Duration::from_secs(10)),
        vec![137]
    );
    assert_eq!(c.delete_task("panic"), Some(137));
    let _ = c.ctr(&["container", "delete", "panic"]);
    c.assert_clean("panic", Duration::from_secs(15));
}

/// Runs `ctr args…`; its output and how long it took.
fn timed(c: &Containerd, args: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = c.ctr(args);
    (out, started.elapsed())
}

#[test]
fn a_hung_guest_fails_calls_in_time_and_recovers() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("hung", SLEEP);
    c.wait_status("hung", "RUNNING", Duration::from_secs(60));
    let pids = PodPids::of(&c, "hung");
    // The VMM stopped: the guest freezes, the agent answers nothing.
    signal(pids.vmm_inside, Signal::SIGSTOP);
    let resume = Resume(pids.vmm_inside);
    // Calls that need the agent fail once their deadline (10 s) passes, rather than hang
    // containerd. (SIGWINCH: harmless when the guest runs again and gets it late.)
    let bound = Duration::from_secs(45);
    for args in [
        &["task", "kill", "-s", "SIGWINCH", "hung"][..],
        &["task", "ps", "hung"][..],
    ] {
        let (out, took) = timed(&c, args);
        assert!(!out.status.success(), "{args:?} succeeded on a hung guest");
        assert!(took < bound, "{args:?} took {took:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("timeout"), "{args:?}: {}", c.explain(&out));
        eprintln!("{args:?} failed after {took:?}: {}", err.trim());
    }
    // What the shim knows without the agent still answers.
    let (out, took) = timed(&c, &["task", "ls"]);
    assert!(out.status.success() && took < bound, "{}", c.explain(&out));
    assert_eq!(c.task_status("hung").as_deref(), Some("RUNNING"));
    // Running again, the pod works as before.
    drop(resume);
    assert_eq!(c.exec_out("hung", "after", &["echo", "alive"]), "alive\n");
    assert_eq!(c.remove("hung"), Some(137));
    c.assert_clean("hung", Duration::from_secs(10));
}

/// Sends SIGCONT to a stopped process when dropped (also when the test fails).
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}
