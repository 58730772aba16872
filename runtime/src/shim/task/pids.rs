//! `Pids`: the container's processes, as guest pids (host pids mean nothing for a VM's processes).

use crate::shim::{pod::Pod, ShimError};

/// The guest pids of container `id`'s processes.
pub async fn pids(pod: &Pod, id: &str) -> Result<Vec<u32>, ShimError> {
    pod.container(id)?;
    let vm = pod.vm().await?;
    Ok(vm.agent.list_processes(id).await?)
}
