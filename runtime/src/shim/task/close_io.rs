//! `CloseIO`: end a process's input — end of input on its stream, then `CloseStdin` so the guest
//! closes the pipe even if the stream is gone.

use crate::shim::{pod::Pod, ShimError};

/// Closes the stdin of process `exec_id` (empty: init) of container `id`, when `stdin` is set.
pub async fn close_io(pod: &Pod, id: &str, exec_id: &str, stdin: bool) -> Result<(), ShimError> {
    let process = pod.process(id, exec_id)?;
    if !stdin {
        return Ok(());
    }
    {
        let io = process.io.lock().await;
        match io.as_ref() {
            Some(io) => io.close_input().await?,
            None => {
                // Not attached yet: closing the guest's stdin now would make the attach fail.
                // `Start` closes it right after attaching.
                process
                    .stdin_closed_early
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Ok(());
            }
        }
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
