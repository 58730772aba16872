//! The agent's state and the logic behind every API call: the sandbox, its containers and their
//! processes. The ttrpc layer (`crate::rpc`) only converts types and calls these functions.
//!
//! Container operations that fork, wait on pipes or poll cgroup files run on tokio's blocking pool.

mod containers;
mod error;
mod oom;
mod processes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use crate::container::Container;
use crate::reaper::{ExitInfo, Reaper};
use crate::stdio::{ProcessStdio, StdioLookup};

pub use error::AgentError;

/// Where containers' cgroups live.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A process the agent started: a container's init, or an exec'd one.
#[derive(Debug)]
pub struct ProcessEntry {
    /// Its pid in the guest.
    pub pid: i32,
    exit: watch::Receiver<Option<ExitInfo>>,
    stdio: Arc<ProcessStdio>,
}

impl ProcessEntry {
    /// Its exit, if it has exited.
    pub fn exited(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }
}

/// Lifecycle of a container's init process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, held at the start barrier.
    Created,
    /// Started.
    Running,
}

/// One container.
#[derive(Debug)]
pub struct ContainerEntry {
    id: String,
    container: Mutex<Option<Container>>,
    init: Arc<ProcessEntry>,
    execs: Mutex<HashMap<String, Arc<ProcessEntry>>>,
    state: Mutex<ContainerState>,
}

/// The sandbox: everything the agent manages.
#[derive(Debug)]
pub struct Sandbox {
    reaper: Arc<Reaper>,
    sandbox_id: Mutex<Option<String>>,
    containers: Mutex<HashMap<String, Arc<ContainerEntry>>>,
    oom_tx: mpsc::Sender<String>,
    oom_rx: tokio::sync::Mutex<mpsc::Receiver<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    /// An empty sandbox whose processes' exits come from `reaper`.
    pub fn new(reaper: Arc<Reaper>) -> Arc<Self> {
        let (oom_tx, oom_rx) = mpsc::channel(1024);
        Arc::new(Self {
            reaper,
            sandbox_id: Mutex::new(None),
            containers: Mutex::new(HashMap::new()),
            oom_tx,
            oom_rx: tokio::sync::Mutex::new(oom_rx),
        })
    }

    fn container(&self, id: &str) -> Result<Arc<ContainerEntry>, AgentError> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::NotFound(format!("container {id}")))
    }

    fn process(&self, container_id: &str, exec_id: &str) -> Result<Arc<ProcessEntry>, AgentError> {
        let c = self.container(container_id)?;
        if exec_id.is_empty() {
            return Ok(c.init.clone());
        }
        let found = lock(&c.execs).get(exec_id).cloned();
        found.ok_or_else(|| {
            AgentError::NotFound(format!("process {exec_id} in container {container_id}"))
        })
    }
}

impl StdioLookup for Sandbox {
    fn stdio(&self, container_id: &str, exec_id: &str) -> Option<Arc<ProcessStdio>> {
        self.process(container_id, exec_id)
            .ok()
            .map(|p| p.stdio.clone())
    }
}
