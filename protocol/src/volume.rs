//! Copied volumes: the kubelet's atomic-writer directories (ConfigMap, Secret, projected and
//! downward-API volumes), which the host copies into a guest tmpfs instead of sharing them over
//! virtio-fs, because virtio-fs passes no inotify event from the host and may keep serving a
//! cached `..data` for a while (see docs/cri.md). This module holds what both sides agree on: the
//! layout's names, the caps, and the payload in checked, typed form.
//!
//! The layout (the kubelet's `AtomicWriter`): the payload lives in a `..<timestamp>` directory,
//! `..data` is a symlink to it, and every top-level name of the payload is a symlink
//! `<name> -> ..data/<name>`. An update writes a new timestamped directory, points `..data_tmp`
//! at it, renames `..data_tmp` over `..data`, adds and removes the top-level symlinks, and
//! removes the old directory.

use crate::agent::{VolumeEntry, WriteVolumeRequest};
use crate::limits::{self, LimitError};

/// The symlink that names the current payload directory.
pub const DATA_LINK: &str = "..data";
/// The name the next `..data` is made under before it is renamed over the old one.
pub const DATA_TMP_LINK: &str = "..data_tmp";
/// Where the agent keeps copied volumes, one tmpfs each at `<this>/<container>/<volume>`.
pub const GUEST_VOLUMES: &str = "/run/hull/volumes";

/// Most bytes of file data in one volume: a ConfigMap or Secret holds at most 1 MiB, and one
/// request must stay well inside ttrpc's 4 MiB frame. Bigger volumes are shared over virtio-fs.
pub const MAX_VOLUME_BYTES: usize = 2 << 20;
/// Most files and directories in one volume.
pub const MAX_VOLUME_ENTRIES: usize = 1024;
/// Permission bits a mode may carry.
pub const MODE_BITS: u32 = 0o7777;

/// The guest directory of container `cid`'s copied volume `volume`.
pub fn guest_volume_dir(cid: &str, volume: u32) -> String {
    format!("{GUEST_VOLUMES}/{cid}/{volume}")
}

/// Mode and owner of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits (at most [`MODE_BITS`]).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// One directory or file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path (see [`check_path`]).
    pub path: String,
    /// Mode and owner.
    pub meta: Meta,
    /// `None` for a directory, the bytes for a file.
    pub data: Option<Vec<u8>>,
}

/// A volume's payload: the tree `..data` points at, and the volume directory's own mode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    /// The volume directory's mode and owner.
    pub root: Meta,
    /// Its files and directories, parents first.
    pub entries: Vec<Entry>,
}

impl Payload {
    /// Bytes of file data.
    pub fn data_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// The distinct first components of the payload's paths, in order: the user-visible names.
    pub fn top_level(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for e in &self.entries {
            let top = e.path.split('/').next().unwrap_or_default();
            if !names.contains(&top) {
                names.push(top);
            }
        }
        names
    }

    /// Checks the caps and every path (see [`check_path`]), and that each entry's parent is an
    /// earlier directory entry.
    pub fn check(&self) -> Result<(), LimitError> {
        limits::check_count("volume entries", self.entries.len(), MAX_VOLUME_ENTRIES)?;
        limits::check_len("volume data", self.data_len(), MAX_VOLUME_BYTES)?;
        check_mode(self.root.mode)?;
        let mut dirs: Vec<&str> = Vec::new();
        for e in &self.entries {
            check_path(&e.path)?;
            check_mode(e.meta.mode)?;
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                if !dirs.contains(&parent) {
                    return Err(bad_path(&e.path));
                }
            }
            if dirs.contains(&e.path.as_str()) {
                return Err(bad_path(&e.path));
            }
            if e.data.is_none() {
                dirs.push(&e.path);
            }
        }
        let mut files: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.data.is_some())
            .map(|e| e.path.as_str())
            .collect();
        let count = files.len();
        files.sort_unstable();
        files.dedup();
        if files.len() != count || files.iter().any(|f| dirs.contains(f)) {
            return Err(LimitError::BadPath {
                what: "volume path",
                value: "a path given twice".into(),
            });
        }
        Ok(())
    }

    /// The request that writes this payload as volume `volume` of container `cid`.
    pub fn to_request(&self, cid: &str, volume: u32) -> WriteVolumeRequest {
        WriteVolumeRequest {
            container_id: cid.to_owned(),
            volume,
            entries: self
                .entries
                .iter()
                .map(|e| VolumeEntry {
                    path: e.path.clone(),
                    dir: e.data.is_none(),
                    mode: e.meta.mode,
                    uid: e.meta.uid,
                    gid: e.meta.gid,
                    data: e.data.clone().unwrap_or_default(),
                    ..Default::default()
                })
                .collect(),
            mode: self.root.mode,
            uid: self.root.uid,
            gid: self.root.gid,
            ..Default::default()
        }
    }

    /// The checked payload of a request (its container id is checked too).
    pub fn from_request(req: &WriteVolumeRequest) -> Result<Self, LimitError> {
        limits::check_id("container id", &req.container_id)?;
        limits::check_count("volume entries", req.entries.len(), MAX_VOLUME_ENTRIES)?;
        let mut entries = Vec::with_capacity(req.entries.len());
        for e in &req.entries {
            if e.dir && !e.data.is_empty() {
                return Err(bad_path(&e.path));
            }
            entries.push(Entry {
                path: e.path.clone(),
                meta: Meta {
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                },
                data: (!e.dir).then(|| e.data.clone()),
            });
        }
        let payload = Payload {
            root: Meta {
                mode: req.mode,
                uid: req.uid,
                gid: req.gid,
            },
            entries,
        };
        payload.check()?;
        Ok(payload)
    }
}

