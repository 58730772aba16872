//! The container's filesystem view, built by its init process inside its new mount namespace:
//! `/` made a slave, the rootfs bind-mounted onto itself, the spec's mounts, `/dev` (nodes,
//! symlinks, `/dev/shm`, `/dev/console`), `pivot_root`, sysctls, read-only and masked paths, a
//! read-only root, hostname and domain name.
//!
//! The plan is built in the agent; [`RootfsPlan::setup`] runs in the forked init process. Paths
//! inside the rootfs are resolved component by component with symlinks interpreted relative to the
//! rootfs ([`resolve_in_root`]), so a symlink in the image cannot send a mount outside it.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, umask, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chown, Gid, Uid};
use rustix::system::{setdomainname, sethostname};

use super::devices::{DevicePlan, DEV_SYMLINKS};
use super::mounts::{MountKind, MountPlan};
use super::stage::{Failure, Stage};

/// The filesystem half of the container's set-up.
#[derive(Debug, Default)]
pub struct RootfsPlan {
    /// The rootfs in the agent's view.
    pub rootfs: PathBuf,
    /// The spec's mounts, in order.
    pub mounts: Vec<MountPlan>,
    /// Device nodes (empty when `/dev` is a bind mount).
    pub devices: Vec<DevicePlan>,
    /// Bind the agent's nodes instead of `mknod` (new user namespace).
    pub bind_devices: bool,
    /// Create the `/dev` symlinks.
    pub dev_symlinks: bool,
    /// Mount a tmpfs on `/dev/shm` (the spec mounts nothing there).
    pub default_shm: bool,
    /// Make `/dev/console` (the pty slave is bound on it after pivot_root, see [`bind_console`]).
    pub console: bool,
    /// Working directory to create (container path).
    pub cwd: Option<PathBuf>,
    /// `(file under /proc/sys, value)`.
    pub sysctl: Vec<(PathBuf, String)>,
    /// Paths made read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Paths masked.
    pub masked_paths: Vec<PathBuf>,
    /// Remount `/` read-only.
    pub readonly_root: bool,
    /// Propagation for `/` after pivot_root.
    pub root_propagation: Option<MsFlags>,
    /// Hostname.
    pub hostname: Option<CString>,
    /// NIS domain name.
    pub domainname: Option<CString>,
}

/// Resolves `unsafe_path` inside `root`: `..` stops at the root and symlinks are read as if the
/// root were `/`. Components that do not exist are appended as they are.
pub fn resolve_in_root(root: &Path, unsafe_path: &Path) -> std::io::Result<PathBuf> {
    let mut parts: VecDeque<OsString> = unsafe_path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(p) = parts.pop_front() {
        if p == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&p);
        let full = root.join(&next);
        match fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let mut new: VecDeque<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some(OsString::from("..")),
                        _ => None,
                    })
                    .collect();
                new.extend(parts);
                parts = new;
            }
            _ => cur = next,
        }
    }
    Ok(root.join(cur))
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn fail_io(stage: Stage, i: usize) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure::new(stage, i, errno(&e))
}

fn fail_nix(stage: Stage, i: usize) -> impl Fn(nix::Error) -> Failure {
    move |e| Failure::nix(stage, i, e)
}

/// Creates `path` as a directory (or an empty file when `dir` is false), with its parents. What
/// exists is left as it is, without opening it for writing: a read-only root (read-only on the
/// host too, which made its mount points) must not refuse a mount point it already has.
fn create_target(path: &Path, dir: bool) -> std::io::Result<()> {
    if dir {
        return fs::create_dir_all(path);
    }
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The flags a bind remount must keep (locked ones fail otherwise in user namespaces).
fn kept_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (fs_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs_flag) {
            m |= ms;
        }
    }
    m
}

