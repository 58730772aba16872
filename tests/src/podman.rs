//! A private Podman for end-to-end tests of `hull` as an OCI runtime (`docs/oci-cli.md`): Debian's
//! podman 4.3 with its own root, runroot, vfs storage, configuration and temporary directory, run
//! in a network namespace of the test's, with `target/hull/bin/hull` as its runtime (through a
//! small wrapper that points hull at the test's configuration and state root). The busybox test
//! image is built offline, once per test binary, and loaded into each Podman's storage. Dropping
//! it removes every container, then kills, unmounts and removes whatever is left under its
//! directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::containerd::{
    assert_clean_within, build_busybox_image_with, entries_under, files_under, mounts_under,
    prepare_hull, processes, remove_empty_tree, tail, LaunchError, Options, IMAGE,
};
use crate::netns::TestNetns;

/// The `hull` binary under test (`HULL_BIN`, else `target/hull/bin/hull`).
pub fn hull_binary() -> PathBuf {
    std::env::var_os("HULL_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/hull"),
        PathBuf::from,
    )
}

/// The busybox image archive, built once per test binary.
fn image_archive() -> Result<PathBuf, String> {
    static ARCHIVE: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let path = dir.path().join("busybox.tar");
            build_busybox_image_with(&path, IMAGE, &[])?;
            Ok((dir, path))
        })
        .as_ref()
        .map(|(_, p)| p.clone())
        .map_err(Clone::clone)
}

/// Held (shared) by every live [`Podman`] of this test binary. The sweep of podman's shared
/// `libpod_parent` cgroups takes it exclusively, so it never runs while another test's pod is
/// starting: a pod's fresh `vmm` leaf is empty until its VMM moves in, and a sweep would take it
/// for a leftover and remove it.
static LIVE: RwLock<()> = RwLock::new(());

/// A private Podman.
#[derive(Debug)]
pub struct Podman {
    dir: tempfile::TempDir,
    netns: TestNetns,
    live: Option<RwLockReadGuard<'static, ()>>,
}

