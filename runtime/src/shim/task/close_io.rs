//! `CloseIO`: end a process's input — end of input on its stream, then `CloseStdin` so the guest
//! closes the pipe even if the stream is gone.

use crate::shim::{pod::Pod, ShimError};

/// Closes the stdin of process `exec_id` (empty: init) of container `id`, when `stdin` is set.
pub async fn close_io(pod: &Pod, id: &str, exec_id: &str, stdin: bool) -> Result<(), ShimError> {
    let process = pod.process(id, exec_id)?;
    if !stdin {
        return Ok(());
    }
    if let Some(io) = process.io.lock().await.as_ref() {
        io.close_input().await?;
    }
    if process.stdio.terminal || process.stdio.stdin.is_empty() {
        return Ok(());
    }
    let vm = pod.vm().await?;
    if let Err(e) = vm.agent.close_stdin(id, &process.agent_id).await {
        // The process may have exited meanwhile; its stdin is closed either way.
        if e.code() != Some(ttrpc::Code::NOT_FOUND) {
            return Err(e.into());
        }
    }
    Ok(())
}
