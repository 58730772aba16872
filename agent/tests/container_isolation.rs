//! Host integration tests of the container library: namespaces (new, joined, user, time), seccomp, capabilities, identity, rlimits.
//! See `common/mod.rs` for how they run (root, cgroup v2, busybox; skip loudly, never under CI).

mod common;

use common::*;

#[test]
fn namespaces_differ_from_the_host() {
    if !root_or_skip("namespaces_differ_from_the_host") {
        return;
    }
    let env = Env::new("ns");
    let kinds = ["pid", "mnt", "uts", "ipc", "net", "cgroup"];
    let script = format!(
        "echo $$; for n in {}; do readlink /proc/self/ns/$n; done",
        kinds.join(" ")
    );
    let (status, out, _) = run(&env, base_spec(&env.id, &["sh", "-c", &script]));
    assert!(exited(0)(&status));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the shell is PID 1 of its namespace");
    for (i, n) in kinds.iter().enumerate() {
        let host = fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        assert_ne!(
            lines[i + 1],
            host.to_str().unwrap(),
            "{n} namespace is the host's"
        );
    }
}

#[test]
fn second_container_joins_the_first_ones_namespaces_by_path() {
    if !root_or_skip("second_container_joins_the_first_ones_namespaces_by_path") {
        return;
    }
    // The pod case: a sandbox container owns net/ipc/uts; the next one joins them by path.
    let env = Env::new("pod");
    let mut sandbox = env.start_sleeping();
    let pause = sandbox.c().init_pid();
    let env2 = Env::new("pod2");
    let mut v = base_spec(&env2.id, &["sh", "-c", "for n in net ipc uts pid mnt; do readlink /proc/self/ns/$n; done; hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start"]);
    v["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "cgroup"},
        {"type": "network", "path": format!("/proc/{pause}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{pause}/ns/ipc")},
        {"type": "uts", "path": format!("/proc/{pause}/ns/uts")}
    ]);
    v["hostname"] = json!("hull-test");
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "80"});
    let (status, out, err) = run(&env2, v);
    assert!(exited(0)(&status), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["net", "ipc", "uts"].iter().enumerate() {
        let theirs = fs::read_link(format!("/proc/{pause}/ns/{n}")).unwrap();
        assert_eq!(lines[i], theirs.to_str().unwrap(), "{n} joined");
    }
    for (i, n) in ["pid", "mnt"].iter().enumerate() {
        let theirs = fs::read_link(format!("/proc/{pause}/ns/{n}")).unwrap();
        assert_ne!(lines[i + 3], theirs.to_str().unwrap(), "{n} is new");
    }
    assert_eq!(lines[5], "hull-test");
    // The joined network namespace is the sandbox's (checked above), so this is its value.
    assert_eq!(
        lines[6], "80",
        "the sysctl was written in the joined network namespace"
    );
    sandbox.destroy();
}

#[test]
fn user_namespace_with_mappings() {
    if !root_or_skip("user_namespace_with_mappings") {
        return;
    }
    let env = Env::new("userns");
    // The rootfs must be reachable by the mapped root: hand it to the mapped ids.
    let host_base = 200_000u32;
    for e in walk(&env.rootfs()) {
        let _ = std::os::unix::fs::lchown(&e, Some(host_base), Some(host_base));
    }
    let mut v = base_spec(
        &env.id,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; test -c /dev/null && echo null-ok; test -d /sys/fs/cgroup && echo mounts-ok",
        ],
    );
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    // The whole default mount set works: sysfs, cgroup2 and mqueue are owned by the new user
    // namespace because the network, cgroup and IPC namespaces are created with it.
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status), "{status:?} {err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", &host_base.to_string(), "65536"]);
    assert_eq!(lines[1], ["0", &host_base.to_string(), "65536"]);
    assert_eq!(lines[2], ["0"]);
    assert_eq!(lines[3], ["null-ok"]);
    assert_eq!(lines[4], ["mounts-ok"]);

    // exec joins the user namespace too, and its uid 1000 maps to host_base + 1000.
    let mut v = base_spec(&env.id, &["sleep", "30"]);
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    let s = spec(v);
    let mut g = env.create(&s, no_io()).unwrap();
    g.c().start().unwrap();
    let mut p: Process =
        serde_json::from_value(base_spec(&env.id, &["sh"])["process"].clone()).unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "id -u; sleep 1".into(),
    ]));
    p.user_mut().set_uid(1000);
    p.user_mut().set_gid(1000);
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
    let host_status = fs::read_to_string(format!("/proc/{}/status", spawned.pid)).unwrap();
    let uid_line = host_status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(exited(0)(&wait_exit(spawned.pid)));
    assert_eq!(read_all(out_r), "1000\n");
    let host_uid = (host_base + 1000).to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == host_uid),
        "{uid_line}"
    );
    g.destroy();
}

