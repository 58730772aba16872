//! The kernel's mount table as `/proc/self/mountinfo` writes it: which mount points lie under a
//! directory (to unmount them, also after a crash), which mounts sit at a path (to check an
//! anchor, see [`super::beneath`]), with the table's octal escapes decoded. Read by the share's
//! modules and by [`crate::host_cgroup`]; it depends on none of them.

use std::path::{Path, PathBuf};

use super::{dir_err, ShareError};

/// The table now; `path` names what it was read for in the error.
pub fn read(path: &Path) -> Result<String, ShareError> {
    std::fs::read_to_string("/proc/self/mountinfo").map_err(dir_err("read mountinfo for", path))
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
pub fn unescape(field: &str) -> String {
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

/// The IDs of the mounts whose mount point is `dir` (compared as written, not resolved).
pub fn ids_at(mountinfo: &str, dir: &Path) -> Vec<u64> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut cols = l.split(' ');
            let id = cols.next()?.parse().ok()?;
            let point = cols.nth(3)?;
            (Path::new(&unescape(point)) == dir).then_some(id)
        })
        .collect()
}

/// Whether `path` is a mount point now.
pub fn is_mount_point(path: &Path) -> bool {
    read(path).is_ok_and(|info| mounts_under(&info, path).iter().any(|p| p == path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
