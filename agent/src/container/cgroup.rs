//! The container's cgroup v2 directory: where it is, creating it with the controllers its
//! resources need, writing the resources, freezing, killing and removing it.
//!
//! All of this runs in the agent (the parent). The container's first process joins the cgroup
//! itself, before it creates any namespace, through a `cgroup.procs` descriptor opened here.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::devcgroup::{self, DevCgroupError};
use super::resources::{self, ResourceError};

/// The controllers the agent enables for containers when the parent offers them.
const CONTROLLERS: [&str; 7] = ["cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma"];

/// How long freeze and kill wait for the kernel to finish.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A cgroup failure.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroups path is not usable.
    #[error("invalid cgroupsPath {0:?}")]
    InvalidPath(PathBuf),
    /// The cgroup directory exists already (another container uses it).
    #[error("cgroup {0} exists already")]
    Exists(PathBuf),
    /// A resource setting cannot be honoured.
    #[error("cannot honour linux.resources")]
    Resources(#[from] ResourceError),
    /// Creating, reading or writing a cgroup file failed.
    #[error("cgroup {op} {path} failed")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a resource value failed.
    #[error("cannot write {value:?} to {path}")]
    Write {
        /// The interface file.
        path: PathBuf,
        /// The value.
        value: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The device rules' program.
    #[error("cannot enforce linux.resources.devices")]
    Devices(#[from] DevCgroupError),
    /// The kernel did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The cgroup path relative to the cgroup root: `cgroupsPath` (absolute or relative, no `..`)
/// or `/hull/<id>`. The systemd form `slice:prefix:name` (what containerd sends with
/// `SystemdCgroup = true`) is laid out as systemd would, without systemd: `a-b.slice:p:n` →
/// `a.slice/a-b.slice/p-n.scope`.
pub fn relative_path(cgroups_path: Option<&Path>, id: &str) -> Result<PathBuf, CgroupError> {
    let p = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => return Ok(PathBuf::from("hull").join(id)),
    };
    let text = p.to_string_lossy();
    if text.contains(':') {
        return systemd_path(&text).ok_or(CgroupError::InvalidPath(p));
    }
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            _ => return Err(CgroupError::InvalidPath(p)),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(CgroupError::InvalidPath(p));
    }
    Ok(rel)
}

fn systemd_path(text: &str) -> Option<PathBuf> {
    let mut parts = text.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    let ok = |s: &str| !s.contains(['/', '\0']) && s != "." && s != "..";
    if !ok(slice) || !ok(prefix) || !ok(name) {
        return None;
    }
    let mut out = PathBuf::new();
    if !slice.is_empty() && slice != "-.slice" {
        let stem = slice.strip_suffix(".slice")?;
        if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
            return None;
        }
        let mut acc = String::new();
        for word in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(word);
            out.push(format!("{acc}.slice"));
        }
    }
    out.push(if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    });
    Some(out)
}

/// Writes a value to one cgroup file.
pub fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let res = OpenOptions::new()
        .write(true)
        .truncate(false)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// A container's cgroup directory.
#[derive(Debug)]
pub struct Cgroup {
    root: PathBuf,
    path: PathBuf,
}

