//! A pod's containers and their processes as the shim tracks them: state, exit and waiters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use super::lock;
use crate::shim::rootfs::Undo;
use crate::shim::stdio::{Attached, StdioPaths};
use crate::shim::volumes::VolumeWatch;

/// A container.
#[derive(Debug)]
pub struct Container {
    /// Its id.
    pub id: String,
    /// containerd's bundle directory.
    pub bundle: PathBuf,
    /// The init process.
    pub init: Arc<Process>,
    /// Exec'd processes by exec id.
    pub execs: Mutex<HashMap<String, Arc<Process>>>,
    /// Frozen by `Pause`.
    pub paused: std::sync::atomic::AtomicBool,
    /// What to undo on the host at delete.
    pub rootfs_undo: Mutex<Option<Undo>>,
    /// Its memory limit, MiB (`None`: unlimited), counted against the VM's RAM while it lives.
    pub memory_limit_mib: Mutex<Option<u64>>,
    /// The watches that keep its copied volumes up to date (stopped when dropped).
    pub volume_watch: Mutex<Option<VolumeWatch>>,
}

/// Where a process is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// Created (init) or registered (exec), not started. Execs keep their OCI process JSON.
    Created(Option<Vec<u8>>),
    /// Running.
    Running,
    /// Exited.
    Exited(Exit),
}

/// How a process ended, as containerd is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128 + signal.
    pub status: u32,
    /// When the shim saw it.
    pub at: SystemTime,
}

/// A process: a container's init (empty exec id) or an exec.
#[derive(Debug)]
pub struct Process {
    /// Its container.
    pub container_id: String,
    /// containerd's exec id, empty for the init process.
    pub exec_id: String,
    /// The id the agent knows the process by: containerd reuses exec ids once deleted, the agent
    /// keeps exited processes, so every exec gets a fresh one (empty for the init process).
    pub agent_id: String,
    /// containerd's stdio.
    pub stdio: StdioPaths,
    /// The host pid containerd is given (the VMM's).
    pub host_pid: u32,
    /// The pid in the guest (0 until known).
    pub guest_pid: std::sync::atomic::AtomicU32,
    /// Where it is.
    pub state: Mutex<ProcessState>,
    /// The attached streams.
    pub io: tokio::sync::Mutex<Option<Attached>>,
    /// `CloseIO` came before the streams were attached (an exec's `Start` attaches them, and
    /// a client whose stdin is empty may close it meanwhile); `Start` closes the input once
    /// attached. Read and written under the `io` lock.
    pub stdin_closed_early: std::sync::atomic::AtomicBool,
    exit_tx: watch::Sender<Option<Exit>>,
}

impl Process {
    /// A new process in state `Created(spec)`.
    pub fn new(
        container_id: &str,
        (exec_id, agent_id): (&str, &str),
        stdio: StdioPaths,
        host_pid: u32,
        spec: Option<Vec<u8>>,
    ) -> Self {
        Self {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            agent_id: agent_id.to_owned(),
            stdio,
            host_pid,
            guest_pid: Default::default(),
            state: Mutex::new(ProcessState::Created(spec)),
            io: tokio::sync::Mutex::new(None),
            stdin_closed_early: Default::default(),
            exit_tx: watch::channel(None).0,
        }
    }

    /// The current state.
    pub fn state(&self) -> ProcessState {
        lock(&self.state).clone()
    }

    /// Sets the state.
    pub fn set_state(&self, state: ProcessState) {
        if let ProcessState::Exited(exit) = &state {
            self.exit_tx.send_replace(Some(*exit));
        }
        *lock(&self.state) = state;
    }

    /// The exit, once there is one.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit_tx.borrow()
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit_tx.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives in self, so this cannot happen while self is borrowed.
                std::future::pending::<()>().await;
            }
        }
    }

    /// A name for messages.
    pub fn name(&self) -> String {
        if self.exec_id.is_empty() {
            format!("container {}", self.container_id)
        } else {
            format!("exec {} of {}", self.exec_id, self.container_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_exit_wakes_its_waiters() {
        let p = Arc::new(Process::new("c", ("", ""), StdioPaths::default(), 1, None));
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait().await }
        });
        assert_eq!(p.state(), ProcessState::Created(None));
        let exit = Exit {
            status: 3,
            at: SystemTime::now(),
        };
        p.set_state(ProcessState::Exited(exit));
        assert_eq!(waiter.await.unwrap(), exit);
        assert_eq!(p.exit(), Some(exit));
        assert_eq!(p.name(), "container c");
    }
}
