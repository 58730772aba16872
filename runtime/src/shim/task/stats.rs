//! `Stats`: the guest cgroup's statistics as containerd's cgroup v2 `Metrics` (v1 for CRI-O, whose
//! 1.26 VM runtime decodes no other: `crate::shim::metrics_v1`).

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::shim::metrics::{to_any, to_metrics};
use crate::shim::metrics_v1::{to_any_v1, to_metrics_v1};
use crate::shim::task::create::read_spec;
use crate::shim::{cri_o, pod::Pod, ShimError};

/// Container `id`'s metrics, packed for the engine.
pub async fn stats(pod: &Pod, id: &str) -> Result<Any, ShimError> {
    let container = pod.container(id)?;
    let vm = pod.vm().await?;
    let stats = vm.agent.stats_container(id).await?;
    let for_cri_o = read_spec(&container.bundle).is_ok_and(|spec| cri_o::is_cri_o(spec.spec()));
    let packed = if for_cri_o {
        to_any_v1(to_metrics_v1(&stats))
    } else {
        to_any(to_metrics(&stats))
    };
    packed.map_err(|e| ShimError::InvalidArgument(format!("cannot encode metrics: {e}")))
}
