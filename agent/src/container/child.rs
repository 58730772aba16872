//! What the agent hands to a forked child, and the helpers both forked paths (init and exec)
//! share.
//!
//! How we fork: the agent is a multi-threaded tokio process, so after `fork(2)` only the forking
//! thread exists in the child. We use glibc's `fork()` ([`sys::fork`]), which resets malloc's
//! locks in the child, so the child may allocate; it takes no other lock (no stdio, no env, no
//! logging, no tracing). Everything that can be prepared (C strings, exec arrays, flags, the
//! seccomp program, descriptors) is prepared before forking, and the system-call wrappers the
//! child uses (`nix`, `rustix`, [`crate::sys`]) neither lock nor allocate (but for `nix`'s copy
//! of a path over 1 KiB). The first child is single-threaded, which `setns` into mount and user
//! namespaces requires. It joins the cgroup and namespaces, forks the container process (so a new
//! PID namespace applies to it), reports its pid and exits; the agent's reaper collects it. Nothing
//! here ever waits for a process.
//!
//! Every child starts the same way: signals are blocked across `fork` and the child resets every
//! disposition to the default and unblocks them ([`reset_signals`]), so the agent's handlers never
//! run in it and its ignored signals (Rust ignores SIGPIPE) or blocked ones never reach the
//! workload; then it closes every descriptor except the few it was handed
//! ([`close_other_fds`]), because another agent thread may have forked at the same moment with
//! pipes of another container open. We chose this over re-executing `/proc/self/exe` as a
//! single-threaded helper (runc's way): no second entry point in `main`, no serialising of the
//! plan, and the host tests run the same code as the guest.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid, write};

use super::stage::{Failure, Stage};
use super::sync;
use super::ProcessIo;
use crate::sys::{self, ForkedChild};

/// A failure preparing descriptors in the agent.
#[derive(Debug, thiserror::Error)]
pub enum IoSetupError {
    /// Opening `/dev/null` failed.
    #[error("cannot open /dev/null")]
    DevNull(#[source] std::io::Error),
    /// Duplicating a descriptor failed.
    #[error("cannot duplicate a descriptor")]
    Dup(#[source] std::io::Error),
}

/// A descriptor moved to a number of at least 3 (so `dup2` onto 0..=2 never clobbers a source),
/// close-on-exec.
pub fn high_fd(fd: OwnedFd) -> Result<OwnedFd, IoSetupError> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3).map_err(|e| IoSetupError::Dup(e.into()))
}

/// The stdio of the process to be, prepared in the agent.
#[derive(Debug)]
pub struct ChildIo {
    /// Sources for fds 0, 1, 2 (held open until the fork is done); `None` with a pty, which the
    /// process opens itself inside the container.
    pub fds: Option<[OwnedFd; 3]>,
}

impl ChildIo {
    /// Prepares the descriptors for `io`.
    pub fn prepare(io: ProcessIo) -> Result<ChildIo, IoSetupError> {
        match io {
            ProcessIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let null = || -> Result<OwnedFd, IoSetupError> {
                    let f = File::options()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_CLOEXEC)
                        .open("/dev/null")
                        .map_err(IoSetupError::DevNull)?;
                    high_fd(f.into())
                };
                let pick = |fd: Option<OwnedFd>| match fd {
                    Some(fd) => high_fd(fd),
                    None => null(),
                };
                Ok(ChildIo {
                    fds: Some([pick(stdin)?, pick(stdout)?, pick(stderr)?]),
                })
            }
            ProcessIo::Terminal => Ok(ChildIo { fds: None }),
        }
    }

    /// Raw numbers, for the forked side.
    pub fn raw(&self) -> Option<[RawFd; 3]> {
        self.fds
            .as_ref()
            .map(|f| [f[0].as_raw_fd(), f[1].as_raw_fd(), f[2].as_raw_fd()])
    }

    /// Borrowed, for the forked side.
    pub fn borrowed(&self) -> Option<[BorrowedFd<'_>; 3]> {
        self.fds
            .as_ref()
            .map(|f| [f[0].as_fd(), f[1].as_fd(), f[2].as_fd()])
    }
}

