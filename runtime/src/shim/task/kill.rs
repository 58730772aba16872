//! `Kill`: a signal to one process, or to every process of the container (`all`).

use crate::shim::pod::{Pod, ProcessState};
use crate::shim::ShimError;

/// Sends `signal` to process `exec_id` (empty: init) of container `id`.
pub async fn kill(
    pod: &Pod,
    id: &str,
    exec_id: &str,
    signal: u32,
    all: bool,
) -> Result<(), ShimError> {
    let process = pod.process(id, exec_id)?;
    if let Some(fault) = pod.fault.get() {
        // Everything in the guest died with it.
        return Err(ShimError::NotFound(format!(
            "{}: its pod VM is down ({fault})",
            process.name()
        )));
    }
    if !all {
        if let ProcessState::Exited(_) = process.state() {
            return Err(ShimError::NotFound(format!(
                "{}: process already finished",
                process.name()
            )));
        }
    }
    if signal == 0 || signal > 64 {
        return Err(ShimError::InvalidArgument(format!("signal {signal}")));
    }
    let vm = pod.vm().await?;
    vm.agent
        .signal_process(id, &process.agent_id, signal, all)
        .await?;
    Ok(())
}