impl Podman {
    /// Sets up a Podman with the test image loaded (nothing runs until a command does).
    pub fn launch() -> Result<Self, LaunchError> {
        use LaunchError::{Failed, Missing};
        if crate::pod::which("podman").is_none() || crate::pod::which("conmon").is_none() {
            return Err(Missing(
                "podman and conmon are not installed (scripts/install-deps.sh)".into(),
            ));
        }
        let hull = hull_binary();
        if !hull.is_file() {
            return Err(Missing(format!(
                "{} is missing; run scripts/build.sh",
                hull.display()
            )));
        }
        let io = |e: std::io::Error| Failed(e.to_string());
        // Short: the monitors' control sockets are <dir>/oci/<64-hex id>/ctl.
        let dir = tempfile::Builder::new()
            .prefix("hp-")
            .tempdir_in("/tmp")
            .map_err(io)?;
        let base = dir.path();
        prepare_hull(&Options::default(), base)?;
        for sub in ["tmp", "oci"] {
            std::fs::create_dir_all(base.join(sub)).map_err(io)?;
        }
        let wrapper = base.join("bin/hull");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec env HULL_CONFIG={b}/hull.toml {hull} --root {b}/oci \"$@\"\n",
                b = base.display(),
                hull = hull.display()
            ),
        )
        .map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        std::fs::write(
            base.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{b}/events.log\"\ntmp_dir = \"{b}/tmp\"\n\
                 runtime = \"hull\"\n[engine.runtimes]\nhull = [\"{b}/bin/hull\"]\n\
                 [network]\nnetwork_config_dir = \"{b}/cni\"\n",
                b = base.display()
            ),
        )
        .map_err(io)?;
        // Podman's default network, as Podman would make it, but with its address leases under
        // the test's directory (CNI's default is /var/lib/cni, the host's).
        std::fs::create_dir_all(base.join("cni")).map_err(io)?;
        let network = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "podman",
            "plugins": [
                {
                    "type": "bridge", "bridge": "cni-podman0", "isGateway": true, "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]],
                        "dataDir": base.join("cni-leases"),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall"},
                {"type": "tuning"}
            ]
        });
        std::fs::write(base.join("cni/87-podman.conflist"), network.to_string()).map_err(io)?;
        let me = Self {
            dir,
            netns: TestNetns::new("hull-podman"),
            live: Some(
                LIVE.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
        };
        let archive = image_archive().map_err(|e| Failed(format!("busybox image: {e}")))?;
        let out = me.podman(&["load", "-q", "-i", &archive.display().to_string()]);
        if !out.status.success() {
            return Err(Failed(format!("podman load: {}", me.explain(&out))));
        }
        Ok(me)
    }

    /// The private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// hull's state root (`--root`).
    pub fn oci_root(&self) -> PathBuf {
        self.dir().join("oci")
    }

    /// The image every test runs.
    pub fn image(&self) -> &'static str {
        IMAGE
    }

    /// `podman` with this Podman's storage and configuration, in its network namespace.
    pub fn command(&self) -> Command {
        let b = self.dir();
        let mut c = self.netns.command("podman");
        c.env("CONTAINERS_CONF", b.join("containers.conf"))
            .env("HULL_CONFIG", b.join("hull.toml"))
            .arg("--root")
            .arg(b.join("root"))
            .arg("--runroot")
            .arg(b.join("runroot"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--tmpdir")
            .arg(b.join("tmp"))
            .arg("--runtime")
            .arg(b.join("bin/hull"))
            .stdin(Stdio::null());
        c
    }

    /// The `podman` command line of [`Podman::command`] as a shell string (for tmux).
    pub fn shell(&self) -> String {
        let c = self.command();
        let mut words: Vec<String> = c
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
            .collect();
        words.insert(0, "env".into());
        words.push(c.get_program().to_string_lossy().into_owned());
        words.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
        words.join(" ")
    }

    /// Runs `podman args…` to the end.
    pub fn podman(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("cannot run podman")
    }

    /// `program` in this Podman's network namespace (to reach published ports on its loopback).
    pub fn in_netns(&self, program: &str) -> Command {
        self.netns.command(program)
    }

    /// `hull --root <this root> args…` run directly (as conmon would).
    pub fn hull(&self) -> Command {
        let mut c = self.netns.command(&hull_binary().display().to_string());
        c.env("HULL_CONFIG", self.dir().join("hull.toml"))
            .arg("--root")
            .arg(self.oci_root());
        c
    }

    /// A failed command's output and the logs that say why.
    pub fn explain(&self, out: &Output) -> String {
        let mut logs = String::new();
        for entry in files_under(&self.oci_root()) {
            if entry.ends_with("monitor.log") {
                let text = std::fs::read_to_string(&entry).unwrap_or_default();
                logs.push_str(&format!(
                    "--- {} ---\n{}\n",
                    entry.display(),
                    tail(&text, 30)
                ));
            }
        }
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n{logs}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The processes this Podman's containers left (monitors, VMMs, virtiofsd, vsock backends,
    /// conmon): whatever names its directory; not the test's own commands.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let marker = self.dir().display().to_string();
        processes()
            .into_iter()
            .filter(|(pid, cmd)| {
                *pid != std::process::id() && cmd.contains(&marker) && !cmd.starts_with("nsenter ")
            })
            .collect()
    }

    /// What is left on the host: processes, mounts, container state, pod directories. Empty
    /// when clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .processes()
            .into_iter()
            .map(|(pid, cmd)| format!("process {pid}: {cmd}"))
            .collect();
        for m in mounts_under(self.dir()) {
            found.push(format!("mount {m}"));
        }
        found.extend(entries_under(self.dir(), &["oci", "run"]));
        found
    }

    /// Waits (bounded) until nothing is left; panics with what is.
    pub fn assert_clean(&self, bound: Duration) {
        assert_clean_within(bound, || self.leftovers());
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for (pid, _) in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut mounts = mounts_under(self.dir());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // Podman's cgroupfs parent for its containers (the VMMs are moved into theirs), shared by
        // every Podman of this binary: swept by the last one alive only.
        drop(self.live.take());
        if let Ok(_alone) = LIVE.try_write() {
            for dir in crate::host_cgroup_dirs(Path::new("libpod_parent")) {
                let _ = remove_empty_tree(&dir);
            }
        }
    }
}
