//! Host integration tests of the container library: create/start/exec/pause/resume/destroy of real containers, errors, concurrency.
//! See `common/mod.rs` for how they run (root, cgroup v2, busybox; skip loudly, never under CI).

mod common;

use common::*;

#[test]
fn exit_status_stdout_env_cwd_hostname() {
    if !root_or_skip("exit_status_stdout_env_cwd_hostname") {
        return;
    }
    let env = Env::new("exit");
    let mut v = base_spec(
        &env.id,
        &[
            "sh",
            "-c",
            "echo out $FOO $HOME; pwd; hostname; echo err >&2; exit 42",
        ],
    );
    v["process"]["cwd"] = json!("/tmp/work");
    let (status, out, err) = run(&env, v);
    assert!(exited(42)(&status), "{status:?} {err}");
    assert_eq!(out, "out bar /root\n/tmp/work\nhull-test\n");
    assert_eq!(err, "err\n");
}

#[test]
fn start_reports_a_missing_binary() {
    if !root_or_skip("start_reports_a_missing_binary") {
        return;
    }
    let env = Env::new("enoent");
    let s = spec(base_spec(&env.id, &["/bin/does-not-exist"]));
    let mut g = env.create(&s, no_io()).unwrap();
    match g.c().start() {
        Err(ContainerError::Exec { path, source }) => {
            assert_eq!(path, "/bin/does-not-exist");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(g.c().start(), Err(ContainerError::AlreadyStarted)));
    let status = wait_exit(g.c().init_pid());
    assert!(!exited(0)(&status));
    // Nothing runs in the container any more: exec says so.
    let p: Process =
        serde_json::from_value(base_spec(&env.id, &["true"])["process"].clone()).unwrap();
    assert!(matches!(
        g.c().exec(&p, no_io()),
        Err(ContainerError::NotRunning)
    ));
    g.destroy();
}

#[test]
fn pause_resume_pids_and_destroy() {
    if !root_or_skip("pause_resume_pids_and_destroy") {
        return;
    }
    let env = Env::new("pause");
    let s = spec(base_spec(&env.id, &["sh", "-c", "sleep 30 & sleep 30"]));
    let mut g = env.create(&s, no_io()).unwrap();
    let init = g.c().init_pid();
    // The bootstrap process leaves the cgroup when it exits, just after reporting the pid.
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.c().pids().unwrap().len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        g.c().pids().unwrap(),
        vec![init.as_raw()],
        "only init before start"
    );
    assert!(g.c().cgroup_path().starts_with(&env.cgroup_root));
    g.c().start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.c().pids().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(g.c().pids().unwrap().len(), 2);
    g.c().pause().unwrap();
    let events = fs::read_to_string(g.c().cgroup_path().join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    g.c().resume().unwrap();
    let events = fs::read_to_string(g.c().cgroup_path().join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 0"), "{events}");
    assert_eq!(g.c().oom_kill_count().unwrap(), 0);
    let st = g.c().stats().unwrap();
    assert!(st.cpu.is_some());
    g.c().pause().unwrap();
    let p: Process =
        serde_json::from_value(base_spec(&env.id, &["true"])["process"].clone()).unwrap();
    assert!(matches!(
        g.c().exec(&p, no_io()),
        Err(ContainerError::Paused)
    ));
    // Destroy kills a frozen container too.
    let c = g.0.take().unwrap();
    let cg = c.cgroup_path().to_path_buf();
    c.destroy().unwrap();
    assert!(!cg.exists());
    let status = wait_exit(init);
    assert!(
        matches!(
            status,
            WaitStatus::Signaled(_, nix::sys::signal::SIGKILL, _)
        ),
        "{status:?}"
    );
}

#[test]
fn refused_specs_are_errors_and_leave_nothing() {
    if !root_or_skip("refused_specs_are_errors_and_leave_nothing") {
        return;
    }
    let env = Env::new("refuse");
    let mut v = base_spec(&env.id, &["true"]);
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "tmpfs", "options": ["tmpcopyup"]}));
    let s = spec(v);
    assert!(matches!(
        env.create(&s, no_io()),
        Err(ContainerError::Mount(_))
    ));
    // A mount that fails in the container process names the mount and cleans up the cgroup.
    let mut v = base_spec(&env.id, &["true"]);
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "tmpfs", "options": ["bogusopt=1"]}));
    let s = spec(v);
    match env.create(&s, no_io()) {
        Err(ContainerError::Step { step, detail, .. }) => {
            assert_eq!(step, "mounting");
            assert_eq!(detail, "/x");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let leftover: Vec<_> = fs::read_dir(&env.cgroup_root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    let bad_id = ContainerConfig {
        id: "../x",
        spec: &s,
        rootfs: &env.rootfs(),
        cgroup_root: &env.cgroup_root,
    };
    assert!(matches!(
        container::create(&bad_id, ProcessIo::Terminal),
        Err(ContainerError::Config(_))
    ));
}

#[test]
fn concurrent_containers_keep_their_own_stdio_and_no_stray_fds() {
    if !root_or_skip("concurrent_containers_keep_their_own_stdio_and_no_stray_fds") {
        return;
    }
    // Several threads create containers at once, as the agent's blocking pool does: each output
    // reaches EOF (no other container holds its pipe), and a container sees only fds 0-2.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let env = Env::new(&format!("conc{i}"));
                let mut v = base_spec(
                    &env.id,
                    &[
                        "sh",
                        "-c",
                        &format!("echo {i}; ls /proc/self/fd | head -c 100 | tr '\\n' ' '"),
                    ],
                );
                v["process"]["env"] = json!(["PATH=/bin"]);
                let (status, out, _) = run(&env, v);
                (i, status, out)
            })
        })
        .collect();
    for h in handles {
        let (i, status, out) = h.join().unwrap();
        assert!(exited(0)(&status), "{i}: {status:?}");
        // ls lists its own directory fd as 3.
        assert_eq!(out, format!("{i}\n0 1 2 3 "), "container {i}");
    }
}

