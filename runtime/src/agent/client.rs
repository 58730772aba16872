//! A typed, timed client of hull-agent's ttrpc API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_protocol::agent::{self as pb};
use hull_protocol::agent_ttrpc::AgentClient as TtrpcClient;
use hull_protocol::limits::{self, LimitError};
use hull_protocol::AGENT_PORT;
use ttrpc::context::{self, Context};

use crate::vsock::{self, VsockError};

/// Default deadline of one request (waits are unbounded).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Deadline of the requests that only look or signal (`Check`, `GuestDetails`, `SignalProcess`,
/// `ListProcesses`, `StatsContainer`, `ResizeTty`, `CloseStdin`): containerd, `ctr` and CRI's
/// stats loop make them often and wait on them, so a hung guest answers them with an error
/// soon. Ten seconds still leaves a loaded, software-emulated guest plenty of time.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(10);

/// A call of the host's agent client that failed: the agent unreachable, silent, or refusing.
/// (The guest agent's own error type, which it answers with, is `hull_agent`'s `AgentClientError`.)
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    /// The agent could not be reached.
    #[error("cannot reach the agent")]
    Connect(#[from] VsockError),
    /// The agent did not answer in time after boot.
    #[error("the agent did not answer within {0:?} (last attempt: {1})")]
    NotReady(Duration, String),
    /// The request broke a limit before it was sent.
    #[error("invalid request")]
    Limit(#[from] LimitError),
    /// The agent answered with an error: its own message is the whole text (it says what is
    /// wrong in the user's terms, e.g. `the container is paused`; ttrpc's debug form of the
    /// status is never shown).
    #[error("{message}")]
    Refused {
        /// The call.
        call: &'static str,
        /// The agent's status code.
        code: ttrpc::Code,
        /// The agent's message.
        message: String,
    },
    /// The call failed on its way (transport, deadline) without an answer from the agent.
    #[error("agent call {call} failed")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The ttrpc error.
        #[source]
        source: ttrpc::Error,
    },
    /// The agent's answer breaks the protocol's limits.
    #[error("the agent sent an invalid {0} response")]
    BadResponse(&'static str),
    /// The host's `getrandom` failed.
    #[error("cannot read fresh entropy for the guest")]
    Entropy(#[source] std::io::Error),
}

impl AgentClientError {
    /// The ttrpc status code the agent answered with, if it answered.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            AgentClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, or 128 + signal.
    pub exit_status: i32,
    /// The signal that killed it, 0 if it exited.
    pub signal: u32,
    /// Guest wall-clock time of the exit, ns since the epoch.
    pub exited_at_unix_nanos: u64,
}

/// Which stdio channels the host will attach.
pub type StdioConfig = pb::StdioConfig;

/// A connected agent client.
#[derive(Clone)]
pub struct AgentClient {
    inner: TtrpcClient,
    uds: PathBuf,
    timeout: Duration,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("uds", &self.uds)
            .finish_non_exhaustive()
    }
}

fn rpc(call: &'static str) -> impl FnOnce(ttrpc::Error) -> AgentClientError {
    move |source| match source {
        // A status is the agent's answer (ttrpc's client reports its own timeouts as `Others`).
        ttrpc::Error::RpcStatus(status) => AgentClientError::Refused {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        },
        source => AgentClientError::Rpc { call, source },
    }
}

impl AgentClient {
    /// Connects once through the VM's hybrid vsock socket `uds`.
    pub async fn connect(uds: &Path) -> Result<Self, AgentClientError> {
        let stream = vsock::connect(uds, AGENT_PORT, Duration::from_secs(5)).await?;
        let socket = ttrpc::r#async::transport::Socket::new(stream);
        Ok(Self {
            inner: TtrpcClient::new(ttrpc::r#async::Client::new(socket)),
            uds: uds.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Connects and calls `Check` until the agent answers or `within` passes (the guest may still
    /// be booting).
    pub async fn wait_ready(uds: &Path, within: Duration) -> Result<Self, AgentClientError> {
        let deadline = Instant::now() + within;
        loop {
            let last = match Self::connect(uds).await {
                Ok(client) => {
                    let probe = client
                        .inner
                        .check(
                            context::with_timeout(nanos(Duration::from_secs(2))),
                            &pb::CheckRequest::new(),
                        )
                        .await;
                    match probe {
                        Ok(_) => return Ok(client),
                        Err(e) => format!("Check: {}", error_chain(&rpc("Check")(e))),
                    }
                }
                Err(e) => error_chain(&e),
            };
            if Instant::now() >= deadline {
                return Err(AgentClientError::NotReady(within, last));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A new connection to the same agent (after the old one broke).
    pub async fn reconnect(&self) -> Result<Self, AgentClientError> {
        let mut fresh = Self::connect(&self.uds).await?;
        fresh.timeout = self.timeout;
        Ok(fresh)
    }

    /// The same client with another per-request deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn ctx(&self) -> Context {
        context::with_timeout(nanos(self.timeout))
    }

    /// The context of a request that only looks or signals (see [`QUICK_TIMEOUT`]).
    fn quick_ctx(&self) -> Context {
        context::with_timeout(nanos(self.timeout.min(QUICK_TIMEOUT)))
    }

    /// `Check`: the agent's version.
    pub async fn check(&self) -> Result<String, AgentClientError> {
        let r = self
            .inner
            .check(self.quick_ctx(), &pb::CheckRequest::new())
            .await
            .map_err(rpc("Check"))?;
        limits::check_len("agent version", r.agent_version.len(), 64)?;
        Ok(r.agent_version)
    }

    /// `GuestDetails`.
    pub async fn guest_details(&self) -> Result<pb::GuestDetailsResponse, AgentClientError> {
        let r = self
            .inner
            .guest_details(self.quick_ctx(), &pb::Empty::new())
            .await
            .map_err(rpc("GuestDetails"))?;
        if r.cgroup_controllers.len() > 64 || r.kernel_release.len() > 256 {
            return Err(AgentClientError::BadResponse("GuestDetails"));
        }
        Ok(r)
    }

    /// `CreateSandbox`.
    pub async fn create_sandbox(
        &self,
        req: pb::CreateSandboxRequest,
    ) -> Result<(), AgentClientError> {
        limits::check_sandbox(&req)?;
        self.inner
            .create_sandbox(self.ctx(), &req)
            .await
            .map_err(rpc("CreateSandbox"))?;
        Ok(())
    }

    /// `DestroySandbox`: every container is killed and removed.
    pub async fn destroy_sandbox(&self) -> Result<(), AgentClientError> {
        self.inner
            .destroy_sandbox(self.ctx(), &pb::Empty::new())
            .await
            .map_err(rpc("DestroySandbox"))?;
        Ok(())
    }

    /// `CreateContainer`: returns the init process's pid (in the guest).
    pub async fn create_container(
        &self,
        container_id: &str,
        oci_spec_json: Vec<u8>,
        rootfs: &str,
        stdio: StdioConfig,
    ) -> Result<u32, AgentClientError> {
        limits::check_id("container id", container_id)?;
        limits::check_len("OCI spec", oci_spec_json.len(), limits::MAX_SPEC_LEN)?;
        limits::check_abs_path("rootfs", rootfs)?;
        let req = pb::CreateContainerRequest {
            container_id: container_id.to_owned(),
            oci_spec_json,
            rootfs: rootfs.to_owned(),
            stdio: Some(stdio).into(),
            ..Default::default()
        };
        let r = self
            .inner
            .create_container(self.ctx(), &req)
            .await
            .map_err(rpc("CreateContainer"))?;
        Ok(r.pid)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<(), AgentClientError> {
        let req = container_request(container_id)?;
        self.inner
            .start_container(self.ctx(), &req)
            .await
            .map_err(rpc("StartContainer"))?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, container_id: &str) -> Result<(), AgentClientError> {
        let req = container_request(container_id)?;
        self.inner
            .remove_container(self.ctx(), &req)
            .await
            .map_err(rpc("RemoveContainer"))?;
        Ok(())
    }

    /// `ExecProcess`: starts `oci_process_json` in the container; returns its pid.
    pub async fn exec_process(
        &self,
        container_id: &str,
        exec_id: &str,
        oci_process_json: Vec<u8>,
        stdio: StdioConfig,
    ) -> Result<u32, AgentClientError> {
        limits::check_id("container id", container_id)?;
        limits::check_id("exec id", exec_id)?;
        limits::check_len(
            "OCI process",
            oci_process_json.len(),
            limits::MAX_PROCESS_JSON_LEN,
        )?;
        let req = pb::ExecProcessRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            oci_process_json,
            stdio: Some(stdio).into(),
            ..Default::default()
        };
        let r = self
            .inner
            .exec_process(self.ctx(), &req)
            .await
            .map_err(rpc("ExecProcess"))?;
        Ok(r.pid)
    }

    /// `SignalProcess`.
    pub async fn signal_process(
        &self,
        container_id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), AgentClientError> {
        let req = pb::SignalProcessRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
            ..Default::default()
        };
        check_process(&req.container_id, &req.exec_id)?;
        self.inner
            .signal_process(self.quick_ctx(), &req)
            .await
            .map_err(rpc("SignalProcess"))?;
        Ok(())
    }

    /// `WaitProcess`: blocks until the process has exited (no deadline).
    pub async fn wait_process(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<ExitInfo, AgentClientError> {
        let req = process_request(container_id, exec_id)?;
        let r = self
            .inner
            .wait_process(Context::default(), &req)
            .await
            .map_err(rpc("WaitProcess"))?;
        if r.signal > 64 {
            return Err(AgentClientError::BadResponse("WaitProcess"));
        }
        Ok(ExitInfo {
            exit_status: r.exit_status,
            signal: r.signal,
            exited_at_unix_nanos: r.exited_at_unix_nanos,
        })
    }

    /// `ResizeTty`.
    pub async fn resize_tty(
        &self,
        container_id: &str,
        exec_id: &str,
        rows: u32,
        cols: u32,
    ) -> Result<(), AgentClientError> {
        check_process(container_id, exec_id)?;
        let req = pb::ResizeTtyRequest {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            rows,
            cols,
            ..Default::default()
        };
        self.inner
            .resize_tty(self.quick_ctx(), &req)
            .await
            .map_err(rpc("ResizeTty"))?;
        Ok(())
    }

    /// `CloseStdin`: the process's stdin is closed once its stdin stream has ended.
    pub async fn close_stdin(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<(), AgentClientError> {
        let req = process_request(container_id, exec_id)?;
        self.inner
            .close_stdin(self.quick_ctx(), &req)
            .await
            .map_err(rpc("CloseStdin"))?;
        Ok(())
    }

    /// `PauseContainer`.
    pub async fn pause_container(&self, container_id: &str) -> Result<(), AgentClientError> {
        let req = container_request(container_id)?;
        self.inner
            .pause_container(self.ctx(), &req)
            .await
            .map_err(rpc("PauseContainer"))?;
        Ok(())
    }

    /// `ResumeContainer`.
    pub async fn resume_container(&self, container_id: &str) -> Result<(), AgentClientError> {
        let req = container_request(container_id)?;
        self.inner
            .resume_container(self.ctx(), &req)
            .await
            .map_err(rpc("ResumeContainer"))?;
        Ok(())
    }

    /// `UpdateContainer` with OCI `linux.resources` as JSON.
    pub async fn update_container(
        &self,
        container_id: &str,
        resources_json: Vec<u8>,
    ) -> Result<(), AgentClientError> {
        limits::check_id("container id", container_id)?;
        limits::check_len(
            "resources",
            resources_json.len(),
            limits::MAX_PROCESS_JSON_LEN,
        )?;
        let req = pb::UpdateContainerRequest {
            container_id: container_id.to_owned(),
            resources_json,
            ..Default::default()
        };
        self.inner
            .update_container(self.ctx(), &req)
            .await
            .map_err(rpc("UpdateContainer"))?;
        Ok(())
    }

    /// `StatsContainer`.
    pub async fn stats_container(
        &self,
        container_id: &str,
    ) -> Result<pb::StatsContainerResponse, AgentClientError> {
        let req = container_request(container_id)?;
        let r = self
            .inner
            .stats_container(self.quick_ctx(), &req)
            .await
            .map_err(rpc("StatsContainer"))?;
        if r.io.len() > limits::MAX_IO_DEVICES {
            return Err(AgentClientError::BadResponse("StatsContainer"));
        }
        Ok(r)
    }

    /// `ListProcesses`: guest pids of the container's processes.
    pub async fn list_processes(&self, container_id: &str) -> Result<Vec<u32>, AgentClientError> {
        let req = container_request(container_id)?;
        let r = self
            .inner
            .list_processes(self.quick_ctx(), &req)
            .await
            .map_err(rpc("ListProcesses"))?;
        if r.pids.len() > limits::MAX_PIDS {
            return Err(AgentClientError::BadResponse("ListProcesses"));
        }
        Ok(r.pids)
    }

    /// `AbortShare`: the share's virtiofsd died; make the guest fail I/O on the share instead of
    /// blocking on it.
    pub async fn abort_share(&self) -> Result<(), AgentClientError> {
        self.inner
            .abort_share(self.ctx(), &pb::Empty::new())
            .await
            .map_err(rpc("AbortShare"))?;
        Ok(())
    }

    /// `Personalize`: makes a guest restored from a template its own pod before anything runs
    /// in it: 64 fresh bytes of the host's `getrandom` reseed its kernel RNG, its realtime clock
    /// is set from the host's, and the share tagged `share_tag` (if any) is mounted.
    pub async fn personalize(&self, share_tag: Option<&str>) -> Result<(), AgentClientError> {
        let mut entropy = vec![0u8; 64];
        // SAFETY: the buffer is live and `entropy.len()` bytes long; the count is checked.
        let got = unsafe { libc::getrandom(entropy.as_mut_ptr().cast(), entropy.len(), 0) };
        if usize::try_from(got).ok() != Some(entropy.len()) {
            return Err(AgentClientError::Entropy(std::io::Error::last_os_error()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let req = pb::PersonalizeRequest {
            entropy,
            realtime_secs: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            realtime_nanos: now.subsec_nanos(),
            share_tag: share_tag.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        limits::check_personalize(&req)?;
        self.inner
            .personalize(self.ctx(), &req)
            .await
            .map_err(rpc("Personalize"))?;
        Ok(())
    }

    /// Writes (first) or updates copied volume `volume` of container `container_id` in the
    /// guest (see `hull_protocol::volume`).
    pub async fn write_volume(
        &self,
        container_id: &str,
        volume: u32,
        payload: &hull_protocol::volume::Payload,
    ) -> Result<(), AgentClientError> {
        limits::check_id("container id", container_id)?;
        payload.check()?;
        self.inner
            .write_volume(self.ctx(), &payload.to_request(container_id, volume))
            .await
            .map_err(rpc("WriteVolume"))?;
        Ok(())
    }

    /// Unmounts and removes container `container_id`'s copied volumes in the guest.
    pub async fn remove_volumes(&self, container_id: &str) -> Result<(), AgentClientError> {
        let req = container_request(container_id)?;
        self.inner
            .remove_volumes(self.ctx(), &req)
            .await
            .map_err(rpc("RemoveVolumes"))?;
        Ok(())
    }

    /// `ConfigureNetwork`: gives the guest NIC the pod's addresses, MTU and routes.
    pub async fn configure_network(
        &self,
        network: &hull_protocol::network::PodNetwork,
    ) -> Result<(), AgentClientError> {
        self.inner
            .configure_network(self.ctx(), &network.to_request())
            .await
            .map_err(rpc("ConfigureNetwork"))?;
        Ok(())
    }

    /// `GetOomEvent`: blocks until a container is OOM-killed; returns its id.
    pub async fn get_oom_event(&self) -> Result<String, AgentClientError> {
        let r = self
            .inner
            .get_oom_event(Context::default(), &pb::Empty::new())
            .await
            .map_err(rpc("GetOomEvent"))?;
        limits::check_id("container id", &r.container_id)
            .map_err(|_| AgentClientError::BadResponse("GetOomEvent"))?;
        Ok(r.container_id)
    }
}

pub use hull_protocol::error_chain;

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn check_process(container_id: &str, exec_id: &str) -> Result<(), LimitError> {
    limits::check_id("container id", container_id)?;
    limits::check_exec_id(exec_id)
}

fn container_request(container_id: &str) -> Result<pb::ContainerRequest, LimitError> {
    limits::check_id("container id", container_id)?;
    Ok(pb::ContainerRequest {
        container_id: container_id.to_owned(),
        ..Default::default()
    })
}

fn process_request(container_id: &str, exec_id: &str) -> Result<pb::ProcessRequest, LimitError> {
    check_process(container_id, exec_id)?;
    Ok(pb::ProcessRequest {
        container_id: container_id.to_owned(),
        exec_id: exec_id.to_owned(),
        ..Default::default()
    })
}
