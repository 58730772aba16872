//! Process-level operations: exec, signal, wait, resize, close stdin.

use std::os::fd::AsFd;
use std::sync::Arc;

use hull_protocol::agent::ExecProcessRequest;
use hull_protocol::limits;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::containers::{blocking, check_terminal};
use super::{lock, AgentError, ContainerState, ProcessEntry, Sandbox};
use crate::container::pty;
use crate::reaper::ExitInfo;
use crate::stdio::ProcessStdio;

impl Sandbox {
    /// `ExecProcess`: starts another process in a running container.
    pub async fn exec_process(&self, req: ExecProcessRequest) -> Result<u32, AgentError> {
        limits::check_id("container id", &req.container_id)?;
        limits::check_id("exec id", &req.exec_id)?;
        limits::check_len(
            "OCI process",
            req.oci_process_json.len(),
            limits::MAX_PROCESS_JSON_LEN,
        )?;
        let process: oci_spec::runtime::Process = serde_json::from_slice(&req.oci_process_json)
            .map_err(|e| AgentError::InvalidArgument(format!("OCI process: {e}")))?;
        let entry = self.container(&req.container_id)?;
        if *lock(&entry.state) != ContainerState::Running || entry.init.exited().is_some() {
            return Err(AgentError::FailedPrecondition(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        if lock(&entry.execs).contains_key(&req.exec_id) {
            return Err(AgentError::AlreadyExists(format!(
                "process {}",
                req.exec_id
            )));
        }
        let stdio_config = req.stdio.clone().unwrap_or_default();
        check_terminal(&stdio_config, process.terminal().unwrap_or(false))?;
        let (io, stdio) = ProcessStdio::prepare(&stdio_config)
            .map_err(|e| AgentError::Io("cannot make stdio pipes".into(), e))?;
        let spawned = {
            let entry = entry.clone();
            blocking(move || entry.with(|c| Ok(c.exec(&process, io)?))).await?
        };
        if let Some(master) = spawned.pty_master {
            stdio.set_pty_master(master);
        }
        let pid = spawned.pid.as_raw();
        let process = Arc::new(ProcessEntry {
            pid,
            exit: self.reaper.register(pid),
            stdio: Arc::new(stdio),
        });
        lock(&entry.execs).insert(req.exec_id, process);
        u32::try_from(pid).map_err(|_| AgentError::InvalidArgument("negative pid".into()))
    }

    /// `SignalProcess`.
    pub async fn signal_process(
        &self,
        container_id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), AgentError> {
        limits::check_exec_id(exec_id)?;
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or_else(|| AgentError::InvalidArgument(format!("signal {signal}")))?;
        if all {
            let entry = self.container(container_id)?;
            let pids = blocking(move || entry.with(|c| Ok(c.pids()?))).await?;
            for pid in pids {
                // A process may exit between listing and signalling.
                let _ = kill(Pid::from_raw(pid), sig);
            }
            return Ok(());
        }
        let process = self.process(container_id, exec_id)?;
        if process.exited().is_some() {
            return Err(AgentError::NotFound(format!(
                "process {} (it has exited)",
                if exec_id.is_empty() {
                    container_id
                } else {
                    exec_id
                }
            )));
        }
        kill(Pid::from_raw(process.pid), sig)
            .map_err(|e| AgentError::Io(format!("cannot signal pid {}", process.pid), e.into()))
    }

    /// `WaitProcess`: resolves once the process has exited.
    pub async fn wait_process(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<ExitInfo, AgentError> {
        limits::check_exec_id(exec_id)?;
        let process = self.process(container_id, exec_id)?;
        let mut rx = process.exit.clone();
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| AgentError::FailedPrecondition("the reaper stopped".into()))?;
        exit.ok_or_else(|| AgentError::FailedPrecondition("no exit status".into()))
    }

    /// `ResizeTty`.
    pub fn resize_tty(
        &self,
        container_id: &str,
        exec_id: &str,
        rows: u32,
        cols: u32,
    ) -> Result<(), AgentError> {
        limits::check_exec_id(exec_id)?;
        let process = self.process(container_id, exec_id)?;
        let master = process
            .stdio
            .pty_master()
            .ok_or_else(|| AgentError::FailedPrecondition("the process has no terminal".into()))?;
        let rows =
            u16::try_from(rows).map_err(|_| AgentError::InvalidArgument(format!("{rows} rows")))?;
        let cols = u16::try_from(cols)
            .map_err(|_| AgentError::InvalidArgument(format!("{cols} columns")))?;
        pty::set_size(master.as_fd(), rows, cols)
            .map_err(|e| AgentError::Io("cannot resize the terminal".into(), e))
    }

    /// `CloseStdin`.
    pub fn close_stdin(&self, container_id: &str, exec_id: &str) -> Result<(), AgentError> {
        limits::check_exec_id(exec_id)?;
        self.process(container_id, exec_id)?.stdio.close_stdin();
        Ok(())
    }
}
