//! `Update`: new `linux.resources` for the container's guest cgroup.

use crate::shim::{pod::Pod, ShimError};

/// Applies `resources_json` (OCI `linux.resources`, as containerd sends it) to container `id`.
pub async fn update(pod: &Pod, id: &str, resources_json: &[u8]) -> Result<(), ShimError> {
    pod.container(id)?;
    let value: serde_json::Value = serde_json::from_slice(resources_json)
        .map_err(|e| ShimError::InvalidArgument(format!("resources are not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ShimError::InvalidArgument(
            "resources are not a JSON object".into(),
        ));
    }
    let vm = pod.vm().await?;
    vm.agent
        .update_container(id, resources_json.to_vec())
        .await?;
    Ok(())
}
