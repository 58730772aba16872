//! Host integration tests of the container library: the filesystem view: read-only root, mounts and their options, devices, masked and read-only paths, the device cgroup.
//! See `common/mod.rs` for how they run (root, cgroup v2, busybox; skip loudly, never under CI).

mod common;

use common::*;

#[test]
fn readonly_rootfs_gives_erofs() {
    if !root_or_skip("readonly_rootfs_gives_erofs") {
        return;
    }
    let env = Env::new("ro");
    let mut v = base_spec(
        &env.id,
        &[
            "sh",
            "-c",
            "touch /newfile; echo rc=$?; touch /dev/shm/ok && echo shm-ok",
        ],
    );
    v["root"]["readonly"] = json!(true);
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status));
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(out, "rc=1\nshm-ok\n");
}

#[test]
fn devices_mounts_masked_and_readonly_paths() {
    if !root_or_skip("devices_mounts_masked_and_readonly_paths") {
        return;
    }
    let env = Env::new("dev");
    let shared = env.dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("hello"), "from host\n").unwrap();
    let script =
        "stat -c '%F %t:%T %a' /dev/null /dev/fuse; readlink /dev/ptmx; readlink /dev/fd; \
        cat /mnt/hello; touch /mnt/nope 2>/dev/null || echo bind-ro; \
        echo x > /proc/sys/kernel/hostname 2>/dev/null || echo sys-ro; \
        wc=$(cat /proc/kcore | head -c 10); echo kcore=[$wc]; \
        grep ' /run ' /proc/mounts";
    let mut v = base_spec(&env.id, &["sh", "-c", script]);
    v["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/mnt", "type": "bind", "source": shared, "options": ["rbind", "ro", "nosuid"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "mode=700"]}),
    ]);
    v["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]);
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "character special file 1:3 666", "{out}");
    assert_eq!(lines[1], "character special file a:e5 666", "{out}");
    assert_eq!(lines[2], "pts/ptmx");
    assert_eq!(lines[3], "/proc/self/fd");
    assert_eq!(lines[4], "from host");
    assert_eq!(lines[5], "bind-ro");
    assert_eq!(lines[6], "sys-ro");
    assert_eq!(lines[7], "kcore=[]");
    assert!(
        lines[8].contains("tmpfs /run tmpfs rw,nosuid,nodev,noexec"),
        "{out}"
    );
    assert!(!shared.join("nope").exists());
}

#[test]
fn recursive_read_only_bind() {
    if !root_or_skip("recursive_read_only_bind") {
        return;
    }
    // "rro" makes the whole tree read-only, submounts included (a plain "ro" remount would only
    // reach the top mount).
    let env = Env::new("rro");
    let vol = env.dir.path().join("vol");
    fs::create_dir_all(vol.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &vol.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let _guard = MountGuard(vol.join("sub"));
    let script =
        "touch /vol/a 2>/dev/null || echo top-ro; touch /vol/sub/b 2>/dev/null || echo sub-ro; \
                  touch /plain/sub/c 2>/dev/null && echo plain-sub-rw";
    let mut v = base_spec(&env.id, &["sh", "-c", script]);
    v["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rro"]}),
        json!({"destination": "/plain", "type": "bind", "source": vol, "options": ["rbind", "ro"]}),
    ]);
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status), "{err}");
    assert_eq!(out, "top-ro\nsub-ro\nplain-sub-rw\n");
    assert!(!vol.join("a").exists() && !vol.join("sub/b").exists());
}

#[test]
fn domainname_and_root_propagation() {
    if !root_or_skip("domainname_and_root_propagation") {
        return;
    }
    let env = Env::new("prop");
    let mut v = base_spec(
        &env.id,
        &[
            "sh",
            "-c",
            "cat /proc/sys/kernel/domainname; awk '$5 == \"/\"' /proc/self/mountinfo | tail -n 1",
        ],
    );
    v["domainname"] = json!("hull.example");
    v["linux"]["rootfsPropagation"] = json!("private");
    let (status, out, err) = run(&env, v);
    assert!(exited(0)(&status), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hull.example");
    // A private mount has no "shared:" or "master:" tag in its optional fields.
    assert!(
        !lines[1].contains("shared:") && !lines[1].contains("master:"),
        "{}",
        lines[1]
    );
}

#[test]
fn device_cgroup_rules_are_enforced_and_updated() {
    if !root_or_skip("device_cgroup_rules_are_enforced_and_updated") {
        return;
    }
    // c 240:0 is in the experimental range: no driver, so an open that passes the device cgroup
    // fails with ENXIO, and one it refuses fails with EPERM. (The default nodes such as
    // /dev/null stay allowed whatever the rules say, as with runc.)
    let env = Env::new("devcg");
    let check = "(cat /dev/exp) 2>&1 | grep -o 'No such device or address\\|Operation not permitted'; \
                 (echo x > /dev/exp) 2>&1 | grep -o 'No such device or address\\|Operation not permitted'; \
                 echo hi > /dev/null && echo null-ok";
    let mut v = base_spec(
        &env.id,
        &["sh", "-c", &format!("{check}; echo --; read x; {check}")],
    );
    v["linux"]["devices"] =
        json!([{"path": "/dev/exp", "type": "c", "major": 240, "minor": 0, "fileMode": 438}]);
    v["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 240, "minor": 0, "access": "r"}
    ]});
    let s = spec(v);
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let mut g = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: Some(in_r),
                stdout: Some(out_w),
                stderr: None,
            },
        )
        .unwrap();
    g.c().start().unwrap();
    let mut out = fs::File::from(out_r);
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("--\n") {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            out.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "{seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(
            Instant::now() < deadline,
            "first round incomplete: {seen:?}"
        );
    }
    let all: oci_spec::runtime::LinuxResources =
        serde_json::from_value(json!({"devices": [{"allow": true, "access": "rwm"}]})).unwrap();
    g.c().update(&all).unwrap();
    std::io::Write::write_all(&mut fs::File::from(in_w), b"go\n").unwrap();
    let status = wait_exit(g.c().init_pid());
    assert!(exited(0)(&status));
    out.read_to_string(&mut seen).unwrap();
    let (before, after) = seen.split_once("--\n").unwrap();
    assert_eq!(
        before, "No such device or address\nOperation not permitted\nnull-ok\n",
        "read allowed, write refused"
    );
    assert_eq!(
        after, "No such device or address\nNo such device or address\nnull-ok\n",
        "both allowed after update"
    );
    g.destroy();
}
