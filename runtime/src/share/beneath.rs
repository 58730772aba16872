//! Mount targets under a pod's share, reached without following a symlink the guest planted.
//!
//! Everything under the share (`<shared>/…`) is writable by the guest through virtiofsd, and a
//! compromised guest (its kernel, or anything in the agent's namespace, where the whole share is
//! mounted) can swap any directory there for a symlink to a host path. The shim later mounts a
//! new container's root filesystem and volumes under the share, as root, in the host's mount
//! namespace: following such a symlink would mount over a host directory of the guest's choosing
//! (a writable volume over `/etc/cron.d` is root on the host). So a target is reached in two parts:
//!
//! - its **anchor**, the nearest proper ancestor that is a mount point (for hull's layout the
//!   share itself, which [`super::mounts::prepare_share`] makes a mount point): the guest cannot
//!   create host mounts, so this part of the path is the host's. It is opened normally and checked
//!   to be on the mount `/proc/self/mountinfo` names for it;
//! - the rest, one component at a time from the anchor's descriptor (`/proc/self/fd/<n>/<name>`
//!   with `O_NOFOLLOW`): a symlink anywhere there is refused.
//!
//! The caller mounts onto the opened target ([`Beneath::target`] for `move_mount`,
//! [`Beneath::proc_path`], its magic link, for `mount`), so a swap after the walk cannot redirect
//! the mount either.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::{dir_err, mountinfo, ShareError};

/// What the target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (made, with its missing parents, when absent).
    Dir,
    /// A regular file (made empty when absent; its missing parents are made).
    File,
}

/// A mount target opened without following symlinks below its anchor.
#[derive(Debug)]
pub struct Beneath {
    target: File,
    path: PathBuf,
}

impl Beneath {
    /// The magic link of the opened target: mount onto this.
    pub fn proc_path(&self) -> PathBuf {
        fd_path(&self.target)
    }

    /// The opened target (an `O_PATH` handle): attach mounts onto this.
    pub fn target(&self) -> &File {
        &self.target
    }

    /// The target as named by the caller (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Opens `name` in directory `dir` as an `O_PATH` handle without following it if it is a symlink
/// (which is then refused). `path` names it in errors.
fn open_nofollow(dir: &File, name: &std::ffi::OsStr, path: &Path) -> Result<File, ShareError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(fd_path(dir).join(name))
        .map_err(dir_err("open", path))?;
    let meta = file.metadata().map_err(dir_err("stat", path))?;
    if meta.file_type().is_symlink() {
        return Err(ShareError::Symlink(path.to_owned()));
    }
    Ok(file)
}

/// The mount ID of an open file (`mnt_id` in `/proc/self/fdinfo`).
fn mount_id(file: &File) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The nearest proper ancestor of `target` that is a mount point in `mountinfo` (compared as
/// written, not resolved), with the IDs of the mounts there.
fn anchor(mountinfo: &str, target: &Path) -> Option<(PathBuf, Vec<u64>)> {
    let mut dir = target.parent();
    while let Some(d) = dir {
        let ids = mountinfo::ids_at(mountinfo, d);
        if !ids.is_empty() {
            return Some((d.to_owned(), ids));
        }
        dir = d.parent();
    }
    None
}

/// Opens `target` (absolute, without `.` or `..`) as `kind`, making what is missing, without
/// following a symlink below its anchor (see the module documentation).
pub fn open(target: &Path, kind: Kind) -> Result<Beneath, ShareError> {
    let normal = target.is_absolute()
        && target
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !normal {
        return Err(ShareError::Unsupported(format!(
            "mount target {} is not an absolute path without . or ..",
            target.display()
        )));
    }
    let table = mountinfo::read(target)?;
    let (anchor, ids) = anchor(&table, target).ok_or_else(|| {
        ShareError::Unsupported(format!("no mount point above {}", target.display()))
    })?;
    let mut dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&anchor)
        .map_err(dir_err("open", &anchor))?;
    if !mount_id(&dir).is_some_and(|id| ids.contains(&id)) {
        return Err(ShareError::Moved(anchor));
    }
    let rest: Vec<&std::ffi::OsStr> = target
        .strip_prefix(&anchor)
        .map_err(|_| ShareError::Unsupported(format!("{} is odd", target.display())))?
        .iter()
        .collect();
    let Some((name, parents)) = rest.split_last() else {
        return Err(ShareError::Unsupported(format!(
            "{} is a mount point already",
            target.display()
        )));
    };
    let mut path = anchor.clone();
    for component in parents {
        path.push(component);
        dir = child(&dir, component, &path, Kind::Dir)?;
    }
    path.push(name);
    let target_file = child(&dir, name, &path, kind)?;
    Ok(Beneath {
        target: target_file,
        path,
    })
}

/// Makes (when absent) and opens `name` in `dir` as `kind`, refusing symlinks and other types.
fn child(dir: &File, name: &std::ffi::OsStr, path: &Path, kind: Kind) -> Result<File, ShareError> {
    let at = fd_path(dir).join(name);
    let made = match kind {
        Kind::Dir => std::fs::create_dir(&at),
        // O_EXCL: never opens (let alone truncates or blocks on) what is already there.
        Kind::File => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&at)
            .map(drop),
    };
    match made {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(dir_err("create", path)(e)),
    }
    let file = open_nofollow(dir, name, path)?;
    let meta = file.metadata().map_err(dir_err("stat", path))?;
    let fits = match kind {
        Kind::Dir => meta.is_dir(),
        Kind::File => meta.is_file(),
    };
    if !fits {
        return Err(ShareError::Unsupported(format!(
            "{} is not a {}",
            path.display(),
            if kind == Kind::Dir {
                "directory"
            } else {
                "regular file"
            }
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anchor_is_the_nearest_mount_point_above_the_target() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:40 / /run/hull/p1/shared rw shared:5 - tmpfs tmpfs rw
31 30 0:41 / /run/hull/p1/shared/c1/rootfs rw shared:6 - overlay overlay rw
";
        let (a, ids) = anchor(info, Path::new("/run/hull/p1/shared/c2/mounts/0")).unwrap();
        assert_eq!(
            (a.as_path(), ids),
            (Path::new("/run/hull/p1/shared"), vec![30])
        );
        // The target itself does not count: its parent's mount does.
        let (a, _) = anchor(info, Path::new("/run/hull/p1/shared/c1/rootfs")).unwrap();
        assert_eq!(a, Path::new("/run/hull/p1/shared"));
        let (a, ids) = anchor(info, Path::new("/run/hull/p1/shared/c1/rootfs/x")).unwrap();
        assert_eq!(
            (a.as_path(), ids),
            (Path::new("/run/hull/p1/shared/c1/rootfs"), vec![31])
        );
        let (a, _) = anchor(info, Path::new("/srv/x")).unwrap();
        assert_eq!(a, Path::new("/"));
    }

    #[test]
    fn relative_and_dotted_targets_are_refused() {
        for t in ["relative/x", "/run/hull/../etc", "/run/hull/shared/.."] {
            assert!(
                matches!(
                    open(Path::new(t), Kind::Dir),
                    Err(ShareError::Unsupported(_))
                ),
                "{t}"
            );
        }
    }
}
