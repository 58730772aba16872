//! `Update`: new `linux.resources` for the container's guest cgroup.

use oci_spec::runtime::LinuxResources;

use crate::shim::pod::{lock, Pod};
use crate::shim::{sizing, ShimError};

/// Applies `resources_json` (OCI `linux.resources`, as containerd sends it) to container `id`.
pub async fn update(pod: &Pod, id: &str, resources_json: &[u8]) -> Result<(), ShimError> {
    let container = pod.container(id)?;
    let resources: LinuxResources = serde_json::from_slice(resources_json).map_err(|e| {
        ShimError::InvalidArgument(format!("resources are not OCI linux.resources: {e}"))
    })?;
    // A new memory limit must fit the VM next to the other containers' (no hot-add).
    let limit = sizing::resources_memory_limit_mib(&resources);
    if let (Some(size), Some(_)) = (pod.vm_size().await, limit) {
        sizing::check_fits(
            &pod.config,
            size.memory_mib,
            pod.committed_memory_mib(id),
            limit,
        )
        .map_err(ShimError::FailedPrecondition)?;
    }
    let vm = pod.vm().await?;
    vm.agent
        .update_container(id, resources_json.to_vec())
        .await?;
    if limit.is_some() {
        *lock(&container.memory_limit_mib) = limit;
    }
    Ok(())
}
