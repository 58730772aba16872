//! hull under the engines besides the host's containerd 1.6, each started by the test with its own
//! root, state, socket and configuration (`scripts/install-engines.sh` installs them off `PATH`):
//! containerd 1.7 (Debian trixie's) through `ctr` and through CRI, and CRI-O 1.26 with hull as its
//! `runtime_type = "vm"` runtime `hull`. Each engine gets one pod or two containers (VM boots cost
//! seconds under TCG); containerd 1.6's own suites check much more.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use hull_tests::containerd::{Containerd, Options, IMAGE, RUNTIME};
use hull_tests::core_pod::{core_pod, engine_version};
use hull_tests::cri::Cri;
use hull_tests::engines;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// containerd 1.7 from its own directory, as `options` asks.
fn containerd_1_7_options() -> Option<Options> {
    Some(Options {
        containerd_bin: Some(engines::containerd_1_7()?),
        ..Default::default()
    })
}

#[test]
fn containerd_1_7_runs_execs_and_kills_through_ctr() {
    let Some(options) = containerd_1_7_options() else {
        return;
    };
    let Some(c) = Containerd::start_with(&options) else {
        return;
    };
    let version = text(&c.ctr(&["version"]).stdout);
    let server = version.split("Server:").nth(1).unwrap_or_default();
    assert!(server.contains("Version:  1.7."), "{version}");

    // Attached: stdin in, stdout and stderr apart, the exit code out, nothing left.
    let mut run = c
        .ctr_command()
        .args(["run", "--rm", "--runtime", RUNTIME, IMAGE, "io17"])
        .args(["sh", "-c", "cat; echo to-err >&2; exit 42"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    run.stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), data, "{}", c.explain(&out));
    assert_eq!(text(&out.stderr), "to-err\n", "{}", c.explain(&out));
    c.assert_clean("io17", Duration::from_secs(10));

    // Detached: exec (output, exit code), pause and resume, kill, delete, nothing left.
    c.run_detached("svc17", &["sleep", "600"]);
    c.wait_status("svc17", "RUNNING", Duration::from_secs(60));
    assert_eq!(c.exec_out("svc17", "e1", &["echo", "in-exec"]), "in-exec\n");
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "svc17",
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", c.explain(&out));
    for (verb, status) in [("pause", "PAUSED"), ("resume", "RUNNING")] {
        let out = c.ctr(&["task", verb, "svc17"]);
        assert!(out.status.success(), "{verb}: {}", c.explain(&out));
        c.wait_status("svc17", status, Duration::from_secs(30));
    }
    let out = c.ctr(&["task", "kill", "-s", "KILL", "svc17"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.wait_status("svc17", "STOPPED", Duration::from_secs(30));
    assert_eq!(c.delete_task("svc17"), Some(137));
    let out = c.ctr(&["container", "delete", "svc17"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.assert_clean("svc17", Duration::from_secs(10));
}

#[test]
fn containerd_1_7_runs_a_cri_pod_in_one_vm() {
    let Some(options) = containerd_1_7_options() else {
        return;
    };
    let Some(cri) = Cri::start_with(options) else {
        return;
    };
    let (name, version) = engine_version(&cri);
    eprintln!("engine: {name} {version}");
    assert_eq!(name, "containerd");
    assert!(version.starts_with("1.7."), "{version}");
    core_pod(&cri, "ctrd17", &|pod, netns| cri.leftovers(pod, netns));
}

#[test]
fn crio_runs_a_pod_in_one_vm() {
    let Some(cri) = Cri::start_crio(Options::default()) else {
        return;
    };
    let (name, version) = engine_version(&cri);
    eprintln!("engine: {name} {version}");
    assert_eq!(name, "cri-o");
    assert!(version.starts_with("1.26."), "{version}");
    core_pod(&cri, "crio", &|pod, netns| {
        let mut left = cri
            .crio()
            .leftovers(pod, &format!("/{}", cri.pod_cgroup("crio")));
        if let Some(netns) = netns.filter(|p| p.exists()) {
            left.push(format!("network namespace {}", netns.display()));
        }
        left
    });
}
