//! The pod's cgroup on the host. Everything a pod costs the host runs inside the cgroup its OCI
//! spec names (`linux.cgroupsPath`, under the kubelet's pod cgroup for CRI pods), so the host's
//! accounting and limits see the pod — and containerd's `PodSandboxStats`, which reads the pod's
//! cgroup parent, finds it:
//!
//! ```text
//! <cgroupsPath>/          the pod (created by hull in every hierarchy, removed with the pod)
//! ├── shim/               the shim, virtiofsd, the vsock backend
//! └── vmm/                the jailer and the VMM: the guest's RAM is charged here
//! ```
//!
//! The shim moves itself into `shim/` before it starts anything, so its helpers are born there; the
//! jailer joins `vmm/` before it starts the VMM. The layout keeps processes in leaves only, as
//! cgroup v2 asks when controllers are enabled below the pod (hull enables the ones the pod's
//! cgroup offers). Works on cgroup v1, v2 and hybrid hosts: the same path is created in every
//! mounted hierarchy. systemd-style paths (`slice:prefix:name`) are refused with a clear error.

pub mod hierarchy;

use std::path::{Component, Path, PathBuf};

use hierarchy::{Hierarchy, Kind};

/// The shim's cgroup, under the pod's.
pub const SHIM: &str = "shim";
/// The VMM's cgroup, under the pod's.
pub const VMM: &str = "vmm";

/// Where a cgroup's member processes are listed (and moved to).
const PROCS: &str = "cgroup.procs";

