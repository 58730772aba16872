//! Host integration tests of the container library: real containers from a busybox rootfs, as
//! root, on the host's cgroup v2 hierarchy.
//!
//! The library never waits for processes, so these tests reap themselves: the test process is a
//! child subreaper, and each test waits for its own container's pids only (never `waitpid(-1)`,
//! which would steal other tests' children). Every test makes its own rootfs and its own cgroup
//! root under the host's cgroup v2 mount, and removes both, also on failure (guards).
//! Without root they skip loudly; with `CI=true` they fail instead of skipping.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hull_agent::container::{self, Container, ContainerConfig, ContainerError, ProcessIo};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};
use serde_json::{json, Value};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// `true` when the test may run; skips loudly (or fails under CI) otherwise.
fn root_or_skip(name: &str) -> bool {
    if nix::unistd::geteuid().is_root()
        && find_cgroup2().is_some()
        && Path::new("/bin/busybox").exists()
    {
        // SAFETY: prctl with integer arguments; makes orphaned grandchildren our children.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        return true;
    }
    let why = "needs root, a cgroup v2 mount and /bin/busybox (busybox-static)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name}: {why}, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {name}: {why}");
    false
}

fn find_cgroup2() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        })
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A rootfs, a cgroup root and a container id of one test; removes them on drop.
struct Env {
    dir: tempfile::TempDir,
    cgroup_root: PathBuf,
    id: String,
}

