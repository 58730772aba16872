//! What fault tests need: a test containerd's task events (as `ctr events` prints them) and log
//! lines (where the shims' logs end up), to check that each task ended once, with which status,
//! and what the shim said about it; and a pod's host processes, to kill them.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::containerd::{tail, Containerd};

/// A running `ctr events`, its output kept in a file. Dropping it stops it.
#[derive(Debug)]
pub struct Events {
    child: Child,
    out: PathBuf,
}

/// A `/tasks/exit` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    /// The container.
    pub container_id: String,
    /// The process: the container id for its init, else the exec id.
    pub id: String,
    /// The exit status.
    pub exit_status: u32,
}

impl Events {
    /// Starts `ctr events` against `c`. It cannot tell when it has subscribed, so it is given
    /// half a second: start it before the container whose events matter.
    pub fn watch(c: &Containerd) -> Self {
        let out = c.dir().join(format!("events-{}", rand_suffix()));
        let file = std::fs::File::create(&out).expect("events file");
        let child = c
            .ctr_command()
            .arg("events")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        // `ctr events` subscribes as soon as it connects; give it that moment.
        std::thread::sleep(Duration::from_millis(500));
        Self { child, out }
    }

    /// Everything `ctr events` printed so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Every `/tasks/exit` event so far.
    pub fn exits(&self) -> Vec<TaskExit> {
        self.text()
            .lines()
            .filter(|l| l.contains("/tasks/exit"))
            .filter_map(|l| {
                let json = &l[l.find('{')?..];
                let v: serde_json::Value = serde_json::from_str(json).ok()?;
                Some(TaskExit {
                    container_id: v["container_id"].as_str()?.to_owned(),
                    id: v["id"].as_str().unwrap_or_default().to_owned(),
                    exit_status: v["exit_status"]
                        .as_u64()
                        .and_then(|s| u32::try_from(s).ok())
                        .unwrap_or(0),
                })
            })
            .collect()
    }

    /// The exit statuses of `/tasks/exit` events of container `id`'s init process.
    pub fn init_exits(&self, id: &str) -> Vec<u32> {
        self.exits()
            .into_iter()
            .filter(|e| e.container_id == id && e.id == id)
            .map(|e| e.exit_status)
            .collect()
    }

    /// Waits until container `id`'s init has at least one `/tasks/exit` event, then a moment more
    /// for a second one to show; returns their statuses.
    pub fn wait_init_exits(&self, id: &str, within: Duration) -> Vec<u32> {
        let deadline = Instant::now() + within;
        while self.init_exits(id).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no /tasks/exit for {id} within {within:?}; events:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        self.init_exits(id)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Waits until containerd's log has a line containing every one of `needles`; returns it.
pub fn wait_log_line(c: &Containerd, needles: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = c.log();
        if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {within:?}; log tail:\n{}",
            tail(&log, 80)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The host processes of a running pod, from the pids file its shim writes
/// (`<run_dir>/<pod>/pids`: VMM, vsock backend, virtiofsd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodPids {
    /// The VMM as the shim started it (the jailer, when jailed).
    pub vmm: u32,
    /// The VMM itself: the jailer's child when jailed, else `vmm`.
    pub vmm_inside: u32,
    /// The vsock backend.
    pub vsock: u32,
    /// virtiofsd, when the pod has a share.
    pub virtiofsd: Option<u32>,
}

impl PodPids {
    /// The pids of pod `id` of `c`.
    pub fn of(c: &Containerd, id: &str) -> Self {
        let file = c.run_dir().join(id).join("pids");
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert!(pids.len() >= 2, "{}: {text:?}", file.display());
        let vmm = pids[0];
        Self {
            vmm,
            vmm_inside: children(vmm).first().copied().unwrap_or(vmm),
            vsock: pids[1],
            virtiofsd: pids.get(2).copied(),
        }
    }
}

/// The children of process `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Sends `signal` to `pid`, panicking when it cannot.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(target, signal).unwrap_or_else(|e| panic!("kill {pid}: {e}"));
}
