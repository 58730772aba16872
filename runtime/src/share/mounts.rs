//! Host-side mounts under a pod's share: the share itself (a shared mount, so mounts made under it
//! later reach virtiofsd's namespace), container root filesystems from the engine's mount list,
//! bind-mounted volumes, and unmounting everything under a directory, which is also how leftovers
//! of a crashed shim are cleaned.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

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

fn dir_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShareError + 'a {
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

/// Mounts the engine's rootfs mounts at `target` (a directory it creates). One overlay or one
/// bind mount is what containerd's snapshotters give.
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<(), ShareError> {
    std::fs::create_dir_all(target).map_err(dir_err("create", target))?;
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
    let data = data.join(",");
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(mount_err("mount overlay on", target))
}

/// Bind-mounts `source` (file or directory) at `target`, read-only if asked.
pub fn bind(source: &Path, target: &Path, read_only: bool) -> Result<(), ShareError> {
    let meta = std::fs::metadata(source).map_err(dir_err("stat", source))?;
    if meta.is_dir() {
        std::fs::create_dir_all(target).map_err(dir_err("create", target))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(dir_err("create", parent))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map_err(dir_err("create", target))?;
    }
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(mount_err("bind-mount", target))?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(mount_err("make read-only", target))?;
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
fn unescape(field: &str) -> String {
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
            match umount2(&m, MntFlags::MNT_DETACH) {
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
