//! Mount points made by the host in a root filesystem it is about to make read-only.
//!
//! The agent creates a mount's destination in the container's root when the image lacks it (as
//! runc does), before it makes the root read-only itself for `root.readonly`. The host now makes
//! such a root read-only too, before the guest sees it ([`super::detached`]), so the agent could no
//! longer create them: for a root the engine handed over writable whose spec asks for read-only
//! (CRI's `readOnlyRootFilesystem`, `ctr run --rootfs … --read-only`), the shim creates them
//! first, in the detached tree no one else sees yet. Never in a root the engine lent read-only
//! (an image layer through a snapshot view): there they are missing for runc too.
//!
//! Paths resolve as in the agent (symlinks read as if the root were `/`, `..` stops at the root),
//! but on descriptors, one component at a time with `O_NOFOLLOW`: the image's symlinks are read,
//! never followed by the kernel, so nothing is made outside the tree.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// A destination to make in the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// The container path (absolute).
    pub path: PathBuf,
    /// A directory (else an empty file, for a bind mount of a file).
    pub dir: bool,
}

/// The mount points `spec` needs in its root: each mount's destination, unless it lies in an
/// earlier mount (the agent makes it there: `/dev/pts` in the `/dev` tmpfs), and the working
/// directory. Binds of files need a file; a bind whose host source is missing is left out (the
/// mount fails later, as it would anyway).
pub fn from_spec(spec: &Spec) -> Vec<MountPoint> {
    let mut points = Vec::new();
    let mut mounted: Vec<PathBuf> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().clone();
        if !dest.is_absolute() || mounted.iter().any(|d| dest.starts_with(d)) {
            mounted.push(dest);
            continue;
        }
        let options = m.options().clone().unwrap_or_default();
        let bind = m.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        let source = m.source().as_deref();
        let dir = if !bind || source == Some(Path::new(hull_protocol::GUEST_POD_SHM)) {
            Some(true)
        } else {
            source
                .and_then(|s| std::fs::metadata(s).ok())
                .map(|md| md.is_dir())
        };
        if let Some(dir) = dir {
            points.push(MountPoint {
                path: dest.clone(),
                dir,
            });
        }
        mounted.push(dest);
    }
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd().clone()) {
        if cwd.is_absolute() && !mounted.iter().any(|d| cwd.starts_with(d)) {
            points.push(MountPoint {
                path: cwd,
                dir: true,
            });
        }
    }
    points
}

/// Creates every point in the tree at `root`. Best effort: what cannot be made is logged and
/// left to the agent, whose error then names the mount.
pub fn create_all(root: BorrowedFd<'_>, points: &[MountPoint]) {
    for p in points {
        if let Err(e) = create(root, &p.path, p.dir) {
            tracing::warn!(
                "cannot make the mount point {} in a read-only root: {e}",
                p.path.display()
            );
        }
    }
}

fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Symlinks followed (by reading them) before giving up, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// Creates `path` (a container path) in the tree at `root` as a directory or an empty file,
/// with its missing parents, unless it exists (as whatever type).
pub fn create(root: BorrowedFd<'_>, path: &Path, dir: bool) -> std::io::Result<()> {
    let mut todo = parts(path);
    // The directories walked into below the root (`..` pops one).
    let mut walked: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            walked.pop();
            continue;
        }
        let at = walked.last().map_or(root, |f| f.as_fd());
        let last = todo.is_empty();
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = match rustix::fs::openat(at, name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                make(at, &name, dir || !last)?;
                rustix::fs::openat(at, name.as_os_str(), flags, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(rustix::fs::fstat(&opened)?.st_mode) {
            FileType::Symlink => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(at, name.as_os_str(), Vec::new())?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    walked.clear();
                }
                let mut next = parts(target);
                next.extend(todo);
                todo = next;
            }
            FileType::Directory => walked.push(opened),
            _ if last => {}
            _ => return Err(Errno::NOTDIR.into()),
        }
    }
    Ok(())
}

/// Makes `name` in `at`: a directory, or an empty file; one that appeared meanwhile is fine.
fn make(at: BorrowedFd<'_>, name: &OsStr, dir: bool) -> std::io::Result<()> {
    let made = if dir {
        rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755))
    } else {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(at, name, flags, Mode::from_raw_mode(0o644)).map(drop)
    };
    match made {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    fn spec(value: serde_json::Value) -> Spec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn mount_points_come_from_destinations_outside_earlier_mounts_and_the_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "").unwrap();
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/work/dir", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
                {"destination": "/etc/hosts", "type": "bind", "source": file, "options": ["rbind", "ro"]},
                {"destination": "/data", "source": dir.path(), "options": ["rbind"]},
                {"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/gone", "type": "bind", "source": dir.path().join("missing")},
                {"destination": "/run/shm", "type": "bind", "source": hull_protocol::GUEST_POD_SHM}
            ]
        }));
        let points = from_spec(&s);
        let got: Vec<(&str, bool)> = points
            .iter()
            .map(|p| (p.path.to_str().unwrap(), p.dir))
            .collect();
        assert_eq!(
            got,
            [
                ("/proc", true),
                ("/dev", true),
                ("/etc/hosts", false),
                ("/data", true),
                ("/run/shm", true),
                ("/work/dir", true)
            ]
        );
    }

    #[test]
    fn points_are_made_inside_the_root_whatever_its_symlinks_say() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The image's links: absolute and relative ones aiming out of the root, a dangling one,
        // a loop.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("../run/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let fd = File::open(&root).unwrap();
        let at = fd.as_fd();
        create(at, Path::new("/abs/a"), true).unwrap();
        create(at, Path::new("/etc/rel/b/c"), true).unwrap();
        create(at, Path::new("/etc/resolv.conf"), false).unwrap();
        create(at, Path::new("/../../x/y"), false).unwrap();
        create(at, Path::new("/proc"), true).unwrap();
        // An existing path of another type is left alone.
        create(at, Path::new("/etc"), false).unwrap();
        assert_eq!(
            create(at, Path::new("/loop/z"), true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let abs = root.join(outside.strip_prefix("/").unwrap());
        assert!(abs.join("a").is_dir(), "abs/a in the root");
        assert!(root.join("outside/b/c").is_dir());
        assert!(root.join("run/resolv.conf").is_file());
        assert!(root.join("x/y").is_file());
        assert!(root.join("proc").is_dir());
        assert!(root.join("etc").is_dir());
    }
}
