//! seccomp filters, one per thread kind: a vCPU thread only runs KVM ioctls and writes to the
//! console and eventfds; the event-loop thread only moves bytes between queues, unix sockets and
//! taps, and speaks vhost-user to virtiofsd (`sendmsg`/`recvmsg` with descriptors). No device
//! starts a thread of its own, so these two kinds are all there is.
//! Anything else kills the process (SIGSYS), so a compromised VMM thread can do little, and a
//! missing entry shows up at once in the tests (`--no-seccomp` switches the filters off to debug).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Building or installing a filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter could not be built.
    #[error("cannot build the {0} seccomp filter")]
    Build(&'static str, #[source] seccompiler::BackendError),
    /// The filter could not be compiled to BPF.
    #[error("cannot compile the {0} seccomp filter")]
    Compile(&'static str, #[source] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("cannot install the {0} seccomp filter")]
    Install(&'static str, #[source] seccompiler::Error),
}

/// A thread kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// A vCPU thread.
    Vcpu,
    /// The event loop (main thread).
    EventLoop,
}

impl ThreadKind {
    fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vCPU",
            ThreadKind::EventLoop => "event loop",
        }
    }
}

/// Syscalls every hull-vmm thread needs (memory, futexes, signals, time, exit).
const COMMON: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_restart_syscall,
    libc::SYS_close,
    libc::SYS_fcntl,
];

/// Extra syscalls of the event loop: epoll, unix sockets (vsock streams, vhost-user messages),
/// removing the vsock socket file. Tap frames are `read`/`write`.
const EVENT_LOOP: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_accept4,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_readv,
];

const KVM_IOCTL_TYPE: u64 = 0xae00;
const FIONBIO: u64 = 0x5421;

fn ioctl_rule(kind: ThreadKind) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let cond = match kind {
        // Any KVM ioctl (type 0xAE): KVM_RUN, and the register reads of an error report.
        ThreadKind::Vcpu => SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(0xff00),
            KVM_IOCTL_TYPE,
        )?,
        // Making accepted/connected unix streams non-blocking.
        ThreadKind::EventLoop => {
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, FIONBIO)?
        }
    };
    Ok(vec![SeccompRule::new(vec![cond])?])
}

/// The BPF program for `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let build = |e| SeccompError::Build(kind.name(), e);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for sc in COMMON {
        rules.insert(*sc, Vec::new());
    }
    if kind == ThreadKind::EventLoop {
        for sc in EVENT_LOOP {
            rules.insert(*sc, Vec::new());
        }
    }
    rules.insert(libc::SYS_ioctl, ioctl_rule(kind).map_err(build)?);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(build)?;
    BpfProgram::try_from(f).map_err(|e| SeccompError::Compile(kind.name(), e))
}

/// Installs the filter for `kind` on the calling thread (sets no_new_privs first).
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    let bpf = filter(kind)?;
    seccompiler::apply_filter(&bpf).map_err(|e| SeccompError::Install(kind.name(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile() {
        for kind in [ThreadKind::Vcpu, ThreadKind::EventLoop] {
            let bpf = filter(kind).unwrap();
            assert!(bpf.len() > 10, "{kind:?}");
        }
    }

    #[test]
    fn an_installed_filter_allows_the_listed_calls_and_kills_others() {
        // In a child process, so the test runner keeps no filter. The filter is built before the
        // fork: the child of a multi-threaded process must not allocate.
        let bpf = filter(ThreadKind::Vcpu).unwrap();
        // SAFETY: fork in a test; the child only makes raw system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = seccompiler::apply_filter(&bpf).is_ok();
            // SAFETY: getpid is always safe; allowed by the filter.
            unsafe { libc::getpid() };
            if !ok {
                // SAFETY: leaving the child.
                unsafe { libc::_exit(3) };
            }
            // SAFETY: socket is not in the vCPU list: the process must die with SIGSYS here.
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            // SAFETY: leaving the child.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
