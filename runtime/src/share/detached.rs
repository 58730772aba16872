//! Mount trees finished before they are attached under the share, so that what virtiofsd sees is
//! read-only whenever the host's mount is.
//!
//! The share is a shared mount and virtiofsd's sandbox holds a slave of it: every mount the shim
//! makes under the share is copied into virtiofsd's mount namespace at that moment, and that copy,
//! not the shim's, serves the guest. Mount flags are per mount and a later remount does not
//! propagate, so a bind mount made under the share and then remounted read-only stayed read-only
//! for the host only: a guest that mounted the `hull` tag itself wrote through virtiofsd's
//! writable copy into the host's "read-only" volume (issue 22, bug 8).
//!
//! Hence a tree is cloned detached (`open_tree(OPEN_TREE_CLONE)`: in no namespace, seen by no one,
//! the guest included), made read-only while detached (`mount_setattr`), and only then attached
//! (`move_mount`): every copy that propagation makes of it is a copy of a read-only mount from its
//! first moment. A detached tree that is never attached is freed with its descriptor, so a failure
//! or a crash half-way leaves no mount behind.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::mount::{MoveMountFlags, OpenTreeFlags};

/// A mount tree not attached anywhere yet.
#[derive(Debug)]
pub struct Detached(OwnedFd);

impl Detached {
    /// Clones the mount tree at `source` (with every mount below it, as `rbind` does).
    pub fn clone_tree(source: &Path) -> std::io::Result<Self> {
        let flags = OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE;
        let fd = rustix::mount::open_tree(rustix::fs::CWD, source, flags)?;
        Ok(Self(fd))
    }

    /// The tree's root (a directory or a file), to work in before it is attached.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Makes the tree's top mount read-only, or every mount in it when `recursive`.
    pub fn set_read_only(&self, recursive: bool) -> std::io::Result<()> {
        let mut flags = libc::AT_EMPTY_PATH;
        if recursive {
            flags |= libc::AT_RECURSIVE;
        }
        hull_sys::mount_setattr(Some(self.0.as_fd()), c"", flags, libc::MOUNT_ATTR_RDONLY, 0)
    }

    /// Attaches the tree onto `target`, an opened mount point (a handle, so that nothing on the
    /// way to it is resolved again).
    pub fn attach(self, target: BorrowedFd<'_>) -> std::io::Result<()> {
        rustix::mount::move_mount(
            self.0.as_fd(),
            "",
            target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::super::mountpoints::MountPoint;
    use super::super::mounts::{self, Access, ReadOnlyRoot, RootfsMount};

    /// Root only (mounts); CI runs as root and may not skip.
    fn as_root(test: &str) -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs root and CI=true forbids skipping"
        );
        eprintln!("SKIPPED {test}: mounting needs root");
        false
    }

    /// A process in a mount namespace made as virtiofsd's sandbox makes its own (every mount a
    /// slave of the host's), before anything is mounted under the share; killed when dropped.
    struct SlaveNamespace(Child);

    impl SlaveNamespace {
        fn start() -> Self {
            let child = Command::new("unshare")
                .args(["--mount", "--propagation", "slave", "sleep", "120"])
                .stdin(Stdio::null())
                .spawn()
                .expect("unshare");
            let ns = Self(child);
            // `sleep` runs once unshare has made its namespace and every mount in it a slave.
            let comm = format!("/proc/{}/comm", ns.0.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
                assert!(Instant::now() < deadline, "unshare did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
            ns
        }

        /// Runs `script` (with `$1` = `path`) in the namespace; whether it succeeded.
        fn run(&self, script: &str, path: &std::path::Path) -> bool {
            Command::new("nsenter")
                .args([
                    "-t",
                    &self.0.id().to_string(),
                    "-m",
                    "--",
                    "sh",
                    "-c",
                    script,
                    "sh",
                ])
                .arg(path)
                .stderr(Stdio::null())
                .status()
                .expect("nsenter")
                .success()
        }
    }

    impl Drop for SlaveNamespace {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    struct Unmount(tempfile::TempDir);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = mounts::unmount_all_under(self.0.path());
        }
    }

