//! `Shutdown`: once no container is left, stop the VM (if still up) and let the shim exit.

use crate::shim::pod::Pod;

/// Ends the shim when its pod is empty; does nothing while containers remain.
pub async fn shutdown(pod: &Pod) {
    if !pod.is_empty() {
        tracing::debug!("shutdown ignored: containers remain");
        return;
    }
    pod.stop_vm().await;
    pod.exit.signal();
}
