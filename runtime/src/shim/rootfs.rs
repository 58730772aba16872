//! A container's root filesystem and OCI spec as the guest sees them: one call
//! ([`prepare`]) that makes containerd's rootfs mounts and host bind mounts visible in the guest
//! and rewrites the spec's paths to guest paths, and one ([`release`]) that undoes it.
//!
//! Two sources: the pod's virtio-fs share (containerd's snapshot mounted under
//! `<pod>/shared/<cid>/rootfs`, volumes under `<pod>/shared/<cid>/mounts/<n>`, see
//! `crate::share`), and, for tests, a fixed tree inside the guest (`guest_rootfs` in the
//! configuration).

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;
use oci_spec::runtime::{Root, Spec};

use crate::share::{self, mountpoints, mounts, ShareError};
use crate::shim::volumes::{self, CopiedVolume};

/// Preparing a root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The spec cannot be used.
    #[error("{0}")]
    Spec(String),
    /// containerd's rootfs or a volume cannot reach the guest.
    #[error("cannot share container {0}'s files with the guest")]
    Share(String, #[source] ShareError),
}

/// Where a container's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// containerd's rootfs mounts, shared with the guest through virtio-fs.
    Shared,
    /// A tree already in the guest (tests: the busybox tree packed into the initramfs).
    GuestPath(String),
}

/// A prepared container: where its root is in the guest, and what to undo at delete.
#[derive(Debug)]
pub struct Prepared {
    /// Guest path of the root filesystem.
    pub guest_rootfs: String,
    /// What [`release`] undoes.
    pub undo: Undo,
    /// Volumes copied into the guest rather than shared (see [`volumes`]).
    pub copies: Vec<CopiedVolume>,
}

/// What [`prepare`] set up on the host.
#[derive(Debug, Default)]
pub struct Undo {
    /// The container's directory in the share (everything under it is unmounted, then removed).
    container_dir: Option<PathBuf>,
}

/// Makes container `cid`'s root filesystem visible to the guest and rewrites `spec`'s paths for
/// it. `pod_dir` is the pod's run directory, `bundle` containerd's bundle (a relative `root.path`
/// is relative to it).
pub fn prepare(
    source: &RootfsSource,
    pod_dir: &Path,
    bundle: &Path,
    cid: &str,
    rootfs_mounts: &[Mount],
    spec: &mut Spec,
) -> Result<Prepared, RootfsError> {
    match source {
        RootfsSource::GuestPath(guest) => {
            let mut root = spec.root().clone().unwrap_or_else(|| {
                let mut root = Root::default();
                root.set_readonly(None);
                root
            });
            root.set_path(PathBuf::from(guest));
            spec.set_root(Some(root));
            drop_host_binds(spec);
            Ok(Prepared {
                guest_rootfs: guest.clone(),
                undo: Undo::default(),
                copies: Vec::new(),
            })
        }
        RootfsSource::Shared => {
            let shared = pod_dir.join("shared");
            let container_dir = shared.join(cid);
            let undo = Undo {
                container_dir: Some(container_dir.clone()),
            };
            match share_container(&shared, bundle, cid, rootfs_mounts, spec) {
                Ok(copies) => Ok(Prepared {
                    guest_rootfs: share::guest_rootfs(cid),
                    undo,
                    copies,
                }),
                Err(e) => {
                    if let Err(e) = release(undo) {
                        tracing::warn!("undoing a failed share of {cid}: {e}");
                    }
                    Err(e)
                }
            }
        }
    }
}

