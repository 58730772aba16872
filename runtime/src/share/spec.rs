//! Rewriting a container's OCI spec for the guest: the root becomes the share's
//! `<cid>/rootfs`, and each host bind mount is bind-mounted into the share at `<cid>/mounts/<n>`
//! with its source rewritten to that guest path. Other mounts (proc, tmpfs, …) are the guest's
//! business and stay as they are.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::{guest_rootfs, mounts, ShareError, GUEST_SHARE};

/// One host bind mount to make before the container is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    /// The host source.
    pub source: PathBuf,
    /// Where it goes under the host share.
    pub target: PathBuf,
    /// How writable (the guest gets no more, see [`super::detached`]).
    pub access: mounts::Access,
    /// Its index in the spec's mounts.
    pub mount: usize,
}

/// Whether `m` is a bind mount (its type, or a `bind`/`rbind` option, says so).
pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Rewrites `spec` for container `cid` whose share is `host_shared` on the host, and returns
/// the bind mounts that make the rewritten paths real (see [`apply`]).
pub fn rewrite(
    spec: &mut Spec,
    cid: &str,
    host_shared: &Path,
) -> Result<Vec<HostBind>, ShareError> {
    let mut root = spec
        .root()
        .clone()
        .ok_or_else(|| ShareError::Spec("no root".into()))?;
    root.set_path(PathBuf::from(guest_rootfs(cid)));
    spec.set_root(Some(root));
    let mut binds = Vec::new();
    let Some(mut list) = spec.mounts().clone() else {
        return Ok(binds);
    };
    for (n, m) in list.iter_mut().enumerate() {
        if !is_bind(m) {
            continue;
        }
        let options = m.options().clone().unwrap_or_default();
        // The pod's shared memory is the guest's own tmpfs (shim::pod_shm), not a host path.
        if m.source().as_deref() == Some(std::path::Path::new(hull_protocol::GUEST_POD_SHM)) {
            continue;
        }
        let source = m.source().clone().ok_or_else(|| {
            ShareError::Spec(format!(
                "bind mount {} has no source",
                m.destination().display()
            ))
        })?;
        if !source.is_absolute() {
            return Err(ShareError::Spec(format!(
                "bind mount source {} is not absolute",
                source.display()
            )));
        }
        binds.push(HostBind {
            source,
            target: host_shared.join(cid).join("mounts").join(n.to_string()),
            access: mounts::Access::from_options(&options),
            mount: n,
        });
        m.set_source(Some(PathBuf::from(format!(
            "{GUEST_SHARE}/{cid}/mounts/{n}"
        ))));
    }
    spec.set_mounts(Some(list));
    Ok(binds)
}

/// Makes the bind mounts [`rewrite`] asked for.
pub fn apply(binds: &[HostBind]) -> Result<(), ShareError> {
    for b in binds {
        mounts::bind(&b.source, &b.target, b.access)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": { "path": "/var/lib/containerd/bundle/rootfs" },
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"] },
                { "destination": "/etc/hosts", "source": "/var/lib/pod/hosts", "options": ["bind", "rw"] }
            ]
        }))
        .unwrap()
    }

    #[test]
    fn root_and_bind_mounts_move_to_the_share() {
        let mut s = spec();
        let binds = rewrite(&mut s, "c1", Path::new("/run/hull/p/shared")).unwrap();
        assert_eq!(
            s.root().as_ref().unwrap().path(),
            Path::new("/run/hull/shared/c1/rootfs")
        );
        let mounts = s.mounts().as_ref().unwrap();
        assert_eq!(mounts[0].source().as_deref(), Some(Path::new("proc")));
        assert_eq!(
            mounts[1].source().as_deref(),
            Some(Path::new("/run/hull/shared/c1/mounts/1"))
        );
        assert_eq!(
            mounts[2].source().as_deref(),
            Some(Path::new("/run/hull/shared/c1/mounts/2"))
        );
        assert_eq!(
            binds,
            [
                HostBind {
                    source: "/srv/data".into(),
                    target: "/run/hull/p/shared/c1/mounts/1".into(),
                    access: mounts::Access::ReadOnly,
                    mount: 1,
                },
                HostBind {
                    source: "/var/lib/pod/hosts".into(),
                    target: "/run/hull/p/shared/c1/mounts/2".into(),
                    access: mounts::Access::ReadWrite,
                    mount: 2,
                }
            ]
        );
    }

    #[test]
    fn relative_bind_sources_and_missing_roots_are_refused() {
        let mut s = spec();
        let mut mounts = s.mounts().clone().unwrap();
        mounts[1].set_source(Some("relative/dir".into()));
        s.set_mounts(Some(mounts));
        assert!(rewrite(&mut s, "c1", Path::new("/s")).is_err());
        let mut s = spec();
        s.set_root(None);
        assert!(rewrite(&mut s, "c1", Path::new("/s")).is_err());
    }
}
