//! `Connect`: the shim's pid and the pod's (the VMM's).

use crate::shim::pod::Pod;

/// The shim's pid, the task's pid (the VMM's, 0 before the VM runs) and hull's version.
pub async fn connect(pod: &Pod) -> (u32, u32, String) {
    let task_pid = pod.vm().await.map_or(0, |vm| vm.vmm_pid);
    (
        std::process::id(),
        task_pid,
        env!("CARGO_PKG_VERSION").to_owned(),
    )
}
