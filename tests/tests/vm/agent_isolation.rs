//! The OCI spec honoured inside the guest: namespaces shared by exec, capabilities, seccomp,
//! read-only rootfs, user and groups, hostname, masked paths.

use hull_tests::pod::TestPod;
use hull_tests::spec::{process, spec, DEFAULT_CAPS};
use serde_json::json;

/// Capability numbers from linux/capability.h.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_FOWNER" => 3,
        "CAP_FSETID" => 4,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETPCAP" => 8,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_CHROOT" => 18,
        "CAP_MKNOD" => 27,
        "CAP_AUDIT_WRITE" => 29,
        "CAP_SETFCAP" => 31,
        other => panic!("no number for {other}"),
    }
}

fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, n| m | 1u64 << cap_number(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_match_the_spec() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let done = pod
        .run("caps", &spec(&["grep", "^Cap", "/proc/self/status"]))
        .await;
    assert_eq!(done.exit.exit_status, 0, "{}", done.err());
    let field = |name: &str| {
        let line = done
            .out()
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("x"), 16).unwrap_or(u64::MAX)
    };
    let want = cap_mask(&DEFAULT_CAPS);
    assert_eq!(field("CapEff:"), want, "{}", done.out());
    assert_eq!(field("CapPrm:"), want);
    assert_eq!(field("CapBnd:"), want);
    assert_eq!(field("CapInh:"), 0);
    assert_eq!(field("CapAmb:"), 0);

    // A smaller set is honoured too, and no_new_privs is on.
    let mut s = spec(&[
        "sh",
        "-c",
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
    ]);
    let small = ["CAP_KILL", "CAP_CHOWN"];
    for set in ["bounding", "effective", "permitted"] {
        s["process"]["capabilities"][set] = json!(small);
    }
    let done = pod.run("caps2", &s).await;
    assert!(
        done.out().contains(&format!("{:016x}", cap_mask(&small))),
        "{}",
        done.out()
    );
    assert!(done.out().contains("NoNewPrivs:\t1"), "{}", done.out());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profile_denies_mkdir_with_eperm() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let mut s = spec(&[
        "sh",
        "-c",
        "mkdir /tmp/denied; echo rc=$?; touch /tmp/allowed && echo touched",
    ]);
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
    });
    let done = pod.run("seccomp", &s).await;
    assert!(
        done.out().contains("rc=1"),
        "{} / {}",
        done.out(),
        done.err()
    );
    assert!(
        done.err().contains("Operation not permitted"),
        "{}",
        done.err()
    );
    assert!(
        done.out().contains("touched"),
        "other syscalls still work: {}",
        done.out()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_rootfs_gives_erofs_and_tmpfs_stays_writable() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let mut s = spec(&[
        "sh",
        "-c",
        "touch /new-file; echo rc=$?; touch /tmp/ok && echo tmp-ok",
    ]);
    s["root"]["readonly"] = json!(true);
    let done = pod.run("ro", &s).await;
    assert!(
        done.err().contains("Read-only file system"),
        "{}",
        done.err()
    );
    assert!(
        done.out().contains("rc=1") && done.out().contains("tmp-ok"),
        "{}",
        done.out()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_groups_umask_cwd_env_and_hostname_are_applied() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let mut s = spec(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; umask; pwd; echo $GREETING; hostname",
    ]);
    s["process"]["user"] =
        json!({ "uid": 1000, "gid": 1000, "additionalGids": [2000], "umask": 23 });
    s["process"]["cwd"] = json!("/home/user");
    s["process"]["env"] = json!(["PATH=/bin", "GREETING=hello"]);
    s["hostname"] = json!("pod-host");
    let done = pod.run("user", &s).await;
    assert_eq!(done.exit.exit_status, 0, "{}", done.err());
    let lines: Vec<&str> = done
        .stdout
        .split(|b| *b == b'\n')
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort_unstable();
    assert_eq!(groups, ["1000", "2000"]);
    assert_eq!(lines[3], "0027");
    assert_eq!(lines[4], "/home/user");
    assert_eq!(lines[5], "hello");
    assert_eq!(lines[6], "pod-host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_joins_the_containers_namespaces() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    let s = spec(&["sleep", "1000"]);
    agent
        .create_container(
            "ns",
            hull_tests::spec::to_bytes(&s),
            hull_tests::rootfs::GUEST_ROOTFS,
            Default::default(),
        )
        .await
        .unwrap();
    agent.start_container("ns").await.unwrap();
    let script = "for n in pid mnt ipc uts; do \
        [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo differs $n; done; \
        cat /proc/1/comm; hostname; echo $$";
    let done = pod.exec("ns", "e1", &process(&["sh", "-c", script])).await;
    assert_eq!(done.exit.exit_status, 0, "{}", done.err());
    let out = done.out();
    assert!(!out.contains("differs"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "sleep",
        "PID 1 of the exec's namespace is the container's init"
    );
    assert_eq!(lines[1], "hull-test");
    assert_ne!(lines[2], "1");
    // The container's mount namespace is not the guest's: the agent's /testroot is not visible.
    let done = pod.exec("ns", "e2", &process(&["ls", "/testroot"])).await;
    assert_ne!(done.exit.exit_status, 0);
    // Masked paths read as empty.
    let done = pod.exec("ns", "e3", &process(&["cat", "/proc/keys"])).await;
    assert!(done.stdout.is_empty(), "{}", done.out());
}
