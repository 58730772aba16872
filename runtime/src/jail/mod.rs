//! The VMM's jail. A VMM parses whatever a compromised guest sends it, so hull runs it with as
//! little as it needs, the way Firecracker's jailer does:
//!
//! - its own mount, PID, IPC and UTS namespaces (it is PID 1 of its PID namespace, so nothing it
//!   starts outlives it);
//! - `pivot_root` into a fresh tmpfs holding only what it uses: the system's `/usr` read-only (for
//!   its shared libraries and firmware), the kernel and initramfs read-only, its sockets, and device nodes it needs (`/dev/kvm`, `/dev/net/tun`, `/dev/null`, `/dev/urandom`);
//! - an unprivileged uid/gid of its own (one per pod), no supplementary groups, `no_new_privs`,
//!   rlimits, and the parent-death signal so it dies with its jailer.
//!
//! There is no `RLIMIT_FSIZE`: it would also cap the guest-RAM memfd the VMM sizes with
//! `ftruncate`. The VMM writes no host file that grows: its console and messages are pipes the
//! runtime copies into bounded logs ([`crate::vm::output`]), and its writable tmpfs mounts have
//! a size.
//!
//! The runtime describes a jail as a [`JailConfig`] and runs `hull-jailer --config <json> -- <vmm>
//! <args>` ([`command`]); `hull-jailer` ([`exec`]) builds it and execs the VMM inside. Everything
//! the jail holds is in its own mount namespace: nothing is left on the host when it ends.

pub mod exec;

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The first uid (and gid) handed to jailed VMMs; each pod gets one in
/// `UID_BASE..UID_BASE + UID_RANGE`, picked from its run directory.
pub const UID_BASE: u32 = 0x0010_0000;
/// How many uids jailed VMMs spread over.
pub const UID_RANGE: u32 = 0x0010_0000;

/// A file or directory of the host made visible in the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// The host path.
    pub host: PathBuf,
    /// Where the jailed VMM sees it (absolute, inside the jail).
    pub jail: PathBuf,
    /// Mounted read-write (otherwise read-only).
    pub writable: bool,
}

/// A tap the jailer creates (as root, in the VMM's network namespace) owned by the VMM's uid, since
/// the unprivileged VMM cannot create one; it attaches to it by name. The jailer deletes it when
/// the VMM exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailTap {
    /// The tap's name.
    pub name: String,
}

/// A host file the jailer opens read-only as root, before it drops privileges, and hands to the
/// VMM as descriptor `fd` (not close-on-exec): how a jailed VMM reads a root-only file (a
/// template's snapshot files, mode 0600) that neither a bind mount nor its uid could open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailFile {
    /// The host path (a regular file; a symlink is refused).
    pub host: PathBuf,
    /// The descriptor number the VMM finds it at (3 to 63).
    pub fd: i32,
}

/// The descriptors [`JailFile`]s may be given.
pub const JAIL_FDS: std::ops::RangeInclusive<i32> = 3..=63;

/// Everything the jailer needs to build one VMM's jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailConfig {
    /// An empty directory the jail's tmpfs root is mounted on (in the jail's mount namespace
    /// only). It must exist.
    pub root: PathBuf,
    /// The VMM's uid.
    pub uid: u32,
    /// The VMM's gid.
    pub gid: u32,
    /// The hostname inside the UTS namespace.
    pub hostname: String,
    /// Host paths to bind into the jail.
    pub binds: Vec<Bind>,
    /// Character devices recreated in the jail's `/dev` (same numbers), owned by the VMM's uid.
    pub devices: Vec<PathBuf>,
    /// A tap to open for the VMM.
    pub tap: Option<JailTap>,
    /// `RLIMIT_NOFILE`.
    pub max_open_files: u64,
    /// cgroup directories (one per hierarchy) the jailer joins before it starts the VMM, so the
    /// VMM and the guest's RAM are accounted there (see [`crate::host_cgroup`]).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// Host files opened as root and passed to the VMM as descriptors.
    #[serde(default)]
    pub files: Vec<JailFile>,
}

