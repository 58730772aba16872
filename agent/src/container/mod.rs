//! The agent's container library: an OCI runtime spec in, a running container process out.
//!
//! [`create`] validates the spec (refusing, with a [`ContainerError`], anything it cannot
//! honour), creates the container's cgroup v2 directory, and forks the container's init process,
//! which builds its namespaces, filesystem view and identity and then waits at a start barrier.
//! [`Container::start`] releases it into `execve`; [`Container::exec`] runs more processes inside;
//! the cgroup gives pause/resume, update, stats, the process list and destroy.
//!
//! The caller is PID 1 and reaps every child itself: this library never waits for a process.
//! Pids and errors come back over close-on-exec socketpairs (see `sync`). How the forking works in
//! a multi-threaded caller is written down in `child`. `create`, `start`, `exec`, `pause`,
//! `resume` and `destroy` block (up to a few seconds in bad cases): call them from a blocking
//! thread (`spawn_blocking`).
//!
//! Caveats for callers: `exec` into a paused container is refused ([`ContainerError::Paused`]:
//! the new process would freeze on joining the cgroup); a `Container` dropped without `destroy`
//! leaves its processes and cgroup behind; with `terminal: true` the spec must mount devpts on `/dev/pts`.
//!
//! | file | what it owns |
//! |---|---|
//! | `config.rs` | id validation, refusing unsupported spec parts, hostname/sysctl checks |
//! | `namespaces.rs` | namespace list → unshare flags / paths to join |
//! | `cgroup.rs`, `resources.rs`, `devcgroup.rs`, `stats.rs` | the cgroup directory; resources → files; device rules → BPF; stats |
//! | `mounts.rs`, `rootfs.rs`, `devices.rs` | mount options; the filesystem view; device nodes |
//! | `process.rs`, `caps.rs`, `rlimits.rs`, `user.rs`, `seccomp.rs`, `pty.rs` | one process's attributes |
//! | `init.rs`, `exec.rs`, `child.rs`, `sync.rs`, `stage.rs` | the fork sequences and their channel |

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources};

pub mod caps;
pub mod cgroup;
mod child;
pub mod config;
pub mod devcgroup;
pub mod devices;
mod exec;
mod init;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod pty;
pub mod resources;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod stage;
pub mod stats;
mod sync;
pub mod user;