fn bad_path(value: &str) -> LimitError {
    LimitError::BadPath {
        what: "volume path",
        value: value.chars().take(80).collect(),
    }
}

fn check_mode(mode: u32) -> Result<(), LimitError> {
    if mode & !MODE_BITS != 0 {
        return Err(LimitError::BadPath {
            what: "volume mode",
            value: format!("{mode:o}"),
        });
    }
    Ok(())
}

/// Checks a payload path: relative, at most [`limits::MAX_PATH_LEN`] bytes, no NUL, no empty,
/// `.` or `..` component, and a first component that does not start with `..` (those names are
/// the layout's own, as the kubelet also requires).
pub fn check_path(path: &str) -> Result<(), LimitError> {
    limits::check_len("volume path", path.len(), limits::MAX_PATH_LEN)?;
    let ok = !path.is_empty()
        && !path.contains('\0')
        && !path.starts_with("..")
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(bad_path(path))
    }
}

/// Whether `name` is a payload directory's name in the layout (`..<something>`, but not one of
/// the two links).
pub fn is_payload_dir_name(name: &str) -> bool {
    name.len() > 2
        && name.starts_with("..")
        && !name.contains('/')
        && name != DATA_LINK
        && name != DATA_TMP_LINK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> Entry {
        Entry {
            path: path.into(),
            meta: Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            data: Some(data.as_bytes().to_vec()),
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            meta: Meta {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
            data: None,
        }
    }

    #[test]
    fn payloads_round_trip_through_the_wire() {
        let p = Payload {
            root: Meta {
                mode: 0o2755,
                uid: 0,
                gid: 2000,
            },
            entries: vec![file("key", "v1"), dir("sub"), file("sub/other", "")],
        };
        p.check().unwrap();
        let back = Payload::from_request(&p.to_request("c1", 3)).unwrap();
        assert_eq!(back, p);
        assert_eq!(p.top_level(), ["key", "sub"]);
        assert_eq!(p.data_len(), 2);
    }

    #[test]
    fn hostile_paths_and_shapes_are_refused() {
        for bad in [
            "", "/abs", "a//b", "./a", "a/./b", "../x", "a/../b", "..data", "..2026", "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in ["key", "a/b", "a..b", ".hidden", "a/..b"] {
            check_path(good).unwrap();
        }
        let orphan = Payload {
            entries: vec![file("nodir/key", "x")],
            ..Default::default()
        };
        assert!(orphan.check().is_err(), "a parent must come first");
        let twice = Payload {
            entries: vec![file("k", "1"), file("k", "2")],
            ..Default::default()
        };
        assert!(twice.check().is_err());
        let file_and_dir = Payload {
            entries: vec![dir("k"), file("k", "2")],
            ..Default::default()
        };
        assert!(file_and_dir.check().is_err());
        let mut setuid_ok = Payload {
            entries: vec![file("k", "1")],
            ..Default::default()
        };
        setuid_ok.entries[0].meta.mode = 0o4755;
        setuid_ok.check().unwrap();
        setuid_ok.entries[0].meta.mode = 0o10644;
        assert!(setuid_ok.check().is_err(), "file type bits are not a mode");
        let mut req = Payload::default().to_request("c1", 0);
        req.entries.push(VolumeEntry {
            path: "d".into(),
            dir: true,
            data: b"x".to_vec(),
            ..Default::default()
        });
        assert!(
            Payload::from_request(&req).is_err(),
            "a directory has no data"
        );
        req.entries.clear();
        req.container_id = "../x".into();
        assert!(Payload::from_request(&req).is_err());
    }

    #[test]
    fn caps_hold() {
        let big = Payload {
            entries: vec![file("k", &"x".repeat(MAX_VOLUME_BYTES + 1))],
            ..Default::default()
        };
        assert!(big.check().is_err());
        let many = Payload {
            entries: (0..=MAX_VOLUME_ENTRIES)
                .map(|n| file(&format!("k{n}"), ""))
                .collect(),
            ..Default::default()
        };
        assert!(many.check().is_err());
    }

    #[test]
    fn payload_dir_names() {
        assert!(is_payload_dir_name("..2026_12_06_08_00_00.123"));
        for not in ["..data", "..data_tmp", "..", "key", ".x", "../x"] {
            assert!(!is_payload_dir_name(not), "{not}");
        }
    }
}
