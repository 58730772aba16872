//! A private containerd for end-to-end tests (and `hull bench`): its own root, state, socket and configuration,
//! hull's shim on its `PATH`, a hull configuration running containers from the test initramfs's
//! busybox tree, and a busybox OCI image built offline and imported. With [`Options::cri`] its CRI
//! plugin is on and it runs in a network namespace of its own (see [`crate::cri`]). Dropping it
//! stops containerd and kills, unmounts and removes everything it and its shims left.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hull_runtime::images::GuestImages;
use hull_runtime::vm::{accel, qemu::Qemu};

use crate::netns::TestNetns;
use crate::rootfs::{busybox_rootfs, test_initramfs, GUEST_ROOTFS};

/// The runtime name.
pub const RUNTIME: &str = "io.containerd.hull.v2";

/// The name the busybox image is imported under.
pub const IMAGE: &str = "hull.test/busybox:latest";

/// The containerd namespace tests use.
pub const NAMESPACE: &str = "hull-test";

/// The containerd namespace of CRI's containers.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    namespace: &'static str,
    netns: Option<TestNetns>,
    env: Vec<(String, String)>,
}

/// Knobs of the hull configuration a test containerd hands its shims.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replaces the kernel path (to test a missing kernel).
    pub kernel: Option<PathBuf>,
    /// Extra lines appended to the hull configuration.
    pub extra_config: String,
    /// The `hypervisor` key (default: `HULL_TEST_HYPERVISOR`, else `qemu`; see
    /// [`crate::hypervisor_choice`]).
    pub hypervisor: Option<String>,
    /// Run containers from the busybox tree in the test initramfs instead of containerd's
    /// snapshot shared over virtio-fs.
    pub guest_rootfs: bool,
    /// Boot pods from this initramfs instead of the test initramfs (the benchmark uses the
    /// production one).
    pub initramfs: Option<PathBuf>,
    /// The shim binary (default: [`shim_binary`]).
    pub shim: Option<PathBuf>,
    /// The shim's `log_level` (default `debug`).
    pub log_level: Option<String>,
    /// Extra environment of containerd, which its shims inherit (e.g. `HULL_ACCEL`).
    pub env: Vec<(String, String)>,
    /// Turn CRI on (handlers `hull` and `runc`, a CNI bridge network), run containerd in a
    /// network namespace of its own, and import the images into CRI's namespace with a pause image.
    pub cri: bool,
}