impl Env {
    fn new(tag: &str) -> Env {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{tag}-{}-{n}", std::process::id());
        let cgroup_root = find_cgroup2().unwrap().join(format!("hull-test-{id}"));
        fs::create_dir(&cgroup_root).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        for d in [
            "bin",
            "etc",
            "tmp",
            "proc",
            "sys",
            "dev",
            "root",
            "home/user",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "cat", "echo", "mkdir", "touch", "sleep", "grep", "readlink", "hostname", "ls",
            "stat", "true", "id", "head", "pwd", "test", "tty", "stty", "tr", "wc", "awk", "tail",
            "cut",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        Env {
            dir,
            cgroup_root,
            id,
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn create(&self, spec: &Spec, io: ProcessIo) -> Result<Guard, ContainerError> {
        let rootfs = self.rootfs();
        let cfg = ContainerConfig {
            id: &self.id,
            spec,
            rootfs: &rootfs,
            cgroup_root: &self.cgroup_root,
        };
        container::create(&cfg, io).map(|c| Guard(Some(c)))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Leftover cgroups of a failed test: kill what is inside, then remove bottom-up.
        let mut dirs = Vec::new();
        collect_dirs(&self.cgroup_root, &mut dirs);
        for d in dirs.iter().rev() {
            let _ = fs::write(d.join("cgroup.kill"), "1");
            for _ in 0..100 {
                if fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Destroys the container on drop.
struct Guard(Option<Container>);

impl Guard {
    fn c(&mut self) -> &mut Container {
        self.0.as_mut().unwrap()
    }
    fn destroy(mut self) {
        let c = self.0.take().unwrap();
        let pid = c.init_pid();
        let cg = c.cgroup_path().to_path_buf();
        c.destroy().unwrap();
        assert!(!cg.exists(), "cgroup removed");
        reap_quietly(pid);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let pid = c.init_pid();
            let _ = c.destroy();
            reap_quietly(pid);
        }
    }
}

/// Waits for `pid` (which becomes our child once its parent, the bootstrap process, exits).
fn wait_exit(pid: Pid) -> WaitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => {}
            Ok(s) => return s,
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reaps `pid` if it is (or soon becomes) our zombie; quiet when a test reaped it already.
fn reap_quietly(pid: Pid) {
    for _ in 0..50 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => {
                std::thread::sleep(Duration::from_millis(2))
            }
            _ => return,
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

const CAPS: [&str; 3] = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn base_spec(id: &str, args: &[&str]) -> Value {
    let caps = json!(CAPS);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "FOO=bar"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "hull-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}, {"type": "cgroup"}],
            "cgroupsPath": format!("/hull/{id}"),
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/acpi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

fn spec(v: Value) -> Spec {
    serde_json::from_value(v).unwrap()
}

/// Runs a container to completion with pipes; returns (status, stdout, stderr).
fn run(env: &Env, v: Value) -> (WaitStatus, String, String) {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let s = spec(v);
    let mut g = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: Some(out_w),
                stderr: Some(err_w),
            },
        )
        .unwrap();
    g.c().start().unwrap();
    let status = wait_exit(g.c().init_pid());
    let (out, err) = (read_all(out_r), read_all(err_r));
    g.destroy();
    (status, out, err)
}

fn exited(code: i32) -> impl Fn(&WaitStatus) -> bool {
    move |s| matches!(s, WaitStatus::Exited(_, c) if *c == code)
}

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
fn terminal_process_sees_a_tty() {
    if !root_or_skip("terminal_process_sees_a_tty") {
        return;
    }
    let env = Env::new("tty");
    let mut v = base_spec(
        &env.id,
        &["sh", "-c", "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty-yes; test -c /dev/console && echo console-yes; \
          echo name=$(tty); echo size=$(stty size); stat -c 'console=%t:%T' /dev/console; stat -c 'self=%t:%T' $(tty)"],
    );
    v["process"]["terminal"] = json!(true);
    v["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    let s = spec(v);
    let mut g = env.create(&s, ProcessIo::Terminal).unwrap();
    let master = g.c().take_pty_master().expect("pty master");
    g.c().start().unwrap();
    let status = wait_exit(g.c().init_pid());
    assert!(exited(0)(&status));
    let mut out = Vec::new();
    let mut f = fs::File::from(master);
    let mut buf = [0u8; 4096];
    // After the slave side is gone, the master reads EIO.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("tty-yes"), "{out}");
    assert!(out.contains("console-yes"), "{out}");
    // The pty comes from the container's own devpts: its name resolves inside the container.
    assert!(out.contains("name=/dev/pts/0"), "{out}");
    assert!(out.contains("size=33 101"), "{out}");
    let console = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("console="))
        .unwrap();
    let own = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("self="))
        .unwrap();
    assert_eq!(console, own, "/dev/console is the process's pty");
    g.destroy();
}

#[test]
fn exec_joins_the_container_namespaces_and_cgroup() {
    if !root_or_skip("exec_joins_the_container_namespaces_and_cgroup") {
        return;
    }
    let env = Env::new("exec");
    let s = spec(base_spec(&env.id, &["sleep", "30"]));
    let mut g = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .unwrap();
    g.c().start().unwrap();
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
    match g.c().exec(
        &p,
        ProcessIo::Pipes {
            stdin: None,
            stdout: None,
            stderr: None,
        },
    ) {
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

#[test]
fn start_reports_a_missing_binary() {
    if !root_or_skip("start_reports_a_missing_binary") {
        return;
    }
    let env = Env::new("enoent");
    let s = spec(base_spec(&env.id, &["/bin/does-not-exist"]));
    let mut g = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .unwrap();
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
    g.destroy();
}

#[test]
fn pause_resume_pids_and_destroy() {
    if !root_or_skip("pause_resume_pids_and_destroy") {
        return;
    }
    let env = Env::new("pause");
    let s = spec(base_spec(&env.id, &["sh", "-c", "sleep 30 & sleep 30"]));
    let mut g = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .unwrap();
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
        g.c().exec(
            &p,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None
            }
        ),
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
        env.create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None
            }
        ),
        Err(ContainerError::Mount(_))
    ));
    // A mount that fails in the container process names the mount and cleans up the cgroup.
    let mut v = base_spec(&env.id, &["true"]);
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "tmpfs", "options": ["bogusopt=1"]}));
    let s = spec(v);
    match env.create(
        &s,
        ProcessIo::Pipes {
            stdin: None,
            stdout: None,
            stderr: None,
        },
    ) {
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
fn second_container_joins_the_first_ones_namespaces_by_path() {
    if !root_or_skip("second_container_joins_the_first_ones_namespaces_by_path") {
        return;
    }
    // The pod case: a sandbox container owns net/ipc/uts; the next one joins them by path.
    let env = Env::new("pod");
    let s = spec(base_spec(&env.id, &["sleep", "30"]));
    let mut sandbox = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .unwrap();
    sandbox.c().start().unwrap();
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
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![d.to_path_buf()];
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn exec_with_a_terminal() {
    if !root_or_skip("exec_with_a_terminal") {
        return;
    }
    let env = Env::new("exectty");
    let s = spec(base_spec(&env.id, &["sleep", "30"]));
    let mut g = env
        .create(
            &s,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .unwrap();
    g.c().start().unwrap();
    let mut p: Process =
        serde_json::from_value(base_spec(&env.id, &["sh"])["process"].clone()).unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "[ -t 0 ] && [ -t 1 ] && echo exec-tty".into(),
    ]));
    p.set_terminal(Some(true));
    // terminal: true with pipes is refused.
    assert!(matches!(
        g.c().exec(
            &p,
            ProcessIo::Pipes {
                stdin: None,
                stdout: None,
                stderr: None
            }
        ),
        Err(ContainerError::TerminalMismatch)
    ));
    let spawned = g.c().exec(&p, ProcessIo::Terminal).unwrap();
    let master = spawned.pty_master.expect("pty master");
    assert!(exited(0)(&wait_exit(spawned.pid)));
    let mut f = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&out).contains("exec-tty"));
    g.destroy();
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

/// Unmounts on drop.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
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
