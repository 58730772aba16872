//! `create`: from a validated spec to a container process waiting at its start barrier.
//!
//! Agent side: validate, build every plan, create the cgroup, prepare descriptors, fork.
//! First child ("bootstrap"): reset signals, close inherited descriptors, set oom_score_adj, join
//! the cgroup, join the namespaces given by path (user first), `unshare` the new ones (time
//! offsets written), get its id maps written by the agent (new user namespace), fork the init
//! process, report its pid, `_exit`.
//! Init process: session and stdio, rootfs up to `pivot_root` (mounts, /dev), the pty from the
//! container's devpts (master sent to the agent), the rest of the rootfs (sysctls, masked and
//! read-only paths, read-only root, hostname), process attributes (rlimits, user, capabilities,
//! …), then "ready". The agent attaches the device cgroup program, and the init process waits on
//! the sync socket for "go" and `execve`s. Its end of the socket is close-on-exec, so EOF without
//! an error record tells the agent the exec succeeded.

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};
use rustix::process::PidfdFlags;
use rustix::thread::{set_thread_res_gid, set_thread_res_uid};

use super::caps::kernel_last_cap;
use super::cgroup::{self, Cgroup};
use super::child::{self, ChildIo};
use super::config;
use super::devices;
use super::mounts::{self, container_path, MountKind};
use super::namespaces::NamespacePlan;
use super::process::ProcessPlan;
use super::rootfs::RootfsPlan;
use super::seccomp;
use super::stage::{Failure, Stage};
use super::sync::{self, Msg, Received};
use super::{Container, ContainerConfig, ContainerError, ProcessIo};
use crate::sys::{self, Fork, ForkedChild};

/// Everything decided before forking.
#[derive(Debug)]
pub(crate) struct InitPlan {
    pub ns: NamespacePlan,
    pub rootfs: RootfsPlan,
    pub process: ProcessPlan,
    pub uid_map: String,
    pub gid_map: String,
}

fn id_map(m: &Option<Vec<LinuxIdMapping>>) -> String {
    m.iter()
        .flatten()
        .map(|e| format!("{} {} {}\n", e.container_id(), e.host_id(), e.size()))
        .collect()
}

/// Validates the spec and builds the plan (no side effects besides compiling seccomp).
pub(crate) fn plan(config: &ContainerConfig<'_>) -> Result<InitPlan, ContainerError> {
    config::validate_id(config.id)?;
    let spec = config.spec;
    config::check_supported(spec)?;
    if !config.rootfs.is_absolute() || !config.rootfs.is_dir() {
        return Err(ContainerError::Rootfs(config.rootfs.to_path_buf()));
    }
    let ns = NamespacePlan::from_spec(spec)?;
    config::check_uts(spec, &ns)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let seccomp = match linux.seccomp() {
        Some(p) => Some(Arc::new(seccomp::compile(p)?)),
        None => None,
    };
    let process_spec = spec
        .process()
        .as_ref()
        .ok_or(config::ConfigError::NoProcess)?;
    let process = ProcessPlan::new(process_spec, config.rootfs, seccomp, kernel_last_cap())?;
    let mut mount_plans = Vec::new();
    for m in spec.mounts().iter().flatten() {
        mount_plans.push(mounts::parse(m)?);
    }
    let dev_is_bind = mount_plans
        .iter()
        .any(|m| m.dest == Path::new("/dev") && matches!(m.kind, MountKind::Bind { .. }));
    let default_shm = !mount_plans.iter().any(|m| m.dest == Path::new("/dev/shm")) && !dev_is_bind;
    let root_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => None,
        Some(p) => Some(mounts::propagation_flag(p).ok_or_else(|| {
            ContainerError::Config(config::ConfigError::Unsupported(
                "this rootfsPropagation value",
            ))
        })?),
    };
    let paths = |list: &Option<Vec<String>>| -> Result<Vec<_>, ContainerError> {
        list.iter()
            .flatten()
            .map(|p| {
                container_path(Path::new(p)).ok_or(ContainerError::Config(
                    config::ConfigError::Unsupported("a relative masked or readonly path"),
                ))
            })
            .collect()
    };
    let cstr = |s: &Option<String>| {
        s.as_ref()
            .filter(|s| !s.is_empty())
            .and_then(|s| std::ffi::CString::new(s.as_str()).ok())
    };
    let rootfs = RootfsPlan {
        rootfs: config.rootfs.to_path_buf(),
        mounts: mount_plans,
        devices: if dev_is_bind {
            Vec::new()
        } else {
            devices::plan(spec)?
        },
        bind_devices: ns.is_new(LinuxNamespaceType::User),
        dev_symlinks: !dev_is_bind,
        default_shm,
        console: process.terminal,
        cwd: Some(process.cwd.clone()),
        sysctl: config::sysctls(spec, &ns)?,
        readonly_paths: paths(linux.readonly_paths())?,
        masked_paths: paths(linux.masked_paths())?,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        root_propagation,
        hostname: cstr(spec.hostname()),
        domainname: cstr(spec.domainname()),
    };
    Ok(InitPlan {
        uid_map: id_map(linux.uid_mappings()),
        gid_map: id_map(linux.gid_mappings()),
        ns,
        rootfs,
        process,
    })
}

