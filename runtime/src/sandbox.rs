//! A pod's VM with its agent: the vsock backend, the VM on a [`Hypervisor`], and a connected
//! [`AgentClient`]. Dropping a [`SandboxVm`] stops all of it; nothing is left running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::{AgentClient, AgentError};
use crate::images::GuestImages;
use crate::vm::{console, Device, Hypervisor, Vm, VmConfig, VmError};
use crate::vsock::{VsockBackend, VsockError};

/// Sizing and places of one pod VM.
#[derive(Debug, Clone)]
pub struct SandboxVmConfig {
    /// Kernel and initramfs.
    pub images: GuestImages,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// The pod's private directory (must exist).
    pub run_dir: PathBuf,
    /// Extra kernel command-line words.
    pub cmdline: Vec<String>,
    /// How long the agent may take to answer after the VMM starts.
    pub boot_timeout: Duration,
}

/// Starting a pod VM failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The vsock backend failed.
    #[error("vsock backend failed")]
    Vsock(#[from] VsockError),
    /// The VM failed.
    #[error("VM failed")]
    Vm(#[from] VmError),
    /// The agent did not come up.
    #[error("agent failed")]
    Agent(#[from] AgentError),
    /// The VMM exited while the agent was awaited.
    #[error("the VMM exited ({status}) before the agent answered; console: {console}")]
    VmExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The console log.
        console: PathBuf,
    },
}

/// A running pod VM with its agent.
#[derive(Debug)]
pub struct SandboxVm {
    agent: AgentClient,
    // Field order is drop order: the VM goes before its vsock backend.
    vm: Box<dyn Vm>,
    vsock: VsockBackend,
    boot_time: Duration,
}

/// What hull-agent prints on the console once its vsock listeners are bound.
pub const SERVING_LINE: &str = "hull-agent: serving on vsock";

/// How often the VMM is checked while the agent is awaited.
const AGENT_POLL: Duration = Duration::from_millis(250);

impl SandboxVm {
    /// Starts the vsock backend and the VM, and waits for the agent's first answer.
    pub async fn start(
        hypervisor: &dyn Hypervisor,
        config: &SandboxVmConfig,
    ) -> Result<Self, SandboxError> {
        let started = Instant::now();
        let vsock = VsockBackend::start(&config.run_dir, Duration::from_secs(5))?;
        let mut vm = hypervisor.start(&VmConfig {
            images: config.images.clone(),
            cmdline: config.cmdline.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            devices: vec![Device::VhostUserVsock {
                socket: vsock.vhost_socket().to_owned(),
            }],
            run_dir: config.run_dir.clone(),
        })?;
        // Connecting before the guest's vsock driver is up can wedge vhost-device-vsock (a
        // CONNECT that is never answered, and none after it), so wait for the agent to say it
        // listens first.
        console::wait_for_line_async(vm.as_mut(), SERVING_LINE, config.boot_timeout).await?;
        let agent = loop {
            match AgentClient::wait_ready(vsock.uds(), AGENT_POLL).await {
                Ok(agent) => break agent,
                Err(e) => {
                    if let Some(status) = vm.wait_timeout(Duration::ZERO)? {
                        return Err(SandboxError::VmExited {
                            status,
                            console: vm.console_path().to_owned(),
                        });
                    }
                    if started.elapsed() >= config.boot_timeout {
                        return Err(e.into());
                    }
                }
            }
        };
        Ok(Self {
            agent,
            vm,
            vsock,
            boot_time: started.elapsed(),
        })
    }

    /// The connected agent.
    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    /// The hybrid vsock socket (for stdio streams and more connections).
    pub fn vsock_uds(&self) -> &Path {
        self.vsock.uds()
    }

    /// The VM.
    pub fn vm(&mut self) -> &mut dyn Vm {
        self.vm.as_mut()
    }

    /// The vsock backend's pid.
    pub fn vsock_pid(&self) -> u32 {
        self.vsock.pid()
    }

    /// VMM spawn → agent answered.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Removes every container, stops the VM and the vsock backend.
    pub async fn shutdown(
        mut self,
        grace: Duration,
    ) -> Result<std::process::ExitStatus, SandboxError> {
        // Best effort: the VM is stopped whatever the agent says.
        let _ = tokio::time::timeout(grace, self.agent.destroy_sandbox()).await;
        Ok(self.vm.stop(grace)?)
    }
}
