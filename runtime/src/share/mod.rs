//! File sharing between host and guest over virtio-fs: one share per pod, the host directory
//! `<run_dir>/shared` served by virtiofsd, mounted by the agent at [`GUEST_SHARE`] (tag [`TAG`]).
//!
//! - [`virtiofsd`]: the per-pod virtiofsd process;
//! - [`mounts`]: mounting containerd's rootfs mounts and the spec's volumes under the share, and
//!   unmounting everything under a directory (also after a crash);
//! - [`beneath`]: reaching those mount targets without following symlinks the guest planted;
//! - [`mountinfo`]: the kernel's mount table, read by both;
//! - [`detached`]: mounts made read-only before they are attached, so that virtiofsd's copy of
//!   a read-only volume or root is read-only too;
//! - [`mountpoints`]: mount points made by the host in a root it makes read-only;
//! - [`spec`]: rewriting an OCI spec's host paths to the guest paths the share gives them;
//! - [`atomic_dir`]: the kubelet's ConfigMap/Secret directories, read to be copied into the
//!   guest rather than shared (`crate::shim::volumes`).
//!
//! Layout of a share: `<shared>/<cid>/rootfs` (the container's root filesystem) and
//! `<shared>/<cid>/mounts/<n>` (the spec's n-th mount when it is a host bind mount).

pub mod atomic_dir;
pub mod beneath;
pub mod detached;
pub mod mountinfo;
pub mod mountpoints;
pub mod mounts;
pub mod spec;
pub mod virtiofsd;

use std::path::{Path, PathBuf};

pub use virtiofsd::{CacheMode, Virtiofsd};

/// The virtio-fs tag of the pod share.
pub const TAG: &str = "hull";
/// Where the agent mounts the share in the guest.
pub const GUEST_SHARE: &str = "/run/hull/shared";
/// The kernel command-line word that tells the agent to mount the share.
pub const SHARE_ARG: &str = "hull.share=hull";

/// A file-sharing failure.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// virtiofsd could not be started.
    #[error("cannot start virtiofsd {0}")]
    Spawn(PathBuf, #[source] std::io::Error),
    /// virtiofsd did not create its socket in time.
    #[error("virtiofsd did not create {0} in time; see {1}")]
    NotReady(PathBuf, PathBuf),
    /// A mount or unmount failed.
    #[error("cannot {op} {path}")]
    Mount {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A directory could not be made or removed.
    #[error("cannot {op} {path}")]
    Dir {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rootfs mount from the engine is not one we can make.
    #[error("unsupported rootfs mount: {0}")]
    Unsupported(String),
    /// A mount target under the share went through a symlink (the guest can plant them there).
    #[error("refusing to follow the symlink {0} under a pod's share")]
    Symlink(PathBuf),
    /// The mount point above a mount target is not the mount the kernel's table has there.
    #[error("{0} is not the mount point it was a moment ago")]
    Moved(PathBuf),
    /// The spec cannot be rewritten.
    #[error("invalid spec: {0}")]
    Spec(String),
}

/// The [`ShareError::Dir`] for a failed `op` on `path`, as a `map_err` argument.
fn dir_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShareError + 'a {
    move |source| ShareError::Dir {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The guest path of container `cid`'s root filesystem.
pub fn guest_rootfs(cid: &str) -> String {
    format!("{GUEST_SHARE}/{cid}/rootfs")
}