/// Turns a failure record into an error, naming the item it concerns.
pub(crate) fn failure_error(f: Failure, plan: &InitPlan) -> ContainerError {
    let i = f.index as usize;
    let detail = match f.stage {
        Stage::Mount => plan
            .rootfs
            .mounts
            .get(i)
            .map(|m| m.dest.display().to_string())
            .unwrap_or_else(|| "/dev/shm".into()),
        Stage::MountPropagation => plan
            .rootfs
            .mounts
            .get(i)
            .map(|m| m.dest.display().to_string())
            .unwrap_or_else(|| "/".into()),
        Stage::Device => plan
            .rootfs
            .devices
            .get(i)
            .map(|d| d.path.display().to_string())
            .unwrap_or_default(),
        Stage::DevSymlink => devices::DEV_SYMLINKS
            .get(i)
            .map(|l| l.0.to_string())
            .unwrap_or_default(),
        Stage::Sysctl => plan
            .rootfs
            .sysctl
            .get(i)
            .map(|s| s.0.display().to_string())
            .unwrap_or_default(),
        Stage::MaskPath => plan
            .rootfs
            .masked_paths
            .get(i)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        Stage::ReadonlyPath => plan
            .rootfs
            .readonly_paths
            .get(i)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        Stage::Cwd | Stage::Chdir => plan.process.cwd.display().to_string(),
        Stage::JoinNamespace => plan
            .ns
            .joins()
            .get(i)
            .and_then(|e| e.path.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    step_error(f, detail, &plan.process)
}

/// The error for a failure record of a process (exec failures become [`ContainerError::Exec`]).
pub(crate) fn step_error(f: Failure, detail: String, process: &ProcessPlan) -> ContainerError {
    let source = std::io::Error::from_raw_os_error(f.errno);
    if f.stage == Stage::Exec {
        let path = process
            .args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        return ContainerError::Exec { path, source };
    }
    let detail = match (f.stage, detail.is_empty()) {
        (Stage::Rlimit | Stage::Bounding | Stage::Ambient | Stage::Stdio, true) => {
            format!("#{}", f.index)
        }
        (_, _) => detail,
    };
    ContainerError::Step {
        step: f.stage.describe(),
        detail,
        source,
    }
}

/// Everything the forked side reads, borrowed from the owners in the agent (whose copies in the
/// child are never dropped: it ends in `_exit`).
struct Fds<'a> {
    sock: BorrowedFd<'a>,
    procs: BorrowedFd<'a>,
    stdio: Option<[BorrowedFd<'a>; 3]>,
    joins: Vec<(BorrowedFd<'a>, CloneFlags)>,
    /// Every descriptor above, by number, sorted.
    keep: Vec<RawFd>,
}

/// Creates the container: see the module doc.
pub(crate) fn create(
    config: &ContainerConfig<'_>,
    io: ProcessIo,
) -> Result<Container, ContainerError> {
    let plan = plan(config)?;
    if plan.process.terminal != matches!(io, ProcessIo::Terminal) {
        return Err(ContainerError::TerminalMismatch);
    }
    let rel = cgroup::relative_path(
        config
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_deref()),
        config.id,
    )?;
    let cg = Cgroup::create(config.cgroup_root, &rel)?;
    match create_in(config, io, &plan, &cg) {
        Ok(c) => Ok(Container::new(config, plan, cg, c)),
        Err(e) => {
            let _ = cg.kill_all();
            let _ = cg.remove();
            Err(e)
        }
    }
}

/// What a successful bootstrap hands over.
pub(crate) struct Created {
    pub init_pid: Pid,
    pub pidfd: OwnedFd,
    pub sock: OwnedFd,
    pub master: Option<OwnedFd>,
}

fn create_in(
    config: &ContainerConfig<'_>,
    io: ProcessIo,
    plan: &InitPlan,
    cg: &Cgroup,
) -> Result<Created, ContainerError> {
    let resources = config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    if let Some(r) = resources {
        cg.apply(r)?;
    }
    let (bootstrap_pid, sock) = fork_bootstrap(io, plan, cg)?;
    let (init_pid, master) = await_init(sock.as_fd(), bootstrap_pid, plan)?;
    // Device rules apply from here on: the init process has made its nodes (runc applies them at
    // the same point).
    if let Some(r) = resources {
        cg.apply_devices(r)?;
    }
    // The init process waits at the barrier now, so it is alive for the pidfd.
    let pidfd = pidfd_open(init_pid.as_raw())?;
    Ok(Created {
        init_pid,
        pidfd,
        sock,
        master,
    })
}

/// Forks the bootstrap child with what it needs at high descriptor numbers (its end of the sync
/// channel, the cgroup's `cgroup.procs`, the stdio, the namespaces to join); returns its pid and
/// the parent's end of the channel. The child's descriptors close here in the parent.
fn fork_bootstrap(
    io: ProcessIo,
    plan: &InitPlan,
    cg: &Cgroup,
) -> Result<(i32, OwnedFd), ContainerError> {
    let cio = ChildIo::prepare(io)?;
    let procs = child::high_fd(cg.open_procs()?.into())?;
    let joins = plan.ns.open_joins()?;
    let joins: Vec<(OwnedFd, CloneFlags)> = joins
        .into_iter()
        .map(|(fd, f)| child::high_fd(fd).map(|fd| (fd, f)))
        .collect::<Result<_, _>>()?;
    let (parent_sock, child_sock) = sync::channel()?;
    let child_sock = child::high_fd(child_sock)?;
    let mut keep: Vec<RawFd> = vec![child_sock.as_raw_fd(), procs.as_raw_fd()];
    keep.extend(cio.raw().into_iter().flatten());
    keep.extend(joins.iter().map(|(fd, _)| fd.as_raw_fd()));
    keep.sort_unstable();
    keep.dedup();
    let fds = Fds {
        sock: child_sock.as_fd(),
        procs: procs.as_fd(),
        stdio: cio.borrowed(),
        joins: joins.iter().map(|(fd, f)| (fd.as_fd(), *f)).collect(),
        keep,
    };
    let unshare = plan.ns.unshare_flags();
    let new_userns = plan.ns.is_new(LinuxNamespaceType::User);
    // SAFETY: the child only runs `bootstrap`, which keeps to the forked-child contract and ends
    // in `_exit`.
    let bootstrap_pid = match unsafe { sys::fork() } {
        Ok(Fork::Child(child)) => bootstrap(child, &fds, unshare, new_userns, plan),
        Ok(Fork::Parent(pid)) => pid.as_raw(),
        Err(e) => return Err(ContainerError::Fork(e.into())),
    };
    Ok((bootstrap_pid, parent_sock))
}

/// Serves the bootstrap child and the init process on the sync channel until init is ready:
/// writes the id maps of a new user namespace, takes the init pid and the console's pty master.
/// The pid (from the bootstrap) and "ready" (from init) may arrive in either order.
fn await_init(
    parent: BorrowedFd<'_>,
    bootstrap_pid: i32,
    plan: &InitPlan,
) -> Result<(Pid, Option<OwnedFd>), ContainerError> {
    let mut master = None;
    let mut init_pid = None;
    let mut ready = false;
    while !(ready && init_pid.is_some()) {
        let expected = if init_pid.is_none() {
            "the init pid"
        } else {
            "the init process to be ready"
        };
        match sync::recv(parent, sync::STEP_TIMEOUT, expected)? {
            Received::Msg(Msg {
                kind: sync::MSG_USERNS,
                ..
            }) => {
                write_id_maps(bootstrap_pid, plan)?;
                sync::send(parent, Msg::new(sync::MSG_USERNS_DONE, 0))?;
            }
            Received::Msg(Msg {
                kind: sync::MSG_PID,
                a,
                ..
            }) => {
                let pid = i32::try_from(a).map_err(|_| sync::SyncError::Unexpected {
                    kind: sync::MSG_PID,
                    expected,
                })?;
                init_pid = Some(Pid::from_raw(pid));
            }
            Received::Msg(Msg {
                kind: sync::MSG_READY,
                ..
            }) => ready = true,
            Received::Pty(fd) => {
                if let Some((rows, cols)) = plan.process.console_size {
                    // A failure only leaves the default size.
                    let _ = super::pty::set_size(fd.as_fd(), rows, cols);
                }
                master = Some(fd);
            }
            Received::Msg(m) => {
                return Err(sync::SyncError::Unexpected {
                    kind: m.kind,
                    expected,
                }
                .into())
            }
            Received::Failed(f) => return Err(failure_error(f, plan)),
            Received::Eof => return Err(sync::SyncError::Eof { expected }.into()),
        }
    }
    let init_pid = init_pid.ok_or(sync::SyncError::Eof {
        expected: "the init pid",
    })?;
    Ok((init_pid, master))
}

fn write_id_maps(pid: i32, plan: &InitPlan) -> Result<(), ContainerError> {
    // The agent has CAP_SETUID/CAP_SETGID in the parent user namespace, so it may write any
    // mapping, and setgroups need not be denied.
    write_proc(pid, "uid_map", &plan.uid_map)?;
    write_proc(pid, "gid_map", &plan.gid_map)
}

fn write_proc(pid: i32, file: &'static str, value: &str) -> Result<(), ContainerError> {
    std::fs::write(format!("/proc/{pid}/{file}"), value)
        .map_err(|source| ContainerError::Proc { file, source })
}

/// A pidfd (close-on-exec) for the process `pid`.
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, ContainerError> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(rustix::io::Errno::INVAL);
    pid.and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()))
        .map_err(|e| ContainerError::Proc {
            file: "pidfd",
            source: e.into(),
        })
}

