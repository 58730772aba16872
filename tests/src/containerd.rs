//! A private containerd for end-to-end tests (and `hull bench`): its own root, state, socket and configuration,
//! hull's shim on its `PATH`, a hull configuration running containers from the test initramfs's
//! busybox tree, and a busybox OCI image built offline and imported. With [`Options::cri`] its CRI
//! plugin is on and it runs in a network namespace of its own (see [`crate::cri`]). Dropping it
//! stops containerd and kills, unmounts and removes everything it and its shims left.
//!
//! Here: starting, stopping and driving it with `ctr`; in `containerd/`: what a test asks about
//! its tasks and their leftovers (`tasks`), the host state tests inspect (`host`), and the
//! busybox image (`image`).

use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hull_runtime::images::GuestImages;
use hull_runtime::vm::{accel, qemu::Qemu};

use crate::netns::TestNetns;
use crate::rootfs::{test_initramfs, GUEST_ROOTFS};

mod host;
mod image;
mod tasks;

use host::signal;
pub use host::{
    assert_clean_within, entries_under, files_under, mounts_under, processes, remove_empty_tree,
    shim_socket, tail, uid_of,
};
pub use image::{
    build_busybox_image, build_busybox_image_with, build_image, build_image_files, busybox_image,
    ImageFile,
};

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
    bin: Option<PathBuf>,
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
    /// A directory holding another `containerd` and its `ctr` (and runc shim) to start instead of
    /// those on `PATH` (e.g. containerd 1.7: [`crate::engines::containerd_1_7`]); default
    /// `HULL_TEST_CONTAINERD_BIN`, so a whole suite can run against another containerd.
    pub containerd_bin: Option<PathBuf>,
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

/// What a test engine hands hull's shim: checks that the host has the guest images, a VMM and the
/// shim, then links the shim into `base/bin` and writes `base/hull.toml` (the pods' run and log
/// directories under `base`); the engine runs with `HULL_CONFIG` pointing at it.
pub fn prepare_hull(options: &Options, base: &Path) -> Result<(), LaunchError> {
    use LaunchError::{Failed, Missing};
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
    Ok(())
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
        let bin = options
            .containerd_bin
            .clone()
            .or_else(|| crate::env_path("HULL_TEST_CONTAINERD_BIN"));
        for tool in ["containerd", "ctr"] {
            if let Some(bin) = &bin {
                if !bin.join(tool).is_file() {
                    return Err(Missing(format!(
                        "{} is not installed (scripts/install-engines.sh)",
                        bin.join(tool).display()
                    )));
                }
            } else if !on_path(tool) {
                return Err(Missing(format!(
                    "{tool} is not installed (scripts/install-deps.sh)"
                )));
            }
        }
        let io = |e: std::io::Error| Failed(e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("hull-ctrd-")
            .tempdir_in("/tmp")
            .map_err(io)?;
        let base = dir.path();
        prepare_hull(options, base)?;
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
            bin,
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
        // A containerd of its own finds its own runc shim first.
        let own = self
            .bin
            .as_ref()
            .map(|b| format!("{}:", b.display()))
            .unwrap_or_default();
        let path = format!(
            "{}:{own}{}",
            base.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let program = self.tool("containerd");
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        // Its own process group: a Ctrl-C in the terminal reaches the caller, which then stops
        // containerd and cleans up, instead of killing containerd under running shims.
        // In CRI's network namespace when there is one (nsenter changes nothing else).
        let mut command = match &self.netns {
            Some(netns) => netns.command(&program),
            None => Command::new(&program),
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

    /// `name` (`containerd`, `ctr`) as this containerd runs it: from [`Options::containerd_bin`],
    /// else from `PATH`.
    fn tool(&self, name: &str) -> String {
        self.bin
            .as_ref()
            .map_or_else(|| name.to_owned(), |b| b.join(name).display().to_string())
    }

    /// `ctr` against this containerd, in the test namespace.
    pub fn ctr_command(&self) -> Command {
        let mut c = Command::new(self.tool("ctr"));
        c.arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(self.namespace);
        c
    }

    /// The `ctr` command line as a shell string (for `script` and tmux).
    pub fn ctr_shell(&self) -> String {
        format!(
            "{} --address {} --namespace {}",
            self.tool("ctr"),
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
