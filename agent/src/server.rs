//! The agent service: ttrpc on vsock port 1024, stdio streams on 1025, the reaper and the OOM
//! watcher, all on one tokio runtime.

use std::io::Write;
use std::sync::Arc;

use hull_protocol::agent_ttrpc::create_agent;
use hull_protocol::{AGENT_PORT, STDIO_PORT};

use crate::host_vsock::HostListener;
use crate::reaper::Reaper;
use crate::rpc::AgentService;
use crate::sandbox::Sandbox;

/// Serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The ttrpc server could not listen or serve.
    #[error("cannot serve the agent API on vsock port {AGENT_PORT}")]
    Ttrpc(#[source] ttrpc::Error),
    /// A background task stopped.
    #[error("{0} stopped")]
    Task(&'static str, #[source] std::io::Error),
}

/// Serves until a fatal error.
pub fn run() -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(serve())
}

async fn serve() -> Result<(), ServerError> {
    let reaper = Arc::new(Reaper::default());
    let sandbox = Sandbox::new(reaper.clone());
    let service = create_agent(Arc::new(AgentService::new(sandbox.clone())));
    // Only the host may call the agent API (see host_vsock).
    let listener = HostListener::bind(AGENT_PORT)
        .map_err(|e| ServerError::Ttrpc(ttrpc::Error::Others(format!("bind: {e}"))))?;
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(listener.incoming())
        .register_service(service);
    server.start().await.map_err(ServerError::Ttrpc)?;
    tokio::spawn(sandbox.clone().watch_oom());
    let stdio = tokio::spawn(crate::stdio::serve(sandbox.clone()));
    // Port-forward is a convenience: its listener failing ends no pod.
    tokio::spawn(async {
        if let Err(e) = crate::forward::serve().await {
            let _ = writeln!(std::io::stdout(), "hull-agent: port-forward listener: {e}");
        }
    });
    // The host waits for this line before its first vsock connection (see the runtime's
    // `sandbox::SERVING_LINE`). A console write error must not end PID 1.
    let _ = writeln!(
        std::io::stdout(),
        "hull-agent: serving on vsock ports {AGENT_PORT} (ttrpc) and {STDIO_PORT} (stdio)"
    );
    tokio::select! {
        r = reaper.run() => r.map_err(|e| ServerError::Task("the reaper", e)),
        r = stdio => r
            .map_err(|e| ServerError::Task("the stdio listener", std::io::Error::other(e)))?
            .map_err(|e| ServerError::Task("the stdio listener", e)),
    }
}
