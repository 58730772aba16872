//! The container's device nodes: the OCI default set (`null`, `zero`, `full`, `random`,
//! `urandom`, `tty`) plus `linux.devices`, and the standard `/dev` symlinks.
//!
//! Nodes are made with `mknod(2)`; inside a new user namespace, where `mknod` is not allowed, the
//! agent's own nodes are bind-mounted instead (only for the default set; spec devices then fail).

use std::ffi::CString;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::mounts::container_path;

/// A device we cannot create.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// The path is not absolute or leaves the container.
    #[error("device path {0:?} must be absolute and without `..`")]
    Path(PathBuf),
    /// `a` (all) is a cgroup rule type, not a node type.
    #[error("device {0} has a type that is not a node type")]
    Type(PathBuf),
    /// A NUL byte in the path.
    #[error("device path {0} holds a NUL byte")]
    Nul(PathBuf),
    /// Major or minor out of range.
    #[error("device {0} has an invalid major/minor")]
    Number(PathBuf),
}

/// One node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// Path inside the container.
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: libc::mode_t,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: libc::mode_t,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The agent's own node, bind-mounted in a user namespace (default devices only).
    pub host_path: Option<CString>,
}

/// `(name, major, minor)` of the default devices, all `0666 root:root` character devices.
const DEFAULTS: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symlinks every container gets in `/dev`: `(link, target)`.
pub const DEV_SYMLINKS: [(&str, &str); 5] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
];

/// The devices of a spec: defaults first, a spec entry with the same path replaces a default.
pub fn plan(spec: &Spec) -> Result<Vec<DevicePlan>, DeviceError> {
    let mut out: Vec<DevicePlan> = DEFAULTS
        .iter()
        .map(|(name, major, minor)| DevicePlan {
            path: PathBuf::from("/dev").join(name),
            kind: libc::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
            host_path: CString::new(format!("/dev/{name}")).ok(),
        })
        .collect();
    let devices = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    for d in devices.into_iter().flatten() {
        let path = container_path(d.path()).ok_or_else(|| DeviceError::Path(d.path().clone()))?;
        if path.to_str().is_none_or(|s| s.contains('\0')) {
            return Err(DeviceError::Nul(path));
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => return Err(DeviceError::Type(path)),
        };
        let (major, minor) = match (u32::try_from(d.major()), u32::try_from(d.minor())) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(DeviceError::Number(path)),
        };
        out.retain(|p| p.path != path);
        out.push(DevicePlan {
            path,
            kind,
            major,
            minor,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
            host_path: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn defaults_and_spec_devices() {
        let spec: Spec = serde_json::from_str(
            r#"{"linux":{"devices":[
              {"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":8630,"uid":0,"gid":0},
              {"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":438,"uid":5,"gid":6},
              {"path":"/dev/sda","type":"b","major":8,"minor":0},
              {"path":"/dev/fifo","type":"p","major":0,"minor":0}]}}"#,
        )
        .unwrap();
        let p = plan(&spec).unwrap();
        assert_eq!(p.len(), 9);
        let find = |n: &str| p.iter().find(|d| d.path == Path::new(n)).unwrap();
        assert_eq!(find("/dev/tty").major, 5);
        assert_eq!(find("/dev/null").uid, 5);
        assert!(find("/dev/null").host_path.is_none());
        assert_eq!(
            find("/dev/zero")
                .host_path
                .as_deref()
                .unwrap()
                .to_str()
                .unwrap(),
            "/dev/zero"
        );
        // 8630 = 0o20666: the type bits are dropped, the node type comes from `type`.
        assert_eq!(find("/dev/fuse").mode, 0o666);
        assert_eq!(find("/dev/sda").kind, libc::S_IFBLK);
        assert_eq!(find("/dev/fifo").kind, libc::S_IFIFO);
    }

    #[test]
    fn rejects_bad_devices() {
        let bad = |j: &str| plan(&serde_json::from_str::<Spec>(j).unwrap()).unwrap_err();
        assert!(matches!(
            bad(r#"{"linux":{"devices":[{"path":"dev/x","type":"c","major":1,"minor":1}]}}"#),
            DeviceError::Path(_)
        ));
        assert!(matches!(
            bad(r#"{"linux":{"devices":[{"path":"/dev/../x","type":"c","major":1,"minor":1}]}}"#),
            DeviceError::Path(_)
        ));
        assert!(matches!(
            bad(r#"{"linux":{"devices":[{"path":"/dev/x","type":"a","major":1,"minor":1}]}}"#),
            DeviceError::Type(_)
        ));
        assert!(matches!(
            bad(r#"{"linux":{"devices":[{"path":"/dev/x","type":"c","major":-1,"minor":1}]}}"#),
            DeviceError::Number(_)
        ));
    }
}
