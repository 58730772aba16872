//! Host-side mounts under a pod's share: the share itself (a shared mount, so mounts made under it
//! later reach virtiofsd's namespace), container root filesystems from the engine's mount list,
//! bind-mounted volumes, and unmounting everything under a directory, which is also how leftovers
//! of a crashed shim are cleaned.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::beneath::{self, Kind};
use super::ShareError;

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

fn mount_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> ShareError + 'a {
    move |source| ShareError::Mount {
        op,
        path: path.to_owned(),
        source,
    }
}

pub(super) fn dir_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ShareError + 'a {
    move |source| ShareError::Dir {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates the share directory and makes it a shared mount of its own.
pub fn prepare_share(shared: &Path) -> Result<(), ShareError> {
    std::fs::create_dir_all(shared).map_err(dir_err("create", shared))?;
    if !is_mount_point(shared) {
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

/// Mounts the engine's rootfs mounts at `target` (a directory it creates, reached without
/// following symlinks under the share, see [`beneath`]). One overlay or one bind mount is what
/// containerd's snapshotters give.
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<(), ShareError> {
    let [m] = mounts else {
        return Err(ShareError::Unsupported(format!(
            "{} rootfs mounts (exactly one is supported)",
            mounts.len()
        )));
    };
    let (flags, data) = parse_options(&m.options);
    if m.kind == "bind" || flags.contains(MsFlags::MS_BIND) {
        return bind(
            Path::new(&m.source),
            target,
            flags.contains(MsFlags::MS_RDONLY),
        );
    }
    if m.kind != "overlay" {
        return Err(ShareError::Unsupported(format!(
            "rootfs mount type {:?}",
            m.kind
        )));
    }
    let at = beneath::open(target, Kind::Dir)?;
    let data = data.join(",");
    mount(
        Some("overlay"),
        &at.proc_path(),
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(mount_err("mount overlay on", target))
}

/// Bind-mounts `source` (file or directory, a host path) at `target`, read-only if asked;
/// `target` is made to match and reached without following symlinks under the share (see
/// [`beneath`]).
pub fn bind(source: &Path, target: &Path, read_only: bool) -> Result<(), ShareError> {
    let meta = std::fs::metadata(source).map_err(dir_err("stat", source))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let at = beneath::open(target, kind)?;
    mount(
        Some(source),
        &at.proc_path(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(mount_err("bind-mount", at.path()))?;
    if read_only {
        // The new mount's root, as the name now resolves (the handle above is the mount point).
        let root = at.reopen()?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(
            None::<&str>,
            &PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd())),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(mount_err("make read-only", at.path()))?;
    }
    Ok(())
}

/// Mount points at or under `dir`, from `/proc/self/mountinfo` text, deepest first.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|info| mounts_under(&info, path).iter().any(|p| p == path))
}

/// Unmounts everything at or under `dir` (lazily, deepest first) and removes `dir`. Safe to call
/// again, and after a crash: it finds the mounts from the kernel's table, not from memory.
pub fn unmount_all_under(dir: &Path) -> Result<(), ShareError> {
    for _ in 0..8 {
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(dir_err("read mountinfo for", dir))?;
        let found = mounts_under(&info, dir);
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

    #[test]
    fn mounts_under_a_dir_come_deepest_first_with_escapes_decoded() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:40 / /run/hull/p1/shared rw shared:5 - tmpfs tmpfs rw
31 30 0:41 / /run/hull/p1/shared/c1/rootfs rw shared:6 - overlay overlay rw
32 30 0:42 / /run/hull/p1/shared/c1/mounts/0 rw - ext4 /dev/vda rw
33 22 0:43 / /run/hull/p10/shared rw - tmpfs tmpfs rw
34 30 0:44 / /run/hull/p1/shared/a\\040b rw - tmpfs tmpfs rw
";
        let found = mounts_under(info, Path::new("/run/hull/p1"));
        assert_eq!(
            found[2..].to_vec(),
            [
                PathBuf::from("/run/hull/p1/shared/a b"),
                PathBuf::from("/run/hull/p1/shared")
            ]
        );
        assert_eq!(found.len(), 4);
        assert!(found[..2].contains(&PathBuf::from("/run/hull/p1/shared/c1/rootfs")));
        assert!(!found.iter().any(|p| p.starts_with("/run/hull/p10")));
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
                let e = bind(source, &target, false).unwrap_err();
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
                    mount_rootfs(std::slice::from_ref(&overlay), &target),
                    Err(ShareError::Symlink(_))
                ));
            }
        }
        let leaked: Vec<_> = std::fs::read_dir(&host).unwrap().flatten().collect();
        let mounted = mounts_under(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
            dir,
        );
        // Positive control: the same calls on clean paths do mount (read-only asked and given).
        bind(&volume, &shared.join("c4/mounts/0"), true).unwrap();
        bind(&file_volume, &shared.join("c4/mounts/1"), false).unwrap();
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
            mount_rootfs(&[m("overlay"), m("overlay")], dir.path()),
            Err(ShareError::Unsupported(_))
        ));
        assert!(matches!(
            mount_rootfs(&[m("zfs")], dir.path()),
            Err(ShareError::Unsupported(_))
        ));
        assert!(matches!(
            mount_rootfs(&[], dir.path()),
            Err(ShareError::Unsupported(_))
        ));
    }
}