pub use cgroup::CgroupError;
pub use child::IoSetupError;
pub use config::{validate_id, ConfigError};
pub use devices::DeviceError;
pub use mounts::MountError;
pub use namespaces::NamespaceError;
pub use process::ProcessError;
pub use seccomp::SeccompError;
pub use stats::{CgroupStats, CpuStats, IoDeviceStats, MemoryEvents, MemoryStats, PidsStats};
pub use sync::SyncError;

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The spec as a whole (id, unsupported parts, hostname, sysctls).
    #[error("invalid container spec")]
    Config(#[from] ConfigError),
    /// The rootfs path is not an absolute path to a directory.
    #[error("rootfs {0} is not an absolute path to a directory")]
    Rootfs(PathBuf),
    /// Namespaces.
    #[error("invalid linux.namespaces")]
    Namespace(#[from] NamespaceError),
    /// A mount.
    #[error("invalid mount")]
    Mount(#[from] MountError),
    /// A device.
    #[error("invalid linux.devices entry")]
    Device(#[from] DeviceError),
    /// The process.
    #[error("invalid process")]
    Process(#[from] ProcessError),
    /// The seccomp profile.
    #[error("invalid linux.seccomp")]
    Seccomp(#[from] SeccompError),
    /// The cgroup.
    #[error("cgroup")]
    Cgroup(#[from] CgroupError),
    /// Stdio or pty descriptors.
    #[error("stdio")]
    Io(#[from] IoSetupError),
    /// `process.terminal` and the [`ProcessIo`] given disagree.
    #[error("process.terminal and the stdio kind given disagree")]
    TerminalMismatch,
    /// The channel to the container process.
    #[error("container process")]
    Sync(#[from] SyncError),
    /// `fork(2)` failed.
    #[error("cannot fork")]
    Fork(#[source] std::io::Error),
    /// Writing a `/proc/<pid>` file (id maps, oom_score_adj) or opening a pidfd failed.
    #[error("cannot set {file} of the container process")]
    Proc {
        /// Which file.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A step of the container process's set-up failed.
    #[error("container set-up failed {step}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Step {
        /// What was being done.
        step: &'static str,
        /// Which item (mount destination, path, …), when it has one.
        detail: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// `execve` failed (`ENOENT` for a missing binary, `EACCES`…).
    #[error("cannot execute {path}")]
    Exec {
        /// `args[0]`.
        path: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// `exec` into a container whose init process is gone.
    #[error("the container is not running")]
    NotRunning,
    /// `exec` into a paused (frozen) container.
    #[error("the container is paused")]
    Paused,
    /// `start` on a container that was started already.
    #[error("the container was started already")]
    AlreadyStarted,
}

/// The stdio of a process.
#[derive(Debug)]
pub enum ProcessIo {
    /// Caller-made pipes (or /dev/null when None); the child gets them as fds 0,1,2.
    Pipes {
        /// fd 0.
        stdin: Option<OwnedFd>,
        /// fd 1.
        stdout: Option<OwnedFd>,
        /// fd 2.
        stderr: Option<OwnedFd>,
    },
    /// process.terminal == true: the library makes a pty; the slave becomes the controlling tty
    /// and fds 0,1,2 of the process; the master is returned.
    Terminal,
}

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct Spawned {
    /// Its pid (in the agent's PID namespace).
    pub pid: Pid,
    /// The pty master, for [`ProcessIo::Terminal`].
    pub pty_master: Option<OwnedFd>,
}

/// What [`create`] needs.
#[derive(Debug)]
pub struct ContainerConfig<'a> {
    /// Validated: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
    pub id: &'a str,
    /// The OCI runtime spec.
    pub spec: &'a oci_spec::runtime::Spec,
    /// Absolute path of the rootfs in the guest (overrides `spec.root.path`).
    pub rootfs: &'a Path,
    /// Normally `/sys/fs/cgroup` (cgroup v2); tests may pass another.
    pub cgroup_root: &'a Path,
}

/// A created container.
#[derive(Debug)]
pub struct Container {
    id: String,
    init_pid: Pid,
    /// The init process, as a pidfd: `exec` joins its namespaces through it (no pid reuse race).
    pidfd: OwnedFd,
    sock: Option<OwnedFd>,
    pty_master: Option<OwnedFd>,
    cgroup: cgroup::Cgroup,
    namespaces: Vec<LinuxNamespaceType>,
    rootfs: PathBuf,
    seccomp: Option<Arc<seccomp::SeccompProgram>>,
    last_cap: u8,
    init_plan: init::InitPlan,
}

/// Creates a container whose init process waits at the start barrier.
pub fn create(config: &ContainerConfig<'_>, io: ProcessIo) -> Result<Container, ContainerError> {
    init::create(config, io)
}

impl Container {
    fn new(
        config: &ContainerConfig<'_>,
        plan: init::InitPlan,
        cgroup: cgroup::Cgroup,
        c: init::Created,
    ) -> Self {
        Container {
            id: config.id.to_string(),
            init_pid: c.init_pid,
            pidfd: c.pidfd,
            sock: Some(c.sock),
            pty_master: c.master,
            cgroup,
            namespaces: plan.ns.entries.iter().map(|e| e.typ).collect(),
            rootfs: config.rootfs.to_path_buf(),
            seccomp: plan.process.seccomp.clone(),
            last_cap: plan.process.caps.last_cap,
            init_plan: plan,
        }
    }

    /// Whether the init process still runs (a zombie counts as gone).
    fn init_alive(&self) -> bool {
        use std::os::fd::AsFd;
        crate::sys::pidfd_probe(self.pidfd.as_fd()).is_ok()
            && std::fs::read_to_string(format!("/proc/{}/stat", self.init_pid))
                .map(|s| {
                    // The state follows the ")" that ends the command name.
                    s.rsplit_once(')')
                        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init process's pid (in the agent's PID namespace).
    pub fn init_pid(&self) -> Pid {
        self.init_pid
    }

    /// The init process's pty master (once).
    pub fn take_pty_master(&mut self) -> Option<OwnedFd> {
        self.pty_master.take()
    }

    /// Releases the start barrier; `Ok` once `execve` succeeded, otherwise the exec error.
    pub fn start(&mut self) -> Result<(), ContainerError> {
        use std::os::fd::AsFd;
        let sock = self.sock.take().ok_or(ContainerError::AlreadyStarted)?;
        sync::send(sock.as_fd(), sync::Msg::new(sync::MSG_GO, 0))?;
        match sync::recv(sock.as_fd(), sync::STEP_TIMEOUT, "the exec result")? {
            sync::Received::Eof => Ok(()),
            sync::Received::Failed(f) => Err(init::failure_error(f, &self.init_plan)),
            sync::Received::Pty(_) => Err(SyncError::Unexpected {
                kind: sync::MSG_PTY,
                expected: "the exec result",
            }
            .into()),
            sync::Received::Msg(m) => Err(SyncError::Unexpected {
                kind: m.kind,
                expected: "the exec result",
            }
            .into()),
        }
    }

    /// Runs another process in the container: all its namespaces, its cgroup, that process's
    /// user/caps/env/cwd/rlimits/no_new_privs and the container's seccomp program. Returns once
    /// `execve` succeeded.
    pub fn exec(
        &self,
        process: &oci_spec::runtime::Process,
        io: ProcessIo,
    ) -> Result<Spawned, ContainerError> {
        if !self.init_alive() {
            return Err(ContainerError::NotRunning);
        }
        if self
            .cgroup
            .read("cgroup.freeze")
            .is_ok_and(|f| f.trim() == "1")
        {
            return Err(ContainerError::Paused);
        }
        exec::exec(self, process, io)
    }

    /// Freezes the cgroup and waits until the kernel reports it frozen.
    pub fn pause(&self) -> Result<(), ContainerError> {
        Ok(self.cgroup.set_frozen(true)?)
    }

    /// Thaws the cgroup.
    pub fn resume(&self) -> Result<(), ContainerError> {
        Ok(self.cgroup.set_frozen(false)?)
    }

    /// Writes new resources to the cgroup (and replaces the device program when the resources
    /// carry device rules).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), ContainerError> {
        self.cgroup.apply(resources)?;
        Ok(self.cgroup.apply_devices(resources)?)
    }

    /// Reads the cgroup's statistics.
    pub fn stats(&self) -> Result<CgroupStats, ContainerError> {
        let path = self.cgroup.path();
        if !path.join("cgroup.procs").exists() {
            return Err(CgroupError::Io {
                op: "stat",
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            }
            .into());
        }
        Ok(stats::read_stats(path))
    }

    /// The pids in the cgroup (`cgroup.procs`, the agent's PID namespace).
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        Ok(self.cgroup.pids()?)
    }

    /// `oom_kill` of `memory.events` (0 without the memory controller).
    pub fn oom_kill_count(&self) -> Result<u64, ContainerError> {
        match self.cgroup.read("memory.events") {
            Ok(t) => Ok(stats::flat_keyed(&t).get("oom_kill").copied().unwrap_or(0)),
            Err(CgroupError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The cgroup directory.
    pub fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// Kills everything in the cgroup, waits (bounded) until it is empty and removes it. A
    /// frozen cgroup is thawed first so the kill is delivered at once. Everything else the
    /// container set up lives in its own mount namespace and goes with its last process.
    pub fn destroy(self) -> Result<(), ContainerError> {
        let frozen = self
            .cgroup
            .read("cgroup.freeze")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        self.cgroup.kill_all()?;
        if frozen {
            let _ = self.cgroup.set_frozen(false);
        }
        self.cgroup.remove()?;
        Ok(())
    }
}
