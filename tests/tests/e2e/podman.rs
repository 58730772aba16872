//! `hull` as Podman's OCI runtime (`podman --runtime hull`, `docs/oci-cli.md`): Debian's podman
//! 4.3 through conmon (pipes, `-i`, `-it` in tmux with a resize, `exec -t`), with its own storage
//! and configuration, in a network namespace of the test's, each container in its own microVM
//! (`--network none` where the network is not what is tested; Podman's CNI bridge with a published
//! port where it is). And the runc command line itself, driven as conmon drives it, refusing
//! bad input with runc's exit status and a clear message. Every test ends with nothing left: no
//! monitor, VMM, virtiofsd, vsock backend, conmon, mount, state or pod directory.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use hull_tests::podman::Podman;
use hull_tests::tmux::Tmux;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn podman() -> Option<Podman> {
    match Podman::launch() {
        Ok(p) => Some(p),
        Err(hull_tests::containerd::LaunchError::Missing(why)) => {
            hull_test_support::skip_or_fail(&why);
            None
        }
        Err(e) => panic!("cannot set up podman: {e}"),
    }
}

fn run(p: &Podman, extra: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(extra);
    args.push(p.image());
    args.extend_from_slice(cmd);
    p.podman(&args)
}

#[test]
fn podman_run_gives_exit_codes_stdio_and_a_guest_kernel() {
    let Some(p) = podman() else { return };

    // Exit codes, stdout and stderr apart; the kernel is the guest's, not the host's.
    let out = run(&p, &[], &["sh", "-c", "uname -r; echo to-err >&2; exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{}", p.explain(&out));
    hull_tests::assert_guest_kernel(&text(&out.stdout));
    assert_eq!(text(&out.stderr), "to-err\n", "{}", p.explain(&out));
    for (cmd, code) in [("true", 0), ("false", 1)] {
        let out = run(&p, &[], &[cmd]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", p.explain(&out));
    }

    // stdin round trip (-i): every byte back.
    let mut child = p
        .command()
        .args(["run", "--rm", "-i", "--network", "none", p.image(), "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data: String = (0..3000).map(|i| format!("line {i}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", p.explain(&out));
    assert!(
        text(&out.stdout) == data,
        "stdin came back as {} bytes of {}: {}",
        out.stdout.len(),
        data.len(),
        p.explain(&out)
    );

    p.assert_clean(Duration::from_secs(20));
}

#[test]
fn podman_exec_pause_stop_kill_and_rm() {
    let Some(p) = podman() else { return };
    let out = p.podman(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "none",
        p.image(),
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(out.status.success(), "{}", p.explain(&out));

    // exec: output and exit code.
    let out = p.podman(&["exec", "c1", "sh", "-c", "echo in-c1; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", p.explain(&out));
    assert_eq!(text(&out.stdout), "in-c1\n", "{}", p.explain(&out));
    let state = p.podman(&["inspect", "-f", "{{.State.Status}}", "c1"]);
    assert_eq!(
        text(&state.stdout).trim(),
        "running",
        "{}",
        p.explain(&state)
    );

    // pause and unpause: Podman's status and hull's own state agree, and the process carries
    // on afterwards (an exec answers).
    let inspect = p.podman(&["inspect", "-f", "{{.Id}}", "c1"]);
    let id = text(&inspect.stdout).trim().to_owned();
    for (verb, podman_status, oci_status) in [
        ("pause", "paused", "paused"),
        ("unpause", "running", "running"),
    ] {
        let out = p.podman(&[verb, "c1"]);
        assert!(out.status.success(), "{verb}: {}", p.explain(&out));
        let state = p.podman(&["inspect", "-f", "{{.State.Status}}", "c1"]);
        assert_eq!(text(&state.stdout).trim(), podman_status, "{verb}");
        let out = p.hull().args(["state", &id]).output().unwrap();
        let state: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("hull state after {verb}: {e}: {}", p.explain(&out)));
        assert_eq!(state["status"], oci_status, "{verb}: {state}");
    }
    let out = p.podman(&["exec", "c1", "echo", "after-unpause"]);
    assert_eq!(text(&out.stdout), "after-unpause\n", "{}", p.explain(&out));

    // stop: SIGTERM reaches the trap, its status is the container's.
    let out = p.podman(&["stop", "-t", "20", "c1"]);
    assert!(out.status.success(), "{}", p.explain(&out));
    let code = p.podman(&["inspect", "-f", "{{.State.ExitCode}}", "c1"]);
    assert_eq!(text(&code.stdout).trim(), "7", "{}", p.explain(&code));
    let logs = p.podman(&["logs", "c1"]);
    assert!(
        text(&logs.stdout).contains("got-term"),
        "{}",
        p.explain(&logs)
    );
    let out = p.podman(&["rm", "c1"]);
    assert!(out.status.success(), "{}", p.explain(&out));

    // A detached container (it outlives the `podman run -d` that started it) as a user, with a
    // memory limit and a read-only root: each holds in the guest. Then stats and update on it;
    // kill: SIGKILL → 137; then rm -f of a running one.
    let out = p.podman(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "none",
        "--user",
        "1000:1000",
        "--memory",
        "96m",
        // Podman's default tmpfs mounts of a read-only container ask for `tmpcopyup`, which the
        // agent does not do yet.
        "--read-only",
        "--read-only-tmpfs=false",
        p.image(),
        "sleep",
        "600",
    ]);
    assert!(out.status.success(), "{}", p.explain(&out));
    limits_stats_and_update(&p, "c2");
    let out = p.podman(&["kill", "c2"]);
    assert!(out.status.success(), "{}", p.explain(&out));
    let out = p.podman(&["wait", "c2"]);
    assert_eq!(text(&out.stdout).trim(), "137", "{}", p.explain(&out));
    let out = p.podman(&["rm", "c2"]);
    assert!(out.status.success(), "{}", p.explain(&out));

    let out = p.podman(&[
        "run",
        "-d",
        "--name",
        "c3",
        "--network",
        "none",
        p.image(),
        "sleep",
        "600",
    ]);
    assert!(out.status.success(), "{}", p.explain(&out));
    let out = p.podman(&["rm", "-f", "-t", "0", "c3"]);
    assert!(out.status.success(), "{}", p.explain(&out));
    p.assert_clean(Duration::from_secs(20));
}

/// The guest cgroup file `name` of container `c`'s processes.
fn guest_cgroup(p: &Podman, c: &str, name: &str) -> String {
    let script = format!("cat /sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/{name}");
    let out = p.podman(&["exec", c, "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", p.explain(&out));
    text(&out.stdout).trim().to_owned()
}

/// `c` runs `sleep` as 1000:1000 with a 96 MiB limit on a read-only root: all three hold in the
/// guest; `podman stats` and `hull events --stats` report it; `podman update` and `hull update`
/// change its memory limit in the guest.
fn limits_stats_and_update(p: &Podman, c: &str) {
    let out = p.podman(&["exec", c, "sh", "-c", "echo $(id -u):$(id -g)"]);
    assert_eq!(text(&out.stdout), "1000:1000\n", "{}", p.explain(&out));
    let out = p.podman(&["exec", c, "touch", "/x"]);
    assert_ne!(out.status.code(), Some(0), "a read-only root took a write");
    assert!(
        text(&out.stderr).contains("Read-only"),
        "{}",
        p.explain(&out)
    );
    assert_eq!(guest_cgroup(p, c, "memory.max"), (96u64 << 20).to_string());

    let out = p.podman(&["stats", "--no-stream", "--format", "json", c]);
    assert!(out.status.success(), "{}", p.explain(&out));
    let stats: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", p.explain(&out)));
    // Podman reads the host cgroup it named (the VM's host processes are in it), not the runtime.
    assert_eq!(stats[0]["name"], c, "{stats}");
    assert!(
        !stats[0]["mem_usage"]
            .as_str()
            .unwrap_or("0B")
            .starts_with("0B"),
        "{stats}"
    );

    let inspect = p.podman(&["inspect", "-f", "{{.Id}}", c]);
    let id = text(&inspect.stdout).trim().to_owned();
    let out = p.hull().args(["events", "--stats", &id]).output().unwrap();
    assert!(out.status.success(), "{}", p.explain(&out));
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id.as_str());
    let usage = event["data"]["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(usage > 0 && usage < 96 << 20, "{event}");
    assert_eq!(event["data"]["memory"]["usage"]["limit"], 96u64 << 20);
    assert!(
        event["data"]["pids"]["current"].as_u64() >= Some(1),
        "{event}"
    );

    let out = p.podman(&["update", "--memory", "80m", c]);
    assert!(out.status.success(), "{}", p.explain(&out));
    assert_eq!(guest_cgroup(p, c, "memory.max"), (80u64 << 20).to_string());
    let out = p
        .hull()
        .args(["update", "--memory", "72m", "--pids-limit", "50", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", p.explain(&out));
    assert_eq!(guest_cgroup(p, c, "memory.max"), (72u64 << 20).to_string());
    assert_eq!(guest_cgroup(p, c, "pids.max"), "50");
    // A limit the VM cannot hold is refused, the old one kept.
    let out = p
        .hull()
        .args(["update", "--memory", "64g", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", p.explain(&out));
    assert_eq!(guest_cgroup(p, c, "memory.max"), (72u64 << 20).to_string());
}

#[test]
fn podman_terminal_in_tmux_with_a_resize_and_exec_t() {
    let Some(p) = podman() else { return };
    let tmux = Tmux(p.dir().join("tmux.sock"));
    let run = format!(
        "{} run --rm -it --name t1 --network none {} sh; echo podman-exit=$?; sleep 600",
        p.shell(),
        p.image()
    );
    tmux.start(80, 24, &run);
    tmux.wait_for("/ #", Duration::from_secs(60));
    tmux.keys("stty size; tty");
    let pane = tmux.wait_for("/dev/pts/", Duration::from_secs(20));
    assert!(pane.contains("24 80"), "initial size:\n{pane}");

    // exec -t beside it: its own terminal, its exit code.
    let out = p.podman(&["exec", "-t", "t1", "sh", "-c", "tty; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", p.explain(&out));
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{}",
        p.explain(&out)
    );

    tmux.resize(100, 40);
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys("stty size");
    let pane = tmux.wait_for("40 100", Duration::from_secs(20));
    tmux.keys("exit 7");
    let pane2 = tmux.wait_for("podman-exit=", Duration::from_secs(30));
    assert!(pane2.contains("podman-exit=7"), "{pane}\n---\n{pane2}");
    drop(tmux);
    p.assert_clean(Duration::from_secs(20));
}

#[test]
fn podman_network_publishes_a_port_and_shares_a_volume() {
    let Some(p) = podman() else { return };
    // Podman's own network (its CNI bridge, in the test's namespace) reaches the VM; a published
    // port is reached on that namespace's loopback; a read-only volume is shared into the guest.
    let www = p.dir().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello-from-the-guest\n").unwrap();
    let volume = format!("{}:/www:ro", www.display());
    let out = p.podman(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-v",
        &volume,
        p.image(),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(out.status.success(), "{}", p.explain(&out));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let got = p
            .in_netns("wget")
            .args(["-q", "-O-", "-T", "5", "http://127.0.0.1:8080/"])
            .output()
            .unwrap();
        if got.status.success() || std::time::Instant::now() > deadline {
            break text(&got.stdout);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body, "hello-from-the-guest\n");
    let out = p.podman(&["exec", "web", "sh", "-c", "echo x > /www/x"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a read-only volume took a write"
    );
    let out = p.podman(&["exec", "web", "sh", "-c", "ip -4 addr show eth0"]);
    assert!(
        text(&out.stdout).contains("inet 10.88."),
        "{}",
        p.explain(&out)
    );
    let out = p.podman(&["rm", "-f", "-t", "0", "web"]);
    assert!(out.status.success(), "{}", p.explain(&out));
    p.assert_clean(Duration::from_secs(20));
}

/// A bundle of busybox under `dir` running `args`.
fn bundle(dir: &std::path::Path, args: &[&str]) {
    hull_tests::rootfs::busybox_rootfs(&dir.join("rootfs")).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": args, "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn runtime_cli_refuses_bad_input_like_runc() {
    let Some(p) = podman() else { return };
    let hull = |args: &[&str]| p.hull().args(args).stdin(Stdio::null()).output().unwrap();
    let work = tempfile::tempdir().unwrap();

    // Unknown verb and flag: clap's usage error.
    let out = hull(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("frobnicate"),
        "{}",
        text(&out.stderr)
    );
    let out = hull(&["create", "--no-such-flag", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--no-such-flag"),
        "{}",
        text(&out.stderr)
    );

    // A bundle without config.json; verbs on a container that does not exist.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = hull(&["create", "--bundle", &empty.display().to_string(), "nocfg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("config.json"),
        "{}",
        text(&out.stderr)
    );
    for verb in [
        &["start", "ghost"][..],
        &["kill", "ghost", "KILL"],
        &["state", "ghost"],
        &["delete", "ghost"],
    ] {
        let out = hull(verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        assert!(
            text(&out.stderr).contains("container ghost does not exist"),
            "{verb:?}: {}",
            text(&out.stderr)
        );
    }
    let out = hull(&["delete", "--force", "ghost"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = hull(&["kill", "ghost", "NOPE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown signal"),
        "{}",
        text(&out.stderr)
    );

    // One VM: create, a duplicate id, state, start, the process exits, kill of a stopped
    // container, start again, delete.
    let b = work.path().join("b");
    bundle(&b, &["sh", "-c", "echo hello; exit 5"]);
    let pid_file = work.path().join("pid");
    let mut create = p
        .hull()
        .args(["create", "--bundle", &b.display().to_string()])
        .args(["--pid-file", &pid_file.display().to_string(), "c1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The monitor holds stdout: read it only after it exits.
    let status = create.wait().unwrap();
    assert!(status.success(), "create failed");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&hull(&["state", "c1"]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    assert_eq!(state["id"], "c1");
    let out = hull(&["create", "--bundle", &b.display().to_string(), "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("container with id exists: c1"),
        "{}",
        text(&out.stderr)
    );
    let out = hull(&["start", "c1"]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state: serde_json::Value =
            serde_json::from_slice(&hull(&["state", "c1"]).stdout).unwrap();
        if state["status"] == "stopped" {
            assert_eq!(state["pid"], 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "c1 did not stop: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The monitor (the pid engines wait on) held create's stdout: the process's output is there.
    let mut output = String::new();
    std::io::Read::read_to_string(&mut create.stdout.take().unwrap(), &mut output).unwrap();
    assert_eq!(output, "hello\n");
    let out = hull(&["kill", "c1", "TERM"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("container not running"),
        "{}",
        text(&out.stderr)
    );
    let out = hull(&["start", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("has stopped"),
        "{}",
        text(&out.stderr)
    );
    let out = hull(&["delete", "c1"]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    let out = hull(&["state", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    p.assert_clean(Duration::from_secs(20));
}

/// The four hooks hull runs on the host, through `hull run` as an engine would drive it: each
/// gets the container's state on stdin (prestart and createRuntime before the VM boots, poststart
/// once the process runs, poststop at delete); a failing prestart hook fails the create.
#[test]
fn runtime_cli_runs_the_host_hooks_with_the_state_on_stdin() {
    let Some(p) = podman() else { return };
    let work = tempfile::tempdir().unwrap();
    let b = work.path().join("b");
    bundle(&b, &["echo", "hello"]);
    let hook = |name: &str| {
        let file = work.path().join(format!("{name}.json"));
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", file.display())]})
    };
    let config_path = b.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["hooks"] = serde_json::json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")],
    });
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = p
        .hull()
        .args(["run", "--bundle", &b.display().to_string(), "hooked"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    for (name, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let file = work.path().join(format!("{name}.json"));
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&file).unwrap_or_else(|e| panic!("{name} hook did not run: {e}")),
        )
        .unwrap();
        assert_eq!(state["id"], "hooked", "{name}: {state}");
        assert_eq!(state["status"], status, "{name}: {state}");
    }

    // A prestart hook that fails: create fails with its stderr, and nothing is left.
    config["hooks"] = serde_json::json!({
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no-network >&2; exit 3"]}],
    });
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = p
        .hull()
        .args(["run", "--bundle", &b.display().to_string(), "refused"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no-network"),
        "{}",
        text(&out.stderr)
    );
    let out = p.hull().args(["state", "refused"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    p.assert_clean(Duration::from_secs(20));
}
