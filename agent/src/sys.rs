//! The agent's raw system calls, each behind a small safe function.
//!
//! The agent builds containers itself, so it makes system calls that neither `nix` nor `rustix`
//! offers as safe functions: `fork` with every signal blocked, the raw `rt_sigaction`,
//! `close_range`, `execve` from arrays prepared before forking, `ioprio_set`, `seccomp`, `bpf`,
//! `pidfd_send_signal`, a pty's number and an interface's flags; and, not a
//! system call but the same kind of promise about a descriptor, registering one with tokio. They
//! live here, each `unsafe` block with its `// SAFETY:`, so that the rest of the agent is safe
//! code. What `nix` (the agent's system-call crate) or `rustix` (for what `nix` lacks or would
//! allocate for: capabilities, per-thread ids, pidfds, terminal ioctls, `SCM_RIGHTS`) already
//! offers safely is called directly where it is needed, not wrapped again here; so is `hull-sys`,
//! where the calls the host side makes too live (`mount_setattr`).
//!
//! Most of these run in a forked child of the multi-threaded agent, between `fork` and `execve`
//! (see `container::child`). So every function here makes its system call directly, takes no
//! lock and does not allocate, unless its doc says otherwise. Errors are `nix` errnos: the forked
//! side reports them as numbers.

use std::ffi::{CStr, CString};
use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::{ForkResult, Pid};

/// `bpf(2)` commands.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;

/// Proof that the code holding it runs in a child made by [`fork`], before that child execs or
/// exits: what only such a child may do takes one ([`close_range`], [`reset_signal_dispositions`]).
#[derive(Debug, Clone, Copy)]
pub struct ForkedChild(());

/// What [`fork`] returns on each side.
#[derive(Debug)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(Pid),
    /// In the child.
    Child(ForkedChild),
}

