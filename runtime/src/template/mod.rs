//! VM templates: a hull-vmm VM of a pod's shape, booted until its agent is ready (before any
//! container, mount or connection exists) and snapshotted, so that pods of that shape restore it
//! instead of booting a kernel (`start = "snapshot"`, docs/snapshot.md).
//!
//! A template lives in `<root>/<key>/` (root: [`DEFAULT_ROOT`]): hull-vmm's snapshot files
//! (`state`, `memory`) and [`RECORD`], which holds the [`TemplateInputs`] it was made from. The
//! key is a hash of those inputs — hull version, kernel and initramfs content, vCPUs, memory,
//! kernel command line, device layout — so a change to any of them asks for another template,
//! and templates made from other images or another hull are [`prune`]d when a new one is made.
//! [`lookup`] refuses a template that is not root-only, whose record does not match its key or
//! the inputs, or whose files are not the sizes recorded; the caller then boots normally. Deeper
//! damage (checksums) is hull-vmm's to find when it restores.

pub mod create;
pub mod hashes;
pub mod verified;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where templates are kept.
pub const DEFAULT_ROOT: &str = "/var/lib/hull/templates";
/// The record of what a template was made from, in its directory.
pub const RECORD: &str = "template.json";
/// hull-vmm's snapshot state file.
pub const STATE_FILE: &str = "state";
/// hull-vmm's snapshot memory file.
pub const MEMORY_FILE: &str = "memory";
/// This hull's version, part of every key.
pub const HULL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Finding, making or removing a template failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file or directory could not be read or written.
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    /// The template's files are not what its record says, or the record is damaged.
    #[error("template {key} is corrupt: {why}; remove it (`hull template rm {key}`) or make it again (`hull template create`)")]
    Corrupt {
        /// The template's key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The template was made from other inputs than its key says.
    #[error("template {key} is stale: {why}; make it again (`hull template create`)")]
    Stale {
        /// The template's key.
        key: String,
        /// What differs.
        why: String,
    },
    /// A name that is not a template key (`hull template list` prints the keys).
    #[error("{0:?} is not a template key (hex digits, as `hull template list` prints them)")]
    NotAKey(String),
    /// The template directory may be read or written by others than root.
    #[error("template directory {0} is not root-only (it must be owned by root, mode 0700)")]
    NotPrivate(PathBuf),
    /// Making the template failed.
    #[error("cannot make the template: {0}")]
    Create(
        String,
        #[source] Option<Box<dyn std::error::Error + Send + Sync>>,
    ),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TemplateError {
    let what = what.into();
    move |e| TemplateError::Io(what, e)
}

/// Everything that makes a template valid for a pod: a pod restores only a template made from
/// exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInputs {
    /// hull's version.
    pub hull_version: String,
    /// SHA-256 of the kernel image.
    pub kernel_sha256: String,
    /// SHA-256 of the initramfs.
    pub initramfs_sha256: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// The kernel command line the template guest booted with (hull-vmm's base words first).
    pub cmdline: String,
    /// The device layout, in bus order (`vsock`, `fs:<tag>`), and hull-vmm's extra arguments.
    pub devices: Vec<String>,
}

impl TemplateInputs {
    /// The key: the first 32 hex digits of the SHA-256 of the inputs' JSON.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// What differs between `self` (recorded) and `wanted`, in words; empty when nothing does.
    pub fn differences(&self, wanted: &Self) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            let (a, b) = (format!("{a:?}"), format!("{b:?}"));
            if a != b {
                d.push(format!("{what} {a} (now {b})"));
            }
        };
        cmp("hull", &self.hull_version, &wanted.hull_version);
        cmp("kernel", &self.kernel_sha256, &wanted.kernel_sha256);
        cmp(
            "initramfs",
            &self.initramfs_sha256,
            &wanted.initramfs_sha256,
        );
        cmp("vCPUs", &self.vcpus, &wanted.vcpus);
        cmp("memory MiB", &self.memory_mib, &wanted.memory_mib);
        cmp("command line", &self.cmdline, &wanted.cmdline);
        cmp("devices", &self.devices, &wanted.devices);
        d
    }

    /// Whether a template made from `self` can never serve this install again (other hull or
    /// images), whatever the pod shape.
    fn superseded_by(&self, current: &Self) -> bool {
        self.hull_version != current.hull_version
            || self.kernel_sha256 != current.kernel_sha256
            || self.initramfs_sha256 != current.initramfs_sha256
    }
}

/// A template's record ([`RECORD`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its key.
    pub key: String,
    /// What it was made from.
    pub inputs: TemplateInputs,
    /// When it was made (seconds since the epoch).
    pub created: u64,
    /// The state file's size.
    pub state_bytes: u64,
    /// The memory file's size.
    pub memory_bytes: u64,
}