/// Controllers enabled below the pod on cgroup v2, when the pod's cgroup has them.
const V2_CONTROLLERS: &[&str] = &["cpu", "io", "memory", "pids"];

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The path is not a cgroupfs path hull can place a pod at.
    #[error("unsupported cgroups path {0:?}: hull needs a cgroupfs path such as /kubepods/pod1/id (systemd-style slice:prefix:name paths are not supported)")]
    BadPath(String),
    /// No cgroup hierarchy is mounted.
    #[error("no cgroup hierarchy is mounted on this host")]
    NoHierarchy,
    /// Reading the host's mount or cgroup tables failed.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// Creating a cgroup failed.
    #[error("cannot create cgroup {0}")]
    Create(PathBuf, #[source] std::io::Error),
    /// Moving a process failed.
    #[error("cannot move process {pid} into cgroup {dir}")]
    Join {
        /// The process.
        pid: u32,
        /// The cgroup directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The relative path of OCI `cgroups_path` (`/a/b` or `a/b`), refusing what could climb out of a
/// hierarchy or is not a cgroupfs path.
pub fn relative_path(cgroups_path: &str) -> Result<PathBuf, CgroupError> {
    let bad = || CgroupError::BadPath(cgroups_path.to_owned());
    if cgroups_path.contains(':') || cgroups_path.len() > 4096 {
        return Err(bad());
    }
    let mut rel = PathBuf::new();
    for c in Path::new(cgroups_path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(part) => rel.push(part),
            _ => return Err(bad()),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(rel)
}

/// The host's mounted cgroup hierarchies.
pub fn hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| CgroupError::Read(path.into(), e))?;
    let found = hierarchy::parse_mountinfo(&text);
    if found.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(found)
}

/// Moves process `pid` into each cgroup directory of `dirs`.
pub fn join(dirs: &[PathBuf], pid: u32) -> Result<(), CgroupError> {
    for dir in dirs {
        std::fs::write(dir.join(PROCS), pid.to_string()).map_err(|source| CgroupError::Join {
            pid,
            dir: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The processes in cgroup directory `dir` and below.
fn members(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join(PROCS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(members(&entry.path()));
        }
    }
    pids
}

/// A pod's cgroup, created in every hierarchy of the host.
#[derive(Debug)]
pub struct PodCgroup {
    /// The pod's directory in each hierarchy.
    pods: Vec<PathBuf>,
    /// Directories this pod created, outermost first (removed innermost first).
    created: Vec<PathBuf>,
    /// The cgroups the shim was in before it joined the pod's, to go back before removing it.
    origin: Vec<PathBuf>,
}

impl PodCgroup {
    /// Creates the pod's cgroup at OCI `cgroups_path` with its `shim` and `vmm` leaves in every
    /// hierarchy. On error, whatever was created is removed again.
    pub fn create(cgroups_path: &str) -> Result<Self, CgroupError> {
        let rel = relative_path(cgroups_path)?;
        let mut pod = Self {
            pods: Vec::new(),
            created: Vec::new(),
            origin: Vec::new(),
        };
        for h in hierarchies()? {
            let dir = h.mount.join(&rel);
            // Another pod removing an ancestor it created can race with us: try again.
            let mut attempt = 0;
            while let Err(e) = pod.create_in(&h, &dir) {
                attempt += 1;
                let raced = matches!(&e, CgroupError::Create(_, io) if io.kind() == std::io::ErrorKind::NotFound);
                if !raced || attempt == 3 {
                    pod.remove_dirs();
                    return Err(e);
                }
            }
            pod.pods.push(dir);
        }
        Ok(pod)
    }

    fn create_in(&mut self, h: &Hierarchy, pod: &Path) -> Result<(), CgroupError> {
        // Each missing level, outermost first, so each can be prepared before the next.
        let mut missing: Vec<PathBuf> = pod
            .ancestors()
            .take_while(|d| *d != h.mount && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        missing.push(pod.join(SHIM));
        missing.push(pod.join(VMM));
        for dir in missing {
            if dir.exists() {
                continue;
            }
            std::fs::create_dir(&dir).map_err(|e| CgroupError::Create(dir.clone(), e))?;
            self.created.push(dir.clone());
            if h.has_v1("cpuset") {
                inherit_cpuset(&dir)?;
            }
        }
        if h.kind == Kind::V2 {
            enable_v2_controllers(pod);
        }
        Ok(())
    }

    /// The `shim` leaf in every hierarchy.
    pub fn shim_dirs(&self) -> Vec<PathBuf> {
        self.pods.iter().map(|p| p.join(SHIM)).collect()
    }

    /// The `vmm` leaf in every hierarchy: where the VMM (its jailer) must go.
    pub fn vmm_dirs(&self) -> Vec<PathBuf> {
        self.pods.iter().map(|p| p.join(VMM)).collect()
    }

    /// Moves the calling process (the shim) into the `shim` leaf, remembering where it was.
    pub fn join_shim(&mut self) -> Result<(), CgroupError> {
        let path = Path::new("/proc/self/cgroup");
        let text = std::fs::read_to_string(path).map_err(|e| CgroupError::Read(path.into(), e))?;
        let hierarchies = hierarchies()?;
        self.origin = hierarchy::parse_proc_cgroup(&text, &hierarchies)
            .into_iter()
            .filter_map(|(h, p)| h.dir_of(&p))
            .collect();
        join(&self.shim_dirs(), std::process::id())
    }

    /// Processes still in the pod's cgroup (the shim itself included while it is there).
    pub fn members(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.pods.iter().flat_map(|p| members(p)).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Moves the shim back where it came from and removes what [`PodCgroup::create`] created.
    /// Called once the VM and its helpers are gone; a cgroup that still holds a process stays
    /// (and is logged).
    pub fn remove(mut self) {
        let me = std::process::id();
        for dir in &self.origin {
            if let Err(e) = join(std::slice::from_ref(dir), me) {
                tracing::warn!("cannot move the shim back out of the pod's cgroup: {e}");
            }
        }
        self.remove_dirs();
    }

    fn remove_dirs(&mut self) {
        for dir in self.created.drain(..).rev() {
            if let Err(e) = remove_cgroup(&dir) {
                // An ancestor another pod still uses is not ours to remove.
                if e.raw_os_error() != Some(nix::libc::EBUSY)
                    && e.raw_os_error() != Some(nix::libc::ENOTEMPTY)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
                }
            }
        }
    }
}

/// Removes cgroup directory `dir`, waiting up to 2 s for processes that are exiting to leave it.
/// EBUSY is retried even when `cgroup.procs` already reads empty (a process that has left the
/// list may still be tearing down: seen on a loaded host, where the pod's cgroup was left
/// behind), but not when a child cgroup keeps it busy (an ancestor another pod still uses).
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..80 {
        last = std::fs::remove_dir(dir);
        match &last {
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && !has_child_cgroup(dir) => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            _ => return last,
        }
    }
    last
}

/// Whether cgroup directory `dir` has a child cgroup (a subdirectory).
fn has_child_cgroup(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(false)
}

/// Kills every process left in the pod cgroup at OCI `cgroups_path` and removes its `shim` and
/// `vmm` leaves and the pod's directory: the clean-up after a dead shim. Ancestors stay (they may
/// be shared). Missing cgroups are fine.
pub fn cleanup(cgroups_path: &str) {
    let (Ok(rel), Ok(hierarchies)) = (relative_path(cgroups_path), hierarchies()) else {
        return;
    };
    let pods: Vec<PathBuf> = hierarchies
        .iter()
        .map(|h| h.mount.join(&rel))
        .filter(|p| p.join(SHIM).is_dir() || p.join(VMM).is_dir())
        .collect();
    if pods.is_empty() {
        return;
    }
    let me = std::process::id();
    for pid in pods.iter().flat_map(|p| members(p)) {
        if pid != me {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for pod in &pods {
        for dir in [pod.join(VMM), pod.join(SHIM), pod.clone()] {
            if let Err(e) = remove_cgroup(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
                }
            }
        }
    }
}

/// cgroup v1's cpuset starts a new cgroup with no CPUs and no memory nodes, and refuses processes
/// until they are set: copy the parent's.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let theirs = std::fs::read_to_string(parent.join(file))
            .map_err(|e| CgroupError::Read(parent.join(file), e))?;
        std::fs::write(dir.join(file), theirs.trim())
            .map_err(|e| CgroupError::Create(dir.join(file), e))?;
    }
    Ok(())
}

/// Enables, below the pod's v2 cgroup, the controllers of [`V2_CONTROLLERS`] that it has (best
/// effort: a host that delegates fewer still runs the pod, with less accounting).
fn enable_v2_controllers(pod: &Path) {
    let available = std::fs::read_to_string(pod.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = available
        .split_whitespace()
        .filter(|c| V2_CONTROLLERS.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return;
    }
    if let Err(e) = std::fs::write(pod.join("cgroup.subtree_control"), wanted.join(" ")) {
        tracing::debug!(
            "cannot enable {} below {}: {e}",
            wanted.join(" "),
            pod.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_paths_are_taken_relative_and_escapes_refused() {
        assert_eq!(
            relative_path("/kubepods/pod1/abc").unwrap(),
            Path::new("kubepods/pod1/abc")
        );
        assert_eq!(
            relative_path("default/abc").unwrap(),
            Path::new("default/abc")
        );
        for bad in ["", "/", "/a/../../etc", "./a", "system.slice:cri:abc"] {
            assert!(relative_path(bad).is_err(), "{bad:?}");
        }
    }
}
