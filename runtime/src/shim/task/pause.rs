//! `Pause`: freeze the container's cgroup in the guest.

use std::sync::atomic::Ordering;

use containerd_shim_protos::events::task::TaskPaused;
use containerd_shim_protos::topics::TASK_PAUSED_EVENT_TOPIC;

use crate::shim::{pod::Pod, ShimError};

/// Pauses container `id`.
pub async fn pause(pod: &Pod, id: &str) -> Result<(), ShimError> {
    let container = pod.container(id)?;
    let vm = pod.vm().await?;
    vm.agent.pause_container(id).await?;
    container.paused.store(true, Ordering::SeqCst);
    let event = TaskPaused {
        container_id: id.to_owned(),
        ..Default::default()
    };
    pod.events
        .publish(TASK_PAUSED_EVENT_TOPIC, Box::new(event))
        .await;
    Ok(())
}
