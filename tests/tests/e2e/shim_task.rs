//! containerd end to end: `ctr task …` on running hull containers — exec with and without a
//! terminal, kill with TERM and KILL, pause/resume (an exec while paused refused with the agent's
//! plain message), metrics, ps, the host's hostname, checkpoint (refused), an OOM
//! kill's event, two containers at once, a containerd restart under a running task.
//! (ctr 1.6 has no `task update`; the shim's Update is not driven from here.)

use std::process::Command;
use std::time::Duration;

use hull_tests::containerd::Containerd;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const LOOP: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 7' TERM; while :; do sleep 0.2; done",
];

fn named_loop(name: &str) -> Vec<String> {
    let script = format!("echo {name} >/tmp/name; trap 'exit 7' TERM; while :; do sleep 0.2; done");
    vec!["sh".into(), "-c".into(), script]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn exec_with_and_without_terminal() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("ex", &strs(&named_loop("ex")));
    c.wait_status("ex", "RUNNING", Duration::from_secs(60));
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "ex",
        "sh",
        "-c",
        "echo in-$(cat /tmp/name); echo err >&2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), "in-ex\n", "{}", c.explain(&out));
    assert_eq!(text(&out.stderr), "err\n", "{}", c.explain(&out));
    // With a terminal (ctr needs one on its side: `script` gives it a pty).
    let cmd = format!(
        "{} task exec -t --exec-id e2 ex sh -c 'tty; exit 4'",
        c.ctr_shell()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", c.explain(&out));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        c.explain(&out)
    );
    // stdin of an exec: data through, then end of input (ctr's CloseIO) ends `cat`.
    let mut child = c
        .ctr_command()
        .args([
            "task",
            "exec",
            "--exec-id",
            "e3",
            "ex",
            "sh",
            "-c",
            "cat; echo eof",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"via exec stdin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(
        text(&out.stdout),
        "via exec stdin\neof\n",
        "{}",
        c.explain(&out)
    );
    // The exec ids are gone after they ended; a new exec with the same id works.
    let out = c.ctr(&["task", "exec", "--exec-id", "e1", "ex", "true"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(c.remove("ex"), Some(137));
    c.assert_clean("ex", Duration::from_secs(10));
}

#[test]
fn kill_term_and_kill() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("term", LOOP);
    c.run_detached("kill", &["sleep", "600"]);
    c.wait_status("term", "RUNNING", Duration::from_secs(60));
    c.wait_status("kill", "RUNNING", Duration::from_secs(60));
    let out = c.ctr(&["task", "kill", "-s", "TERM", "term"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    let out = c.ctr(&["task", "kill", "-s", "KILL", "kill"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.wait_status("term", "STOPPED", Duration::from_secs(20));
    c.wait_status("kill", "STOPPED", Duration::from_secs(20));
    assert_eq!(c.delete_task("term"), Some(7));
    assert_eq!(c.delete_task("kill"), Some(137));
    for id in ["term", "kill"] {
        let _ = c.ctr(&["container", "delete", id]);
        c.assert_clean(id, Duration::from_secs(10));
    }
}

#[test]
fn pause_resume_metrics_ps() {
    // Also: an exec into the paused task fails with the agent's plain message, and the container
    // (no hostname in its spec) shows the host's name.
    let Some(c) = Containerd::start() else { return };
    c.run_detached(
        "pr",
        &["sh", "-c", "while :; do echo x >/dev/null; sleep 0.1; done"],
    );
    c.wait_status("pr", "RUNNING", Duration::from_secs(60));
    let out = c.ctr(&["task", "pause", "pr"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.wait_status("pr", "PAUSED", Duration::from_secs(5));
    // The agent's refusal reaches the user as its message, not as a debug dump of the status.
    let out = c.ctr(&["task", "exec", "--exec-id", "frozen", "pr", "true"]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(": the container is paused: failed precondition")
            && !err.contains("Status")
            && !err.contains("special_fields")
            && !err.contains("agent call"),
        "{err}"
    );
    let out = c.ctr(&["task", "resume", "pr"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.wait_status("pr", "RUNNING", Duration::from_secs(5));

    let out = c.ctr(&["task", "metrics", "pr"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    let table = text(&out.stdout);
    let value = |name: &str| -> u64 {
        table
            .lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(name)).then(|| cols.next().unwrap_or("").parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {name} in:\n{table}"))
    };
    assert!(value("memory.usage") > 0, "{table}");
    assert!(value("cpu.usage_usec") > 0, "{table}");
    assert!(value("pids.current") >= 1, "{table}");

    let out = c.ctr(&["task", "ps", "pr"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    let pids: Vec<u32> = text(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!pids.is_empty(), "{}", c.explain(&out));
    // `ctr run` sets no hostname: the container shows the host's, as under runc.
    let host = nix::unistd::gethostname().expect("hostname");
    assert_eq!(
        c.exec_out("pr", "hn", &["hostname"]).trim(),
        host.to_str().expect("utf-8 hostname")
    );
    assert_eq!(c.remove("pr"), Some(137));
    c.assert_clean("pr", Duration::from_secs(10));
}

#[test]
fn two_containers_at_once() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("one", &strs(&named_loop("one")));
    c.run_detached("two", &strs(&named_loop("two")));
    c.wait_status("one", "RUNNING", Duration::from_secs(60));
    c.wait_status("two", "RUNNING", Duration::from_secs(60));
    for id in ["one", "two"] {
        let out = c.ctr(&["task", "exec", "--exec-id", "h", id, "cat", "/tmp/name"]);
        assert_eq!(text(&out.stdout), format!("{id}\n"), "{}", c.explain(&out));
    }
    // Each is its own pod: two VMs.
    let vms = std::fs::read_dir(c.run_dir()).unwrap().count();
    assert_eq!(vms, 2);
    assert_eq!(c.remove("one"), Some(137));
    c.assert_clean("one", Duration::from_secs(10));
    assert_eq!(c.task_status("two").as_deref(), Some("RUNNING"));
    assert_eq!(c.remove("two"), Some(137));
    c.assert_clean("two", Duration::from_secs(10));
}

#[test]
fn checkpoint_refused_and_oom_event() {
    let Some(c) = Containerd::start() else { return };
    c.run_detached("up", LOOP);
    c.wait_status("up", "RUNNING", Duration::from_secs(60));
    let out = c.ctr(&["task", "checkpoint", "up"]);
    assert!(!out.status.success(), "{}", c.explain(&out));
    assert!(
        text(&out.stderr).contains("not supported"),
        "{}",
        c.explain(&out)
    );
    assert_eq!(c.remove("up"), Some(137));

    // An OOM kill in the guest: exit 137 and a TaskOOM event.
    let mut events = c
        .ctr_command()
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "33554432",
        "--runtime",
        hull_tests::containerd::RUNTIME,
        hull_tests::containerd::IMAGE,
        "oom",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", c.explain(&out));
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let seen = text(&events.wait_with_output().unwrap().stdout);
    assert_eq!(
        seen.matches("/tasks/oom").count(),
        1,
        "one OOM event expected in:\n{seen}"
    );
    c.assert_clean("oom", Duration::from_secs(10));
}

#[test]
fn containerd_restart_keeps_the_task_manageable() {
    let Some(mut c) = Containerd::start() else {
        return;
    };
    c.run_detached("survivor", &strs(&named_loop("survivor")));
    c.wait_status("survivor", "RUNNING", Duration::from_secs(60));
    c.restart();
    c.wait_status("survivor", "RUNNING", Duration::from_secs(20));
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        "survivor",
        "cat",
        "/tmp/name",
    ]);
    assert_eq!(text(&out.stdout), "survivor\n", "{}", c.explain(&out));
    let out = c.ctr(&["task", "kill", "-s", "TERM", "survivor"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    c.wait_status("survivor", "STOPPED", Duration::from_secs(20));
    assert_eq!(c.delete_task("survivor"), Some(7));
    let _ = c.ctr(&["container", "delete", "survivor"]);
    c.assert_clean("survivor", Duration::from_secs(10));
}
