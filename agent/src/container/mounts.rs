//! `mounts[]` → what to pass to `mount(2)`: the filesystem, the flags, the data string, the
//! propagation and whether a bind needs a read-only (or other flag) remount.
//!
//! Pure parsing, done in the agent before forking. An option we do not know is an error for a
//! bind mount (the kernel would ignore data there); for other filesystems non-flag options go to
//! the filesystem as data and the kernel rejects the ones it does not know.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

/// A mount we cannot honour.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountError {
    /// The destination is not an absolute path inside the container.
    #[error("mount destination {0:?} must be absolute and without `..`")]
    Destination(PathBuf),
    /// The filesystem type is not supported.
    #[error("mount type {typ:?} on {dest} is not supported")]
    Type {
        /// The type.
        typ: String,
        /// The destination.
        dest: PathBuf,
    },
    /// An option is not supported.
    #[error("mount option {option:?} on {dest} is not supported")]
    Option {
        /// The option.
        option: String,
        /// The destination.
        dest: PathBuf,
    },
    /// A bind mount without a source, or with a relative one.
    #[error("bind mount on {0} needs an absolute source")]
    BindSource(PathBuf),
    /// A string holds a NUL byte.
    #[error("mount on {0} holds a NUL byte")]
    Nul(PathBuf),
}

/// What is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount (`rbind` when `recursive`).
    Bind {
        /// `rbind`.
        recursive: bool,
    },
    /// A filesystem mount (tmpfs, proc, sysfs, devpts, mqueue, cgroup2).
    Fs,
}

/// One mount, ready for the forked side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Bind or filesystem.
    pub kind: MountKind,
    /// Destination inside the container (absolute, normalised).
    pub dest: PathBuf,
    /// Source (`mount(2)`'s first argument).
    pub source: CString,
    /// Filesystem type (`mount(2)`'s third argument); empty for binds.
    pub fstype: CString,
    /// Flags for the first `mount(2)` (for binds: `MS_BIND [| MS_REC]`).
    pub flags: MsFlags,
    /// For binds: flags for the `MS_REMOUNT | MS_BIND` pass, when any are set.
    pub remount: Option<MsFlags>,
    /// Propagation changes, applied in order after mounting.
    pub propagation: Vec<MsFlags>,
    /// Filesystem data (`mode=755,size=…`).
    pub data: CString,
    /// Whether the source is a directory (binds of files need a file as mount point).
    pub source_is_dir: bool,
    /// Recursive attributes to set / clear with `mount_setattr(2)` (both 0: none).
    pub recursive_attrs: (u64, u64),
}

/// Flag options: name → (flag, set or clear).
const FLAG_OPTIONS: &[(&str, MsFlags, bool)] = &[
    ("defaults", MsFlags::empty(), true),
    ("ro", MsFlags::MS_RDONLY, true),
    ("rw", MsFlags::MS_RDONLY, false),
    ("nosuid", MsFlags::MS_NOSUID, true),
    ("suid", MsFlags::MS_NOSUID, false),
    ("nodev", MsFlags::MS_NODEV, true),
    ("dev", MsFlags::MS_NODEV, false),
    ("noexec", MsFlags::MS_NOEXEC, true),
    ("exec", MsFlags::MS_NOEXEC, false),
    ("sync", MsFlags::MS_SYNCHRONOUS, true),
    ("async", MsFlags::MS_SYNCHRONOUS, false),
    ("dirsync", MsFlags::MS_DIRSYNC, true),
    ("remount", MsFlags::MS_REMOUNT, true),
    ("mand", MsFlags::MS_MANDLOCK, true),
    ("nomand", MsFlags::MS_MANDLOCK, false),
    ("noatime", MsFlags::MS_NOATIME, true),
    ("atime", MsFlags::MS_NOATIME, false),
    ("nodiratime", MsFlags::MS_NODIRATIME, true),
    ("diratime", MsFlags::MS_NODIRATIME, false),
    ("relatime", MsFlags::MS_RELATIME, true),
    ("norelatime", MsFlags::MS_RELATIME, false),
    ("strictatime", MsFlags::MS_STRICTATIME, true),
    ("nostrictatime", MsFlags::MS_STRICTATIME, false),
    ("silent", MsFlags::MS_SILENT, true),
    ("loud", MsFlags::MS_SILENT, false),
    (
        "nosymfollow",
        MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
        true,
    ),
];

