//! `Stats`: the guest cgroup's statistics as containerd's cgroup v2 `Metrics`.

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::shim::metrics::{to_any, to_metrics};
use crate::shim::{pod::Pod, ShimError};

/// Container `id`'s metrics, packed for containerd.
pub async fn stats(pod: &Pod, id: &str) -> Result<Any, ShimError> {
    pod.container(id)?;
    let vm = pod.vm().await?;
    let stats = vm.agent.stats_container(id).await?;
    to_any(to_metrics(&stats))
        .map_err(|e| ShimError::InvalidArgument(format!("cannot encode metrics: {e}")))
}