/// Building or entering a jail failed.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The jailer binary is not there.
    #[error(
        "the VMM jailer {0} is missing (build hull, or set `jail = false` to run VMMs unconfined)"
    )]
    JailerMissing(PathBuf),
    /// A path to bind is not there.
    #[error("{0} does not exist, so it cannot be bound into the VMM's jail")]
    Missing(PathBuf),
    /// A jail path is not absolute or climbs out.
    #[error("invalid jail path {0}")]
    BadPath(PathBuf),
    /// A descriptor for a [`JailFile`] outside [`JAIL_FDS`] or given twice.
    #[error("descriptor {0} cannot carry a file into the jail (3 to 63, once each)")]
    BadFd(i32),
    /// The config could not be (de)serialised.
    #[error("invalid jail config")]
    Config(#[from] serde_json::Error),
    /// A system call failed while building the jail.
    #[error("{0}")]
    Sys(String, #[source] std::io::Error),
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> JailError {
    let what = what.into();
    move |e| JailError::Sys(what, e.into())
}

impl JailConfig {
    /// A jail rooted at `root` for the VMM of the pod whose private directory is `run_dir`: its
    /// uid/gid come from [`uid_for`]; the system's `/usr` is bound read-only; `/dev/null` and
    /// `/dev/urandom` are there. Callers add their files, devices and tap.
    pub fn new(root: PathBuf, run_dir: &Path) -> Self {
        let id = uid_for(run_dir);
        Self {
            root,
            uid: id,
            gid: id,
            hostname: "hull-vmm".to_owned(),
            binds: vec![Bind {
                host: "/usr".into(),
                jail: "/usr".into(),
                writable: false,
            }],
            devices: vec!["/dev/null".into(), "/dev/urandom".into()],
            tap: None,
            max_open_files: 4096,
            cgroups: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Binds `host` at `jail`, read-only unless `writable`.
    pub fn bind(&mut self, host: impl Into<PathBuf>, jail: impl Into<PathBuf>, writable: bool) {
        self.binds.push(Bind {
            host: host.into(),
            jail: jail.into(),
            writable,
        });
    }

    /// Checks paths before anything runs, so errors name the missing piece.
    pub fn validate(&self) -> Result<(), JailError> {
        for bind in &self.binds {
            if !bind.host.exists() {
                return Err(JailError::Missing(bind.host.clone()));
            }
            check_jail_path(&bind.jail)?;
        }
        for device in &self.devices {
            if !device.exists() {
                return Err(JailError::Missing(device.clone()));
            }
            check_jail_path(device)?;
        }
        for dir in &self.cgroups {
            check_jail_path(dir)?;
            if !dir.is_dir() {
                return Err(JailError::Missing(dir.clone()));
            }
        }
        if !self.root.is_dir() {
            return Err(JailError::Missing(self.root.clone()));
        }
        for (i, file) in self.files.iter().enumerate() {
            if !file.host.is_file() {
                return Err(JailError::Missing(file.host.clone()));
            }
            if !JAIL_FDS.contains(&file.fd) || self.files[..i].iter().any(|f| f.fd == file.fd) {
                return Err(JailError::BadFd(file.fd));
            }
        }
        Ok(())
    }

    /// Gives the jailed VMM's uid/gid ownership of `path` (a socket it connects to, a file it
    /// writes).
    pub fn hand_over(&self, path: &Path) -> Result<(), JailError> {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )
        .map_err(sys(format!(
            "cannot hand {} to the VMM's uid",
            path.display()
        )))
    }
}

fn check_jail_path(path: &Path) -> Result<(), JailError> {
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if ok {
        Ok(())
    } else {
        Err(JailError::BadPath(path.to_owned()))
    }
}

/// The uid (= gid) of the VMM of the pod at `run_dir`: FNV-1a of the path, folded into
/// [`UID_BASE`]`..+`[`UID_RANGE`]. Distinct pods get distinct uids unless their hashes collide;
/// even then the jails share nothing but the uid.
pub fn uid_for(run_dir: &Path) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in run_dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    UID_BASE + hash % UID_RANGE
}

/// The command that runs `vmm args…` inside the jail described by `config`, through the jailer
/// binary `jailer`.
pub fn command(
    jailer: &Path,
    config: &JailConfig,
    vmm: &Path,
    args: Vec<OsString>,
) -> Result<Command, JailError> {
    if !jailer.is_file() {
        return Err(JailError::JailerMissing(jailer.to_owned()));
    }
    config.validate()?;
    let mut command = Command::new(jailer);
    command
        .arg("--config")
        .arg(serde_json::to_string(config)?)
        .arg("--")
        .arg(vmm)
        .args(args);
    Ok(command)
}

/// Where the jailer binary is: `HULL_JAILER`, else `hull-jailer` beside the running executable,
/// else on `PATH`.
pub fn default_jailer() -> PathBuf {
    if let Some(path) = std::env::var_os("HULL_JAILER") {
        return path.into();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("hull-jailer")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("hull-jailer"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| "/usr/local/bin/hull-jailer".into())
}

/// Whether `path` is a character device (what may be recreated in a jail).
pub fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_in_range_and_differ_between_pods() {
        let a = uid_for(Path::new("/run/hull/pod-a"));
        let b = uid_for(Path::new("/run/hull/pod-b"));
        assert_ne!(a, b);
        for uid in [a, b] {
            assert!((UID_BASE..UID_BASE + UID_RANGE).contains(&uid), "{uid}");
        }
        assert_eq!(a, uid_for(Path::new("/run/hull/pod-a")), "stable");
    }

    #[test]
    fn configs_name_what_is_missing_or_wrong() {
        let root = tempfile::tempdir().unwrap();
        let mut config = JailConfig::new(root.path().to_owned(), Path::new("/run/hull/p"));
        config.validate().unwrap();
        config.bind("/nonexistent/kernel", "/vm/kernel", false);
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kernel"), "{err}");
        config.binds.pop();
        config.bind("/usr", "/a/../../etc", false);
        assert!(matches!(config.validate(), Err(JailError::BadPath(_))));
        config.binds.pop();
        let file = root.path().join("state");
        std::fs::write(&file, b"x").unwrap();
        config.files = vec![
            JailFile {
                host: file.clone(),
                fd: 3,
            },
            JailFile {
                host: file.clone(),
                fd: 3,
            },
        ];
        assert!(matches!(config.validate(), Err(JailError::BadFd(3))));
        config.files[1].fd = 2;
        assert!(matches!(config.validate(), Err(JailError::BadFd(2))));
        config.files[1].fd = 4;
        config.validate().unwrap();
        config.files[1].host = root.path().join("missing");
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("missing"));
        config.files.clear();
        let err = command(
            Path::new("/nonexistent/hull-jailer"),
            &config,
            Path::new("/bin/true"),
            vec![],
        )
        .unwrap_err();
        assert!(err.to_string().contains("jail = false"), "{err}");
    }

    #[test]
    fn the_config_travels_as_json() {
        let mut config = JailConfig::new("/run/hull/p/jail".into(), Path::new("/run/hull/p"));
        config.tap = Some(JailTap {
            name: "tap0_hull".into(),
        });
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<JailConfig>(&json).unwrap(), config);
    }
}
