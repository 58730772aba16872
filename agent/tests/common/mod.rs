//! Shared helpers of the container library's host integration tests: real containers from a
//! busybox rootfs, as root, on the host's cgroup v2 hierarchy.
//!
//! The library never waits for processes, so these tests reap themselves: the test process is a
//! child subreaper, and each test waits for its own container's pids only (never `waitpid(-1)`,
//! which would steal other tests' children). Every test makes its own rootfs and its own cgroup
//! root under the host's cgroup v2 mount, and removes both, also on failure (guards).
//! Without root they skip loudly; with `CI=true` they fail instead of skipping.
#![allow(dead_code, unused_imports)]

pub use std::fs;
pub use std::io::Read;
pub use std::os::fd::OwnedFd;
pub use std::path::{Path, PathBuf};
pub use std::sync::atomic::{AtomicU32, Ordering};
pub use std::time::{Duration, Instant};

pub use hull_agent::container::{self, Container, ContainerConfig, ContainerError, ProcessIo};
pub use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
pub use nix::unistd::Pid;
pub use oci_spec::runtime::{Process, Spec};
pub use serde_json::{json, Value};

pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// `true` when the test may run; skips loudly (or fails under CI) otherwise.
pub fn root_or_skip(name: &str) -> bool {
    if nix::unistd::geteuid().is_root()
        && find_cgroup2().is_some()
        && Path::new("/bin/busybox").exists()
    {
        // Orphaned grandchildren become our children (cannot fail for this process).
        let _ = nix::sys::prctl::set_child_subreaper(true);
        return true;
    }
    hull_test_support::skip_or_fail(&format!(
        "{name}: needs root, a cgroup v2 mount and /bin/busybox (busybox-static)"
    ));
    false
}

pub fn find_cgroup2() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        })
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A rootfs, a cgroup root and a container id of one test; removes them on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub cgroup_root: PathBuf,
    pub id: String,
}

impl Env {
    pub fn new(tag: &str) -> Env {
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

    /// A started container running `sleep 30` with no stdio.
    pub fn start_sleeping(&self) -> Guard {
        let mut g = self
            .create(&spec(base_spec(&self.id, &["sleep", "30"])), no_io())
            .unwrap();
        g.c().start().unwrap();
        g
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn create(&self, spec: &Spec, io: ProcessIo) -> Result<Guard, ContainerError> {
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

pub fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
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
pub struct Guard(pub Option<Container>);

impl Guard {
    pub fn c(&mut self) -> &mut Container {
        self.0.as_mut().unwrap()
    }
    pub fn destroy(mut self) {
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
pub fn wait_exit(pid: Pid) -> WaitStatus {
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
pub fn reap_quietly(pid: Pid) {
    for _ in 0..50 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => {
                std::thread::sleep(Duration::from_millis(2))
            }
            _ => return,
        }
    }
}

pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

pub fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

pub const CAPS: [&str; 3] = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// Stdio for a process that needs none (the library gives it /dev/null).
pub fn no_io() -> ProcessIo {
    ProcessIo::Pipes {
        stdin: None,
        stdout: None,
        stderr: None,
    }
}

pub fn base_spec(id: &str, args: &[&str]) -> Value {
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

pub fn spec(v: Value) -> Spec {
    serde_json::from_value(v).unwrap()
}

/// Runs a container to completion with pipes; returns (status, stdout, stderr).
pub fn run(env: &Env, v: Value) -> (WaitStatus, String, String) {
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

pub fn exited(code: i32) -> impl Fn(&WaitStatus) -> bool {
    move |s| matches!(s, WaitStatus::Exited(_, c) if *c == code)
}

pub fn walk(d: &Path) -> Vec<PathBuf> {
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

/// Unmounts on drop.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}
