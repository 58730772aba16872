// The shim's seccomp allowlist, compiled to BPF by `runtime/build.rs` at build time and installed
// by `hull_runtime::seccomp` once the pod's VM is started: from then on the shim starts nothing,
// so `execve`, `fork` and friends, and everything below that a shim never needs, kill it.
//
// This file is `include!`d by the build script (not a module of the crate): it may only use
// `seccompiler`, `libc` and `std`.

/// Syscalls allowed whatever their arguments.
const SHIM_ALLOWED: &[i64] = &[
    // Files and directories: the share, the pod's run directory, cgroups, logs and fifos.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_getdents64,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_lchown,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_flock,
    libc::SYS_getcwd,
    libc::SYS_umask,
    libc::SYS_copy_file_range,
    libc::SYS_sendfile,
    // Watching copied volumes' host directories for the kubelet's updates
    // (runtime/src/shim/volumes.rs).
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    // Containers' root filesystems into the share, and the share's teardown; read-only ones are
    // cloned detached, made read-only and attached (runtime/src/share/detached.rs).
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    // The pod network's teardown runs in the pod's network namespace (a thread of its own).
    libc::SYS_setns,
    // Memory.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    // Threads (creating one: `clone` below) and their synchronisation. `clone3` passes its flags
    // in memory, out of a filter's reach: it answers ENOSYS (the second filter), and the C
    // library falls back to `clone`.
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    // Identity.
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    // Signals, and the pod's processes: stopping the VMM and its helpers, reaping them.
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_kill,
    libc::SYS_tgkill,
    libc::SYS_tkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_wait4,
    libc::SYS_waitid,
    // Time.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_time,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    // The event loop.
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    // Unix sockets (containerd, the agent through hybrid vsock, vhost-user) and netlink (the
    // pod network); which sockets may be made is checked below.
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    // Odds and ends of the standard library and tokio.
    libc::SYS_getrandom,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrlimit,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
];

/// `ioctl` requests the shim makes: non-blocking and close-on-exec flags, terminal queries of
/// the standard library.
const SHIM_IOCTLS: &[u64] = &[
    0x5421, // FIONBIO
    0x5451, // FIOCLEX
    0x5450, // FIONCLEX
    0x541b, // FIONREAD
    0x5401, // TCGETS
    0x5413, // TIOCGWINSZ
];

/// `prctl` options: thread names, and the subreaper flag containerd's shim library reads.
const SHIM_PRCTLS: &[u64] = &[
    15, // PR_SET_NAME
    16, // PR_GET_NAME
    36, // PR_SET_CHILD_SUBREAPER
    37, // PR_GET_CHILD_SUBREAPER
];

/// Socket families the shim opens.
const SHIM_SOCKET_FAMILIES: &[u64] = &[libc::AF_UNIX as u64, libc::AF_NETLINK as u64];

/// One rule per value: argument `arg` equals one of `values`.
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, BackendError> {
    values
        .iter()
        .map(|v| {
            SeccompRule::new(vec![SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                *v,
            )?])
        })
        .collect()
}

/// The shim's allowlist: anything else kills the process.
fn shim_allowlist() -> Result<SeccompFilter, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        SHIM_ALLOWED.iter().map(|sc| (*sc, Vec::new())).collect();
    // A thread, never a process: CLONE_THREAD must be set.
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(thread),
            thread,
        )?])?],
    );
    rules.insert(libc::SYS_ioctl, one_of(1, SHIM_IOCTLS)?);
    rules.insert(libc::SYS_prctl, one_of(0, SHIM_PRCTLS)?);
    rules.insert(libc::SYS_socket, one_of(0, SHIM_SOCKET_FAMILIES)?);
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
}

/// `clone3` answers ENOSYS (layered over the allowlist, which lets it through).
fn shim_clone3_enosys() -> Result<SeccompFilter, BackendError> {
    SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
}
