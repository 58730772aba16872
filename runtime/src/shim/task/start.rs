//! `Start`: release a created container from its start barrier, or run a registered exec; then
//! watch for the process's exit.

use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim_protos::events::task::{TaskExecStarted, TaskStart};
use containerd_shim_protos::topics::{TASK_EXEC_STARTED_EVENT_TOPIC, TASK_START_EVENT_TOPIC};

use crate::shim::pod::{Exit, Pod, Process, ProcessState};
use crate::shim::stdio::attach_process;
use crate::shim::ShimError;

use super::wait::watch_exit;

/// Starts process `exec_id` (empty: init) of container `id`; returns the pid containerd sees.
pub async fn start(pod: &Pod, id: &str, exec_id: &str) -> Result<u32, ShimError> {
    let process = pod.process(id, exec_id)?;
    let spec = match process.state() {
        ProcessState::Created(spec) => spec,
        _ => {
            return Err(ShimError::FailedPrecondition(format!(
                "{} was started already",
                process.name()
            )))
        }
    };
    let vm = pod.vm().await?;
    if exec_id.is_empty() {
        if let Err(e) = vm.agent.start_container(id).await {
            failed(&process);
            return Err(e.into());
        }
        process.set_state(ProcessState::Running);
        watch_exit(
            vm.agent.clone(),
            process.clone(),
            pod.events.clone(),
            pod.ooms.clone(),
            pod.fault.clone(),
        );
        let event = TaskStart {
            container_id: id.to_owned(),
            pid: process.host_pid,
            ..Default::default()
        };
        pod.events
            .publish(TASK_START_EVENT_TOPIC, Box::new(event))
            .await;
    } else {
        let json = spec.unwrap_or_default();
        let stdio = process.stdio.agent_config();
        let agent_id = process.agent_id.as_str();
        match vm.agent.exec_process(id, agent_id, json, stdio).await {
            Ok(pid) => process
                .guest_pid
                .store(pid, std::sync::atomic::Ordering::SeqCst),
            Err(e) => {
                failed(&process);
                return Err(e.into());
            }
        }
        match attach_process(&vm.uds, (id, agent_id), &process.name(), &process.stdio).await {
            Ok(io) => {
                let mut attached = process.io.lock().await;
                let io = attached.insert(io);
                if process
                    .stdin_closed_early
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    io.close_input().await?;
                }
            }
            Err(e) => {
                let _ = vm.agent.signal_process(id, agent_id, 9, false).await;
                failed(&process);
                return Err(e.into());
            }
        }
        process.set_state(ProcessState::Running);
        watch_exit(
            vm.agent.clone(),
            process.clone(),
            pod.events.clone(),
            pod.ooms.clone(),
            pod.fault.clone(),
        );
        let event = TaskExecStarted {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            pid: process.host_pid,
            ..Default::default()
        };
        pod.events
            .publish(TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(event))
            .await;
    }
    Ok(process.host_pid)
}

/// A process that could not start counts as exited (status 255, as runc's shim reports it) so
/// waiters return and delete works.
fn failed(process: &Arc<Process>) {
    process.set_state(ProcessState::Exited(Exit {
        status: 255,
        at: SystemTime::now(),
    }));
}
