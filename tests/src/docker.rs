//! A private Docker for end-to-end tests of `hull` as an OCI runtime (`docs/oci-cli.md`): Debian's
//! dockerd 20.10 with its own data root, exec root, pid file and socket, on a private
//! containerd 1.6 (its own root, state and socket: the host's stays untouched), both in a
//! network namespace of the test's — so Docker's `docker0` bridge, its iptables rules and its
//! published ports (`docker-proxy`) live and die in that namespace; `target/hull/bin/hull` is
//! registered in the daemon's own `daemon.json` by the set-up's `scripts/setup-engines.sh` (naming
//! a wrapper that points hull at the test's configuration; its state root is the one Docker
//! passes, under the exec root) and is the default runtime. The busybox test image is imported from a root filesystem built offline.
//! Dropping it removes every container, stops both daemons, then kills, unmounts and removes
//! whatever is left under its directory; the namespace goes last.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::containerd::{
    assert_clean_within, entries_under, files_under, mounts_under, prepare_hull, processes,
    remove_empty_tree, tail, LaunchError, Options,
};
use crate::netns::TestNetns;
use crate::podman::hull_binary;

/// Debian's Docker 20.10 (not the static client that may sit in /usr/local/bin).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// The image every test runs.
pub const IMAGE: &str = "hull-busybox:test";

/// A private Docker.
#[derive(Debug)]
pub struct Docker {
    dir: tempfile::TempDir,
    netns: TestNetns,
    containerd: Option<Child>,
    dockerd: Option<Child>,
}

