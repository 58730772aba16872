//! What a test asks a running [`Containerd`] about its tasks: pids, status, exec output, removal,
//! the shim's log, and the checks that nothing of a task is left.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use super::{mounts_under, processes, shim_socket, tail, uid_of, Containerd};

impl Containerd {
    /// The PID column of `ctr task ls` for `id` (hull reports the pod's VMM).
    pub fn task_pid(&self, id: &str) -> Option<u32> {
        let out = self.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(1)?.parse().ok())?
        })
    }

    /// Runs `args` in container `id` with `ctr task exec`; its stdout, panicking on failure.
    pub fn exec_out(&self, id: &str, exec_id: &str, args: &[&str]) -> String {
        let mut all = vec!["task", "exec", "--exec-id", exec_id, id];
        all.extend_from_slice(args);
        let out = self.ctr(&all);
        assert!(out.status.success(), "exec in {id}: {}", self.explain(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The status column of `ctr task ls` for `id` (`RUNNING`, `PAUSED`, `STOPPED`, …).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.last().unwrap_or(&"").to_string())
        })
    }

    /// Waits until `ctr task ls` shows `id` as `status`.
    pub fn wait_status(&self, id: &str, status: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.task_status(id);
            if now.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} is {now:?}, not {status}, after {within:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes task and container `id` (killing the task first); returns the task's exit code
    /// as `ctr task delete` reports it.
    pub fn remove(&self, id: &str) -> Option<i32> {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.task_status(id).is_some_and(|s| s != "STOPPED") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let code = self.delete_task(id);
        let _ = self.ctr(&["container", "delete", id]);
        code
    }

    /// `ctr task delete id`; the task's exit code (ctr only warns about a non-zero one), `None`
    /// when the delete failed.
    pub fn delete_task(&self, id: &str) -> Option<i32> {
        let out = self.ctr(&["task", "delete", id]);
        if !out.status.success() {
            return None;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = stderr
            .split("non-zero exit code ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok());
        Some(code.unwrap_or(0))
    }

    /// containerd's log (with the shims' logs in it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// An output's stdout, stderr and the log, for assertion messages.
    pub fn explain(&self, out: &Output) -> String {
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- containerd log (tail) ---\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 60)
        )
    }

    /// What container `id` left on the host: processes mentioning it or this containerd's
    /// pods, mounts, its pod directory, its shim socket. Empty when clean.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        let pod_dir = self.run_dir().join(id);
        let pod_marker = pod_dir.display().to_string();
        // A jailed VMM's command line names only paths inside its jail: it is known by its uid.
        let jail_uid = hull_runtime::jail::uid_for(&pod_dir);
        for (pid, cmdline) in processes() {
            if cmdline.contains(&pod_marker)
                || self.is_shim_of(id, &cmdline)
                || uid_of(pid) == Some(jail_uid)
            {
                found.push(format!("process {pid}: {cmdline}"));
            }
        }
        for m in mounts_under(self.dir()) {
            if m.contains(id) {
                found.push(format!("mount {m}"));
            }
        }
        if pod_dir.exists() {
            found.push(format!("directory {}", pod_dir.display()));
        }
        let socket = shim_socket(&self.socket(), self.namespace, id);
        if socket.exists() {
            found.push(format!("shim socket {}", socket.display()));
        }
        // ctr's containers live at /<namespace>/<id> in the host's cgroups.
        for dir in crate::host_cgroup_dirs(&Path::new(self.namespace).join(id)) {
            found.push(format!("cgroup {}", dir.display()));
        }
        found
    }

    /// Whether `cmdline` is the hull shim of pod `id` started by this containerd.
    fn is_shim_of(&self, id: &str, cmdline: &str) -> bool {
        cmdline.contains("containerd-shim-hull-v2")
            && cmdline.contains(&format!(" -id {id} "))
            && cmdline.contains(&self.socket().display().to_string())
    }

    /// The pid of pod `id`'s hull shim, if it runs.
    pub fn shim_pid(&self, id: &str) -> Option<u32> {
        processes()
            .into_iter()
            .find(|(_, cmd)| self.is_shim_of(id, cmd))
            .map(|(pid, _)| pid)
    }

    /// Waits until [`Containerd::leftovers`] of `id` is empty; panics with what is left.
    pub fn assert_clean(&self, id: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = self.leftovers(id);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} left behind:\n{}\n--- log ---\n{}",
                left.join("\n"),
                tail(&self.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