/// Why a private containerd could not be had.
#[derive(Debug)]
pub enum LaunchError {
    /// Something the host lacks (a tool, the guest images, QEMU, the shim): tests skip on it.
    Missing(String),
    /// Something that should have worked failed.
    Failed(String),
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::Missing(what) => write!(f, "missing: {what}"),
            LaunchError::Failed(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for LaunchError {}

/// The shim binary: `HULL_SHIM`, else `target/hull/bin/containerd-shim-hull-v2` of this checkout.
pub fn shim_binary() -> PathBuf {
    std::env::var_os("HULL_SHIM").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/containerd-shim-hull-v2"),
        PathBuf::from,
    )
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

impl Containerd {
    /// Starts containerd with the default hull configuration; `None` (after the skip-or-fail
    /// rule) when the host lacks containerd, the guest images, QEMU or the shim.
    pub fn start() -> Option<Self> {
        Self::start_with(&Options::default())
    }

    /// Starts containerd with `options`.
    pub fn start_with(options: &Options) -> Option<Self> {
        match Self::launch(options) {
            Ok(me) => Some(me),
            Err(LaunchError::Missing(why)) => {
                crate::skip_or_fail(&why);
                None
            }
            Err(LaunchError::Failed(why)) => panic!("{why}"),
        }
    }

    /// Starts containerd with `options`, as a `Result` (for callers that are not tests).
    pub fn launch(options: &Options) -> Result<Self, LaunchError> {
        use LaunchError::{Failed, Missing};
        for tool in ["containerd", "ctr"] {
            if !on_path(tool) {
                return Err(Missing(format!(
                    "{tool} is not installed (scripts/install-deps.sh)"
                )));
            }
        }
        let images = GuestImages::from_env();
        for path in [&images.kernel, &images.initramfs] {
            if !path.is_file() {
                return Err(Missing(format!(
                    "{} is missing; run scripts/test.sh (it builds the images) or the set-up",
                    path.display()
                )));
            }
        }
        let choice = accel::detect().map_err(|e| Failed(e.to_string()))?;
        if let Err(e) = Qemu::for_host(choice.accel).resolve_binary() {
            return Err(Missing(format!("no VMM to run a guest: {e}")));
        }
        let shim = options.shim.clone().unwrap_or_else(shim_binary);
        if !shim.is_file() {
            return Err(Missing(format!(
                "{} is missing; run scripts/build.sh or set HULL_SHIM",
                shim.display()
            )));
        }
        let initramfs = match &options.initramfs {
            Some(path) => path.clone(),
            None => test_initramfs().map_err(|e| Failed(format!("test initramfs: {e}")))?,
        };
        let io = |e: std::io::Error| Failed(e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("hull-ctrd-")
            .tempdir_in("/tmp")
            .map_err(io)?;
        let base = dir.path();
        let bin = base.join("bin");
        std::fs::create_dir_all(&bin).map_err(io)?;
        symlink(&shim, bin.join("containerd-shim-hull-v2")).map_err(io)?;
        let kernel = options.kernel.clone().unwrap_or(images.kernel);
        let guest_rootfs = if options.guest_rootfs {
            format!("guest_rootfs = \"{GUEST_ROOTFS}\"\n")
        } else {
            String::new()
        };
        let hull_config = format!(
            "hypervisor = \"{}\"\nkernel = \"{}\"\ninitramfs = \"{}\"\nrun_dir = \"{}\"\n\
             log_dir = \"{}\"\nlog_level = \"{}\"\n{guest_rootfs}{}\n",
            options
                .hypervisor
                .as_deref()
                .unwrap_or_else(|| crate::hypervisor_choice()),
            kernel.display(),
            initramfs.display(),
            base.join("run").display(),
            base.join("log").display(),
            options.log_level.as_deref().unwrap_or("debug"),
            options.extra_config
        );
        std::fs::write(base.join("hull.toml"), hull_config).map_err(io)?;
        let (namespace, netns, config) = if options.cri {
            let netns = TestNetns::new("hull-cri");
            (
                CRI_NAMESPACE,
                Some(netns),
                crate::cri::containerd_config(base),
            )
        } else {
            (NAMESPACE, None, ctr_only_config(base))
        };
        std::fs::write(base.join("containerd.toml"), config).map_err(io)?;
        let mut me = Self {
            dir,
            child: None,
            namespace,
            netns,
            env: options.env.clone(),
        };
        me.spawn().map_err(Failed)?;
        if options.cri {
            // CRI's busybox carries the fs probe (shared mmap across the pod's containers).
            let probe = crate::rootfs::fs_probe_binary();
            if !probe.is_file() {
                return Err(Missing(format!(
                    "{} is missing; run scripts/build.sh",
                    probe.display()
                )));
            }
            let image = me.dir().join("busybox.tar");
            build_busybox_image_with(&image, IMAGE, &[(probe.as_path(), "bin/hull-fs-probe")])
                .map_err(|e| Failed(format!("busybox image: {e}")))?;
            me.import(&image).map_err(Failed)?;
            let pause = me.dir().join("pause.tar");
            build_image(
                &pause,
                crate::cri::PAUSE_IMAGE,
                &[],
                Some(crate::cri::PAUSE_COMMAND),
            )
            .map_err(|e| Failed(format!("pause image: {e}")))?;
            me.import(&pause).map_err(Failed)?;
        } else {
            let image = busybox_image().map_err(|e| Failed(format!("busybox image: {e}")))?;
            me.import(&image).map_err(Failed)?;
        }
        Ok(me)
    }

    /// The network namespace containerd runs in (CRI only).
    pub fn netns(&self) -> Option<&TestNetns> {
        self.netns.as_ref()
    }

    /// The containerd namespace `ctr` works in.
    pub fn namespace(&self) -> &'static str {
        self.namespace
    }

    /// `ctr images import` of an OCI archive.
    pub fn import(&self, archive: &Path) -> Result<(), String> {
        let out = self
            .ctr_command()
            .arg("images")
            .arg("import")
            .arg(archive)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ctr: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ctr images import: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), String> {
        let base = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(base.join("containerd.log"))
            .map_err(|e| format!("containerd.log: {e}"))?;
        let path = format!(
            "{}:{}",
            base.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        // Its own process group: a Ctrl-C in the terminal reaches the caller, which then stops
        // containerd and cleans up, instead of killing containerd under running shims.
        // In CRI's network namespace when there is one (nsenter changes nothing else).
        let mut command = match &self.netns {
            Some(netns) => netns.command("containerd"),
            None => Command::new("containerd"),
        };
        let child = command
            .arg("--config")
            .arg(base.join("containerd.toml"))
            .env("PATH", path)
            .env("HULL_CONFIG", base.join("hull.toml"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn containerd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ctr(&["version"]);
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "containerd did not come up: {}\n--- log ---\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops containerd (its shims and their pods keep running) and starts it again.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// The private directory (root, state, sockets, logs, hull's run dir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the shims keep the records of pods that failed to start (`log_dir`).
    pub fn log_dir(&self) -> PathBuf {
        self.dir().join("log")
    }

    /// hull's run directory for this containerd's pods.
    pub fn run_dir(&self) -> PathBuf {
        self.dir().join("run")
    }

    /// containerd's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("c.sock")
    }

    /// `ctr` against this containerd, in the test namespace.
    pub fn ctr_command(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(self.namespace);
        c
    }

    /// The `ctr` command line as a shell string (for `script` and tmux).
    pub fn ctr_shell(&self) -> String {
        format!(
            "ctr --address {} --namespace {}",
            self.socket().display(),
            self.namespace
        )
    }

    /// Runs `ctr args…` and returns its output.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// `ctr run --rm --runtime io.containerd.hull.v2 <busybox> id args…`.
    pub fn run_rm(&self, id: &str, args: &[&str]) -> Output {
        let mut all = vec!["run", "--rm", "--runtime", RUNTIME, IMAGE, id];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// `ctr run -d` of `args` as container `id`; panics when it fails.
    pub fn run_detached(&self, id: &str, args: &[&str]) {
        let mut all = vec!["run", "-d", "--runtime", RUNTIME, IMAGE, id];
        all.extend_from_slice(args);
        let out = self.ctr(&all);
        assert!(
            out.status.success(),
            "ctr run -d {id}: {}",
            self.explain(&out)
        );
    }

    /// `ctr run -d` with extra `flags` (before the image) of `args` as container `id`; panics
    /// when it fails.
    pub fn run_detached_with(&self, id: &str, flags: &[&str], args: &[&str]) {
        let mut all = vec!["run", "-d", "--runtime", RUNTIME];
        all.extend_from_slice(flags);
        all.extend_from_slice(&[IMAGE, id]);
        all.extend_from_slice(args);
        let out = self.ctr(&all);
        assert!(
            out.status.success(),
            "ctr run -d {id}: {}",
            self.explain(&out)
        );
    }

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

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
        // The namespace's host cgroup, once no pod (of any test) is in it.
        for dir in crate::host_cgroup_dirs(Path::new(self.namespace)) {
            let _ = std::fs::remove_dir(dir);
        }
        // Shims, VMMs and vsock backends of this containerd all name its directory.
        let marker = self.dir().display().to_string();
        let socket = self.socket();
        for _ in 0..50 {
            let left: Vec<u32> = processes()
                .into_iter()
                .filter(|(pid, c)| *pid != std::process::id() && c.contains(&marker))
                .map(|(pid, _)| pid)
                .collect();
            if left.is_empty() {
                break;
            }
            for pid in left {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut mounts = mounts_under(self.dir());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // Sockets of shims that did not exit cleanly.
        for entry in std::fs::read_dir(self.dir().join("state/io.containerd.runtime.v2.task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for bundle in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let id = bundle.file_name().to_string_lossy().into_owned();
                let _ = std::fs::remove_file(shim_socket(&socket, self.namespace, &id));
            }
        }
    }
}

/// The socket containerd-shim 0.11 serves a shim on: `/run/containerd/s/<sha256 of
/// "<containerd address>/<namespace>/<id>">`.
pub fn shim_socket(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = format!("{}/{namespace}/{id}", address.display());
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text.split_whitespace().next().unwrap_or_default();
    PathBuf::from("/run/containerd/s").join(hash)
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Every process's pid and command line (arguments joined by spaces, with a trailing space).
pub fn processes() -> Vec<(u32, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        let mut text = String::new();
        for arg in raw.split(|b| *b == 0).filter(|a| !a.is_empty()) {
            text.push_str(&String::from_utf8_lossy(arg));
            text.push(' ');
        }
        all.push((pid, text));
    }
    all
}

/// The real uid of process `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Mount points under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// The configuration of a containerd for `ctr` tests: private root, state and sockets, CRI off.
fn ctr_only_config(base: &Path) -> String {
    format!(
        r#"version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{b}/c.sock"

[ttrpc]
  address = "{b}/c.sock.ttrpc"

[debug]
  level = "info"
"#,
        b = base.display()
    )
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The busybox OCI image archive (built once per test process under `target/hull/test`).
pub fn busybox_image() -> Result<PathBuf, String> {
    static IMAGE_TAR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE_TAR
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/test");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let out = dir.join(format!("busybox-oci-{}.tar", std::process::id()));
            build_busybox_image(&out, IMAGE)?;
            Ok(out)
        })
        .clone()
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let out = run(Command::new("sha256sum").arg(path))?;
    Ok(String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Builds an OCI image archive (`oci-layout`, `index.json`, `blobs/sha256/…`) of a busybox root
/// filesystem made from the host's busybox-static, named `name`, without any registry.
pub fn build_busybox_image(out: &Path, name: &str) -> Result<(), String> {
    build_busybox_image_with(out, name, &[])
}

/// [`build_busybox_image`] with `extra` host files copied in, each to a path in the image
/// (e.g. a static probe to `bin/probe`; missing directories are made).
pub fn build_busybox_image_with(
    out: &Path,
    name: &str,
    extra: &[(&Path, &str)],
) -> Result<(), String> {
    build_image(out, name, extra, None)
}

/// [`build_busybox_image_with`] whose command is `entrypoint` (when given) instead of `sh`.
pub fn build_image(
    out: &Path,
    name: &str,
    extra: &[(&Path, &str)],
    entrypoint: Option<&[&str]>,
) -> Result<(), String> {
    let files: Vec<ImageFile> = extra
        .iter()
        .map(|(from, to)| ImageFile {
            from,
            to,
            mode: None,
        })
        .collect();
    build_image_files(out, name, &files, entrypoint)
}

/// A host file copied into a test image (owned by root, as every file of the image is).
#[derive(Debug, Clone, Copy)]
pub struct ImageFile<'a> {
    /// The host file.
    pub from: &'a Path,
    /// Its path in the image (missing directories are made).
    pub to: &'a str,
    /// Its mode (e.g. `0o4755` for a setuid-root binary); the host file's when `None`.
    pub mode: Option<u32>,
}

/// [`build_image`] with files whose mode may be chosen.
pub fn build_image_files(
    out: &Path,
    name: &str,
    extra: &[ImageFile],
    entrypoint: Option<&[&str]>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs).map_err(|e| format!("busybox rootfs: {e}"))?;
    for ImageFile { from, to, mode } in extra {
        if let Some(parent) = rootfs.join(to).parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{to}: {e}"))?;
        }
        std::fs::copy(from, rootfs.join(to))
            .map_err(|e| format!("{} → {to}: {e}", from.display()))?;
        if let Some(mode) = mode {
            std::fs::set_permissions(rootfs.join(to), std::fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("{to}: {e}"))?;
        }
    }
    let image = work.path().join("image");
    let blobs = image.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
    let layer = work.path().join("layer.tar");
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let blob = |path: &Path| -> Result<(String, u64), String> {
        let digest = sha256_file(path)?;
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        std::fs::copy(path, blobs.join(&digest)).map_err(|e| e.to_string())?;
        Ok((digest, size))
    };
    let (layer_digest, layer_size) = blob(&layer)?;
    let mut image_config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"]
    });
    if let Some(entrypoint) = entrypoint {
        image_config["Entrypoint"] = serde_json::json!(entrypoint);
        image_config["Cmd"] = serde_json::json!([]);
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "hull: busybox-static, built offline" }]
    });
    let write_json = |file: &str, value: &serde_json::Value| -> Result<PathBuf, String> {
        let path = work.path().join(file);
        std::fs::write(&path, serde_json::to_vec(value).unwrap()).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let (config_digest, config_size) = blob(&write_json("config.json", &config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config_size
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_size
        }]
    });
    let (manifest_digest, manifest_size) = blob(&write_json("manifest.json", &manifest)?)?;
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag
            }
        }]
    });
    std::fs::write(
        image.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        image.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(|e| e.to_string())?;
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&image)
        .arg("-cf")
        .arg(out)
        .args(["oci-layout", "index.json", "blobs"]))?;
    Ok(())
}