/// First child. Never returns.
fn bootstrap(
    child: ForkedChild,
    fds: &Fds<'_>,
    unshare: CloneFlags,
    new_userns: bool,
    plan: &InitPlan,
) -> ! {
    child::run_child(fds.sock, || -> Result<Infallible, Failure> {
        child::reset_signals(child);
        child::close_other_fds(child, &fds.keep)?;
        child::set_oom_score_adj(plan.process.oom_score_adj)?;
        child::join_cgroup(fds.procs)?;
        for (i, (fd, flag)) in fds.joins.iter().enumerate() {
            child::setns(*fd, *flag, i)?;
        }
        if !unshare.is_empty() {
            // This process is single-threaded, as unshare(CLONE_NEWUSER) needs.
            nix::sched::unshare(unshare).map_err(|e| Failure::nix(Stage::Unshare, 0, e))?;
        }
        if !plan.ns.time_offsets.is_empty() {
            // The offsets of a new time namespace can be set until its first process exists.
            std::fs::write("/proc/self/timens_offsets", plan.ns.time_offsets.as_bytes())
                .map_err(|e| Failure::io(Stage::Unshare, 1, &e))?;
        }
        if new_userns {
            if !sync::send_raw(fds.sock, Msg::new(sync::MSG_USERNS, 0)) {
                return Err(Failure::last(Stage::UserMapping, 0));
            }
            match sync::recv_raw(fds.sock) {
                Some(Msg {
                    kind: sync::MSG_USERNS_DONE,
                    ..
                }) => {}
                _ => child::exit(1),
            }
            let root = rustix::process::Gid::ROOT;
            set_thread_res_gid(root, root, root)
                .map_err(|e| Failure::rustix(Stage::BecomeRoot, 0, e))?;
            let root = rustix::process::Uid::ROOT;
            set_thread_res_uid(root, root, root)
                .map_err(|e| Failure::rustix(Stage::BecomeRoot, 1, e))?;
        }
        // SAFETY: the child runs `init_process`, which keeps to the contract and ends in _exit.
        let pid = match unsafe { sys::fork() } {
            Ok(Fork::Child(child)) => init_process(child, fds, plan),
            Ok(Fork::Parent(pid)) => pid.as_raw(),
            Err(e) => return Err(Failure::nix(Stage::Fork, 0, e)),
        };
        sync::send_raw(fds.sock, Msg::new(sync::MSG_PID, pid.unsigned_abs()));
        child::exit(0)
    })
}