/// A template found valid for a pod.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its directory (the snapshot directory hull-vmm restores).
    pub dir: PathBuf,
    /// Its record.
    pub record: Record,
}

/// What [`lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// A valid template.
    Ready(Template),
    /// None made yet for these inputs.
    Missing,
}

/// The template directory for `inputs` under `root`.
pub fn dir_for(root: &Path, inputs: &TemplateInputs) -> PathBuf {
    root.join(inputs.key())
}

/// Checks that `path` is owned by this process's effective uid (root in production) and that
/// nobody else may read, write or enter it.
pub fn check_private(path: &Path) -> Result<(), TemplateError> {
    let meta =
        std::fs::symlink_metadata(path).map_err(io(format!("cannot stat {}", path.display())))?;
    let private =
        meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 == 0;
    if private {
        Ok(())
    } else {
        Err(TemplateError::NotPrivate(path.to_owned()))
    }
}

/// Reads a template directory's record.
pub fn read_record(dir: &Path, key: &str) -> Result<Record, TemplateError> {
    let corrupt = |why: String| TemplateError::Corrupt {
        key: key.to_owned(),
        why,
    };
    let text = std::fs::read(dir.join(RECORD))
        .map_err(|e| corrupt(format!("no readable {RECORD}: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| corrupt(format!("{RECORD} does not parse: {e}")))
}

/// Finds the template for `inputs` under `root` and checks it: root-only, its record naming
/// its key and exactly these inputs, its files of the recorded sizes.
pub fn lookup(root: &Path, inputs: &TemplateInputs) -> Result<Lookup, TemplateError> {
    let key = inputs.key();
    let dir = root.join(&key);
    if !dir.exists() {
        return Ok(Lookup::Missing);
    }
    check_private(root)?;
    check_private(&dir)?;
    let record = read_record(&dir, &key)?;
    let corrupt = |why: String| TemplateError::Corrupt {
        key: key.clone(),
        why,
    };
    if record.key != key {
        return Err(corrupt(format!("{RECORD} names key {}", record.key)));
    }
    let differences = record.inputs.differences(inputs);
    if !differences.is_empty() {
        return Err(TemplateError::Stale {
            key,
            why: format!("made from {}", differences.join(", ")),
        });
    }
    for (name, expected) in [
        (STATE_FILE, record.state_bytes),
        (MEMORY_FILE, record.memory_bytes),
    ] {
        match std::fs::symlink_metadata(dir.join(name)) {
            Ok(m) if m.is_file() && m.len() == expected => {}
            Ok(m) => {
                return Err(corrupt(format!(
                    "{name} is {} bytes, {RECORD} says {expected}",
                    m.len()
                )))
            }
            Err(e) => return Err(corrupt(format!("{name}: {e}"))),
        }
    }
    Ok(Lookup::Ready(Template { dir, record }))
}

/// A template's key with its record, or why it has none.
pub type Listed = (String, Result<Record, TemplateError>);

/// Every template under `root` with its record (or why it has none), by key.
pub fn list(root: &Path) -> Result<Vec<Listed>, TemplateError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("cannot read {}", root.display()))(e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let record = read_record(&entry.path(), &name);
        out.push((name, record));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Removes template `key` under `root`.
pub fn remove(root: &Path, key: &str) -> Result<(), TemplateError> {
    let ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(TemplateError::NotAKey(key.to_owned()));
    }
    let dir = root.join(key);
    std::fs::remove_dir_all(&dir).map_err(io(format!("cannot remove {}", dir.display())))
}

/// Removes the templates under `root` that `current` supersedes (made by another hull or from
/// other images); returns their keys. Damaged ones are left for `hull template rm`.
pub fn prune(root: &Path, current: &TemplateInputs) -> Vec<String> {
    let mut removed = Vec::new();
    for (key, record) in list(root).unwrap_or_default() {
        if let Ok(r) = record {
            if r.inputs.superseded_by(current) && remove(root, &key).is_ok() {
                removed.push(key);
            }
        }
    }
    removed
}

/// Replaces `path` with `bytes`, root-only (0600): written and synced beside it under a hidden
/// per-process name, then renamed over it, so a reader sees the old file or the new, never half;
/// the temporary file is removed when anything fails.
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        name.trim_start_matches('.'),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `root` (and its parents) root-only, or tightens it.
pub fn ensure_root(root: &Path) -> Result<(), TemplateError> {
    std::fs::create_dir_all(root).map_err(io(format!("cannot create {}", root.display())))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot make {} root-only", root.display())))
}

#[cfg(test)]
mod tests;
