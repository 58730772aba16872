//! What `hull-jailer` does, in two stages (no `fork` of our own: each stage is a plain
//! `Command` spawn or `exec`):
//!
//! 1. [`supervise`]: unshares the mount, PID, IPC and UTS namespaces and starts stage 2 — its child,
//!    hence PID 1 of the new PID namespace — then waits for it, forwarding SIGTERM/SIGINT/SIGHUP,
//!    and exits the way it did (code, or 128 + signal).
//! 2. [`enter`]: opens the files the VMM gets as descriptors (as root, from the host's tree),
//!    builds the jail's root (tmpfs, binds, device nodes), `pivot_root`s into it,
//!    creates the tap if asked, sets the hostname, drops to the VMM's uid/gid with no groups, sets
//!    `no_new_privs`, rlimits and the parent-death signal, puts the opened files at their
//!    descriptors, and execs the VMM.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, pivot_root, setgroups, sethostname, setresgid, setresuid, Gid, Pid, Uid};

use super::{sys, Bind, JailConfig, JailError};

/// How often a stop request is repeated until the VMM is gone, ms.
const RESEND_MS: u16 = 50;

/// iproute2's `ip`, for the tap.
const IP: &str = "/usr/sbin/ip";

/// The argument that marks the second stage.
pub const STAGE2: &str = "--stage2";

/// Stage 1: new namespaces, stage 2 as their first process, and its exit status as ours.
/// Returns the exit code to exit with.
pub fn supervise(config_json: &str, vmm: &Path, args: &[OsString]) -> Result<i32, JailError> {
    let config: JailConfig = serde_json::from_str(config_json)?;
    config.validate()?;
    // First of all, so that everything the jail starts is born in the VMM's cgroup.
    crate::host_cgroup::join(&config.cgroups, std::process::id()).map_err(|e| {
        JailError::Sys(
            "cannot join the VMM's cgroup".into(),
            std::io::Error::other(e),
        )
    })?;
    // Before the new PID namespace exists: its first child must be stage 2.
    if let Some(tap) = &config.tap {
        create_tap(&tap.name, &config)?;
    }
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )
    .map_err(sys("cannot create the jail's namespaces"))?;
    let forwarded = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    let mut waited = SigSet::empty();
    for signal in forwarded.iter().chain(&[Signal::SIGCHLD]) {
        waited.add(*signal);
    }
    // Blocked here and received with sigwait below; stage 2 inherits the mask and clears it.
    waited
        .thread_block()
        .map_err(sys("cannot block the forwarded signals"))?;
    let mut child = start_stage2(config_json, vmm, args)?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let signals = SignalFd::with_flags(&waited, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(sys("cannot receive signals"))?;
    // The VMM is PID 1 of its namespace: until it has installed its handlers, the kernel drops
    // the signals it is sent. So a stop request is repeated until the VMM is gone.
    let mut stopping: Option<Signal> = None;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| JailError::Sys("cannot wait for the VMM".into(), e))?
        {
            if let Some(tap) = &config.tap {
                delete_tap(&tap.name);
            }
            return Ok(status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1));
        }
        if let Some(signal) = stopping {
            let _ = kill(pid, signal);
        }
        let timeout = if stopping.is_some() {
            PollTimeout::from(RESEND_MS)
        } else {
            PollTimeout::NONE
        };
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, timeout);
        while let Ok(Some(info)) = signals.read_signal() {
            let signal = i32::try_from(info.ssi_signo)
                .ok()
                .and_then(|n| Signal::try_from(n).ok());
            if let Some(signal) = signal.filter(|s| *s != Signal::SIGCHLD) {
                stopping = Some(signal);
                let _ = kill(pid, signal);
            }
        }
    }
}

/// Starts stage 2 (this binary again, with [`STAGE2`]) as the first process of the new PID
/// namespace, bound to die with this process.
fn start_stage2(
    config_json: &str,
    vmm: &Path,
    args: &[OsString],
) -> Result<std::process::Child, JailError> {
    let me = std::env::current_exe().map_err(|e| JailError::Sys("cannot find myself".into(), e))?;
    let mut stage2 = Command::new(me);
    // Stage 2 dies with stage 1 from its first moment: the death signal, set between fork and
    // exec, survives the exec (stage 2 sets it again after its uid change, which clears it).
    // Set any later, a stage 1 killed while the jail is built (a stop whose SIGTERM stage 2, a
    // PID 1 without handlers, drops; then SIGKILL after the grace) left stage 2 to exec the VMM as
    // an orphan of PID 1 that nothing stops. A signal set after the parent is gone never comes,
    // and getppid() says nothing to a PID 1, so the child also checks that stage 1 still holds
    // its end of a pipe (a read at EOF: every writer is gone).
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(sys("cannot make the jailer's liveness pipe"))?;
    let (r, w) = (alive_r.as_raw_fd(), alive_w.as_raw_fd());
    // SAFETY: between fork and exec the closure makes only prctl(2), close(2) and read(2) calls
    // through nix, which are async-signal-safe, take no lock and do not allocate; `r` and `w` are
    // the pipe's descriptors, open in the child until its exec (the parent keeps them open until
    // `spawn` has returned).
    unsafe {
        stage2.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            nix::unistd::close(w)?;
            match nix::unistd::read(BorrowedFd::borrow_raw(r), &mut [0u8; 1]) {
                Err(nix::errno::Errno::EAGAIN) => Ok(()),
                Ok(_) => Err(std::io::Error::other("the jailer died")),
                Err(e) => Err(e.into()),
            }
        });
    }
    let child = stage2
        .arg(STAGE2)
        .arg("--config")
        .arg(config_json)
        .arg("--")
        .arg(vmm)
        .args(args)
        .spawn()
        .map_err(|e| JailError::Sys("cannot start the jail's first process".into(), e))?;
    drop((alive_r, alive_w));
    Ok(child)
}

