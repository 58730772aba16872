//! `Resume`: thaw the container's cgroup in the guest.

use std::sync::atomic::Ordering;

use containerd_shim_protos::events::task::TaskResumed;
use containerd_shim_protos::topics::TASK_RESUMED_EVENT_TOPIC;

use crate::shim::{pod::Pod, ShimError};

/// Resumes container `id`.
pub async fn resume(pod: &Pod, id: &str) -> Result<(), ShimError> {
    let container = pod.container(id)?;
    let vm = pod.vm().await?;
    vm.agent.resume_container(id).await?;
    container.paused.store(false, Ordering::SeqCst);
    let event = TaskResumed {
        container_id: id.to_owned(),
        ..Default::default()
    };
    pod.events
        .publish(TASK_RESUMED_EVENT_TOPIC, Box::new(event))
        .await;
    Ok(())
}
