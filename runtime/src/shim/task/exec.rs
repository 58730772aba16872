//! `Exec`: register a process to run in a container; `Start` runs it.

use std::sync::Arc;

use containerd_shim_protos::events::task::TaskExecAdded;
use containerd_shim_protos::topics::TASK_EXEC_ADDED_EVENT_TOPIC;
use hull_protocol::limits;

use crate::shim::pod::{lock, Pod, Process, ProcessState};
use crate::shim::stdio::StdioPaths;
use crate::shim::ShimError;

/// Registers exec `exec_id` in container `id`: `process_json` is the OCI process object.
pub async fn exec(
    pod: &Pod,
    id: &str,
    exec_id: &str,
    stdio: StdioPaths,
    process_json: Vec<u8>,
) -> Result<(), ShimError> {
    limits::check_id("exec id", exec_id)?;
    let container = pod.container(id)?;
    if container.init.state() != ProcessState::Running {
        return Err(ShimError::FailedPrecondition(format!(
            "container {id} is not running"
        )));
    }
    let process: oci_spec::runtime::Process = serde_json::from_slice(&process_json)
        .map_err(|e| ShimError::InvalidArgument(format!("exec process: {e}")))?;
    if process.args().is_none() {
        return Err(ShimError::InvalidArgument(
            "exec process has no args".into(),
        ));
    }
    let process = Arc::new(Process::new(
        id,
        (exec_id, &pod.next_agent_exec_id()),
        stdio,
        container.init.host_pid,
        Some(process_json),
    ));
    {
        let mut execs = lock(&container.execs);
        if execs.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {exec_id} of container {id}"
            )));
        }
        execs.insert(exec_id.to_owned(), process);
    }
    let event = TaskExecAdded {
        container_id: id.to_owned(),
        exec_id: exec_id.to_owned(),
        ..Default::default()
    };
    pod.events
        .publish(TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(event))
        .await;
    Ok(())
}
