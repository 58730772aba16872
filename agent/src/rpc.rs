//! The ttrpc face of the agent: converts wire types and calls [`crate::sandbox`]; nothing else.

use std::sync::Arc;

use async_trait::async_trait;
use hull_protocol::agent::{self as pb};
use hull_protocol::agent_ttrpc::Agent;
use ttrpc::r#async::TtrpcContext;

use crate::guest;
use crate::sandbox::Sandbox;

/// How long `AbortShare` may take: the abort itself only ends requests, so this bounds a kernel
/// that misbehaves, well inside the host's RPC timeout.
const ABORT_SHARE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The agent service.
#[derive(Debug, Clone)]
pub struct AgentService {
    sandbox: Arc<Sandbox>,
}

impl AgentService {
    /// Serves `sandbox`.
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self { sandbox }
    }
}

type Reply<T> = ttrpc::Result<T>;

fn empty() -> pb::Empty {
    pb::Empty::new()
}

#[async_trait]
impl Agent for AgentService {
    async fn check(&self, _: &TtrpcContext, _: pb::CheckRequest) -> Reply<pb::CheckResponse> {
        Ok(pb::CheckResponse {
            agent_version: guest::AGENT_VERSION.to_owned(),
            ..Default::default()
        })
    }

    async fn guest_details(
        &self,
        _: &TtrpcContext,
        _: pb::Empty,
    ) -> Reply<pb::GuestDetailsResponse> {
        Ok(guest::details()?)
    }

    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: pb::CreateSandboxRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.create_sandbox(&req)?;
        Ok(empty())
    }

    async fn destroy_sandbox(&self, _: &TtrpcContext, _: pb::Empty) -> Reply<pb::Empty> {
        self.sandbox.destroy_sandbox().await?;
        Ok(empty())
    }

    async fn create_container(
        &self,
        _: &TtrpcContext,
        req: pb::CreateContainerRequest,
    ) -> Reply<pb::CreateContainerResponse> {
        let pid = self.sandbox.create_container(req).await?;
        Ok(pb::CreateContainerResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start_container(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.start_container(&req.container_id).await?;
        Ok(empty())
    }

    async fn remove_container(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.remove_container(&req.container_id).await?;
        Ok(empty())
    }

    async fn exec_process(
        &self,
        _: &TtrpcContext,
        req: pb::ExecProcessRequest,
    ) -> Reply<pb::ExecProcessResponse> {
        let pid = self.sandbox.exec_process(req).await?;
        Ok(pb::ExecProcessResponse {
            pid,
            ..Default::default()
        })
    }

    async fn signal_process(
        &self,
        _: &TtrpcContext,
        req: pb::SignalProcessRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox
            .signal_process(&req.container_id, &req.exec_id, req.signal, req.all)
            .await?;
        Ok(empty())
    }

    async fn wait_process(
        &self,
        _: &TtrpcContext,
        req: pb::ProcessRequest,
    ) -> Reply<pb::WaitProcessResponse> {
        let exit = self
            .sandbox
            .wait_process(&req.container_id, &req.exec_id)
            .await?;
        Ok(pb::WaitProcessResponse {
            exit_status: exit.exit_status,
            signal: exit.signal,
            exited_at_unix_nanos: exit.exited_at_unix_nanos,
            ..Default::default()
        })
    }

    async fn resize_tty(&self, _: &TtrpcContext, req: pb::ResizeTtyRequest) -> Reply<pb::Empty> {
        self.sandbox
            .resize_tty(&req.container_id, &req.exec_id, req.rows, req.cols)?;
        Ok(empty())
    }

    async fn close_stdin(&self, _: &TtrpcContext, req: pb::ProcessRequest) -> Reply<pb::Empty> {
        self.sandbox.close_stdin(&req.container_id, &req.exec_id)?;
        Ok(empty())
    }

    async fn pause_container(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.pause_container(&req.container_id).await?;
        Ok(empty())
    }

    async fn resume_container(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.resume_container(&req.container_id).await?;
        Ok(empty())
    }

    async fn update_container(
        &self,
        _: &TtrpcContext,
        req: pb::UpdateContainerRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox
            .update_container(&req.container_id, &req.resources_json)
            .await?;
        Ok(empty())
    }

    async fn stats_container(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::StatsContainerResponse> {
        let stats = self.sandbox.stats_container(&req.container_id).await?;
        Ok(crate::stats::to_wire(&stats))
    }

    async fn list_processes(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::ListProcessesResponse> {
        let pids = self.sandbox.list_processes(&req.container_id).await?;
        Ok(pb::ListProcessesResponse {
            pids,
            ..Default::default()
        })
    }

    async fn abort_share(&self, _: &TtrpcContext, _: pb::Empty) -> Reply<pb::Empty> {
        use crate::sandbox::AgentError;
        // A syscall on a broken share must never hold a runtime worker: run it on the blocking
        // pool and answer within bounds whatever the kernel does.
        let abort = tokio::task::spawn_blocking(crate::boot::abort_share);
        match tokio::time::timeout(ABORT_SHARE_TIMEOUT, abort).await {
            Ok(Ok(Ok(()))) => Ok(empty()),
            Ok(Ok(Err(e))) => Err(AgentError::Io("cannot abort the share".into(), e.into()).into()),
            Ok(Err(e)) => Err(AgentError::Io(
                "the share abort task failed".into(),
                std::io::Error::other(e),
            )
            .into()),
            Err(_) => Err(AgentError::Io(
                "the share abort did not finish".into(),
                std::io::ErrorKind::TimedOut.into(),
            )
            .into()),
        }
    }

    async fn configure_network(
        &self,
        _: &TtrpcContext,
        req: pb::ConfigureNetworkRequest,
    ) -> Reply<pb::Empty> {
        let net = hull_protocol::network::PodNetwork::from_request(&req)
            .map_err(crate::sandbox::AgentError::from)?;
        crate::network::configure(&net)
            .await
            .map_err(crate::sandbox::AgentError::from)?;
        Ok(empty())
    }

    async fn personalize(&self, _: &TtrpcContext, req: pb::PersonalizeRequest) -> Reply<pb::Empty> {
        use crate::sandbox::AgentError;
        hull_protocol::limits::check_personalize(&req).map_err(AgentError::from)?;
        // Mounting the share talks to virtiofsd: off the runtime's workers.
        tokio::task::spawn_blocking(move || crate::personalize::apply(&req))
            .await
            .map_err(|e| {
                AgentError::Io(
                    "the personalize task failed".into(),
                    std::io::Error::other(e),
                )
            })?
            .map_err(AgentError::from)?;
        Ok(empty())
    }

    async fn write_volume(
        &self,
        _: &TtrpcContext,
        req: pb::WriteVolumeRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.write_volume(&req).await?;
        Ok(empty())
    }

    async fn remove_volumes(
        &self,
        _: &TtrpcContext,
        req: pb::ContainerRequest,
    ) -> Reply<pb::Empty> {
        self.sandbox.remove_volumes(&req.container_id).await?;
        Ok(empty())
    }

    async fn get_oom_event(&self, _: &TtrpcContext, _: pb::Empty) -> Reply<pb::OomEvent> {
        let container_id = self.sandbox.next_oom_event().await?;
        Ok(pb::OomEvent {
            container_id,
            ..Default::default()
        })
    }
}
