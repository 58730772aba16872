//! The host's cgroup hierarchies: which are mounted where (from `/proc/self/mountinfo`), and which
//! cgroup of each a process is in (from `/proc/<pid>/cgroup`). Handles cgroup v1, v2 and the hybrid
//! layout (v1 controllers plus v2 at `/sys/fs/cgroup/unified`).

use std::path::{Path, PathBuf};

use crate::share::mountinfo::unescape;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The cgroup of the mount's root, as `/proc/self/cgroup` names cgroups (usually `/`).
    pub root: PathBuf,
    /// What it is.
    pub kind: Kind,
}

/// A hierarchy's version and, for v1, what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// cgroup v1 with these controllers (or `name=…` for a named hierarchy such as systemd's).
    V1(Vec<String>),
    /// The cgroup v2 hierarchy.
    V2,
}

impl Hierarchy {
    /// Whether this is the v1 hierarchy holding `controller`.
    pub fn has_v1(&self, controller: &str) -> bool {
        matches!(&self.kind, Kind::V1(c) if c.iter().any(|c| c == controller))
    }

    /// The directory of cgroup `path` (as `/proc/<pid>/cgroup` writes it) in this hierarchy, when
    /// it is under the mount's root.
    pub fn dir_of(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.root).ok()?;
        Some(self.mount.join(rel))
    }
}

/// The v1 controller words of a cgroup mount's super options (`rw,cpu,cpuacct` → cpu, cpuacct).
fn v1_controllers(super_options: &str) -> Vec<String> {
    super_options
        .split(',')
        .filter(|o| !matches!(*o, "rw" | "ro" | "clone_children" | "noprefix" | "xattr"))
        .filter(|o| !o.starts_with("release_agent="))
        .map(str::to_owned)
        .collect()
}

/// The cgroup hierarchies in `mountinfo` text, one per hierarchy (a hierarchy mounted twice is
/// listed once, at its first mount).
pub fn parse_mountinfo(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let theirs: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype)) =
            (fields.get(3), fields.get(4), theirs.first())
        else {
            continue;
        };
        let kind = match *fstype {
            "cgroup2" => Kind::V2,
            "cgroup" => Kind::V1(v1_controllers(theirs.get(2).copied().unwrap_or(""))),
            _ => continue,
        };
        if found.iter().any(|h| h.kind == kind) {
            continue;
        }
        found.push(Hierarchy {
            mount: PathBuf::from(unescape(mount)),
            root: PathBuf::from(unescape(root)),
            kind,
        });
    }
    found
}

/// The cgroup of each hierarchy that `/proc/<pid>/cgroup` text lists: (hierarchy, cgroup path).
pub fn parse_proc_cgroup<'h>(
    text: &str,
    hierarchies: &'h [Hierarchy],
) -> Vec<(&'h Hierarchy, PathBuf)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        let hierarchy = hierarchies.iter().find(|h| match &h.kind {
            Kind::V2 => wanted.is_empty(),
            Kind::V1(have) => {
                !wanted.is_empty()
                    && wanted.len() == have.len()
                    && wanted.iter().all(|w| have.iter().any(|h| h == w))
            }
        });
        if let Some(h) = hierarchy {
            found.push((h, PathBuf::from(path)));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/cpu\\040set rw,relatime - cgroup cgroup rw,cpuset,clone_children
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 41 0:38 / /mnt/again rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_mounts_give_each_hierarchy_once() {
        let h = parse_mountinfo(HYBRID);
        assert_eq!(h.len(), 5);
        assert_eq!(h[0].kind, Kind::V1(vec!["cpu".into()]));
        assert!(h[1].has_v1("memory"));
        assert_eq!(h[2].mount, Path::new("/sys/fs/cgroup/cpu set"));
        assert_eq!(h[2].kind, Kind::V1(vec!["cpuset".into()]));
        assert_eq!(h[3].kind, Kind::V1(vec!["name=systemd".into()]));
        assert_eq!(h[4].kind, Kind::V2);
        assert_eq!(h[4].mount, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn proc_cgroup_lines_map_to_their_hierarchies() {
        let h = parse_mountinfo(HYBRID);
        let text =
            "9:name=systemd:/\n4:memory:/process_api/a3\n1:cpu:/\n0::/user.slice\n7:blkio:/\n";
        let mine = parse_proc_cgroup(text, &h);
        let dirs: Vec<PathBuf> = mine.iter().filter_map(|(h, p)| h.dir_of(p)).collect();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd/"),
                PathBuf::from("/sys/fs/cgroup/memory/process_api/a3"),
                PathBuf::from("/sys/fs/cgroup/cpu/"),
                PathBuf::from("/sys/fs/cgroup/unified/user.slice"),
            ]
        );
    }

    #[test]
    fn a_mount_of_a_sub_cgroup_resolves_paths_under_it_only() {
        let h = Hierarchy {
            mount: "/sys/fs/cgroup".into(),
            root: "/ns".into(),
            kind: Kind::V2,
        };
        assert_eq!(
            h.dir_of(Path::new("/ns/a")),
            Some(PathBuf::from("/sys/fs/cgroup/a"))
        );
        assert_eq!(h.dir_of(Path::new("/other")), None);
    }

    #[test]
    fn garbage_is_ignored() {
        assert!(parse_mountinfo("x\n - cgroup\n1 2 3\n").is_empty());
        let h = parse_mountinfo(HYBRID);
        assert!(parse_proc_cgroup("nonsense\n::\n5:nope:/x\n", &h)
            .iter()
            .all(|(h, _)| h.kind == Kind::V2));
    }
}
