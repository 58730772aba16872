//! containerd end to end: `ctr run --rm` through hull's shim — exit codes, stdout and stderr
//! apart, a stdin round trip, a terminal with a resize, and nothing left behind.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use hull_tests::containerd::{Containerd, IMAGE, RUNTIME};
use hull_tests::tmux::Tmux;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_rm_exit_codes() {
    let Some(c) = Containerd::start() else { return };
    for (id, code) in [("exit-0", 0), ("exit-1", 1), ("exit-42", 42)] {
        let script = format!("exit {code}");
        let out = c.run_rm(id, &["sh", "-c", &script]);
        assert_eq!(out.status.code(), Some(code), "{id}: {}", c.explain(&out));
        c.assert_clean(id, Duration::from_secs(10));
    }
    let out = c.run_rm("true", &["true"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.assert_clean("true", Duration::from_secs(10));
}

#[test]
fn run_signalled_exit_code() {
    let Some(c) = Containerd::start() else { return };
    // The container's init ignores signals from inside its pid namespace, so kill it from
    // outside: `ctr run` (attached) reports 128 + SIGKILL.
    let run = c
        .ctr_command()
        .args([
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            IMAGE,
            "killed",
            "sleep",
            "600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.wait_status("killed", "RUNNING", Duration::from_secs(60));
    let out = c.ctr(&["task", "kill", "-s", "KILL", "killed"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", c.explain(&out));
    c.assert_clean("killed", Duration::from_secs(10));
}

#[test]
fn stdout_and_stderr_apart() {
    let Some(c) = Containerd::start() else { return };
    let out = c.run_rm(
        "streams",
        &[
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; seq 1 20000 | tail -n 1; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), "to-out\n20000\n", "{}", c.explain(&out));
    assert_eq!(text(&out.stderr), "to-err\n", "{}", c.explain(&out));
    // A fast exit after a lot of output: nothing may be lost.
    let out = c.run_rm("bulk", &["sh", "-c", "seq 1 100000"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 100_000);
    assert_eq!(lines.last(), Some(&"100000"));
}

#[test]
fn stdin_round_trip() {
    let Some(c) = Containerd::start() else { return };
    let mut child = c
        .ctr_command()
        .args([
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            IMAGE,
            "cat",
            "sh",
            "-c",
            "cat; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), format!("{data}done\n"));
    c.assert_clean("cat", Duration::from_secs(10));
}

#[test]
fn terminal_prompt_and_resize() {
    let Some(c) = Containerd::start() else { return };
    let tmux = Tmux(c.dir().join("tmux.sock"));
    let run = format!(
        "{} run --rm -t --runtime {RUNTIME} {IMAGE} tty sh; echo ctr-exit=$?; sleep 600",
        c.ctr_shell()
    );
    tmux.start(80, 24, &run);
    tmux.wait_for("/ #", Duration::from_secs(60));
    tmux.keys("stty size; tty");
    let pane = tmux.wait_for("/dev/pts/", Duration::from_secs(20));
    assert!(pane.contains("24 80"), "initial size:\n{pane}");
    tmux.resize(100, 40);
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys("stty size");
    let pane = tmux.wait_for("40 100", Duration::from_secs(20));
    tmux.keys("exit 7");
    let pane2 = tmux.wait_for("ctr-exit=", Duration::from_secs(30));
    assert!(pane2.contains("ctr-exit=7"), "{pane}\n---\n{pane2}");
    c.assert_clean("tty", Duration::from_secs(10));
}

#[test]
fn host_rootfs_and_bind_volumes() {
    let Some(c) = Containerd::start() else { return };
    // A root filesystem from a host directory (no snapshot: the shim shares root.path).
    let root = c.dir().join("hostroot");
    hull_tests::rootfs::busybox_rootfs(&root).unwrap();
    std::fs::write(root.join("etc/marker"), "from the host\n").unwrap();
    let out = c.ctr(&[
        "run",
        "--rm",
        "--rootfs",
        "--runtime",
        RUNTIME,
        root.to_str().unwrap(),
        "hostroot",
        "cat",
        "/etc/marker",
    ]);
    assert_eq!(text(&out.stdout), "from the host\n", "{}", c.explain(&out));
    c.assert_clean("hostroot", Duration::from_secs(10));

    // Volumes: read-only and read-write host directories.
    let ro = c.dir().join("vol-ro");
    let rw = c.dir().join("vol-rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("in"), "read me\n").unwrap();
    let ro_mount = format!("type=bind,src={},dst=/ro,options=rbind:ro", ro.display());
    let rw_mount = format!("type=bind,src={},dst=/rw,options=rbind:rw", rw.display());
    let out = c.ctr(&[
        "run",
        "--rm",
        "--mount",
        &ro_mount,
        "--mount",
        &rw_mount,
        "--runtime",
        RUNTIME,
        IMAGE,
        "volumes",
        "sh",
        "-c",
        "cat /ro/in; echo written >/rw/out; touch /ro/x 2>/dev/null && echo ro-writable; true",
    ]);
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), "read me\n", "{}", c.explain(&out));
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written\n"
    );
    assert!(!ro.join("x").exists());
    c.assert_clean("volumes", Duration::from_secs(10));
    // The volumes themselves are untouched by the clean-up.
    assert_eq!(std::fs::read_to_string(ro.join("in")).unwrap(), "read me\n");
}
