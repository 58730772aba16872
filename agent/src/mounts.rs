//! The base filesystems every hull guest needs before anything else runs.

use std::path::Path;

use nix::mount::{mount, MsFlags};

/// A failure to set up one base filesystem.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("cannot create mount point {path}")]
    CreateDir {
        /// The mount point.
        path: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `mount(2)` failed.
    #[error("cannot mount {fstype} on {path}")]
    Mount {
        /// The filesystem type.
        fstype: &'static str,
        /// The mount point.
        path: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
}

/// One entry of the base mount table.
#[derive(Debug, Clone, Copy)]
pub struct BaseMount {
    /// Source (the kernel ignores it for pseudo filesystems, but it shows in /proc/mounts).
    pub source: &'static str,
    /// Mount point.
    pub path: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem-specific options.
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The base mounts, in the order they must be made (`/sys/fs/cgroup` lives inside `/sys`,
/// `/dev/pts` inside `/dev`; `/dev/ptmx` only opens with a devpts at `/dev/pts`).
pub const BASE_MOUNTS: [BaseMount; 5] = [
    BaseMount {
        source: "proc",
        path: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    BaseMount {
        source: "sysfs",
        path: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    BaseMount {
        source: "devtmpfs",
        path: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    BaseMount {
        source: "devpts",
        path: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("ptmxmode=0666,mode=0620"),
    },
    BaseMount {
        source: "cgroup2",
        path: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
];

/// Mounts [`BASE_MOUNTS`]. A mount point that already holds the filesystem (the kernel may have
/// mounted devtmpfs itself) is left as it is.
pub fn mount_base() -> Result<(), MountError> {
    for m in BASE_MOUNTS {
        std::fs::create_dir_all(m.path).map_err(|source| MountError::CreateDir {
            path: m.path,
            source,
        })?;
        if is_mounted(m.path, m.fstype) {
            continue;
        }
        mount(Some(m.source), m.path, Some(m.fstype), m.flags, m.data).map_err(|source| {
            MountError::Mount {
                fstype: m.fstype,
                path: m.path,
                source,
            }
        })?;
    }
    Ok(())
}

/// Whether `/proc/self/mounts` lists `fstype` at `path` (false when /proc is not mounted yet).
fn is_mounted(path: &str, fstype: &str) -> bool {
    std::fs::read_to_string(Path::new("/proc/self/mounts"))
        .map(|table| mount_table_has(&table, path, fstype))
        .unwrap_or(false)
}

fn mount_table_has(table: &str, path: &str, fstype: &str) -> bool {
    table.lines().any(|line| {
        let mut fields = line.split_ascii_whitespace().skip(1);
        fields.next() == Some(path) && fields.next() == Some(fstype)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_is_mounted_after_sys() {
        let order: Vec<_> = BASE_MOUNTS.iter().map(|m| m.path).collect();
        let sys = order.iter().position(|p| *p == "/sys").unwrap();
        let cg = order.iter().position(|p| *p == "/sys/fs/cgroup").unwrap();
        assert!(sys < cg);
        assert_eq!(BASE_MOUNTS[cg].fstype, "cgroup2");
    }

    #[test]
    fn mount_table_lookup_matches_path_and_type() {
        let table = "devtmpfs /dev devtmpfs rw,relatime 0 0\nproc /proc proc rw 0 0\n";
        assert!(mount_table_has(table, "/dev", "devtmpfs"));
        assert!(!mount_table_has(table, "/dev", "tmpfs"));
        assert!(!mount_table_has(table, "/sys", "sysfs"));
    }
}
