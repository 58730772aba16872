//! `exec`: another process in a running container.
//!
//! Agent side: prepare the process and its descriptors, fork. First child: close inherited
//! descriptors, join the container's cgroup, then all its namespaces at once with
//! `setns(pidfd, flags)` (atomic, and immune to pid reuse), fork the process (so it lands in the
//! container's PID namespace), report its pid and `_exit`. The process: session/tty/stdio, the
//! process attributes, seccomp (the container's program), `execve`. EOF on the sync socket
//! without an error record means the exec succeeded.

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::child::{self, ChildIo};
use super::init::step_error;
use super::namespaces::clone_flag;
use super::process::ProcessPlan;
use super::stage::{Failure, Stage};
use super::sync::{self, Msg, Received};
use super::{Container, ContainerError, ProcessIo, Spawned};
use crate::sys::{self, Fork, ForkedChild};

/// Everything the forked side reads, borrowed from the owners in the agent.
struct Fds<'a> {
    sock: BorrowedFd<'a>,
    procs: BorrowedFd<'a>,
    pidfd: BorrowedFd<'a>,
    ns_flags: CloneFlags,
    stdio: Option<[BorrowedFd<'a>; 3]>,
    /// Every descriptor above, by number, sorted.
    keep: Vec<RawFd>,
}

/// Runs `process` in `c`: see the module doc.
pub(crate) fn exec(
    c: &Container,
    process: &Process,
    io: ProcessIo,
) -> Result<Spawned, ContainerError> {
    let plan = ProcessPlan::new(process, &c.rootfs, c.seccomp.clone(), c.last_cap)?;
    if plan.terminal != matches!(io, ProcessIo::Terminal) {
        return Err(ContainerError::TerminalMismatch);
    }
    let sock = fork_bootstrap(c, io, &plan)?;
    await_exec(sock.as_fd(), &plan)
}

/// Forks the bootstrap child with what it needs at high descriptor numbers (its end of the sync
/// channel, the cgroup's `cgroup.procs`, the container's pidfd, the stdio); returns the parent's
/// end of the channel. The child's descriptors close here in the parent.
fn fork_bootstrap(
    c: &Container,
    io: ProcessIo,
    plan: &ProcessPlan,
) -> Result<OwnedFd, ContainerError> {
    let cio = ChildIo::prepare(io)?;
    let procs = child::high_fd(c.cgroup.open_procs()?.into())?;
    // The pidfd taken at create time: setns through it fails (ESRCH) once the init process is
    // gone, and never reaches another process that reused the pid.
    let pidfd = c.pidfd.try_clone().map_err(|source| ContainerError::Proc {
        file: "pidfd",
        source,
    })?;
    let pidfd = child::high_fd(pidfd)?;
    let (parent_sock, child_sock) = sync::channel()?;
    let child_sock = child::high_fd(child_sock)?;
    let ns_flags = c
        .namespaces
        .iter()
        .fold(CloneFlags::empty(), |f, t| f | clone_flag(*t));
    let mut keep = vec![child_sock.as_raw_fd(), procs.as_raw_fd(), pidfd.as_raw_fd()];
    keep.extend(cio.raw().into_iter().flatten());
    keep.sort_unstable();
    keep.dedup();
    let fds = Fds {
        sock: child_sock.as_fd(),
        procs: procs.as_fd(),
        pidfd: pidfd.as_fd(),
        ns_flags,
        stdio: cio.borrowed(),
        keep,
    };
    // SAFETY: the child only runs `bootstrap`, which keeps to the forked-child contract and ends
    // in `_exit`.
    match unsafe { sys::fork() } {
        Ok(Fork::Child(child)) => bootstrap(child, &fds, plan),
        Ok(Fork::Parent(_)) => {}
        Err(e) => return Err(ContainerError::Fork(e.into())),
    }
    Ok(parent_sock)
}

/// Reads the sync channel until the bootstrap child closes it: the exec's pid, its console's
/// pty master, or the step that failed.
fn await_exec(parent: BorrowedFd<'_>, plan: &ProcessPlan) -> Result<Spawned, ContainerError> {
    let mut master = None;
    let mut spawned: Option<Pid> = None;
    loop {
        let expected = if spawned.is_none() {
            "the exec pid"
        } else {
            "the exec result"
        };
        match sync::recv(parent, sync::STEP_TIMEOUT, expected)? {
            Received::Msg(Msg {
                kind: sync::MSG_PID,
                a,
                ..
            }) => {
                let raw = i32::try_from(a).map_err(|_| sync::SyncError::Unexpected {
                    kind: sync::MSG_PID,
                    expected,
                })?;
                spawned = Some(Pid::from_raw(raw));
            }
            Received::Pty(fd) => {
                if let Some((rows, cols)) = plan.console_size {
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
            Received::Failed(f) => {
                let detail = if f.stage == Stage::Chdir {
                    plan.cwd.display().to_string()
                } else {
                    String::new()
                };
                return Err(step_error(f, detail, plan));
            }
            Received::Eof => {
                return match spawned {
                    Some(pid) => Ok(Spawned {
                        pid,
                        pty_master: master,
                    }),
                    None => Err(sync::SyncError::Eof { expected }.into()),
                }
            }
        }
    }
}

fn bootstrap(child: ForkedChild, fds: &Fds<'_>, plan: &ProcessPlan) -> ! {
    child::run_child(fds.sock, || -> Result<Infallible, Failure> {
        child::reset_signals(child);
        child::close_other_fds(child, &fds.keep)?;
        child::set_oom_score_adj(plan.oom_score_adj)?;
        child::join_cgroup(fds.procs)?;
        if !fds.ns_flags.is_empty() {
            child::setns(fds.pidfd, fds.ns_flags, 0)?;
        }
        // SAFETY: the child runs `exec_process`, which keeps to the contract and ends in _exit.
        let pid = match unsafe { sys::fork() } {
            Ok(Fork::Child(child)) => exec_process(child, fds, plan),
            Ok(Fork::Parent(pid)) => pid.as_raw(),
            Err(e) => return Err(Failure::nix(Stage::Fork, 0, e)),
        };
        sync::send_raw(fds.sock, Msg::new(sync::MSG_PID, pid.unsigned_abs()));
        child::exit(0)
    })
}

fn exec_process(child: ForkedChild, fds: &Fds<'_>, plan: &ProcessPlan) -> ! {
    child::run_child(fds.sock, || -> Result<Infallible, Failure> {
        child::reset_signals(child);
        child::setup_stdio(fds.stdio)?;
        if fds.stdio.is_none() {
            let (slave, _) = super::pty::open_in_container(fds.sock)?;
            super::pty::attach(slave)?;
        }
        plan.prepare()?;
        Err(plan.exec())
    })
}
