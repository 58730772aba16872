//! Host-side mounts under a pod's share: the share itself (a shared mount, so mounts made under it
//! later reach virtiofsd's namespace), container root filesystems from the engine's mount list,
//! bind-mounted volumes, and unmounting everything under a directory, which is also how leftovers
//! of a crashed shim are cleaned.

use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::beneath::{self, Beneath, Kind};
use super::detached::Detached;
use super::mountpoints::{self, MountPoint};
use super::{dir_err, mountinfo, ShareError};

/// One mount as containerd passes it (`type`, `source`, `options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// Filesystem type (`overlay`, `bind`, …).
    pub kind: String,
    /// Source.
    pub source: String,
    /// Options (`ro`, `lowerdir=…`, …).
    pub options: Vec<String>,
}

fn io_mount_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ShareError + 'a {
    move |e| ShareError::Mount {
        op,
        path: path.to_owned(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

fn mount_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> ShareError + 'a {
    move |source| ShareError::Mount {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates the share directory and makes it a shared mount of its own.
pub fn prepare_share(shared: &Path) -> Result<(), ShareError> {
    std::fs::create_dir_all(shared).map_err(dir_err("create", shared))?;
    if !mountinfo::is_mount_point(shared) {
        mount(
            Some(shared),
            shared,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(mount_err("bind-mount", shared))?;
    }
    mount(
        None::<&str>,
        shared,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(mount_err("make shared", shared))
}

/// Splits mount options into flags and filesystem data.
pub fn parse_options(options: &[String]) -> (MsFlags, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "suid" | "dev" | "exec" | "defaults" => (MsFlags::empty(), MsFlags::empty()),
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data)
}

/// How writable the host makes a mount under the share (the guest gets no more than this,
/// whatever it mounts itself: see [`super::detached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// As writable as its source.
    #[default]
    ReadWrite,
    /// Its top mount read-only (OCI `ro`: mounts below a bound tree keep theirs, as with runc).
    ReadOnly,
    /// Every mount of the tree read-only (OCI `rro`).
    ReadOnlyRecursive,
}

impl Access {
    /// The access an OCI mount's options ask for, read as the agent does: the last of `ro` and
    /// `rw` for the top mount, and the recursive `rro` / `rrw` over it.
    pub fn from_options(options: &[String]) -> Self {
        let (flags, _) = parse_options(options);
        let recursive = options
            .iter()
            .rev()
            .find(|o| *o == "rro" || *o == "rrw")
            .map(String::as_str);
        match recursive {
            Some("rro") => Access::ReadOnlyRecursive,
            Some(_) => Access::ReadWrite,
            None if flags.contains(MsFlags::MS_RDONLY) => Access::ReadOnly,
            None => Access::ReadWrite,
        }
    }
}

/// A root filesystem the spec wants read-only (`root.readonly`).
#[derive(Debug, Clone, Copy)]
pub struct ReadOnlyRoot<'a> {
    /// Mount points to make before it becomes read-only (see [`mountpoints`]).
    pub mount_points: &'a [MountPoint],
    /// A directory outside the share (the pod's run directory) where an overlay can be mounted
    /// for a moment to make them.
    pub stage: &'a Path,
}

/// Mounts the engine's rootfs mounts at `target` (a directory it creates, reached without
/// following symlinks under the share, see [`beneath`]). One overlay or one bind mount is what
/// containerd's snapshotters give. With `read_only` the guest gets it read-only whatever it
/// does; mount points are made first where the engine lent it writable.
pub fn mount_rootfs(
    mounts: &[RootfsMount],
    target: &Path,
    read_only: Option<ReadOnlyRoot<'_>>,
) -> Result<(), ShareError> {
    let [m] = mounts else {
        return Err(ShareError::Unsupported(format!(
            "{} rootfs mounts (exactly one is supported)",
            mounts.len()
        )));
    };
    let (mut flags, data) = parse_options(&m.options);
    // Lent read-only (a snapshot view: an image layer other containers share): kept so, and
    // nothing is made in it.
    let lent_read_only = flags.contains(MsFlags::MS_RDONLY);
    if m.kind == "bind" || flags.contains(MsFlags::MS_BIND) {
        let (access, points) = match read_only {
            _ if lent_read_only => (Access::ReadOnly, &[][..]),
            Some(root) => (Access::ReadOnly, root.mount_points),
            None => (Access::ReadWrite, &[][..]),
        };
        return bind_with_mount_points(Path::new(&m.source), target, access, points);
    }
    if m.kind != "overlay" {
        return Err(ShareError::Unsupported(format!(
            "rootfs mount type {:?}",
            m.kind
        )));
    }
    let data = data.join(",");
    let at = beneath::open(target, Kind::Dir)?;
    match read_only {
        Some(root) if !lent_read_only => staged_overlay(flags, &data, &at, root),
        _ => {
            // A new mount read-only from the start propagates as read-only copies.
            if read_only.is_some() {
                flags.insert(MsFlags::MS_RDONLY);
            }
            mount(
                Some("overlay"),
                &at.proc_path(),
                Some("overlay"),
                flags,
                Some(data.as_str()),
            )
            .map_err(mount_err("mount overlay on", target))
        }
    }
}

/// A writable overlay that must reach the guest read-only, with its mount points made first:
/// mounted for a moment at the stage (outside the share: virtiofsd's namespace never sees it),
/// the points made in it, cloned detached, made read-only, unmounted from the stage, and the
/// read-only clone attached at `at`.
fn staged_overlay(
    flags: MsFlags,
    data: &str,
    at: &Beneath,
    root: ReadOnlyRoot<'_>,
) -> Result<(), ShareError> {
    let stage = root.stage;
    std::fs::create_dir_all(stage).map_err(dir_err("create", stage))?;
    if let Err(e) = mount(Some("overlay"), stage, Some("overlay"), flags, Some(data)) {
        let _ = std::fs::remove_dir(stage);
        return Err(mount_err("mount overlay on", stage)(e));
    }
    let tree = Detached::clone_tree(stage).map_err(io_mount_err("clone the mount at", stage));
    let unmounted = umount2(stage, MntFlags::MNT_DETACH).map_err(mount_err("unmount", stage));
    let _ = std::fs::remove_dir(stage);
    let tree = tree?;
    unmounted?;
    mountpoints::create_all(tree.root(), root.mount_points);
    tree.set_read_only(false)
        .map_err(io_mount_err("make read-only", at.path()))?;
    tree.attach(at.target().as_fd())
        .map_err(io_mount_err("attach", at.path()))
}

/// Bind-mounts `source` (file or directory, a host path, with the mounts below it) at `target`
/// as writable as `access` says; `target` is made to match and reached without following
/// symlinks under the share (see [`beneath`]).
pub fn bind(source: &Path, target: &Path, access: Access) -> Result<(), ShareError> {
    bind_with_mount_points(source, target, access, &[])
}

/// [`bind`], making `mount_points` in the tree first when it is to be read-only (a root
/// filesystem, see [`mountpoints`]).
pub fn bind_with_mount_points(
    source: &Path,
    target: &Path,
    access: Access,
    mount_points: &[MountPoint],
) -> Result<(), ShareError> {
    let meta = std::fs::metadata(source).map_err(dir_err("stat", source))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let at = beneath::open(target, kind)?;
    // Finished detached, then attached: see `detached` for why a remount after the bind is not
    // enough.
    let tree = Detached::clone_tree(source).map_err(io_mount_err("clone", source))?;
    if access != Access::ReadWrite {
        mountpoints::create_all(tree.root(), mount_points);
        tree.set_read_only(access == Access::ReadOnlyRecursive)
            .map_err(io_mount_err("make read-only", at.path()))?;
    }
    tree.attach(at.target().as_fd())
        .map_err(io_mount_err("bind-mount", at.path()))
}

/// Unmounts everything at or under `dir` (lazily, deepest first) and removes `dir`. Safe to call
/// again, and after a crash: it finds the mounts from the kernel's table, not from memory.
pub fn unmount_all_under(dir: &Path) -> Result<(), ShareError> {
    for _ in 0..8 {
        let found = mountinfo::mounts_under(&mountinfo::read(dir)?, dir);
        if found.is_empty() {
            break;
        }
        for m in found {
            // NOFOLLOW: the last component is the mount point the table named, never a link.
            match umount2(&m, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
                Err(e) => return Err(mount_err("unmount", &m)(e)),
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(dir_err("remove", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse_options(&opts(&[
            "ro",
            "nosuid",
            "index=off",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "workdir=/w",
        ]));
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(
            data,
            ["index=off", "lowerdir=/a:/b", "upperdir=/u", "workdir=/w"]
        );
        let (flags, _) = parse_options(&opts(&["rbind", "ro", "rw"]));
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC);
    }

    /// Root only (mounts); CI runs as root and may not skip.
    fn as_root(test: &str) -> bool {
        hull_test_support::runnable(
            nix::unistd::Uid::effective().is_root(),
            &format!("{test}: mounting needs root"),
        )
    }

    #[test]
    fn symlinks_planted_under_the_share_are_never_followed() {
        if !as_root("symlinks_planted_under_the_share_are_never_followed") {
            return;
        }
        // A share as the sandbox prepares it, a volume, and a host directory the guest aims at;
        // everything mounted under the directory goes with it, even when an assertion fails.
        struct Unmount(tempfile::TempDir);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = unmount_all_under(self.0.path());
            }
        }
        let dir = Unmount(tempfile::tempdir().unwrap());
        let dir = dir.0.path();
        let shared = dir.join("shared");
        let host = dir.join("host-etc");
        let volume = dir.join("volume");
        for d in [&host, &volume] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(volume.join("payload"), "from the pod").unwrap();
        let file_volume = dir.join("hosts");
        std::fs::write(&file_volume, "from the pod").unwrap();
        prepare_share(&shared).unwrap();
        {
            // What the guest planted: a container directory, a `mounts` directory and a final
            // component, each a symlink to the host directory (absolute and relative).
            std::os::unix::fs::symlink(&host, shared.join("c1")).unwrap();
            std::fs::create_dir_all(shared.join("c2")).unwrap();
            std::os::unix::fs::symlink("../../host-etc", shared.join("c2/mounts")).unwrap();
            std::fs::create_dir_all(shared.join("c3/mounts")).unwrap();
            std::os::unix::fs::symlink(&host, shared.join("c3/mounts/0")).unwrap();
            std::os::unix::fs::symlink(host.join("f"), shared.join("c3/mounts/1")).unwrap();
            std::os::unix::fs::symlink(&host, shared.join("c3/rootfs")).unwrap();
            for (source, target) in [
                (&volume, shared.join("c1/rootfs")),
                (&volume, shared.join("c1/mounts/0")),
                (&volume, shared.join("c2/mounts/0")),
                (&volume, shared.join("c3/mounts/0")),
                (&file_volume, shared.join("c3/mounts/1")),
                (&volume, shared.join("c3/rootfs")),
            ] {
                let e = bind(source, &target, Access::ReadWrite).unwrap_err();
                assert!(
                    matches!(e, ShareError::Symlink(_)),
                    "{}: {e}",
                    target.display()
                );
            }
            let overlay = RootfsMount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", volume.display())],
            };
            for target in [shared.join("c1/rootfs"), shared.join("c3/rootfs")] {
                assert!(matches!(
                    mount_rootfs(std::slice::from_ref(&overlay), &target, None),
                    Err(ShareError::Symlink(_))
                ));
            }
        }
        let leaked: Vec<_> = std::fs::read_dir(&host).unwrap().flatten().collect();
        let mounted = mountinfo::mounts_under(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
            dir,
        );
        // Positive control: the same calls on clean paths do mount (read-only asked and given).
        bind(&volume, &shared.join("c4/mounts/0"), Access::ReadOnly).unwrap();
        bind(&file_volume, &shared.join("c4/mounts/1"), Access::ReadWrite).unwrap();
        let read = std::fs::read_to_string(shared.join("c4/mounts/0/payload"));
        let ro = std::fs::write(shared.join("c4/mounts/0/x"), "x");
        let file = std::fs::read_to_string(shared.join("c4/mounts/1"));
        assert!(leaked.is_empty(), "made in the host directory: {leaked:?}");
        assert_eq!(
            mounted,
            std::slice::from_ref(&shared),
            "mounted outside the share"
        );
        assert_eq!(read.unwrap(), "from the pod");
        assert_eq!(
            ro.unwrap_err().raw_os_error(),
            Some(libc::EROFS),
            "read-only"
        );
        assert_eq!(file.unwrap(), "from the pod");
    }

    #[test]
    fn more_than_one_rootfs_mount_or_unknown_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = |kind: &str| RootfsMount {
            kind: kind.into(),
            source: "x".into(),
            options: vec![],
        };
        assert!(matches!(
            mount_rootfs(&[m("overlay"), m("overlay")], dir.path(), None),
            Err(ShareError::Unsupported(_))
        ));
        assert!(matches!(
            mount_rootfs(&[m("zfs")], dir.path(), None),
            Err(ShareError::Unsupported(_))
        ));
        assert!(matches!(
            mount_rootfs(&[], dir.path(), None),
            Err(ShareError::Unsupported(_))
        ));
    }
}
