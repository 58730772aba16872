//! `State`: where a process is, as containerd's task status.

use std::sync::atomic::Ordering;

use containerd_shim_protos::api::Status;

use crate::shim::pod::{Exit, Pod, ProcessState};
use crate::shim::stdio::StdioPaths;
use crate::shim::ShimError;

/// A process's state.
#[derive(Debug, Clone)]
pub struct StateInfo {
    /// containerd's bundle.
    pub bundle: String,
    /// The pid containerd sees.
    pub pid: u32,
    /// containerd's status.
    pub status: Status,
    /// The stdio paths.
    pub stdio: StdioPaths,
    /// The exit, once exited.
    pub exit: Option<Exit>,
}

/// The state of process `exec_id` (empty: init) of container `id`.
pub fn state(pod: &Pod, id: &str, exec_id: &str) -> Result<StateInfo, ShimError> {
    let container = pod.container(id)?;
    let process = pod.process(id, exec_id)?;
    let (status, exit) = match process.state() {
        ProcessState::Created(_) => (Status::CREATED, None),
        ProcessState::Running if container.paused.load(Ordering::SeqCst) => (Status::PAUSED, None),
        ProcessState::Running => (Status::RUNNING, None),
        ProcessState::Exited(exit) => (Status::STOPPED, Some(exit)),
    };
    Ok(StateInfo {
        bundle: container.bundle.display().to_string(),
        pid: process.host_pid,
        status,
        stdio: process.stdio.clone(),
        exit,
    })
}
