//! seccomp filters, one per thread kind, compiled to BPF at build time (`vmm/build.rs` from
//! `vmm/seccomp/rules.rs`): a vCPU thread only runs KVM ioctls and writes to the
//! console and eventfds; the event-loop thread only moves bytes between queues, unix sockets and
//! taps, and speaks vhost-user to virtiofsd (`sendmsg`/`recvmsg` with descriptors); only a VM
//! with a control socket (`--api-sock`) gets the event-loop variant that may also read the VM's
//! interrupt controllers, clock and PIT and create, write, sync and rename snapshot files. No
//! device starts a thread of its own, so these kinds are all there is.
//! Anything else kills the process (SIGSYS), so a compromised VMM thread can do little, and a
//! missing entry shows up at once in the tests (`--no-seccomp` switches the filters off to debug).

use seccompiler::BpfProgram;

/// Building or installing a filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The built-in program is not a whole number of BPF instructions.
    #[error(transparent)]
    Malformed(#[from] hull_seccomp_bpf::Malformed),
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
    /// The event loop of a VM with a control socket: also writes snapshots.
    EventLoopSnapshots,
}

impl ThreadKind {
    fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vCPU",
            ThreadKind::EventLoop => "event loop",
            ThreadKind::EventLoopSnapshots => "event loop (snapshots)",
        }
    }
}

/// The vCPU threads' program.
static VCPU: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vcpu.bpf"));
/// The event loop's program.
static EVENT_LOOP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/event-loop.bpf"));
/// The event loop's program with the calls of snapshots.
static EVENT_LOOP_SNAPSHOTS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/event-loop-snapshots.bpf"));

/// The BPF program for `kind`, as the build script compiled it.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let bytes = match kind {
        ThreadKind::Vcpu => VCPU,
        ThreadKind::EventLoop => EVENT_LOOP,
        ThreadKind::EventLoopSnapshots => EVENT_LOOP_SNAPSHOTS,
    };
    hull_seccomp_bpf::decode(kind.name(), bytes).map_err(SeccompError::Malformed)
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
        for kind in [
            ThreadKind::Vcpu,
            ThreadKind::EventLoop,
            ThreadKind::EventLoopSnapshots,
        ] {
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