/// `MOUNT_ATTR_*` of `mount_setattr(2)`.
const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;
const ATTR_ATIME_MASK: u64 = 0x70;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_STRICTATIME: u64 = 0x20;
const ATTR_NODIRATIME: u64 = 0x80;
const ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// Recursive options (OCI 1.1), applied to the whole mount tree with `mount_setattr(2)`:
/// name → (attributes to set, attributes to clear).
const RECURSIVE_OPTIONS: &[(&str, u64, u64)] = &[
    ("rro", ATTR_RDONLY, 0),
    ("rrw", 0, ATTR_RDONLY),
    ("rnosuid", ATTR_NOSUID, 0),
    ("rsuid", 0, ATTR_NOSUID),
    ("rnodev", ATTR_NODEV, 0),
    ("rdev", 0, ATTR_NODEV),
    ("rnoexec", ATTR_NOEXEC, 0),
    ("rexec", 0, ATTR_NOEXEC),
    ("rnodiratime", ATTR_NODIRATIME, 0),
    ("rdiratime", 0, ATTR_NODIRATIME),
    ("rnoatime", ATTR_NOATIME, ATTR_ATIME_MASK),
    ("ratime", 0, ATTR_ATIME_MASK),
    ("rrelatime", 0, ATTR_ATIME_MASK),
    ("rstrictatime", ATTR_STRICTATIME, ATTR_ATIME_MASK),
    ("rnosymfollow", ATTR_NOSYMFOLLOW, 0),
    ("rsymfollow", 0, ATTR_NOSYMFOLLOW),
];

