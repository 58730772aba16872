//! Getting the guest ready before anything else runs: leave the initramfs root, mount the base
//! filesystems, and hand the cgroup v2 controllers down to containers.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use nix::mount::{mount, MsFlags};

use crate::mounts::{self, MountError};

/// Preparing the guest failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Re-rooting off the initramfs failed.
    #[error("cannot leave the initramfs root ({step})")]
    Reroot {
        /// The failing step.
        step: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A base mount failed.
    #[error("cannot mount the base filesystems")]
    Mount(#[from] MountError),
    /// The virtio-fs share could not be mounted.
    #[error("cannot mount the virtio-fs share {tag} at /run/hull/shared")]
    Share {
        /// Its tag.
        tag: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The share's root could not be opened to pin it.
    #[error("cannot open the share's root {SHARE_MOUNT} to pin it")]
    PinShare(#[source] std::io::Error),
    /// A directory could not be created.
    #[error("cannot create {0}")]
    CreateDir(&'static str, #[source] std::io::Error),
    /// The pod's shared-memory tmpfs could not be mounted.
    #[error("cannot mount the pod's /dev/shm tmpfs")]
    PodShm {
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// Enabling controllers failed.
    #[error("cannot enable the cgroup controllers")]
    Cgroup(#[source] std::io::Error),
}

/// Where the pod's virtio-fs share is mounted.
pub const SHARE_MOUNT: &str = "/run/hull/shared";

/// An open handle on the share's root, held for the agent's life: it keeps the mount busy, so
/// [`abort_share`]'s forced unmount only aborts the connection. An unmount that went through could
/// drop the superblock's last reference, and virtio-fs's `kill_sb` then waits for the requests
/// still on the virtqueue, which a dead virtiofsd never completes: the caller would hang forever
/// (seen under load, when the container on the share had already exited).
static SHARE_PIN: OnceLock<File> = OnceLock::new();

/// Mounts the virtio-fs share with `tag` at [`SHARE_MOUNT`] and pins it (see [`SHARE_PIN`]).
///
/// Not `nosuid`: containers' root filesystems and volumes are bind mounts of the share, and a
/// bind mount keeps its source's flags, so a `nosuid` share made every setuid binary of every
/// image (`ping`, `sudo`, `su`) run with the caller's uid, unlike runc. The agent never executes
/// anything from the share itself; a container's mounts get `nosuid` where its spec asks for it,
/// and `no_new_privs` still blocks setuid.
pub fn mount_share(tag: &str) -> Result<(), BootError> {
    std::fs::create_dir_all(SHARE_MOUNT).map_err(|e| BootError::CreateDir(SHARE_MOUNT, e))?;
    mount(
        Some(tag),
        SHARE_MOUNT,
        Some("virtiofs"),
        MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|source| BootError::Share {
        tag: tag.to_owned(),
        source,
    })?;
    // O_PATH: a handle on the mount that asks the file server nothing.
    let pin = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(SHARE_MOUNT)
        .map_err(BootError::PinShare)?;
    let _ = SHARE_PIN.set(pin);
    Ok(())
}

/// Whether [`mount_share`] has mounted the share.
pub fn share_mounted() -> bool {
    SHARE_PIN.get().is_some()
}

/// Aborts the share's FUSE connection: a forced unmount (hull's guest kernel lets virtio-fs take
/// one, see guest-kernel/patches) ends every pending request and fails new ones. The mount stays
/// (it is pinned, so the unmount answers EBUSY); only its connection is gone.
pub fn abort_share() -> Result<(), nix::Error> {
    if SHARE_PIN.get().is_none() {
        // Without the pin the unmount could succeed and hang (see SHARE_PIN): refuse instead.
        return Err(nix::Error::ENOENT);
    }
    match nix::mount::umount2(SHARE_MOUNT, nix::mount::MntFlags::MNT_FORCE) {
        Ok(()) | Err(nix::Error::EBUSY) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Mounts the pod's shared-memory tmpfs at [`hull_protocol::GUEST_POD_SHM`] (64 MiB, as CRI
/// sizes a pod's `/dev/shm`): CRI pod containers' `/dev/shm` binds point here, so they share it.
pub fn mount_pod_shm() -> Result<(), BootError> {
    let dir = hull_protocol::GUEST_POD_SHM;
    std::fs::create_dir_all(dir)
        .map_err(|e| BootError::CreateDir(hull_protocol::GUEST_POD_SHM, e))?;
    mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|source| BootError::PodShm { source })
}

/// The controllers containers get.
pub const CONTROLLERS: &str = "+cpuset +cpu +io +memory +pids";

/// Prepares the guest. Must run first, as PID 1.
pub fn prepare() -> Result<(), BootError> {
    if nix::unistd::getpid().as_raw() == 1 {
        leave_initramfs()?;
    }
    mounts::mount_base()?;
    std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", CONTROLLERS)
        .map_err(BootError::Cgroup)?;
    Ok(())
}

/// The initramfs is the kernel's `rootfs` mount, which has no parent, so `pivot_root(2)` cannot
/// leave it and container roots could not be pivoted. Re-root on a bind mount of it instead (what
/// `switch_root` does, without copying anything).
fn leave_initramfs() -> Result<(), BootError> {
    let step = |step| move |source| BootError::Reroot { step, source };
    let _ = std::fs::create_dir("/.root");
    mount(
        Some("/"),
        "/.root",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(step("bind"))?;
    nix::unistd::chdir("/.root").map_err(step("chdir"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(step("move"))?;
    nix::unistd::chroot(".").map_err(step("chroot"))?;
    nix::unistd::chdir("/").map_err(step("chdir /"))?;
    Ok(())
}
