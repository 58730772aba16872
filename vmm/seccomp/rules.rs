// hull-vmm's seccomp allowlists, one per thread kind, compiled to BPF by `vmm/build.rs` at
// build time and installed by `hull_vmm::seccomp`. This file is `include!`d by the build script
// (not a module of the crate): it may only use `seccompiler`, `libc` and `std`.

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

/// Extra syscalls of the event loop: epoll, unix sockets (vsock streams, vhost-user messages,
/// the control socket), removing the vsock socket file. Tap frames are `read`/`write`.
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

/// What the event loop adds when it serves a control socket (`--api-sock`): the request's read
/// timeout and writing snapshot files (the memory file sparse: data at its offsets, holes sized
/// by `ftruncate`). A VM without a control socket never gets these.
const SNAPSHOTS: &[i64] = &[
    libc::SYS_setsockopt,
    libc::SYS_openat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_fsync,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_lseek,
    libc::SYS_pwrite64,
    libc::SYS_ftruncate,
];

const KVM_IOCTL_TYPE: u64 = 0xae00;
const FIONBIO: u64 = 0x5421;
/// The VM-wide reads a snapshot makes on the event loop (with a control socket only) (`_IOWR`/`_IOR` numbers of
/// `KVM_GET_IRQCHIP` (kvm_irqchip, 520 bytes), `KVM_GET_CLOCK` (48), `KVM_GET_PIT2` (112)).
const EVENT_LOOP_KVM_IOCTLS: [u64; 3] = [0xc208_ae62, 0x8030_ae7c, 0x8070_ae9f];

fn ioctl_rule(vcpu: bool, snapshots: bool) -> Result<Vec<SeccompRule>, BackendError> {
    let cond = if vcpu {
        // Any KVM ioctl (type 0xAE): KVM_RUN, and the register reads of an error report.
        SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(0xff00),
            KVM_IOCTL_TYPE,
        )?
    } else {
        // Making accepted/connected unix streams non-blocking; the snapshot's VM-wide reads.
        let mut rules = Vec::new();
        let kvm: &[u64] = if snapshots { &EVENT_LOOP_KVM_IOCTLS } else { &[] };
        for nr in std::iter::once(FIONBIO).chain(kvm.iter().copied()) {
            let c = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, nr)?;
            rules.push(SeccompRule::new(vec![c])?);
        }
        return Ok(rules);
    };
    Ok(vec![SeccompRule::new(vec![cond])?])
}

/// The allowlist of a vCPU thread (`vcpu`) or of the event loop (with the calls of snapshots
/// when `snapshots`): anything else kills the process.
fn thread_filter(vcpu: bool, snapshots: bool) -> Result<SeccompFilter, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        COMMON.iter().map(|sc| (*sc, Vec::new())).collect();
    if !vcpu {
        rules.extend(EVENT_LOOP.iter().map(|sc| (*sc, Vec::new())));
        if snapshots {
            rules.extend(SNAPSHOTS.iter().map(|sc| (*sc, Vec::new())));
        }
    }
    rules.insert(libc::SYS_ioctl, ioctl_rule(vcpu, snapshots)?);
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
}