/// Propagation options.
const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Filesystem types we mount (besides binds).
const FS_TYPES: &[&str] = &[
    "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// Parses a propagation name (`rootfsPropagation` uses the same words).
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    PROPAGATION
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// Normalises a container path: absolute, no `..`.
pub fn container_path(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn cstring(s: &str, dest: &Path) -> Result<CString, MountError> {
    CString::new(s).map_err(|_| MountError::Nul(dest.to_path_buf()))
}

/// Parses one mount of the spec.
pub fn parse(m: &Mount) -> Result<MountPlan, MountError> {
    let dest = container_path(m.destination())
        .ok_or_else(|| MountError::Destination(m.destination().clone()))?;
    let options = MountOptions::parse(m.options().as_deref().unwrap_or_default(), &dest)?;
    let typ = m.typ().clone().unwrap_or_default();
    match options.bind {
        Some(recursive) => bind_plan(m, dest, recursive, options),
        None if typ == "bind" => bind_plan(m, dest, false, options),
        None => fs_plan(m, dest, typ, options),
    }
}

/// A mount's options, sorted by what they become.
struct MountOptions {
    /// `mount(2)` flags (for a bind mount: those of the remount that follows).
    flags: MsFlags,
    /// Propagation changes, in order.
    propagation: Vec<MsFlags>,
    /// What is left: the file system's own options.
    data: Vec<String>,
    /// `bind` (`Some(false)`) or `rbind` (`Some(true)`).
    bind: Option<bool>,
    /// `mount_setattr(2)` bits to set and to clear on the whole tree.
    recursive_attrs: (u64, u64),
}

impl MountOptions {
    fn parse(options: &[String], dest: &Path) -> Result<Self, MountError> {
        let mut out = MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: None,
            recursive_attrs: (0, 0),
        };
        let (rec_set, rec_clr) = &mut out.recursive_attrs;
        for o in options {
            if let Some((_, set, clr)) = RECURSIVE_OPTIONS.iter().find(|(n, _, _)| n == o) {
                // Atime modes replace each other; other attributes are a set and a clear bit.
                if *clr == ATTR_ATIME_MASK {
                    *rec_set &= !ATTR_ATIME_MASK;
                }
                *rec_set = (*rec_set & !clr) | set;
                *rec_clr = (*rec_clr & !set) | clr;
            } else if let Some((_, f, set)) = FLAG_OPTIONS.iter().find(|(n, _, _)| n == o) {
                if *set {
                    out.flags |= *f;
                } else {
                    out.flags &= !*f;
                }
            } else if let Some(p) = propagation_flag(o) {
                out.propagation.push(p);
            } else if o == "bind" {
                out.bind = Some(out.bind.unwrap_or(false));
            } else if o == "rbind" {
                out.bind = Some(true);
            } else if is_unsupported_runtime_option(o) {
                return Err(MountError::Option {
                    option: o.clone(),
                    dest: dest.to_path_buf(),
                });
            } else {
                out.data.push(o.clone());
            }
        }
        Ok(out)
    }
}

/// A bind mount: an absolute source, no file system options, flags only as a remount after it.
fn bind_plan(
    m: &Mount,
    dest: PathBuf,
    recursive: bool,
    options: MountOptions,
) -> Result<MountPlan, MountError> {
    if !options.data.is_empty() {
        return Err(MountError::Option {
            option: options.data.join(","),
            dest,
        });
    }
    if options.flags.contains(MsFlags::MS_REMOUNT) {
        return Err(MountError::Option {
            option: "remount".into(),
            dest,
        });
    }
    let src = m
        .source()
        .as_ref()
        .filter(|s| s.is_absolute())
        .ok_or_else(|| MountError::BindSource(dest.clone()))?;
    let src_text = src
        .to_str()
        .ok_or_else(|| MountError::BindSource(dest.clone()))?;
    let mut first = MsFlags::MS_BIND;
    if recursive {
        first |= MsFlags::MS_REC;
    }
    Ok(MountPlan {
        kind: MountKind::Bind { recursive },
        source: cstring(src_text, &dest)?,
        fstype: CString::default(),
        flags: first,
        remount: (!options.flags.is_empty()).then_some(options.flags),
        propagation: options.propagation,
        data: CString::default(),
        source_is_dir: std::fs::metadata(src).map(|md| md.is_dir()).unwrap_or(true),
        recursive_attrs: options.recursive_attrs,
        dest,
    })
}

/// A file system mount of one of [`FS_TYPES`].
fn fs_plan(
    m: &Mount,
    dest: PathBuf,
    typ: String,
    options: MountOptions,
) -> Result<MountPlan, MountError> {
    if !FS_TYPES.contains(&typ.as_str()) {
        return Err(MountError::Type { typ, dest });
    }
    // The guest is cgroup v2 only: a v1 "cgroup" mount becomes the unified hierarchy.
    let fstype = if typ == "cgroup" {
        "cgroup2"
    } else {
        typ.as_str()
    };
    let source = m
        .source()
        .as_ref()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(fstype)
        .to_string();
    Ok(MountPlan {
        kind: MountKind::Fs,
        source: cstring(&source, &dest)?,
        fstype: cstring(fstype, &dest)?,
        flags: options.flags,
        remount: None,
        propagation: options.propagation,
        data: cstring(&options.data.join(","), &dest)?,
        source_is_dir: true,
        recursive_attrs: options.recursive_attrs,
        dest,
    })
}

/// Options that runtimes define beyond `mount(8)` and that we do not implement.
fn is_unsupported_runtime_option(o: &str) -> bool {
    matches!(o, "tmpcopyup" | "idmap" | "ridmap")
        || (o.starts_with('r')
            && FLAG_OPTIONS.iter().any(|(n, _, _)| o[1..] == **n)
            && o != "rw"
            && o != "remount"
            && o != "relatime")
        || o.starts_with("x-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> Mount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn tmpfs_flags_and_data() {
        let p = parse(&mount(
            r#"{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}"#,
        ))
        .unwrap();
        assert_eq!(p.kind, MountKind::Fs);
        assert_eq!(p.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(p.data.to_str().unwrap(), "mode=755,size=65536k");
        assert_eq!(p.fstype.to_str().unwrap(), "tmpfs");
        assert_eq!(p.dest, PathBuf::from("/dev"));
    }

    #[test]
    fn devpts_and_cgroup() {
        let p = parse(&mount(
            r#"{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}"#,
        ))
        .unwrap();
        assert_eq!(
            p.data.to_str().unwrap(),
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        );
        let c = parse(&mount(
            r#"{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid","noexec","nodev","relatime"]}"#,
        ))
        .unwrap();
        assert_eq!(c.fstype.to_str().unwrap(), "cgroup2");
        assert!(c.flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_RELATIME));
    }

    #[test]
    fn bind_with_remount_and_propagation() {
        let p = parse(&mount(
            r#"{"destination":"/etc/hosts","type":"bind","source":"/etc/hosts","options":["rbind","ro","nosuid","rprivate"]}"#,
        ))
        .unwrap();
        assert_eq!(p.kind, MountKind::Bind { recursive: true });
        assert_eq!(p.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(p.remount, Some(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(p.propagation, [MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(!p.source_is_dir);
        let plain = parse(&mount(
            r#"{"destination":"/mnt","source":"/tmp","options":["bind"]}"#,
        ))
        .unwrap();
        assert_eq!(plain.kind, MountKind::Bind { recursive: false });
        assert_eq!(plain.remount, None);
        assert!(plain.source_is_dir);
    }

    #[test]
    fn rejections() {
        let err = |j: &str| parse(&mount(j)).unwrap_err();
        assert!(matches!(
            err(
                r#"{"destination":"/x","type":"bind","source":"/tmp","options":["bind","mode=755"]}"#
            ),
            MountError::Option { .. }
        ));
        assert!(matches!(
            err(r#"{"destination":"/x","type":"tmpfs","options":["tmpcopyup"]}"#),
            MountError::Option { .. }
        ));
        assert!(matches!(
            err(r#"{"destination":"/x","type":"tmpfs","options":["rnorelatime"]}"#),
            MountError::Option { .. }
        ));
        assert!(matches!(
            err(r#"{"destination":"/x","type":"bind","source":"/tmp","options":["idmap"]}"#),
            MountError::Option { .. }
        ));
        assert!(matches!(
            err(r#"{"destination":"/x","type":"ext4","source":"/dev/vda"}"#),
            MountError::Type { .. }
        ));
        assert!(matches!(
            err(r#"{"destination":"x","type":"tmpfs"}"#),
            MountError::Destination(_)
        ));
        assert!(matches!(
            err(r#"{"destination":"/a/../b","type":"tmpfs"}"#),
            MountError::Destination(_)
        ));
        assert!(matches!(
            err(r#"{"destination":"/x","type":"bind","source":"rel"}"#),
            MountError::BindSource(_)
        ));
    }

    #[test]
    fn recursive_attributes() {
        let p = parse(&mount(
            r#"{"destination":"/v","type":"bind","source":"/tmp","options":["rbind","rro","rnosuid","rnoatime","rstrictatime","rrw","rro"]}"#,
        ))
        .unwrap();
        let (set, clr) = p.recursive_attrs;
        assert_eq!(set, ATTR_RDONLY | ATTR_NOSUID | ATTR_STRICTATIME);
        assert_eq!(clr, ATTR_ATIME_MASK);
        assert_eq!(p.remount, None, "recursive options are not remount flags");
        let plain = parse(&mount(r#"{"destination":"/v","type":"tmpfs"}"#)).unwrap();
        assert_eq!(plain.recursive_attrs, (0, 0));
    }

    #[test]
    fn propagation_names() {
        assert_eq!(
            propagation_flag("rslave"),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
        assert_eq!(propagation_flag("shared"), Some(MsFlags::MS_SHARED));
        assert_eq!(propagation_flag("bogus"), None);
    }
}