impl RootfsPlan {
    /// Forked side: builds the filesystem view and pivots into it. Runs in the container's
    /// new mount namespace, as root. [`RootfsPlan::finish`] does the rest after the pty (if any)
    /// is open.
    pub fn setup(&self) -> Result<(), Failure> {
        // Nodes and mount points get exactly the modes asked for.
        umask(Mode::empty());
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(fail_nix(Stage::RootPropagation, 0))?;
        let root = self.rootfs.as_path();
        mount(
            Some(root),
            root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(fail_nix(Stage::BindRootfs, 0))?;
        for (i, m) in self.mounts.iter().enumerate() {
            self.mount_one(i, m)?;
        }
        self.setup_dev()?;
        if let Some(cwd) = &self.cwd {
            let p = resolve_in_root(root, cwd).map_err(fail_io(Stage::Cwd, 0))?;
            fs::create_dir_all(&p).map_err(fail_io(Stage::Cwd, 0))?;
        }
        pivot(root)
    }

    /// Forked side, after pivot_root: root propagation, sysctls, read-only and masked paths,
    /// read-only root, hostname and domain name.
    pub fn finish(&self) -> Result<(), Failure> {
        if let Some(p) = self.root_propagation {
            mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
                .map_err(fail_nix(Stage::MountPropagation, usize::MAX))?;
        }
        for (i, (file, value)) in self.sysctl.iter().enumerate() {
            fs::write(file, value.as_bytes()).map_err(fail_io(Stage::Sysctl, i))?;
        }
        for (i, p) in self.readonly_paths.iter().enumerate() {
            readonly_path(p).map_err(|e| Failure::nix(Stage::ReadonlyPath, i, e))?;
        }
        for (i, p) in self.masked_paths.iter().enumerate() {
            mask_path(p).map_err(|e| Failure::nix(Stage::MaskPath, i, e))?;
        }
        if self.readonly_root {
            let flags = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | kept_flags(Path::new("/"));
            mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
                .map_err(fail_nix(Stage::ReadonlyRoot, 0))?;
        }
        if let Some(h) = &self.hostname {
            sethostname(h.as_bytes()).map_err(|e| Failure::rustix(Stage::Hostname, 0, e))?;
        }
        if let Some(d) = &self.domainname {
            setdomainname(d.as_bytes()).map_err(|e| Failure::rustix(Stage::Domainname, 0, e))?;
        }
        Ok(())
    }

    fn mount_one(&self, i: usize, m: &MountPlan) -> Result<(), Failure> {
        let dest = resolve_in_root(&self.rootfs, &m.dest).map_err(fail_io(Stage::Mount, i))?;
        create_target(&dest, m.source_is_dir).map_err(fail_io(Stage::Mount, i))?;
        let data = (!m.data.as_bytes().is_empty()).then_some(m.data.as_c_str());
        match m.kind {
            MountKind::Bind { .. } => {
                mount(
                    Some(m.source.as_c_str()),
                    &dest,
                    None::<&str>,
                    m.flags,
                    None::<&str>,
                )
                .map_err(fail_nix(Stage::Mount, i))?;
                if let Some(extra) = m.remount {
                    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | kept_flags(&dest);
                    mount(None::<&str>, &dest, None::<&str>, flags, None::<&str>)
                        .map_err(fail_nix(Stage::Mount, i))?;
                }
            }
            MountKind::Fs => {
                let r = mount(
                    Some(m.source.as_c_str()),
                    &dest,
                    Some(m.fstype.as_c_str()),
                    m.flags,
                    data,
                );
                match r {
                    // In a new user namespace sysfs can only be mounted when the network
                    // namespace belongs to it too; with a joined one, fall back to binding the
                    // agent's /sys with the same flags, as runc does.
                    Err(nix::Error::EPERM)
                        if self.bind_devices && m.fstype.as_bytes() == b"sysfs" =>
                    {
                        mount(
                            Some("/sys"),
                            &dest,
                            None::<&str>,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            None::<&str>,
                        )
                        .map_err(fail_nix(Stage::Mount, i))?;
                        let flags =
                            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | m.flags | kept_flags(&dest);
                        mount(None::<&str>, &dest, None::<&str>, flags, None::<&str>)
                            .map_err(fail_nix(Stage::Mount, i))?;
                    }
                    r => r.map_err(fail_nix(Stage::Mount, i))?,
                }
            }
        }
        if m.recursive_attrs != (0, 0) {
            set_recursive_attrs(&dest, m.recursive_attrs)
                .map_err(|e| Failure::io(Stage::Mount, i, &e))?;
        }
        for p in &m.propagation {
            mount(None::<&str>, &dest, None::<&str>, *p, None::<&str>)
                .map_err(fail_nix(Stage::MountPropagation, i))?;
        }
        Ok(())
    }

    fn setup_dev(&self) -> Result<(), Failure> {
        let root = self.rootfs.as_path();
        for (i, d) in self.devices.iter().enumerate() {
            let path = resolve_in_root(root, &d.path).map_err(fail_io(Stage::Device, i))?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(fail_io(Stage::Device, i))?;
            }
            if self.bind_devices {
                let host =
                    d.host_path
                        .as_ref()
                        .ok_or(Failure::new(Stage::Device, i, libc::EPERM))?;
                create_target(&path, false).map_err(fail_io(Stage::Device, i))?;
                mount(
                    Some(host.as_c_str()),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(fail_nix(Stage::Device, i))?;
                continue;
            }
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| Failure::new(Stage::Device, i, libc::EINVAL))?;
            let dev = libc::makedev(d.major, d.minor);
            let (kind, mode) = (
                SFlag::from_bits_retain(d.kind),
                Mode::from_bits_retain(d.mode),
            );
            for attempt in 0..2 {
                match mknod(c.as_c_str(), kind, mode, dev) {
                    Ok(()) => break,
                    Err(nix::Error::EEXIST) if attempt == 0 => {
                        fs::remove_file(&path).map_err(fail_io(Stage::Device, i))?;
                    }
                    Err(e) => return Err(Failure::nix(Stage::Device, i, e)),
                }
            }
            chown(
                c.as_c_str(),
                Some(Uid::from_raw(d.uid)),
                Some(Gid::from_raw(d.gid)),
            )
            .map_err(fail_nix(Stage::Device, i))?;
        }
        if self.dev_symlinks {
            for (i, (link, target)) in DEV_SYMLINKS.iter().enumerate() {
                let path = resolve_in_root(root, Path::new(link))
                    .map_err(fail_io(Stage::DevSymlink, i))?;
                if *link == "/dev/ptmx" {
                    let _ = fs::remove_file(&path);
                }
                match symlink(target, &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Failure::new(Stage::DevSymlink, i, errno(&e))),
                }
            }
        }
        if self.default_shm {
            let shm = resolve_in_root(root, Path::new("/dev/shm"))
                .map_err(fail_io(Stage::Mount, usize::MAX))?;
            fs::create_dir_all(&shm).map_err(fail_io(Stage::Mount, usize::MAX))?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                flags,
                Some("mode=1777,size=65536k"),
            )
            .map_err(fail_nix(Stage::Mount, usize::MAX))?;
        }
        if self.console {
            // The pty is opened after pivot_root; its mount point is made now, while the rootfs
            // may still be written to.
            let path = resolve_in_root(root, Path::new("/dev/console"))
                .map_err(fail_io(Stage::Console, 0))?;
            create_target(&path, false).map_err(fail_io(Stage::Console, 0))?;
        }
        Ok(())
    }
}

