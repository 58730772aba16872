//! `Wait`, and the watch behind it: the agent's `WaitProcess`, then the process's output drained
//! (bounded), then the exit recorded and `TaskExit` published — in that order, so a client that
//! sees the exit has all the output.

use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::topics::TASK_EXIT_EVENT_TOPIC;

use crate::agent::AgentClient;
use crate::shim::events::EventSink;
use crate::shim::pod::{publish_oom, Exit, OomLedger, Pod, Process, ProcessState, DRAIN_BOUND};
use crate::shim::stdio::drain;
use crate::shim::ShimError;

use super::timestamp;

/// Waits until process `exec_id` (empty: init) of container `id` has exited.
pub async fn wait(pod: &Pod, id: &str, exec_id: &str) -> Result<Exit, ShimError> {
    let process = pod.process(id, exec_id)?;
    Ok(process.wait().await)
}

/// Watches a started process in the background until it exits.
pub fn watch_exit(
    agent: AgentClient,
    process: Arc<Process>,
    events: Arc<dyn EventSink>,
    ooms: Arc<OomLedger>,
) {
    tokio::spawn(async move {
        let status = match agent
            .wait_process(&process.container_id, &process.agent_id)
            .await
        {
            Ok(info) => u32::try_from(info.exit_status).unwrap_or(255),
            Err(e) => {
                tracing::warn!(
                    "waiting for {}: {}",
                    process.name(),
                    crate::agent::client::error_chain(&e)
                );
                255
            }
        };
        let at = SystemTime::now();
        if status == 128 + 9 {
            // Killed: if by the OOM killer, say so before the exit (the agent's OOM watch polls
            // and may not have reported it yet).
            if let Ok(stats) = agent.stats_container(&process.container_id).await {
                let kills = stats.memory.as_ref().map_or(0, |m| m.events_oom_kill);
                if ooms.catch_up(&process.container_id, kills) {
                    publish_oom(events.as_ref(), &process.container_id).await;
                }
            }
        }
        let outputs = match process.io.lock().await.as_mut() {
            Some(io) => io.take_outputs(),
            None => Vec::new(),
        };
        if !drain(outputs, DRAIN_BOUND).await {
            tracing::warn!(
                "{}: output still open {DRAIN_BOUND:?} after exit; reporting the exit",
                process.name()
            );
        }
        process.set_state(ProcessState::Exited(Exit { status, at }));
        let id = if process.exec_id.is_empty() {
            process.container_id.clone()
        } else {
            process.exec_id.clone()
        };
        let event = TaskExit {
            container_id: process.container_id.clone(),
            id,
            pid: process.host_pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        };
        events.publish(TASK_EXIT_EVENT_TOPIC, Box::new(event)).await;
    });
}
