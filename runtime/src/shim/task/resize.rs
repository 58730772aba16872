//! `ResizePty`: the new window size of a process's terminal.

use crate::shim::{pod::Pod, ShimError};

/// Resizes the pty of process `exec_id` (empty: init) of container `id`.
pub async fn resize_pty(
    pod: &Pod,
    id: &str,
    exec_id: &str,
    width: u32,
    height: u32,
) -> Result<(), ShimError> {
    let process = pod.process(id, exec_id)?;
    if !process.stdio.terminal {
        return Err(ShimError::FailedPrecondition(format!(
            "{} has no terminal",
            process.name()
        )));
    }
    let vm = pod.vm().await?;
    vm.agent
        .resize_tty(id, &process.agent_id, height, width)
        .await?;
    Ok(())
}
