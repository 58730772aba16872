//! containerd end to end: once its pod VM runs, every thread of the shim is under its seccomp
//! filter (`hull_runtime::seccomp`), and the shim still does all its work after that: exec with
//! output, stats, kill, delete and a clean teardown. The VMM and virtiofsd have filters of their
//! own. `seccomp = false` leaves the shim unconfined.

use std::time::Duration;

use hull_tests::containerd::{Containerd, Options};
use hull_tests::faults::{children, PodPids};

/// `field` of `/proc/<pid>/task/<tid>/status` for every thread of `pid`.
fn thread_fields(pid: u32, field: &str) -> Vec<(u32, String)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let tid: u32 = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .parse()
            .unwrap();
        let status = std::fs::read_to_string(format!("{dir}/{tid}/status")).unwrap_or_default();
        if let Some(value) = status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        {
            out.push((tid, value.trim().to_owned()));
        }
    }
    out
}

fn seccomp_mode(pid: u32) -> String {
    thread_fields(pid, "Seccomp")
        .into_iter()
        .find(|(tid, _)| *tid == pid)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[test]
fn a_running_pods_shim_is_confined_and_still_serves_its_tasks() {
    let Some(c) = Containerd::start() else { return };
    let id = "seccomp1";
    c.run_detached(id, &["sleep", "100000"]);
    c.wait_status(id, "RUNNING", Duration::from_secs(60));
    let shim = c.shim_pid(id).expect("the shim");
    let threads = thread_fields(shim, "Seccomp");
    assert!(threads.len() >= 2, "shim threads: {threads:?}");
    for (tid, mode) in &threads {
        assert_eq!(mode, "2", "shim thread {tid} is not filtered: {threads:?}");
    }
    for (tid, nnp) in thread_fields(shim, "NoNewPrivs") {
        assert_eq!(nnp, "1", "shim thread {tid} has no no_new_privs");
    }
    // The pod's other processes carry filters of their own.
    let pids = PodPids::of(&c, id);
    assert_eq!(seccomp_mode(pids.vmm_inside), "2", "QEMU's -sandbox");
    let virtiofsd = pids.virtiofsd.expect("the pod shares its rootfs");
    // `--sandbox namespace` forks: the child in the sandbox serves, under the filter.
    let serving = children(virtiofsd);
    assert_eq!(serving.len(), 1, "virtiofsd {virtiofsd}'s children");
    assert_eq!(seccomp_mode(serving[0]), "2", "virtiofsd's seccomp");

    // Everything the shim does for a running task works under the filter (new threads too).
    for i in 0..3 {
        let out = c.exec_out(
            id,
            &format!("e{i}"),
            &["sh", "-c", "echo out; echo err >&2"],
        );
        assert_eq!(out.trim(), "out");
    }
    let metrics = c.ctr(&["task", "metrics", id]);
    assert!(metrics.status.success(), "{}", c.explain(&metrics));
    let ps = c.ctr(&["task", "ps", id]);
    assert!(ps.status.success(), "{}", c.explain(&ps));
    c.ctr(&["task", "kill", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED", Duration::from_secs(30));
    assert_eq!(c.delete_task(id), Some(137));
    let _ = c.ctr(&["container", "delete", id]);
    c.assert_clean(id, Duration::from_secs(15));
    assert!(
        !c.log().contains("SIGSYS"),
        "something was killed by seccomp:\n{}",
        c.log()
    );
}

#[test]
fn seccomp_false_leaves_the_shim_unconfined() {
    let Some(c) = Containerd::start_with(&Options {
        extra_config: "seccomp = false\n".into(),
        ..Options::default()
    }) else {
        return;
    };
    let id = "seccomp0";
    c.run_detached(id, &["sleep", "100000"]);
    c.wait_status(id, "RUNNING", Duration::from_secs(60));
    let shim = c.shim_pid(id).expect("the shim");
    let threads = thread_fields(shim, "Seccomp");
    assert!(
        threads.iter().all(|(_, mode)| mode == "0"),
        "seccomp = false, yet: {threads:?}"
    );
    c.ctr(&["task", "kill", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED", Duration::from_secs(30));
    assert_eq!(c.delete_task(id), Some(137));
    let _ = c.ctr(&["container", "delete", id]);
    c.assert_clean(id, Duration::from_secs(15));
}