/// `mount_setattr(2)` with `AT_RECURSIVE` on the mount at `path`.
fn set_recursive_attrs(path: &Path, (set, clr): (u64, u64)) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    hull_sys::mount_setattr(None, &c, libc::AT_RECURSIVE, set, clr)
}

/// Forked side, after pivot_root: binds the pty slave at `slave_path` on `/dev/console`.
pub fn bind_console(slave_path: &CString) -> Result<(), Failure> {
    mount(
        Some(slave_path.as_c_str()),
        "/dev/console",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(fail_nix(Stage::Console, 0))
}

/// `pivot_root(".", ".")` in the rootfs, then the old root (now stacked on `/`) is made a slave
/// (so its unmount does not reach the agent's mounts) and detached.
fn pivot(root: &Path) -> Result<(), Failure> {
    let fail = |e: nix::Error| Failure::nix(Stage::PivotRoot, 0, e);
    let old = fs::File::open("/").map_err(fail_io(Stage::PivotRoot, 0))?;
    nix::unistd::chdir(root).map_err(fail)?;
    nix::unistd::pivot_root(".", ".").map_err(fail)?;
    nix::unistd::fchdir(&old).map_err(fail)?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(fail)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail)?;
    nix::unistd::chdir("/").map_err(fail)?;
    Ok(())
}

fn readonly_path(p: &Path) -> Result<(), nix::Error> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_REC
        | kept_flags(p);
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>)
}

fn mask_path(p: &Path) -> Result<(), nix::Error> {
    let md = match fs::metadata(p) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(nix::Error::from_raw(errno(&e))),
    };
    if md.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../../../../etc", r.join("usr/escape")).unwrap();
        symlink("/", r.join("rootlink")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/lib/x")).unwrap(),
            r.join("usr/lib/x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/usr/escape/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/../../etc")).unwrap(),
            r.join("etc")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/rootlink/dev")).unwrap(),
            r.join("dev")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/new/dir")).unwrap(),
            r.join("new/dir")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/loop1"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn creates_file_and_dir_targets() {
        let d = tempfile::tempdir().unwrap();
        create_target(&d.path().join("a/b/file"), false).unwrap();
        assert!(d.path().join("a/b/file").is_file());
        create_target(&d.path().join("c/d"), true).unwrap();
        assert!(d.path().join("c/d").is_dir());
    }

    #[test]
    fn existing_targets_on_a_read_only_root_are_used_as_they_are() {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("needs root and CI=true forbids skipping");
            }
            eprintln!(
                "SKIPPED existing_targets_on_a_read_only_root_are_used_as_they_are: needs root"
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        fs::write(root.join("file"), "").unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, root, None::<&str>, flags, None::<&str>).unwrap();
        let existing = (
            create_target(&root.join("file"), false),
            create_target(&root.join("dir"), true),
            create_target(&root.join("dir"), false),
        );
        let missing = create_target(&root.join("new"), false);
        umount2(root, MntFlags::MNT_DETACH).unwrap();
        assert!(
            existing.0.is_ok() && existing.1.is_ok() && existing.2.is_ok(),
            "{existing:?}"
        );
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::EROFS));
    }
}