impl Docker {
    /// Starts containerd and dockerd and imports the test image.
    pub fn launch() -> Result<Self, LaunchError> {
        use LaunchError::{Failed, Missing};
        if !Path::new(DOCKERD).exists() || crate::pod::which("containerd").is_none() {
            return Err(Missing(
                "docker.io (dockerd 20.10) or containerd is not installed (scripts/install-deps.sh)"
                    .into(),
            ));
        }
        let hull = hull_binary();
        if !hull.exists() {
            return Err(Missing(format!(
                "{} is missing; run scripts/build.sh",
                hull.display()
            )));
        }
        let io = |e: std::io::Error| Failed(e.to_string());
        // Short: the monitors' control sockets are <dir>/oci/<64-hex id>/ctl.
        let dir = tempfile::Builder::new()
            .prefix("hd-")
            .tempdir_in("/tmp")
            .map_err(io)?;
        let base = dir.path().to_path_buf();
        prepare_hull(&Options::default(), &base)?;
        for sub in ["ctrd", "data", "exec"] {
            std::fs::create_dir_all(base.join(sub)).map_err(io)?;
        }
        let wrapper = base.join("bin/hull");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec env HULL_CONFIG={b}/hull.toml {hull} \"$@\"\n",
                b = base.display(),
                hull = hull.display()
            ),
        )
        .map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        std::fs::write(
            base.join("containerd.toml"),
            format!(
                "version = 2\nroot = \"{b}/ctrd/root\"\nstate = \"{b}/ctrd/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\naddress = \"{b}/ctrd.sock\"\n[ttrpc]\naddress = \"{b}/ctrd.sock.ttrpc\"\n",
                b = base.display()
            ),
        )
        .map_err(io)?;
        // Its own daemon.json, not the host's, with hull registered by the set-up's own script
        // (`scripts/setup-engines.sh`, as on a user's host), naming the wrapper.
        let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-engines.sh");
        let out = Command::new("bash")
            .arg(&setup)
            .env("HULL_ETC", base.join("etc"))
            .env("HULL_OCI_BIN", &wrapper)
            .output()
            .map_err(io)?;
        let daemon_json = base.join("etc/docker/daemon.json");
        if !out.status.success() || !daemon_json.exists() {
            return Err(Failed(format!(
                "{} did not register hull: {}",
                setup.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let log = |name: &str| {
            std::fs::File::create(base.join(name))
                .map(Stdio::from)
                .map_err(io)
        };
        let mut me = Self {
            dir,
            netns: TestNetns::new("hull-docker"),
            containerd: None,
            dockerd: None,
        };
        let containerd = me
            .netns
            .command("containerd")
            .arg("--config")
            .arg(base.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log("containerd.log")?)
            .stderr(log("containerd.log")?)
            .spawn()
            .map_err(io)?;
        me.containerd = Some(containerd);
        wait_for(&base.join("ctrd.sock"), Duration::from_secs(30))
            .map_err(|e| Failed(format!("containerd: {e}; {}", me.logs())))?;
        let dockerd = me
            .netns
            .command(DOCKERD)
            .arg("--data-root")
            .arg(base.join("data"))
            .arg("--exec-root")
            .arg(base.join("exec"))
            .arg("--pidfile")
            .arg(base.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", base.join("docker.sock").display()))
            .arg("--containerd")
            .arg(base.join("ctrd.sock"))
            .arg("--config-file")
            .arg(&daemon_json)
            .args(["--storage-driver", "vfs"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--default-runtime", "hull"])
            .stdin(Stdio::null())
            .stdout(log("dockerd.log")?)
            .stderr(log("dockerd.log")?)
            .spawn()
            .map_err(io)?;
        me.dockerd = Some(dockerd);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = me.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Failed(format!(
                    "dockerd did not start: {}",
                    me.explain(&out)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        me.import_image()?;
        Ok(me)
    }

    fn import_image(&self) -> Result<(), LaunchError> {
        let rootfs = self.dir().join("image-rootfs");
        crate::rootfs::busybox_rootfs(&rootfs)
            .map_err(|e| LaunchError::Failed(format!("busybox rootfs: {e}")))?;
        let tar = self.dir().join("image.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(LaunchError::Failed("cannot tar the busybox rootfs".into()));
        }
        let out = self.docker(&["import", &tar.display().to_string(), IMAGE]);
        let _ = std::fs::remove_dir_all(&rootfs);
        let _ = std::fs::remove_file(&tar);
        if !out.status.success() {
            return Err(LaunchError::Failed(format!(
                "docker import: {}",
                self.explain(&out)
            )));
        }
        Ok(())
    }

    /// The private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// hull's state root: the `--root` Docker's runc shim passes (`<exec root>/runtime-hull`,
    /// then containerd's namespace).
    pub fn oci_root(&self) -> PathBuf {
        self.dir().join("exec/runtime-hull/moby")
    }

    /// The Docker client on this daemon (not yet run).
    pub fn command(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir().join("client"))
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir().join("docker.sock").display()
            ));
        c
    }

    /// Runs `docker args…`, stdin closed.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run docker")
    }

    /// `program` run in the daemons' network namespace (where published ports listen).
    pub fn in_netns(&self, program: &str) -> Command {
        self.netns.command(program)
    }

    /// `hull --root <this root> args…` run directly.
    pub fn hull(&self) -> Command {
        let mut c = Command::new(hull_binary());
        c.env("HULL_CONFIG", self.dir().join("hull.toml"))
            .arg("--root")
            .arg(self.oci_root());
        c
    }

    fn logs(&self) -> String {
        let mut logs = String::new();
        for name in ["containerd.log", "dockerd.log"] {
            let text = std::fs::read_to_string(self.dir().join(name)).unwrap_or_default();
            logs.push_str(&format!("--- {name} ---\n{}\n", tail(&text, 20)));
        }
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
        logs
    }

    /// A failed command's output and the logs that say why.
    pub fn explain(&self, out: &Output) -> String {
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        )
    }

    /// The processes this Docker's containers left (monitors, VMMs, virtiofsd, vsock backends,
    /// runc shims): whatever names its directory, but the two daemons.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let marker = self.dir().display().to_string();
        let daemons: Vec<u32> = [&self.containerd, &self.dockerd]
            .into_iter()
            .flatten()
            .map(Child::id)
            .collect();
        processes()
            .into_iter()
            .filter(|(pid, cmd)| {
                *pid != std::process::id()
                    && !daemons.contains(pid)
                    && cmd.contains(&marker)
                    && !cmd.starts_with("nsenter ")
            })
            .collect()
    }

    /// What the containers left on the host: processes, hull state, pod directories. Empty when
    /// clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .processes()
            .into_iter()
            .map(|(pid, cmd)| format!("process {pid}: {cmd}"))
            .collect();
        for m in mounts_under(&self.dir().join("run")) {
            found.push(format!("mount {m}"));
        }
        found.extend(entries_under(
            self.dir(),
            &["exec/runtime-hull/moby", "run"],
        ));
        found
    }

    /// Waits (bounded) until nothing is left; panics with what is.
    pub fn assert_clean(&self, bound: Duration) {
        assert_clean_within(bound, || self.leftovers());
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        for child in [self.dockerd.take(), self.containerd.take()]
            .into_iter()
            .flatten()
        {
            stop(child);
        }
        for _ in 0..50 {
            let left: Vec<(u32, String)> = {
                let marker = self.dir().display().to_string();
                processes()
                    .into_iter()
                    .filter(|(pid, cmd)| *pid != std::process::id() && cmd.contains(&marker))
                    .collect()
            };
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
        // Docker's cgroupfs parent for its containers.
        for dir in crate::host_cgroup_dirs(Path::new("docker")) {
            let _ = remove_empty_tree(&dir);
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_for(path: &Path, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