    #[test]
    fn read_only_mounts_are_read_only_in_a_slave_namespace_too() {
        if !as_root("read_only_mounts_are_read_only_in_a_slave_namespace_too") {
            return;
        }
        let dir = Unmount(tempfile::tempdir().unwrap());
        let dir = dir.0.path();
        let shared = dir.join("shared");
        mounts::prepare_share(&shared).unwrap();
        let ns = SlaveNamespace::start();
        let make = |name: &str| -> PathBuf {
            let d = dir.join(name);
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("f"), "host\n").unwrap();
            d
        };
        let (ro, rw, rro, root) = (make("ro"), make("rw"), make("rro"), make("root"));
        let file = dir.join("file");
        std::fs::write(&file, "host\n").unwrap();
        // A mount below a source: `ro` leaves it writable (as runc does), `rro` does not.
        for d in [&ro, &rro] {
            nix::mount::mount(
                Some("tmpfs"),
                &d.join("sub"),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
        }
        let (lower, upper, work) = (make("lower"), dir.join("upper"), dir.join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        let c = shared.join("c1");
        mounts::bind(&ro, &c.join("mounts/0"), Access::ReadOnly).unwrap();
        mounts::bind(&rw, &c.join("mounts/1"), Access::ReadWrite).unwrap();
        mounts::bind(&file, &c.join("mounts/2"), Access::ReadOnly).unwrap();
        mounts::bind(&rro, &c.join("mounts/3"), Access::ReadOnlyRecursive).unwrap();
        let points = [
            MountPoint {
                path: "/made/dir".into(),
                dir: true,
            },
            MountPoint {
                path: "/made/file".into(),
                dir: false,
            },
        ];
        let overlay = RootfsMount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={}", lower.display()),
                format!("upperdir={}", upper.display()),
                format!("workdir={}", work.display()),
            ],
        };
        let stage = dir.join("stage-c1");
        let read_only = ReadOnlyRoot {
            mount_points: &points,
            stage: &stage,
        };
        mounts::mount_rootfs(&[overlay], &c.join("rootfs"), Some(read_only)).unwrap();
        // A root lent read-only (a snapshot view) and one the spec makes read-only.
        let view = RootfsMount {
            kind: "bind".into(),
            source: lower.display().to_string(),
            options: vec!["ro".into(), "rbind".into()],
        };
        mounts::mount_rootfs(&[view], &shared.join("c2/rootfs"), None).unwrap();
        mounts::bind_with_mount_points(&root, &shared.join("c3/rootfs"), Access::ReadOnly, &points)
            .unwrap();

        let append = r#"echo guest >> "$1""#;
        let create = r#"echo guest > "$1/new""#;
        // Positive control: the namespace does see what is mounted, and writes where allowed.
        assert!(ns.run(append, &c.join("mounts/1/f")));
        assert!(ns.run(create, &c.join("mounts/1")));
        assert!(
            ns.run(append, &c.join("mounts/0/sub/x")),
            "ro is not recursive"
        );
        assert_eq!(
            std::fs::read_to_string(rw.join("f")).unwrap(),
            "host\nguest\n"
        );
        for (what, path) in [
            ("ro volume", c.join("mounts/0")),
            ("rro volume", c.join("mounts/3")),
            ("rro volume's submount", c.join("mounts/3/sub")),
            ("overlay root", c.join("rootfs")),
            ("lent root", shared.join("c2/rootfs")),
            ("bind root", shared.join("c3/rootfs")),
        ] {
            assert!(!ns.run(create, &path), "{what}: created a file");
            assert!(!ns.run(append, &path.join("f")), "{what}: appended");
            assert!(
                !ns.run(r#"chmod 600 "$1""#, &path.join("f")),
                "{what}: chmod"
            );
            assert!(!ns.run(r#"rm "$1""#, &path.join("f")), "{what}: unlinked");
        }
        assert!(
            !ns.run(append, &c.join("mounts/2")),
            "file volume: appended"
        );
        for d in [&ro, &rro, &root, &lower] {
            assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "host\n");
            assert!(!d.join("new").exists());
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "host\n");
        assert!(
            !upper.join("f").exists(),
            "the overlay's upper layer changed"
        );
        // The mount points were made before the roots became read-only; the stage is gone and
        // no mount is left outside the share.
        assert!(upper.join("made/dir").is_dir() && upper.join("made/file").is_file());
        assert!(root.join("made/dir").is_dir() && root.join("made/file").is_file());
        assert!(
            !lower.join("made").exists(),
            "made in a root lent read-only"
        );
        assert!(!stage.exists());
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let outside: Vec<PathBuf> = super::super::mountinfo::mounts_under(&info, dir)
            .into_iter()
            .filter(|m| !m.starts_with(&shared) && !m.ends_with("sub"))
            .collect();
        assert!(outside.is_empty(), "{outside:?}");
    }
}
