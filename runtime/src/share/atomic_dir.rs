//! The kubelet's atomic-writer directories on the host (ConfigMap, Secret, projected and
//! downward-API volumes), read for copying into the guest instead of sharing over virtio-fs (see
//! `hull_protocol::volume` for the layout and `crate::shim::volumes` for why and how).
//!
//! Reading never follows a symlink: the one link the layout needs, `..data`, is read with
//! `readlinkat` and must name a `..<something>` directory beside it, which is then opened with
//! `O_NOFOLLOW`, and so is everything below it, one component at a time from its parent's
//! descriptor. A payload holding a symlink, a device, a FIFO or a socket is refused (the kubelet
//! never writes one), and so is one over the caps: such a volume is shared as before.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hull_protocol::limits::LimitError;
use hull_protocol::volume::{
    is_payload_dir_name, Entry, Meta, Payload, DATA_LINK, MAX_VOLUME_BYTES, MAX_VOLUME_ENTRIES,
    MODE_BITS,
};
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

/// A directory that cannot be copied.
#[derive(Debug, thiserror::Error)]
pub enum AtomicDirError {
    /// A system call failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `..data` is missing or names something other than a payload directory beside it.
    #[error("{0} is not a kubelet atomic-writer directory (no ..data link to a ..<timestamp> directory)")]
    NotAtomic(PathBuf),
    /// Something the kubelet never writes.
    #[error("{0} is neither a directory nor a regular file")]
    Unexpected(PathBuf),
    /// The payload is over a cap.
    #[error("the payload of {0} is too big to copy")]
    TooBig(PathBuf, #[source] LimitError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> AtomicDirError + 'a {
    move |e| AtomicDirError::Io {
        op,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// Whether `dir` has the layout: a `..data` symlink naming a `..<something>` entry beside it.
/// A cheap test (no payload is read); [`read_payload`] checks the rest.
pub fn is_atomic_writer(dir: &Path) -> bool {
    std::fs::read_link(dir.join(DATA_LINK))
        .ok()
        .and_then(|t| t.to_str().map(is_payload_dir_name))
        .unwrap_or(false)
}

/// Reads the payload `dir/..data` names, with the volume directory's own mode and owner.
pub fn read_payload(dir: &Path) -> Result<Payload, AtomicDirError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = nix::fcntl::open(dir, flags | OFlag::O_NOFOLLOW, Mode::empty())
        .map_err(io_err("open", dir))?;
    let root = File::from(root);
    let target = readlinkat(&root, DATA_LINK).map_err(|_| AtomicDirError::NotAtomic(dir.into()))?;
    if !target.to_str().is_some_and(is_payload_dir_name) {
        return Err(AtomicDirError::NotAtomic(dir.to_owned()));
    }
    let data_path = dir.join(&target);
    let data = openat(
        &root,
        target.as_os_str(),
        flags | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(io_err("open", &data_path))?;
    let mut walk = Walk {
        payload: Payload {
            root: meta_of(&root, dir)?,
            entries: Vec::new(),
        },
        bytes: 0,
        top: dir.to_owned(),
    };
    walk.dir(File::from(data), "", &data_path)?;
    walk.payload
        .check()
        .map_err(|e| AtomicDirError::TooBig(dir.to_owned(), e))?;
    Ok(walk.payload)
}

fn meta_of(file: &File, path: &Path) -> Result<Meta, AtomicDirError> {
    let m = file.metadata().map_err(|source| AtomicDirError::Io {
        op: "stat",
        path: path.to_owned(),
        source,
    })?;
    Ok(Meta {
        mode: m.mode() & MODE_BITS,
        uid: m.uid(),
        gid: m.gid(),
    })
}

struct Walk {
    payload: Payload,
    bytes: usize,
    top: PathBuf,
}

impl Walk {
    fn too_big(&self, e: LimitError) -> AtomicDirError {
        AtomicDirError::TooBig(self.top.clone(), e)
    }

    /// Adds the contents of directory `dir` (payload path `prefix`, host path `path`), sorted,
    /// so that two reads of the same tree compare equal.
    fn dir(&mut self, dir: File, prefix: &str, path: &Path) -> Result<(), AtomicDirError> {
        // The directory's magic link lists the opened directory itself, whatever its path is now.
        let listing = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&listing)
            .and_then(|l| {
                l.map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
                    .collect()
            })
            .map_err(|source| AtomicDirError::Io {
                op: "list",
                path: path.to_owned(),
                source,
            })?;
        names.sort();
        for name in names {
            let name = OsStr::from_bytes(&name);
            let child = path.join(name);
            let Some(text) = name.to_str() else {
                return Err(AtomicDirError::Unexpected(child));
            };
            let rel = if prefix.is_empty() {
                text.to_owned()
            } else {
                format!("{prefix}/{text}")
            };
            if self.payload.entries.len() >= MAX_VOLUME_ENTRIES {
                return Err(self.too_big(LimitError::TooMany {
                    what: "volume entries",
                    len: MAX_VOLUME_ENTRIES + 1,
                    max: MAX_VOLUME_ENTRIES,
                }));
            }
            let st = fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(io_err("stat", &child))?;
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            let nofollow = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            if kind == SFlag::S_IFDIR {
                let sub = open_at(&dir, name, nofollow | OFlag::O_DIRECTORY, &child)?;
                self.payload.entries.push(Entry {
                    path: rel.clone(),
                    meta: meta_of(&sub, &child)?,
                    data: None,
                });
                self.dir(sub, &rel, &child)?;
            } else if kind == SFlag::S_IFREG {
                // O_NONBLOCK: a FIFO swapped in after the stat must not hang the read.
                let mut file = open_at(&dir, name, nofollow | OFlag::O_NONBLOCK, &child)?;
                let meta = file.metadata().map_err(|source| AtomicDirError::Io {
                    op: "stat",
                    path: child.clone(),
                    source,
                })?;
                if !meta.is_file() {
                    return Err(AtomicDirError::Unexpected(child));
                }
                let room = MAX_VOLUME_BYTES - self.bytes;
                let mut data = Vec::new();
                (&mut file)
                    .take(u64::try_from(room).unwrap_or(u64::MAX) + 1)
                    .read_to_end(&mut data)
                    .map_err(|source| AtomicDirError::Io {
                        op: "read",
                        path: child.clone(),
                        source,
                    })?;
                if data.len() > room {
                    return Err(self.too_big(LimitError::TooLong {
                        what: "volume data",
                        len: self.bytes + data.len(),
                        max: MAX_VOLUME_BYTES,
                    }));
                }
                self.bytes += data.len();
                self.payload.entries.push(Entry {
                    path: rel,
                    meta: meta_of(&file, &child)?,
                    data: Some(data),
                });
            } else {
                return Err(AtomicDirError::Unexpected(child));
            }
        }
        Ok(())
    }
}

fn open_at(dir: &File, name: &OsStr, flags: OFlag, path: &Path) -> Result<File, AtomicDirError> {
    let fd: OwnedFd = openat(dir, name, flags, Mode::empty()).map_err(io_err("open", path))?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A kubelet-style directory: `..ts/` with `files`, `..data -> ..ts`, top-level links.
    fn kubelet_dir(root: &Path, ts: &str, files: &[(&str, &str)]) {
        std::fs::create_dir_all(root.join(ts)).unwrap();
        for (path, data) in files {
            let p = root.join(ts).join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
            let top = path.split('/').next().unwrap();
            let _ = symlink(format!("..data/{top}"), root.join(top));
        }
        let _ = std::fs::remove_file(root.join("..data_tmp"));
        symlink(ts, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    }

    #[test]
    fn the_payload_is_what_data_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(!is_atomic_writer(root));
        kubelet_dir(
            root,
            "..2026_01_01_00_00_00.1",
            &[("b", "bee"), ("a/x", "ax")],
        );
        assert!(is_atomic_writer(root));
        let p = read_payload(root).unwrap();
        let paths: Vec<&str> = p.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/x", "b"]);
        assert_eq!(p.entries[2].data.as_deref(), Some(&b"bee"[..]));
        assert_eq!(p.top_level(), ["a", "b"]);
        // The kubelet's swap: a new payload is read, and equal trees compare equal.
        kubelet_dir(root, "..2026_01_01_00_01_00.2", &[("b", "bee2")]);
        let q = read_payload(root).unwrap();
        assert_eq!(q.entries.len(), 1);
        assert_eq!(q.entries[0].data.as_deref(), Some(&b"bee2"[..]));
        assert_eq!(read_payload(root).unwrap(), q);
    }

    #[test]
    fn symlinks_out_of_the_volume_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret").unwrap();
        let root = dir.path().join("vol");
        // `..data` pointing out of the volume.
        std::fs::create_dir_all(&root).unwrap();
        symlink(outside.path(), root.join("..data")).unwrap();
        assert!(!is_atomic_writer(&root));
        assert!(matches!(
            read_payload(&root),
            Err(AtomicDirError::NotAtomic(_))
        ));
        std::fs::remove_file(root.join("..data")).unwrap();
        // `..data` naming a `..x` that is itself a symlink out.
        symlink(outside.path(), root.join("..x")).unwrap();
        symlink("..x", root.join("..data")).unwrap();
        assert!(
            is_atomic_writer(&root),
            "the cheap test only looks at the name"
        );
        assert!(matches!(
            read_payload(&root),
            Err(AtomicDirError::Io { .. })
        ));
        // A symlink inside the payload.
        std::fs::remove_file(root.join("..x")).unwrap();
        std::fs::create_dir(root.join("..x")).unwrap();
        symlink(outside.path().join("secret"), root.join("..x/key")).unwrap();
        let e = read_payload(&root).unwrap_err();
        assert!(matches!(e, AtomicDirError::Unexpected(_)), "{e}");
    }

    #[test]
    fn payloads_over_the_caps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let big = "x".repeat(MAX_VOLUME_BYTES / 2 + 1);
        kubelet_dir(root, "..1", &[("a", &big), ("b", &big)]);
        assert!(matches!(
            read_payload(root),
            Err(AtomicDirError::TooBig(..))
        ));
    }
}