/// The container's init process. Never returns.
fn init_process(child: ForkedChild, fds: &Fds<'_>, plan: &InitPlan) -> ! {
    child::run_child(fds.sock, || -> Result<Infallible, Failure> {
        child::reset_signals(child);
        child::setup_stdio(fds.stdio)?;
        plan.rootfs.setup()?;
        if fds.stdio.is_none() {
            let (slave, path) = super::pty::open_in_container(fds.sock)?;
            super::rootfs::bind_console(&path)?;
            super::pty::attach(slave)?;
        }
        plan.rootfs.finish()?;
        plan.process.prepare()?;
        if !sync::send_raw(fds.sock, Msg::new(sync::MSG_READY, 0)) {
            child::exit(1);
        }
        match sync::recv_raw(fds.sock) {
            Some(Msg {
                kind: sync::MSG_GO, ..
            }) => {}
            // The agent dropped the container before starting it.
            _ => child::exit(1),
        }
        Err(plan.process.exec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_for<'a>(spec: &'a oci_spec::runtime::Spec, rootfs: &'a Path) -> ContainerConfig<'a> {
        ContainerConfig {
            id: "abc",
            spec,
            rootfs,
            cgroup_root: Path::new("/sys/fs/cgroup"),
        }
    }

    #[test]
    fn a_cri_style_spec_is_accepted_whole() {
        // The shape containerd's CRI plugin sends for a pod sandbox (defaults of its spec
        // generator, the runtime-default seccomp profile cut down): nothing in it is refused.
        let spec: oci_spec::runtime::Spec =
            serde_json::from_str(include_str!("testdata/cri-spec.json")).unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let plan = plan(&config_for(&spec, rootfs.path())).unwrap();
        assert_eq!(plan.rootfs.mounts.len(), 8);
        assert!(plan.rootfs.readonly_root);
        assert!(!plan.rootfs.default_shm, "the spec mounts /dev/shm itself");
        assert_eq!(plan.rootfs.sysctl.len(), 2);
        assert_eq!(plan.rootfs.masked_paths.len(), 10);
        assert_eq!(plan.process.oom_score_adj, Some(-998));
        assert_eq!(plan.process.caps.bounding.count_ones(), 14);
        assert!(plan.process.seccomp.as_ref().is_some_and(|s| s.len() > 100));
        assert_eq!(plan.process.user.groups.len(), 11);
        assert_eq!(
            cgroup::relative_path(
                spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
                "abc"
            )
            .unwrap(),
            Path::new("kubepods/besteffort/pod1234/abc")
        );
    }

    #[test]
    fn plan_refuses_bad_ids_and_rootfs() {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_str(include_str!("testdata/cri-spec.json")).unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let mut cfg = config_for(&spec, rootfs.path());
        cfg.id = "../evil";
        assert!(matches!(plan(&cfg), Err(ContainerError::Config(_))));
        let cfg = config_for(&spec, Path::new("relative/rootfs"));
        assert!(matches!(plan(&cfg), Err(ContainerError::Rootfs(_))));
        let cfg = config_for(&spec, Path::new("/nonexistent/rootfs"));
        assert!(matches!(plan(&cfg), Err(ContainerError::Rootfs(_))));
    }

    #[test]
    fn failures_name_their_item() {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_str(include_str!("testdata/cri-spec.json")).unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let plan = plan(&config_for(&spec, rootfs.path())).unwrap();
        let e = failure_error(Failure::new(Stage::Mount, 2, libc::EINVAL), &plan);
        assert_eq!(e.to_string(), "container set-up failed mounting (/dev/pts)");
        let e = failure_error(Failure::new(Stage::Exec, 0, libc::ENOENT), &plan);
        assert!(matches!(e, ContainerError::Exec { ref path, .. } if path == "/pause"));
        let e = failure_error(Failure::new(Stage::Sysctl, 0, libc::EACCES), &plan);
        assert!(
            e.to_string()
                .contains("/proc/sys/net/ipv4/ip_unprivileged_port_start"),
            "{e}"
        );
    }
}