/// Stage 2: build the jail, enter it, exec the VMM. Returns only on failure.
pub fn enter(config_json: &str, vmm: &Path, args: &[OsString]) -> JailError {
    match prepare(config_json) {
        Ok(()) => {
            let err = Command::new(vmm).args(args).exec();
            JailError::Sys(format!("cannot exec {} in the jail", vmm.display()), err)
        }
        Err(e) => e,
    }
}

fn prepare(config_json: &str) -> Result<(), JailError> {
    let config: JailConfig = serde_json::from_str(config_json)?;
    config.validate()?;
    // First of all, so that everything the jail starts is born in the VMM's cgroup.
    crate::host_cgroup::join(&config.cgroups, std::process::id()).map_err(|e| {
        JailError::Sys(
            "cannot join the VMM's cgroup".into(),
            std::io::Error::other(e),
        )
    })?;
    // As root and before the host's tree is left: the files the VMM gets as descriptors.
    let files = open_files(&config)?;
    let root = &config.root;
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("cannot make the jail's mounts private"))?;
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=16m,nr_inodes=4096"),
    )
    .map_err(sys(format!(
        "cannot mount the jail root on {}",
        root.display()
    )))?;
    std::fs::create_dir_all(root.join("dev"))
        .map_err(|e| JailError::Sys("cannot create /dev in the jail".into(), e))?;
    // Device nodes only work off a `nodev` mount: /dev gets a tmpfs of its own.
    mount(
        Some("tmpfs"),
        &root.join("dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k,nr_inodes=64"),
    )
    .map_err(sys("cannot mount /dev in the jail"))?;
    for dir in ["proc", "tmp", "run", "vm"] {
        std::fs::create_dir_all(root.join(dir))
            .map_err(|e| JailError::Sys(format!("cannot create /{dir} in the jail"), e))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| JailError::Sys("cannot open /tmp in the jail".into(), e))?;
    system_links(root)?;
    for bind in &config.binds {
        bind_into(root, bind)?;
    }
    for device in &config.devices {
        make_device(root, device, &config)?;
    }
    mount(
        Some("proc"),
        &root.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(sys("cannot mount /proc in the jail"))?;
    let old = root.join("old-root");
    std::fs::create_dir_all(&old)
        .map_err(|e| JailError::Sys("cannot create the old-root directory".into(), e))?;
    pivot_root(root, &old).map_err(sys("cannot pivot_root into the jail"))?;
    std::env::set_current_dir("/").map_err(|e| JailError::Sys("cannot chdir /".into(), e))?;
    umount2("/old-root", MntFlags::MNT_DETACH).map_err(sys("cannot drop the host's root"))?;
    let _ = std::fs::remove_dir("/old-root");
    sethostname(&config.hostname).map_err(sys("cannot set the jail's hostname"))?;
    limits(&config)?;
    drop_privileges(&config)?;
    // Last, so that nothing opened since can sit on their numbers.
    place_files(files)?;
    // Stage 1 blocked the signals it forwards; the VMM must get them.
    SigSet::empty()
        .thread_set_mask()
        .map_err(sys("cannot unblock signals"))?;
    Ok(())
}

/// Opens each of `config.files` read-only (no symlink), close-on-exec, at a descriptor above
/// the ones it will be placed at.
fn open_files(config: &JailConfig) -> Result<Vec<(std::fs::File, i32)>, JailError> {
    config
        .files
        .iter()
        .map(|f| {
            let what = || format!("cannot open {} for the VMM", f.host.display());
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&f.host)
                .map_err(|e| JailError::Sys(what(), e))?;
            // Above every target, so placing one never closes another.
            let high = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(64))
                .map_err(sys(what()))?;
            // SAFETY: `high` was just returned by fcntl(F_DUPFD_CLOEXEC) and is owned by nobody
            // else.
            let high = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(high) };
            Ok((high, f.fd))
        })
        .collect()
}