/// Forked side: every signal back to its default disposition and unblocked. The agent's
/// dispositions and mask would otherwise reach the container process: `execve` keeps ignored
/// signals ignored (Rust ignores SIGPIPE) and keeps the signal mask (a reaper may block SIGCHLD).
/// Doing it first also keeps the agent's handlers from running in the child.
pub fn reset_signals(child: ForkedChild) {
    sys::reset_signal_dispositions(child);
    // Cannot fail with SIG_SETMASK and a valid set.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Forked side: closes every descriptor above 2 except `keep` (sorted, all >= 3). Other threads
/// of the agent may have had descriptors open without close-on-exec at fork time (another
/// container's pipes); holding them would keep those pipes open.
pub fn close_other_fds(child: ForkedChild, keep: &[RawFd]) -> Result<(), Failure> {
    let close_range =
        |lo, hi| sys::close_range(child, lo, hi).map_err(|e| Failure::nix(Stage::CloseFds, 0, e));
    let mut lo: u32 = 3;
    for &k in keep {
        let k = u32::try_from(k).unwrap_or(0);
        if k < lo {
            continue;
        }
        if k > lo {
            close_range(lo, k - 1)?;
        }
        lo = k + 1;
    }
    close_range(lo, u32::MAX)
}

/// Forked side: a new session and, without a pty, the pipes on 0..=2 (with a pty, see
/// [`super::pty::attach`]).
pub fn setup_stdio(fds: Option<[BorrowedFd<'_>; 3]>) -> Result<(), Failure> {
    setsid().map_err(|e| Failure::nix(Stage::Setsid, 0, e))?;
    let Some(fds) = fds else {
        return Ok(());
    };
    // dup2 clears CLOEXEC on the target, and every source is >= 3 so no source is overwritten.
    for (target, src) in fds.into_iter().enumerate() {
        dup2_onto(src, target).map_err(|e| Failure::nix(Stage::Stdio, target, e))?;
    }
    Ok(())
}

/// `dup2(fd, target)` onto fd 0, 1 or 2.
pub(crate) fn dup2_onto(fd: BorrowedFd<'_>, target: usize) -> nix::Result<()> {
    match target {
        0 => dup2_stdin(fd),
        1 => dup2_stdout(fd),
        2 => dup2_stderr(fd),
        _ => Err(nix::Error::EBADF),
    }
}

/// Forked side, in the bootstrap process before it forks the container process (which inherits
/// the value): sets `oom_score_adj`. Done here, still in the agent's mount namespace and with all
/// capabilities, so it holds from the container process's first instruction and needs no /proc
/// inside the container.
pub fn set_oom_score_adj(adj: Option<i32>) -> Result<(), Failure> {
    let Some(adj) = adj else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        .map_err(|e| Failure::io(Stage::OomScoreAdj, 0, &e))
}

/// Forked side: moves this process into the cgroup through an open `cgroup.procs`.
pub fn join_cgroup(procs: BorrowedFd<'_>) -> Result<(), Failure> {
    match write(procs, b"0") {
        Ok(1) => Ok(()),
        Ok(_) => Err(Failure::last(Stage::JoinCgroup, 0)),
        Err(e) => Err(Failure::nix(Stage::JoinCgroup, 0, e)),
    }
}

/// Forked side: `setns(2)`.
pub fn setns(fd: BorrowedFd<'_>, flags: CloneFlags, index: usize) -> Result<(), Failure> {
    nix::sched::setns(fd, flags).map_err(|e| Failure::nix(Stage::JoinNamespace, index, e))
}

/// Forked side: reports a failure and exits without running destructors or atexit handlers.
pub fn die(sock: BorrowedFd<'_>, f: Failure) -> ! {
    sync::send_failure(sock, f);
    sys::exit(1)
}

/// Forked side: exits quietly.
pub fn exit(code: i32) -> ! {
    sys::exit(code)
}

/// Runs `f` in a forked child so that a panic can never unwind into the agent's code.
pub fn run_child(
    sock: BorrowedFd<'_>,
    f: impl FnOnce() -> Result<std::convert::Infallible, Failure>,
) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    match r {
        Ok(Err(failure)) => die(sock, failure),
        Ok(Ok(never)) => match never {},
        Err(_) => die(sock, Failure::new(Stage::Unknown, 0, libc::EFAULT)),
    }
}