fn share_container(
    shared: &Path,
    bundle: &Path,
    cid: &str,
    rootfs_mounts: &[Mount],
    spec: &mut Spec,
) -> Result<Vec<CopiedVolume>, RootfsError> {
    let share_err = |e| RootfsError::Share(cid.to_owned(), e);
    let target = shared.join(cid).join("rootfs");
    let host_root = spec
        .root()
        .as_ref()
        .map(|r| bundle.join(r.path()))
        .ok_or_else(|| RootfsError::Spec("the spec has no root.path".into()))?;
    // A read-only root is read-only on the host too (share::detached), with the mount points
    // the agent would have made in it made first (share::mountpoints). The stage, where an
    // overlay is made ready, is beside the share, never in it.
    let read_only = spec.root().as_ref().and_then(|r| r.readonly()) == Some(true);
    let mount_points = if read_only {
        mountpoints::from_spec(spec)
    } else {
        Vec::new()
    };
    let stage = shared.with_file_name(format!("stage-{cid}"));
    let read_only_root = read_only.then_some(mounts::ReadOnlyRoot {
        mount_points: &mount_points,
        stage: &stage,
    });
    if rootfs_mounts.is_empty() {
        // No snapshot (e.g. `ctr run --rootfs`/`--config`): the spec's root is a host path.
        let access = if read_only {
            mounts::Access::ReadOnly
        } else {
            mounts::Access::ReadWrite
        };
        mounts::bind_with_mount_points(&host_root, &target, access, &mount_points)
            .map_err(share_err)?;
    } else {
        let list: Vec<mounts::RootfsMount> = rootfs_mounts
            .iter()
            .map(|m| mounts::RootfsMount {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        mounts::mount_rootfs(&list, &target, read_only_root).map_err(share_err)?;
    }
    let binds = share::spec::rewrite(spec, cid, shared).map_err(share_err)?;
    let (binds, copies) = volumes::take_copies(spec, cid, binds);
    share::spec::apply(&binds).map_err(share_err)?;
    Ok(copies)
}

/// Undoes [`prepare`]: unmounts everything under the container's share directory and removes it.
pub fn release(undo: Undo) -> Result<(), ShareError> {
    match undo.container_dir {
        Some(dir) => mounts::unmount_all_under(&dir),
        None => Ok(()),
    }
}

/// Removes bind mounts of host paths (the guest cannot see them without a share).
fn drop_host_binds(spec: &mut Spec) {
    if let Some(mounts) = spec.mounts_mut() {
        mounts.retain(|m| {
            let bind = share::spec::is_bind(m);
            if bind {
                tracing::warn!(
                    "dropping bind mount {} → {}: host paths are not shared in guest_rootfs mode",
                    m.source().as_deref().unwrap_or(Path::new("")).display(),
                    m.destination().display()
                );
            }
            !bind
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn typed(v: Value) -> Spec {
        serde_json::from_value(v).unwrap()
    }

    fn json_of(spec: &Spec) -> Value {
        serde_json::to_value(spec).unwrap()
    }

    #[test]
    fn guest_path_rewrites_root_and_drops_binds() {
        let mut spec = typed(json!({
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"]},
                {"destination": "/data", "source": "/srv", "options": ["bind"]}
            ]
        }));
        let p = prepare(
            &RootfsSource::GuestPath("/testroot/busybox".into()),
            Path::new("/run/hull/p"),
            Path::new("/bundle"),
            "c1",
            &[],
            &mut spec,
        )
        .unwrap();
        assert_eq!(p.guest_rootfs, "/testroot/busybox");
        let spec = json_of(&spec);
        assert_eq!(spec["root"], json!({"path": "/testroot/busybox"}));
        assert_eq!(spec["mounts"].as_array().unwrap().len(), 1);
        release(p.undo).unwrap();
    }

    #[test]
    fn guest_path_gives_a_spec_without_root_one_that_is_writable() {
        let mut spec = typed(json!({}));
        let source = RootfsSource::GuestPath("/x".into());
        let (pod, bundle) = (Path::new("/run/hull/p"), Path::new("/bundle"));
        prepare(&source, pod, bundle, "c1", &[], &mut spec).unwrap();
        assert_eq!(json_of(&spec)["root"], json!({"path": "/x"}));
    }

    #[test]
    fn shared_binds_the_root_and_rewrites_the_spec() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
        std::fs::write(bundle.join("rootfs/etc/marker"), "m").unwrap();
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::write(volume.join("v"), "v").unwrap();
        let pod = dir.path().join("pod");
        let mut spec = typed(json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": volume, "options": ["rbind", "ro"]}
            ]
        }));
        let p = prepare(&RootfsSource::Shared, &pod, &bundle, "c1", &[], &mut spec).unwrap();
        assert_eq!(p.guest_rootfs, "/run/hull/shared/c1/rootfs");
        let spec = json_of(&spec);
        assert_eq!(spec["root"]["path"], "/run/hull/shared/c1/rootfs");
        assert_eq!(spec["mounts"][1]["source"], "/run/hull/shared/c1/mounts/1");
        let shared = pod.join("shared/c1");
        assert_eq!(
            std::fs::read_to_string(shared.join("rootfs/etc/marker")).unwrap(),
            "m"
        );
        assert_eq!(
            std::fs::read_to_string(shared.join("mounts/1/v")).unwrap(),
            "v"
        );
        release(p.undo).unwrap();
        assert!(!shared.exists());
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/etc/marker")).unwrap(),
            "m"
        );
        assert_eq!(std::fs::read_to_string(volume.join("v")).unwrap(), "v");
    }
}