#[test]
fn exec_joins_the_container_namespaces_and_cgroup() {
    if !root_or_skip("exec_joins_the_container_namespaces_and_cgroup") {
        return;
    }
    let env = Env::new("exec");
    let mut g = env.start_sleeping();
    let init = g.c().init_pid();
    let kinds = ["pid", "mnt", "uts", "ipc", "net", "cgroup"];
    let mut p: Process =
        serde_json::from_value(base_spec(&env.id, &["sh"])["process"].clone()).unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        format!("for n in {}; do readlink /proc/self/ns/$n; done; hostname; cat /proc/self/cgroup; cat /proc/self/oom_score_adj; echo $FOO", kinds.join(" ")),
    ]));
    p.set_oom_score_adj(Some(250));
    let (out_r, out_w) = pipe();
    let spawned = g
        .c()
        .exec(
            &p,
            ProcessIo::Pipes {
                stdin: None,
                stdout: Some(out_w),
                stderr: None,
            },
        )
        .unwrap();
    let status = wait_exit(spawned.pid);
    assert!(exited(0)(&status), "{status:?}");
    let out = read_all(out_r);
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in kinds.iter().enumerate() {
        let theirs = fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
        assert_eq!(lines[i], theirs.to_str().unwrap(), "{n}");
    }
    assert_eq!(lines[kinds.len()], "hull-test");
    let v2 = lines
        .iter()
        .find(|l| l.starts_with("0::"))
        .expect("a cgroup v2 line");
    assert_eq!(
        *v2, "0::/",
        "exec'd process is in the container's cgroup (its ns root)"
    );
    assert_eq!(*lines.last().unwrap(), "bar");
    assert_eq!(
        lines[lines.len() - 2],
        "250",
        "the exec'd process's oomScoreAdj"
    );

    // A missing binary is an exec error, and the container keeps running.
    p.set_args(Some(vec!["/no/such/binary".into()]));
    match g.c().exec(&p, no_io()) {
        Err(ContainerError::Exec { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT))
        }
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.c().pids().unwrap().len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(g.c().pids().unwrap(), vec![init.as_raw()]);
    g.destroy();
}
