//! A private CRI-O for end-to-end tests: CRI-O 1.26 (`scripts/install-engines.sh`) with its own
//! root, runroot, socket, configuration, CNI configuration and pinned-namespace directory, run in
//! a network namespace of the test's, with hull's shim as the VM runtime `hull`
//! (`runtime_type = "vm"`) beside runc. The test images (busybox with the fs probe, the pause
//! image) are built offline, as for containerd, and copied into its storage with skopeo before it
//! starts. Dropping it stops CRI-O and kills, unmounts and removes everything it and its shims
//! left. [`crate::cri::Cri::start_crio`] drives it through the same CRI client as containerd.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::containerd::{
    build_busybox_image_with, build_image, mounts_under, prepare_hull, processes, tail,
    LaunchError, Options, IMAGE,
};
use crate::cri::{HANDLER, PAUSE_COMMAND, PAUSE_IMAGE};
use crate::netns::TestNetns;

/// A running private CRI-O.
#[derive(Debug)]
pub struct Crio {
    dir: tempfile::TempDir,
    child: Option<Child>,
    netns: TestNetns,
    cgroup_parents: std::sync::Mutex<Vec<String>>,
}

impl Crio {
    /// Starts CRI-O from `crio_dir` (`crio`, `pinns`) with hull configured by `options`, in a
    /// network namespace of its own, with the test images in its storage.
    pub fn launch(crio_dir: &Path, options: &Options) -> Result<Self, LaunchError> {
        use LaunchError::{Failed, Missing};
        if crate::pod::which("skopeo").is_none() {
            return Err(Missing(
                "skopeo is not installed (scripts/install-deps.sh)".into(),
            ));
        }
        let io = |e: std::io::Error| Failed(e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("hull-crio-")
            .tempdir_in("/tmp")
            .map_err(io)?;
        let base = dir.path();
        prepare_hull(options, base)?;
        for sub in ["cni", "conf.d", "hooks.d", "logs"] {
            std::fs::create_dir_all(base.join(sub)).map_err(io)?;
        }
        crate::cri::write_cni_config(base);
        std::fs::write(
            base.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .map_err(io)?;
        std::fs::write(base.join("crio.conf"), config(base, crio_dir)).map_err(io)?;
        // The images, into CRI-O's storage before it starts. CRI's busybox carries the fs probe.
        let probe = crate::rootfs::fs_probe_binary();
        if !probe.is_file() {
            return Err(Missing(format!(
                "{} is missing; run scripts/build.sh",
                probe.display()
            )));
        }
        let busybox = base.join("busybox.tar");
        build_busybox_image_with(&busybox, IMAGE, &[(probe.as_path(), "bin/hull-fs-probe")])
            .map_err(|e| Failed(format!("busybox image: {e}")))?;
        let pause = base.join("pause.tar");
        build_image(&pause, PAUSE_IMAGE, &[], Some(PAUSE_COMMAND))
            .map_err(|e| Failed(format!("pause image: {e}")))?;
        for (archive, name) in [(&busybox, IMAGE), (&pause, PAUSE_IMAGE)] {
            copy_image(base, archive, name).map_err(Failed)?;
        }
        let mut me = Self {
            dir,
            child: None,
            netns: TestNetns::new("hull-crio"),
            cgroup_parents: Default::default(),
        };
        me.spawn(&crio_dir.join("crio")).map_err(Failed)?;
        Ok(me)
    }

    fn spawn(&mut self, crio: &Path) -> Result<(), String> {
        let base = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(base.join("crio.log"))
            .map_err(|e| format!("crio.log: {e}"))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        // Its own process group, as containerd's (a Ctrl-C reaches the test, which cleans up);
        // its working directory is its own (it makes files there).
        let child = self
            .netns
            .command(&crio.display().to_string())
            .arg("--config")
            .arg(base.join("crio.conf"))
            .arg("--config-dir")
            .arg(base.join("conf.d"))
            .current_dir(base)
            .env("HULL_CONFIG", base.join("hull.toml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn crio: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.socket().exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "crio exited ({status}):\n{}",
                    tail(&self.log(), 40)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("CRI-O did not come up:\n{}", tail(&self.log(), 40)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The private directory (root, runroot, socket, logs, hull's run dir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// hull's run directory for this CRI-O's pods.
    pub fn run_dir(&self) -> PathBuf {
        self.dir().join("run")
    }

    /// CRI-O's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("crio.sock")
    }

    /// The network namespace CRI-O, CNI and the pods' host sides are in.
    pub fn netns(&self) -> &TestNetns {
        &self.netns
    }

    /// CRI-O's log (the shims' logs are copied into it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("crio.log")).unwrap_or_default()
    }

    /// The pids of the processes this CRI-O's pods run: hull's shims (whose working directory is
    /// a bundle under this CRI-O's runroot), and whatever names its directory (VMMs, virtiofsd,
    /// vsock backends); not CRI-O itself.
    pub fn pod_processes(&self) -> Vec<(u32, String)> {
        let marker = self.dir().display().to_string();
        let crio = self.child.as_ref().map(Child::id);
        processes()
            .into_iter()
            .filter(|(pid, cmd)| {
                Some(*pid) != crio
                    && *pid != std::process::id()
                    && (cmd.contains(&marker)
                        || std::fs::read_link(format!("/proc/{pid}/cwd"))
                            .is_ok_and(|cwd| cwd.starts_with(self.dir())))
                    && !cmd.starts_with("nsenter ")
            })
            .collect()
    }

    /// What pod `id` (with host cgroup parent `cgroup_parent`) left on the host: processes,
    /// mounts, its run directory, pinned namespaces, its host cgroup. Empty when clean.
    pub fn leftovers(&self, id: &str, cgroup_parent: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .pod_processes()
            .into_iter()
            .map(|(pid, cmd)| format!("process {pid}: {cmd}"))
            .collect();
        for m in mounts_under(self.dir()) {
            found.push(format!("mount {m}"));
        }
        let pod_dir = self.run_dir().join(id);
        if pod_dir.exists() {
            found.push(format!("directory {}", pod_dir.display()));
        }
        for kind in ["netns", "ipcns", "utsns", "cgroupns", "userns"] {
            for entry in std::fs::read_dir(self.dir().join("ns").join(kind))
                .into_iter()
                .flatten()
                .flatten()
            {
                found.push(format!("pinned namespace {}", entry.path().display()));
            }
        }
        let cgroup = cgroup_parent.trim_start_matches('/');
        for dir in crate::host_cgroup_dirs(Path::new(cgroup)) {
            found.push(format!("cgroup {}", dir.display()));
        }
        found
    }

    /// Notes a pod's host cgroup parent, whose tree a dead shim would leave behind; dropping the
    /// CRI-O removes what is left of it.
    pub fn note_cgroup_parent(&self, parent: &str) {
        let mut parents = self
            .cgroup_parents
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        parents.push(parent.trim_start_matches('/').to_owned());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Crio {
    fn drop(&mut self) {
        self.stop();
        for _ in 0..50 {
            let left = self.pod_processes();
            if left.is_empty() {
                break;
            }
            for (pid, _) in left {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut mounts = mounts_under(self.dir());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // What killed shims leave outside this directory: their sockets (the bundles'
        // `address`) and their pods' host cgroups (empty once their processes are killed).
        for bundle in self.bundles() {
            if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
                let path = address.trim().trim_start_matches("unix://").to_owned();
                if std::os::unix::net::UnixStream::connect(&path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let parents = std::mem::take(
            &mut *self
                .cgroup_parents
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for parent in parents {
            for dir in crate::host_cgroup_dirs(Path::new(&parent)) {
                remove_cgroup_tree(&dir);
            }
        }
    }
}

/// Removes the empty cgroup `dir` and every cgroup below it, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Crio {
    /// The containers' bundles (`config.json`, the shim's `address`) in CRI-O's storage.
    fn bundles(&self) -> Vec<PathBuf> {
        let runroot = self.dir().join("runroot");
        std::fs::read_dir(&runroot)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().ends_with("-containers"))
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|c| c.path().join("userdata"))
            .filter(|b| b.join("config.json").is_file())
            .collect()
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// `skopeo copy` of an OCI archive into the storage of the CRI-O in `base`.
fn copy_image(base: &Path, archive: &Path, name: &str) -> Result<(), String> {
    let out = Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg("--policy")
        .arg(base.join("policy.json"))
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!(
            "containers-storage:[vfs@{}+{}]{name}",
            base.join("root").display(),
            base.join("runroot").display()
        ))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("skopeo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "skopeo copy {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// CRI-O's configuration for `base`: everything it keeps under `base`, cgroupfs, runc as the
/// default runtime and hull's shim as the VM runtime [`HANDLER`], the pause image's own command.
fn config(base: &Path, crio_dir: &Path) -> String {
    format!(
        r#"[crio]
root = "{b}/root"
runroot = "{b}/runroot"
storage_driver = "vfs"
log_dir = "{b}/logs"
version_file = "{b}/state/version"
version_file_persist = "{b}/lib/version"
clean_shutdown_file = "{b}/lib/clean.shutdown"

[crio.api]
listen = "{b}/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
conmon = "{conmon}"
conmon_cgroup = "pod"
cgroup_manager = "cgroupfs"
namespaces_dir = "{b}/ns"
pinns_path = "{pinns}"
container_exits_dir = "{b}/state/exits"
container_attach_socket_dir = "{b}/state/attach"
hooks_dir = ["{b}/hooks.d"]

[crio.runtime.runtimes.runc]
runtime_path = "/usr/sbin/runc"
runtime_type = "oci"
runtime_root = "{b}/state/runc"

[crio.runtime.runtimes.{HANDLER}]
runtime_path = "{b}/bin/containerd-shim-hull-v2"
runtime_type = "vm"
runtime_root = "{b}/state/hull"

[crio.image]
pause_image = "{PAUSE_IMAGE}"
pause_command = ""
signature_policy = "{b}/policy.json"

[crio.network]
network_dir = "{b}/cni"
plugin_dirs = ["/usr/lib/cni"]

[crio.metrics]
enable_metrics = false
"#,
        b = base.display(),
        conmon = crate::engines::CONMON,
        pinns = crio_dir.join("pinns").display(),
    )
}
