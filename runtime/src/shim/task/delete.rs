//! `Delete`: forget an exited exec, or remove a container from the guest, undo its root
//! filesystem and, when it was the pod's last, stop the VM.

use std::time::SystemTime;

use containerd_shim_protos::events::task::TaskDelete;
use containerd_shim_protos::topics::TASK_DELETE_EVENT_TOPIC;

use crate::shim::pod::{lock, Exit, Pod, ProcessState};
use crate::shim::rootfs;
use crate::shim::ShimError;

use super::timestamp;

/// What containerd is told about the deleted process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// The pid containerd knew.
    pub pid: u32,
    /// How it ended.
    pub exit: Exit,
}

/// Deletes process `exec_id` (empty: the container) of container `id`.
pub async fn delete(pod: &Pod, id: &str, exec_id: &str) -> Result<Deleted, ShimError> {
    let container = pod.container(id)?;
    if !exec_id.is_empty() {
        let process = pod.process(id, exec_id)?;
        let exit = match process.state() {
            ProcessState::Exited(exit) => exit,
            ProcessState::Running => {
                return Err(ShimError::FailedPrecondition(format!(
                    "{} is still running",
                    process.name()
                )))
            }
            ProcessState::Created(_) => Exit {
                status: 0,
                at: SystemTime::now(),
            },
        };
        lock(&container.execs).remove(exec_id);
        return Ok(Deleted {
            pid: process.host_pid,
            exit,
        });
    }
    let init = container.init.clone();
    let exit = match init.state() {
        ProcessState::Running => {
            return Err(ShimError::FailedPrecondition(format!(
                "{} is still running; kill it first",
                init.name()
            )))
        }
        ProcessState::Exited(exit) => exit,
        // Never started: removing it kills it; a waiter learns so.
        ProcessState::Created(_) => {
            let exit = Exit {
                status: 128 + 9,
                at: SystemTime::now(),
            };
            init.set_state(ProcessState::Exited(exit));
            exit
        }
    };
    // The host watches first: nothing is sent to a container being removed.
    drop(lock(&container.volume_watch).take());
    if let Ok(vm) = pod.vm().await {
        if let Err(e) = vm.agent.remove_container(id).await {
            if e.code() != Some(ttrpc::Code::NOT_FOUND) {
                tracing::warn!(
                    "removing container {id} from the guest: {}",
                    crate::agent::client::error_chain(&e)
                );
            }
        }
    }
    if let Some(mut io) = init.io.lock().await.take() {
        io.abort();
    }
    for exec in lock(&container.execs).drain() {
        drop(exec);
    }
    let undo = lock(&container.rootfs_undo).take();
    if let Some(undo) = undo {
        if let Err(e) = tokio::task::spawn_blocking(move || rootfs::release(undo))
            .await
            .unwrap_or(Ok(()))
        {
            tracing::warn!("undoing the rootfs of {id}: {e}");
        }
    }
    pod.remove(id);
    let event = TaskDelete {
        container_id: id.to_owned(),
        pid: init.host_pid,
        exit_status: exit.status,
        exited_at: Some(timestamp(exit.at)).into(),
        ..Default::default()
    };
    pod.events
        .publish(TASK_DELETE_EVENT_TOPIC, Box::new(event))
        .await;
    if pod.is_empty() {
        pod.stop_vm().await;
    }
    Ok(Deleted {
        pid: init.host_pid,
        exit,
    })
}