impl Cgroup {
    /// Creates the directory (and parents), enabling the available controllers on the way down.
    /// Fails if the leaf exists already.
    pub fn create(root: &Path, rel: &Path) -> Result<Cgroup, CgroupError> {
        let path = root.join(rel);
        if path.exists() {
            return Err(CgroupError::Exists(path));
        }
        let mut dir = root.to_path_buf();
        for c in rel.components() {
            enable_controllers(&dir)?;
            dir.push(c);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir != path => {}
                Err(e) => return Err(io_err("mkdir", &dir)(e)),
            }
        }
        Ok(Cgroup {
            root: root.to_path_buf(),
            path,
        })
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the resources (device rules excepted: see [`Cgroup::apply_devices`]).
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let writes = resources::translate(r, &|f| self.path.join(f).exists())?;
        let hugetlb = self.kernel_has("hugetlb");
        for (file, value) in writes {
            let path = self.path.join(&file);
            // A kernel without hugetlb support hands out no huge pages at all, so any hugetlb
            // limit (kubelet sends one per host page size) already holds.
            if file.starts_with("hugetlb.") && !hugetlb && !path.exists() {
                continue;
            }
            write_file(&path, &value)?;
        }
        Ok(())
    }

    /// Whether the kernel has a cgroup v2 controller (the root lists every controller of the
    /// hierarchy; a fake tree without that file has none).
    fn kernel_has(&self, controller: &str) -> bool {
        fs::read_to_string(self.root.join("cgroup.controllers"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
    }

    /// Attaches the device rules' program, when the resources have rules.
    pub fn apply_devices(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        match r.devices() {
            Some(rules) => Ok(devcgroup::apply(&self.path, rules)?),
            None => Ok(()),
        }
    }

    /// Opens `cgroup.procs` for the child to write itself in.
    pub fn open_procs(&self) -> Result<File, CgroupError> {
        let p = self.path.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io_err("open", &p))
    }

    /// The pids in the cgroup (`cgroup.procs`).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let p = self.path.join("cgroup.procs");
        let text = fs::read_to_string(&p).map_err(io_err("read", &p))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Reads one file of the cgroup.
    pub fn read(&self, file: &str) -> Result<String, CgroupError> {
        let p = self.path.join(file);
        fs::read_to_string(&p).map_err(io_err("read", &p))
    }

    /// Freezes (`true`) or thaws the cgroup and waits until `cgroup.events` agrees.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        write_file(
            &self.path.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        self.wait_for("cgroup freeze", || {
            Ok(self
                .read("cgroup.events")?
                .lines()
                .any(|l| l.trim() == want))
        })
    }

    /// Kills every process in the cgroup and waits until it is empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let kill = self.path.join("cgroup.kill");
        if kill.exists() {
            write_file(&kill, "1")?;
        } else {
            for pid in self.pids()? {
                // Errors (already gone) are ignored on purpose.
                let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.wait_for("the cgroup to empty", || {
            if !kill.exists() {
                for pid in self.pids()? {
                    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            Ok(self.pids()?.is_empty())
        })
    }

    /// Removes the directory, then the empty parents this library may have created up to the root.
    pub fn remove(&self) -> Result<(), CgroupError> {
        match fs::remove_dir(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("rmdir", &self.path)(e)),
        }
        // Parents such as /hull are shared with other containers: remove them only when empty.
        let mut dir = self.path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn wait_for(
        &self,
        what: &'static str,
        mut done: impl FnMut() -> Result<bool, CgroupError>,
    ) -> Result<(), CgroupError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut pause = Duration::from_micros(200);
        loop {
            if done()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Timeout(what));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Enables, in `dir`'s `cgroup.subtree_control`, those of our controllers that `dir` offers
/// (as many as the kernel accepts).
/// A directory without `cgroup.controllers` (a fake tree) is left alone.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let offered = match fs::read_to_string(dir.join("cgroup.controllers")) {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let want: Vec<String> = offered
        .split_whitespace()
        .filter(|c| CONTROLLERS.contains(c) && !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if want.is_empty() {
        return Ok(());
    }
    let control = dir.join("cgroup.subtree_control");
    if write_file(&control, &want.join(" ")).is_ok() {
        return Ok(());
    }
    // The kernel refuses the whole write if one controller cannot be enabled here (a cgroup
    // with processes of its own, say). Enable what can be: a resource that needs a missing
    // controller fails later, on its own interface file, with its own error.
    for c in &want {
        let _ = write_file(&control, c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(None, "abc").unwrap(),
            PathBuf::from("hull/abc")
        );
        assert_eq!(
            relative_path(Some(Path::new("")), "abc").unwrap(),
            PathBuf::from("hull/abc")
        );
        assert_eq!(
            relative_path(Some(Path::new("/k8s/pod1/c1")), "x").unwrap(),
            PathBuf::from("k8s/pod1/c1")
        );
        assert_eq!(
            relative_path(Some(Path::new("rel/c")), "x").unwrap(),
            PathBuf::from("rel/c")
        );
        assert!(relative_path(Some(Path::new("/a/../b")), "x").is_err());
        assert_eq!(
            relative_path(Some(Path::new("kubepods-besteffort-pod12.slice:cri-containerd:c1")), "x").unwrap(),
            PathBuf::from("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-c1.scope")
        );
        assert_eq!(
            relative_path(Some(Path::new("system.slice:hull:c1")), "x").unwrap(),
            PathBuf::from("system.slice/hull-c1.scope")
        );
        assert_eq!(
            relative_path(Some(Path::new(":hull:c1")), "x").unwrap(),
            PathBuf::from("hull-c1.scope")
        );
        assert!(relative_path(Some(Path::new("a:b")), "x").is_err());
        assert!(relative_path(Some(Path::new("x.slice:p:../c")), "x").is_err());
        assert!(relative_path(Some(Path::new("a--b.slice:p:c")), "x").is_err());
        assert!(relative_path(Some(Path::new("nosuffix:p:c")), "x").is_err());
        assert!(relative_path(Some(Path::new("/")), "x").is_err());
    }

    #[test]
    fn fake_tree_create_apply_remove() {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpu memory pids io\n",
        )
        .unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        let cg = Cgroup::create(root.path(), Path::new("hull/c1")).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids +io"
        );
        assert!(matches!(
            Cgroup::create(root.path(), Path::new("hull/c1")),
            Err(CgroupError::Exists(_))
        ));
        // A fake tree has no interface files: create them as the kernel would.
        for f in [
            "memory.max",
            "memory.swap.max",
            "cpu.weight",
            "cpu.max",
            "pids.max",
            "io.weight",
        ] {
            fs::write(cg.path().join(f), "").unwrap();
        }
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"swap":2097152},"cpu":{"shares":512,"quota":20000},
                "pids":{"limit":10},"blockIO":{"weight":100}}"#,
        )
        .unwrap();
        cg.apply(&r).unwrap();
        let read = |f: &str| fs::read_to_string(cg.path().join(f)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("memory.swap.max"), "1048576");
        assert_eq!(read("cpu.weight"), "20");
        assert_eq!(read("cpu.max"), "20000 100000");
        assert_eq!(read("pids.max"), "10");
        assert_eq!(read("io.weight"), "910");
        // Hugetlb limits hold trivially when the kernel has no hugetlb controller (this fake root
        // lists none).
        let huge: LinuxResources =
            serde_json::from_str(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#).unwrap();
        cg.apply(&huge).unwrap();
        // A missing interface file is an error, not a silent skip.
        let r2: LinuxResources = serde_json::from_str(r#"{"cpu":{"cpus":"0"}}"#).unwrap();
        assert!(matches!(cg.apply(&r2), Err(CgroupError::Write { .. })));
        fs::write(cg.path().join("cgroup.procs"), "12\n34\n").unwrap();
        assert_eq!(cg.pids().unwrap(), [12, 34]);
        for f in fs::read_dir(cg.path()).unwrap() {
            fs::remove_file(f.unwrap().path()).unwrap();
        }
        cg.remove().unwrap();
        assert!(!root.path().join("hull").exists());
    }
}