#[test]
fn time_namespace_with_offsets() {
    if !root_or_skip("time_namespace_with_offsets") {
        return;
    }
    let env = Env::new("timens");
    let mut v = base_spec(&env.id, &["sh", "-c", "cut -d. -f1 /proc/uptime"]);
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    v["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1_000_000}});
    let host_uptime: u64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status), "{err}");
    let uptime: u64 = out.trim().parse().unwrap();
    assert!(
        uptime >= host_uptime + 1_000_000,
        "{uptime} vs host {host_uptime}"
    );
}

#[test]
fn seccomp_denies_mkdir_with_eperm() {
    if !root_or_skip("seccomp_denies_mkdir_with_eperm") {
        return;
    }
    for nnp in [true, false] {
        let env = Env::new("seccomp");
        let mut v = base_spec(&env.id, &["sh", "-c", "mkdir /tmp/x; echo rc=$?"]);
        v["process"]["noNewPrivileges"] = json!(nnp);
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        let (status, out, err) = run(&env, v);
        assert!(exited(0)(&status));
        assert!(err.contains("Operation not permitted"), "nnp={nnp}: {err}");
        assert_eq!(out, "rc=1\n");
        assert!(!env.rootfs().join("tmp/x").exists());
    }
}

#[test]
fn capabilities_user_and_groups_applied() {
    if !root_or_skip("capabilities_user_and_groups_applied") {
        return;
    }
    let env = Env::new("caps");
    let script =
        "cat /proc/self/status | grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Uid|Gid|Groups|NoNewPrivs|SigIgn|SigBlk):'";
    let (status, out, _) = run(&env, base_spec(&env.id, &["sh", "-c", script]));
    assert!(exited(0)(&status));
    let want = (1u64 << 0) | (1 << 5) | (1 << 10);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{set}:\t{want:016x}")),
            "{set} in {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"));
    // The agent's (Rust's) ignored SIGPIPE and any blocked signal do not leak into the container.
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");

    let env = Env::new("user");
    let mut v = base_spec(
        &env.id,
        &["sh", "-c", &format!("{script}; echo $HOME; umask")],
    );
    v["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 63});
    let (status, out, _) = run(&env, v);
    assert!(exited(0)(&status), "{status:?}");
    assert!(out.contains("Uid:\t1000\t1000\t1000\t1000"), "{out}");
    assert!(out.contains("Gid:\t1000\t1000\t1000\t1000"), "{out}");
    assert!(out.contains("Groups:\t5 6"), "{out}");
    // A non-root user keeps its capabilities through the ambient set.
    assert!(out.contains(&format!("CapEff:\t{want:016x}")), "{out}");
    assert!(out.contains("/home/user\n0077\n"), "{out}");
}

#[test]
fn rlimits_and_oom_score_adj_applied() {
    if !root_or_skip("rlimits_and_oom_score_adj_applied") {
        return;
    }
    let env = Env::new("rlimit");
    let mut v = base_spec(
        &env.id,
        &[
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj",
        ],
    );
    v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
    v["process"]["oomScoreAdj"] = json!(300);
    let (status, out, _) = run(&env, v);
    assert!(exited(0)(&status));
    assert_eq!(out, "123\n456\n300\n");
}

#[test]
fn user_namespace_with_a_joined_network_namespace_gets_sysfs_by_bind() {
    if !root_or_skip("user_namespace_with_a_joined_network_namespace_gets_sysfs_by_bind") {
        return;
    }
    let env = Env::new("usernet");
    let host_base = 300_000u32;
    for e in walk(&env.rootfs()) {
        let _ = std::os::unix::fs::lchown(&e, Some(host_base), Some(host_base));
    }
    let mut v = base_spec(
        &env.id,
        &[
            "sh",
            "-c",
            "test -d /sys/class/net && echo sys-ok; touch /sys/x 2>/dev/null || echo sys-ro",
        ],
    );
    let me = std::process::id();
    v["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
        {"type": "network", "path": format!("/proc/{me}/ns/net")},
        {"type": "user"}
    ]);
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status), "{status:?} {err}");
    assert_eq!(out, "sys-ok\nsys-ro\n");
}
