//! Where a pod's host side lives, as its sandbox spec says: the host cgroup its shim and VMM join,
//! and the network namespace whose interface its VM takes over.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::host_cgroup::PodCgroup;

/// The pod's host cgroup (see [`crate::host_cgroup`]) at the sandbox spec's `linux.cgroupsPath`,
/// with the shim moved into it. Without a path, or when the host refuses, the pod runs in the
/// shim's own cgroup and a warning says why.
pub(super) fn host_cgroup(pod: &str, spec: &Spec) -> Option<PodCgroup> {
    let path = spec.linux().as_ref()?.cgroups_path().as_ref()?.to_str()?;
    let mut cgroup = match PodCgroup::create(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%pod, "the pod stays in the shim's cgroup: {}", crate::agent::client::error_chain(&e));
            return None;
        }
    };
    if let Err(e) = cgroup.join_shim() {
        tracing::warn!(%pod, "the shim stays out of the pod's cgroup: {}", crate::agent::client::error_chain(&e));
    }
    Some(cgroup)
}

/// The pod's network namespace: the path the sandbox spec's `network` namespace names (CNI's, for a
/// Kubernetes pod). The VM takes over the interface CNI made there.
pub(super) fn pod_netns(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
}
