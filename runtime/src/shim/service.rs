//! The ttrpc `Task` service containerd calls: converts containerd's messages to the plain
//! arguments of [`super::task`] and back, and errors to ttrpc statuses. No logic lives here.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use containerd_shim_protos::api::{CheckpointTaskRequest, ProcessInfo};

use super::pod::Pod;
use super::stdio::StdioPaths;
use super::task::{self, timestamp};
use super::ShimError;

/// The Task service of one shim.
#[derive(Debug, Clone)]
pub struct TaskService {
    pod: Arc<Pod>,
    /// Set when the configuration could not be read: every `Create` fails with it.
    config_error: Option<String>,
}

impl TaskService {
    /// A service for `pod`; `config_error` (the whole message) fails every `Create`.
    pub fn new(pod: Arc<Pod>, config_error: Option<String>) -> Self {
        Self { pod, config_error }
    }

    /// The pod.
    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }
}

/// Logs a finished call and how long it took (debug level: the shim's time breakdown).
fn took(call: &'static str, id: &str, started: std::time::Instant) {
    tracing::debug!(
        call,
        id,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "task call done"
    );
}

fn status(e: ShimError) -> ttrpc::Error {
    tracing::warn!("{}", crate::agent::client::error_chain(&e));
    e.to_ttrpc()
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let s = task::state::state(&self.pod, &req.id, &req.exec_id).map_err(status)?;
        Ok(StateResponse {
            id: req.id,
            bundle: s.bundle,
            pid: s.pid,
            status: s.status.into(),
            stdin: s.stdio.stdin,
            stdout: s.stdio.stdout,
            stderr: s.stdio.stderr,
            terminal: s.stdio.terminal,
            exit_status: s.exit.map_or(0, |e| e.status),
            exited_at: s.exit.map(|e| timestamp(e.at)).into(),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        if let Some(e) = &self.config_error {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::FAILED_PRECONDITION,
                e,
            )));
        }
        if !req.checkpoint.is_empty() {
            return Err(status(ShimError::Unsupported(
                "restoring from a checkpoint",
            )));
        }
        let args = task::create::CreateArgs {
            id: req.id,
            bundle: PathBuf::from(req.bundle),
            rootfs: req.rootfs,
            stdio: StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
            oci: None,
        };
        let (started, id) = (std::time::Instant::now(), args.id.clone());
        let pid = task::create::create(&self.pod, args)
            .await
            .map_err(status)?;
        took("create", &id, started);
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let started = std::time::Instant::now();
        let pid = task::start::start(&self.pod, &req.id, &req.exec_id)
            .await
            .map_err(status)?;
        took("start", &req.id, started);
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let started = std::time::Instant::now();
        let d = task::delete::delete(&self.pod, &req.id, &req.exec_id)
            .await
            .map_err(status)?;
        took("delete", &req.id, started);
        Ok(DeleteResponse {
            pid: d.pid,
            exit_status: d.exit.status,
            exited_at: Some(timestamp(d.exit.at)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let pids = task::pids::pids(&self.pod, &req.id).await.map_err(status)?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        task::pause::pause(&self.pod, &req.id)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        task::resume::resume(&self.pod, &req.id)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        task::checkpoint::checkpoint().map_err(status)?;
        Ok(Empty::new())
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        task::kill::kill(&self.pod, &req.id, &req.exec_id, req.signal, req.all)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let stdio = StdioPaths {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        let json = req.spec.into_option().map(|a| a.value).unwrap_or_default();
        task::exec::exec(&self.pod, &req.id, &req.exec_id, stdio, json)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        task::resize::resize_pty(&self.pod, &req.id, &req.exec_id, req.width, req.height)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        task::close_io::close_io(&self.pod, &req.id, &req.exec_id, req.stdin)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let json = req
            .resources
            .into_option()
            .map(|a| a.value)
            .unwrap_or_default();
        task::update::update(&self.pod, &req.id, &json)
            .await
            .map_err(status)?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let started = std::time::Instant::now();
        let exit = task::wait::wait(&self.pod, &req.id, &req.exec_id)
            .await
            .map_err(status)?;
        took("wait", &req.id, started);
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let any = task::stats::stats(&self.pod, &req.id)
            .await
            .map_err(status)?;
        Ok(StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    async fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let (shim_pid, task_pid, version) = task::connect::connect(&self.pod).await;
        Ok(ConnectResponse {
            shim_pid,
            task_pid,
            version,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        let started = std::time::Instant::now();
        task::shutdown::shutdown(&self.pod).await;
        took("shutdown", &req.id, started);
        Ok(Empty::new())
    }
}
