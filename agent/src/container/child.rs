//! What the agent hands to a forked child, and the helpers both forked paths (init and exec)
//! share.
//!
//! How we fork: the agent is a multi-threaded tokio process, so after `fork(2)` only the forking
//! thread exists in the child. We use glibc's `fork()`, which resets malloc's locks in the child,
//! so the child may allocate; it takes no other lock (no stdio, no env, no logging, no tracing).
//! Everything that can be prepared (C strings, flags, the seccomp program, descriptors) is
//! prepared before forking. The first child is single-threaded, which `setns` into mount and user
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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::stage::{Failure, Stage};
use super::sync;
use super::ProcessIo;

/// A failure preparing descriptors in the agent.
#[derive(Debug, thiserror::Error)]
pub enum IoSetupError {
    /// Opening `/dev/null` failed.
    #[error("cannot open /dev/null")]
    DevNull(#[source] std::io::Error),
    /// Duplicating a descriptor failed.
    #[error("cannot duplicate a descriptor")]
    Dup(#[source] nix::Error),
}

/// A descriptor moved to a number of at least 3 (so `dup2` onto 0..=2 never clobbers a source),
/// close-on-exec.
pub fn high_fd(fd: OwnedFd) -> Result<OwnedFd, IoSetupError> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    let new = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(IoSetupError::Dup)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
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
}

/// Forked side: every signal back to its default disposition and unblocked. The agent's
/// dispositions and mask would otherwise reach the container process: `execve` keeps ignored
/// signals ignored (Rust ignores SIGPIPE) and keeps the signal mask (a reaper may block SIGCHLD).
/// Doing it first also keeps the agent's handlers from running in the child.
pub fn reset_signals() {
    /// The kernel's `struct sigaction` on x86_64 (glibc's wrapper refuses signals 32 and 33,
    /// which glibc reserves, so the raw syscall is used for all).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction(2) reads a live struct of the kernel's layout; the old action is
        // not requested. Errors are irrelevant (every number here is valid).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    // SAFETY: an empty, initialised set on the stack; sigprocmask cannot fail with SIG_SETMASK.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Forked side: closes every descriptor above 2 except `keep` (sorted, all >= 3). Other threads
/// of the agent may have had descriptors open without close-on-exec at fork time (another
/// container's pipes); holding them would keep those pipes open.
pub fn close_other_fds(keep: &[RawFd]) -> Result<(), Failure> {
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

fn close_range(lo: u32, hi: u32) -> Result<(), Failure> {
    // SAFETY: close_range(2) on descriptors this process owns and will not use; integers only.
    let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
    if r != 0 {
        return Err(Failure::last(Stage::CloseFds, 0));
    }
    Ok(())
}

/// Forked side: a new session and, without a pty, the pipes on 0..=2 (with a pty, see
/// [`super::pty::attach`]).
pub fn setup_stdio(fds: Option<[RawFd; 3]>) -> Result<(), Failure> {
    // SAFETY: setsid(2) takes no arguments; checked.
    if unsafe { libc::setsid() } < 0 {
        return Err(Failure::last(Stage::Setsid, 0));
    }
    let Some(fds) = fds else {
        return Ok(());
    };
    for (target, src) in fds.iter().enumerate() {
        // SAFETY: dup2(2) of a descriptor we hold onto 0..=2; checked. dup2 clears CLOEXEC on
        // the target, and every source is >= 3 so no source is overwritten.
        if unsafe { libc::dup2(*src, RawFd::try_from(target).unwrap_or(0)) } < 0 {
            return Err(Failure::last(Stage::Stdio, target));
        }
    }
    Ok(())
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
pub fn join_cgroup(procs: RawFd) -> Result<(), Failure> {
    // SAFETY: writes a 1-byte static buffer to a descriptor we hold; checked.
    let r = unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) };
    if r != 1 {
        return Err(Failure::last(Stage::JoinCgroup, 0));
    }
    Ok(())
}

/// Forked side: `setns(2)`.
pub fn setns(fd: RawFd, flags: libc::c_int, index: usize) -> Result<(), Failure> {
    // SAFETY: setns(2) on a descriptor we hold; checked.
    if unsafe { libc::setns(fd, flags) } != 0 {
        return Err(Failure::last(Stage::JoinNamespace, index));
    }
    Ok(())
}

/// Forked side: reports a failure and exits without running destructors or atexit handlers.
pub fn die(sock: RawFd, f: Failure) -> ! {
    sync::send_failure(sock, f);
    // SAFETY: _exit(2) never returns and is async-signal-safe.
    unsafe { libc::_exit(1) }
}

/// Forked side: exits quietly.
pub fn exit(code: i32) -> ! {
    // SAFETY: as above.
    unsafe { libc::_exit(code) }
}

/// `fork(2)` through glibc (which resets its malloc locks in the child), with every signal
/// blocked across it so none of the agent's handlers can run in the child before
/// [`reset_signals`] (which the child calls first, and which unblocks them).
///
/// # Safety
/// The caller must only do what a forked child of a multi-threaded process may do in the child
/// (see the module doc) and must end the child with `_exit`.
pub unsafe fn fork() -> Result<libc::pid_t, Failure> {
    // SAFETY: sigsets on the stack, initialised by sigfillset/pthread_sigmask before use.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the caller upholds the child-side contract.
    let pid = unsafe { libc::fork() };
    let errno = std::io::Error::last_os_error();
    if pid != 0 {
        // SAFETY: restores the mask saved above, in the parent only.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    if pid < 0 {
        return Err(Failure::new(
            Stage::Fork,
            0,
            errno.raw_os_error().unwrap_or(libc::EAGAIN),
        ));
    }
    Ok(pid)
}

/// Runs `f` in a forked child so that a panic can never unwind into the agent's code.
pub fn run_child(sock: RawFd, f: impl FnOnce() -> Result<std::convert::Infallible, Failure>) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    match r {
        Ok(Err(failure)) => die(sock, failure),
        Ok(Ok(never)) => match never {},
        Err(_) => die(sock, Failure::new(Stage::Unknown, 0, libc::EFAULT)),
    }
}