/// `fork(2)` through glibc (which resets its malloc locks in the child), with every signal
/// blocked across it, so that none of the agent's handlers can run in the child before it resets
/// them with [`reset_signal_dispositions`]. The parent gets its mask back; the child keeps
/// everything blocked until it unblocks.
///
/// # Safety
/// The agent is multi-threaded and only the calling thread exists in the child: the child may
/// only take no lock another thread may have held (no stdio, environment, logging or tracing, see
/// `container::child`) and must end in [`exit`] or a successful `execve`.
pub unsafe fn fork() -> nix::Result<Fork> {
    let mut old = SigSet::empty();
    // Cannot fail: SIG_SETMASK with valid sets.
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    // SAFETY: the caller keeps to the child's side of the contract above.
    let forked = unsafe { nix::unistd::fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    Ok(match forked? {
        ForkResult::Parent { child } => Fork::Parent(child),
        ForkResult::Child => Fork::Child(ForkedChild(())),
    })
}

/// `_exit(2)`: ends the process at once, without destructors, atexit handlers or stdio flushes
/// (none of which a forked child may run).
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit takes an integer, never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Every signal's disposition back to the default (`SIGKILL` and `SIGSTOP` have no other), with
/// the raw `rt_sigaction(2)`: glibc's wrapper refuses signals 32 and 33, which it reserves.
pub fn reset_signal_dispositions(_child: ForkedChild) {
    /// The kernel's `struct sigaction` on x86_64.
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
        // SAFETY: rt_sigaction(2) reads a live struct of the kernel's layout and the size of
        // its mask; the old action is not requested. Errors are irrelevant (every number here
        // is valid).
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
}

/// Closes every descriptor from `first` to `last` (`close_range(2)`): in a forked child, the
/// descriptors it inherited and will not use, whoever owns them in the parent.
pub fn close_range(_child: ForkedChild, first: u32, last: u32) -> nix::Result<()> {
    // SAFETY: integer arguments only. Closing descriptors that handles copied from the parent
    // own is sound in the child: it never uses those handles (the contract of `fork`), only
    // the descriptors its caller keeps out of the range.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    Errno::result(r).map(drop)
}

/// Marks every descriptor from `first` up close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), so none of them reaches the program `execve` starts.
pub fn set_cloexec_from(first: u32) -> nix::Result<()> {
    // SAFETY: integer arguments only; CLOSE_RANGE_CLOEXEC sets a flag and closes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(r).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, value)`: this process's I/O priority
/// (`class << 13 | level`).
pub fn set_io_priority(value: i32) -> nix::Result<()> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
    Errno::result(r).map(drop)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, …)`: installs `filter` (at most 65535 instructions
/// are passed; the kernel takes 4096) on this thread. Needs no_new_privs or `CAP_SYS_ADMIN`.
pub fn seccomp_set_filter(filter: &[libc::sock_filter], flags: libc::c_ulong) -> nix::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap_or(u16::MAX),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(2) reads `prog`, which points into `filter` for at most its length (the
    // kernel only reads the instructions); both live for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}

/// C strings with the NULL-terminated array of pointers to them that `execve(2)` takes, built
/// in the agent so that the forked child does not allocate to exec.
pub struct CStrArray {
    strings: Vec<CString>,
    /// Into `strings`' heap buffers, which do not move when the array does; then NULL.
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    /// The array of `strings`.
    pub fn new(strings: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStrArray { strings, ptrs }
    }
}

impl Deref for CStrArray {
    type Target = [CString];

    fn deref(&self) -> &[CString] {
        &self.strings
    }
}

impl fmt::Debug for CStrArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.strings).finish()
    }
}

// SAFETY: the pointers only lead into the strings the array owns and never changes, so moving
// the array to another thread moves exactly what `Vec<CString>` would.
unsafe impl Send for CStrArray {}
// SAFETY: shared access only reads the strings and the pointers to them.
unsafe impl Sync for CStrArray {}

/// `execve(2)`: runs `path` with `argv` and `envp`. Returns only on failure, with its errno.
pub fn execve(path: &CStr, argv: &CStrArray, envp: &CStrArray) -> Errno {
    // SAFETY: `path` is a live C string; both arrays are NULL-terminated and point to C strings
    // they own, all alive for the call.
    unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), envp.ptrs.as_ptr()) };
    Errno::last()
}

/// The number `N` of the pty whose master is `master` (`TIOCGPTN`): its slave is `/dev/pts/N`.
pub fn pty_number(master: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into a live local.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    Errno::result(r).map(|_| n)
}

/// `pidfd_send_signal(2)` with signal 0: `Ok` while the process behind `pidfd` exists (the
/// kernel checks, sends nothing).
pub fn pidfd_probe(pidfd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: integer arguments, a borrowed (open) pidfd and a NULL siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// `bpf(BPF_PROG_LOAD)` of a program of `prog_type` for `attach_type`: its descriptor. `insns`
/// are the instructions as the kernel lays them out (one `u64` each); `name` is NUL-padded;
/// the verifier writes its log into `log`.
pub fn bpf_prog_load(
    prog_type: u32,
    attach_type: u32,
    insns: &[u64],
    license: &CStr,
    name: [u8; 16],
    log: &mut [u8],
) -> nix::Result<OwnedFd> {
    /// The `BPF_PROG_LOAD` part of the kernel's `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct LoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let attr = LoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: u32::try_from(log.len()).unwrap_or(0),
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: attach_type,
        ..Default::default()
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` and the instruction and license buffers it points
    // to (with their lengths), and writes at most `log_size` bytes into `log`; all live for the
    // call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const LoadAttr,
            std::mem::size_of::<LoadAttr>(),
        )
    };
    let fd = RawFd::try_from(Errno::result(fd)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel returned a fresh program descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bpf(BPF_PROG_ATTACH)`: attaches the program `prog` to `target` (a cgroup directory) for
/// `attach_type`, replacing the one attached before. The attachment holds its own reference to
/// the program.
pub fn bpf_prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> nix::Result<()> {
    /// The `BPF_PROG_ATTACH` part of the kernel's `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct AttachAttr {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let attr = AttachAttr {
        target_fd: target.as_raw_fd().unsigned_abs(),
        attach_bpf_fd: prog.as_raw_fd().unsigned_abs(),
        attach_type,
        ..Default::default()
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) reads `attr`, which names two borrowed (open) descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const AttachAttr,
            std::mem::size_of::<AttachAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// `fd` registered with the calling thread's tokio runtime for reads and writes (agent side).
pub fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd's descriptor stays open and the same until the OwnedFd is dropped, and
    // the AsyncFd owns it for its whole life.
    Ok(unsafe { tokio::io::unix::AsyncFd::register(fd) }?)
}

/// Sets `IFF_UP` on the network interface `name` (shorter than `IFNAMSIZ`), through `sock`, any
/// socket of its network namespace (`SIOCGIFFLAGS`, then `SIOCSIFFLAGS`).
pub fn set_interface_up(sock: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    let name = name.to_bytes_with_nul();
    if name.len() > libc::IFNAMSIZ {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `ifreq` is plain old data (a name array and a union of integers): all zeroes is
    // valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: a borrowed (open) socket and an `ifreq` living across the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    Errno::result(r)?;
    // SAFETY: SIOCGIFFLAGS filled the union's `ifru_flags` member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
    // SAFETY: as above; the request names the interface and carries its flags plus IFF_UP.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn exec_arrays_end_in_null_and_deref_to_their_strings() {
        let a = CStrArray::new(vec![c"sh".into(), c"-c".into()]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.ptrs.len(), 3);
        assert!(a.ptrs[2].is_null());
        assert_eq!(a.ptrs[0], a[0].as_ptr());
        assert_eq!(format!("{a:?}"), r#"["sh", "-c"]"#);
    }

    #[test]
    fn a_pidfd_probe_sees_a_process_until_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        assert_eq!(pidfd_probe(pidfd.as_fd()), Ok(()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(pidfd_probe(pidfd.as_fd()), Err(Errno::ESRCH));
    }

    #[test]
    fn interface_names_longer_than_ifnamsiz_are_refused() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let long = CString::new("x".repeat(libc::IFNAMSIZ)).unwrap();
        assert_eq!(set_interface_up(sock.as_fd(), &long), Err(Errno::EINVAL));
    }
}
