//! `Wait`, and the watch behind it: the agent's `WaitProcess` (or the pod going down, see
//! [`crate::shim::fault`]), then the process's output drained (bounded), then the exit recorded
//! and `TaskExit` published — in that order, so a client that sees the exit has all the output.
//! This watch is the only place a started process's `TaskExit` comes from: one per process.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::topics::TASK_EXIT_EVENT_TOPIC;

use crate::agent::client::ExitInfo;
use crate::agent::{AgentClient, AgentClientError};
use crate::shim::events::EventSink;
use crate::shim::fault::{signal_name, FaultSignal, PodFault, KILLED_STATUS};
use crate::shim::pod::{publish_oom, Exit, OomLedger, Pod, Process, ProcessState, DRAIN_BOUND};
use crate::shim::stdio::drain;
use crate::shim::ShimError;

use super::timestamp;

/// Waits until process `exec_id` (empty: init) of container `id` has exited.
pub async fn wait(pod: &Pod, id: &str, exec_id: &str) -> Result<Exit, ShimError> {
    let process = pod.process(id, exec_id)?;
    Ok(process.wait().await)
}

/// How long a process whose `WaitProcess` failed waits for its pod's fault (the parts' watch
/// notices a dead VMM within a second or so) before it is reported lost.
const FAULT_BOUND: Duration = Duration::from_secs(10);

/// How a watched process ended.
enum Ended {
    /// The agent reported its exit.
    Exited(ExitInfo),
    /// Its pod went down under it.
    PodDown(Arc<PodFault>),
    /// The agent could not be asked, and the pod did not go down.
    Lost(AgentClientError),
}

/// Watches a started process in the background until it exits, or its pod goes down.
pub fn watch_exit(
    agent: AgentClient,
    process: Arc<Process>,
    events: Arc<dyn EventSink>,
    ooms: Arc<OomLedger>,
    fault: Arc<FaultSignal>,
) {
    tokio::spawn(async move {
        let ended = tokio::select! {
            r = agent.wait_process(&process.container_id, &process.agent_id) => match r {
                Ok(info) => Ended::Exited(info),
                // The agent's channel broke: most likely with the VM, which the watch is about
                // to tell.
                Err(e) => match tokio::time::timeout(FAULT_BOUND, fault.wait()).await {
                    Ok(f) => Ended::PodDown(f),
                    Err(_) => Ended::Lost(e),
                },
            },
            f = fault.wait() => Ended::PodDown(f),
        };
        let status = match &ended {
            Ended::Exited(info) => {
                let status = u32::try_from(info.exit_status).unwrap_or(255);
                if info.signal != 0 {
                    tracing::info!(
                        "{} was killed by {} in the guest: exit status {status}",
                        process.name(),
                        signal_name(i32::try_from(info.signal).unwrap_or(0))
                    );
                }
                status
            }
            Ended::PodDown(f) => {
                tracing::warn!(
                    "{}: its pod VM is down ({f}): exit status {KILLED_STATUS}",
                    process.name()
                );
                KILLED_STATUS
            }
            Ended::Lost(e) => {
                tracing::error!(
                    "lost {}: {}; reporting exit status 255",
                    process.name(),
                    crate::agent::client::error_chain(e)
                );
                255
            }
        };
        let at = SystemTime::now();
        if status == 128 + 9 && matches!(ended, Ended::Exited(_)) {
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