/// Puts each opened file at its descriptor, open across the exec.
fn place_files(files: Vec<(std::fs::File, i32)>) -> Result<(), JailError> {
    for (file, fd) in files {
        debug_assert!(crate::jail::JAIL_FDS.contains(&fd));
        // SAFETY: dup2 onto a number in 3..=63 that nothing of this process still uses (it only
        // runs the exec from here) clears close-on-exec on the copy; `file` stays valid.
        if unsafe { libc::dup2(file.as_raw_fd(), fd) } != fd {
            return Err(JailError::Sys(
                format!("cannot pass descriptor {fd} to the VMM"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// `/bin`, `/lib`, `/lib64`, `/sbin` as the host has them: symlinks into `/usr` on a merged-usr
/// system (recreated), otherwise directories (bound read-only).
fn system_links(root: &Path) -> Result<(), JailError> {
    for name in ["bin", "lib", "lib64", "sbin"] {
        let host = Path::new("/").join(name);
        match std::fs::read_link(&host) {
            Ok(target) => std::os::unix::fs::symlink(&target, root.join(name))
                .map_err(|e| JailError::Sys(format!("cannot link /{name} in the jail"), e))?,
            Err(_) if host.is_dir() => bind_into(
                root,
                &Bind {
                    host: host.clone(),
                    jail: host,
                    writable: false,
                },
            )?,
            Err(_) => {}
        }
    }
    Ok(())
}

fn inside(root: &Path, jail_path: &Path) -> PathBuf {
    root.join(jail_path.strip_prefix("/").unwrap_or(jail_path))
}

fn bind_into(root: &Path, bind: &Bind) -> Result<(), JailError> {
    let target = inside(root, &bind.jail);
    let meta = std::fs::metadata(&bind.host)
        .map_err(|e| JailError::Sys(format!("cannot stat {}", bind.host.display()), e))?;
    let made = if meta.is_dir() {
        std::fs::create_dir_all(&target)
    } else {
        target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(&target).map(drop))
    };
    made.map_err(|e| {
        JailError::Sys(
            format!("cannot create {} in the jail", bind.jail.display()),
            e,
        )
    })?;
    let what = format!("cannot bind {} into the jail", bind.host.display());
    mount(
        Some(&bind.host),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(what.clone()))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !bind.writable {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, &target, None::<&str>, flags, None::<&str>).map_err(sys(what))
}

fn make_device(root: &Path, device: &Path, config: &JailConfig) -> Result<(), JailError> {
    let meta = std::fs::metadata(device)
        .map_err(|e| JailError::Sys(format!("cannot stat {}", device.display()), e))?;
    if !meta.file_type().is_char_device() {
        return Err(JailError::Missing(device.to_owned()));
    }
    let rdev = meta.rdev();
    let target = inside(root, device);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| JailError::Sys(format!("cannot create {}", parent.display()), e))?;
    }
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let what = format!("cannot create {} in the jail", device.display());
    mknod(
        &target,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(major, minor),
    )
    .map_err(sys(what.clone()))?;
    chown(
        &target,
        Some(Uid::from_raw(config.uid)),
        Some(Gid::from_raw(config.gid)),
    )
    .map_err(sys(what))
}

/// Creates the tap, persistent and owned by the VMM's uid/gid, in the current network namespace:
/// the unprivileged VMM can attach to a tap it owns but cannot create one. `ip` (iproute2) does
/// the `TUNSETIFF`/`TUNSETPERSIST` ioctls. Stage 1 deletes the tap when the VMM has exited.
fn create_tap(name: &str, config: &JailConfig) -> Result<(), JailError> {
    let (uid, gid) = (config.uid.to_string(), config.gid.to_string());
    let args = [
        "tuntap", "add", "dev", name, "mode", "tap", "user", &uid, "group", &gid,
    ];
    run_ip(&args).map_err(|e| JailError::Sys(format!("cannot create the tap {name}"), e))
}

/// Deletes the tap [`create_tap`] made (nothing if it is gone), over netlink: the PID namespace
/// is gone with the VMM, so nothing can be spawned any more.
fn delete_tap(name: &str) {
    if let Err(e) = crate::network::delete_link_here(name) {
        eprintln!("hull-jailer: cannot delete the tap {name}: {e}");
    }
}

fn run_ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(IP).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

fn limits(config: &JailConfig) -> Result<(), JailError> {
    setrlimit(
        Resource::RLIMIT_NOFILE,
        config.max_open_files,
        config.max_open_files,
    )
    .map_err(sys("cannot limit open files"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(sys("cannot disable core dumps"))?;
    Ok(())
}

fn drop_privileges(config: &JailConfig) -> Result<(), JailError> {
    let (uid, gid) = (Uid::from_raw(config.uid), Gid::from_raw(config.gid));
    setgroups(&[]).map_err(sys("cannot drop supplementary groups"))?;
    setresgid(gid, gid, gid).map_err(sys("cannot set the VMM's gid"))?;
    setresuid(uid, uid, uid).map_err(sys("cannot set the VMM's uid"))?;
    nix::sys::prctl::set_no_new_privs().map_err(sys("cannot set no_new_privs"))?;
    // After the uid change (which clears it) and kept across exec: the VMM dies with its jailer.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(sys("cannot set the parent-death signal"))?;
    Ok(())
}
