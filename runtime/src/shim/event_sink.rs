//! An events endpoint for engines that run the shim without one.
//!
//! containerd hands its shims `TTRPC_ADDRESS` (its own ttrpc socket) and takes task events there.
//! CRI-O runs a `runtime_type = "vm"` runtime with `TTRPC_ADDRESS` set empty: it learns of exits
//! through `Wait` and takes no events. containerd-shim's bootstrap connects its event publisher
//! before it serves and gives up when that fails, so under CRI-O the shim would exit at once. The
//! serving shim then answers events itself: [`DroppingSink`] is a ttrpc `Events` service on a
//! socket in the bundle (the server's working directory), which takes each event and drops it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::{Empty, ForwardRequest};
use containerd_shim_protos::shim_async::{create_events, Events};
use ttrpc::r#async::{transport::Listener, Server, TtrpcContext};

/// The environment variable containerd-shim's publisher connects to.
pub const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// The sink's socket, relative to the bundle (the serving shim's working directory): a relative
/// path keeps it short whatever the bundle's path, and it goes with the bundle.
pub const SOCKET: &str = "hull-events.sock";

/// Why the sink could not be served.
#[derive(Debug, thiserror::Error)]
pub enum EventSinkError {
    /// The socket could not be bound.
    #[error("cannot bind the events sink at {path}")]
    Bind {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ttrpc could not take the bound socket (registering it with the async runtime failed).
    #[error("cannot hand the events sink's socket to ttrpc")]
    Listen(#[source] std::io::Error),
    /// The server did not start.
    #[error("cannot serve the events sink")]
    Serve(#[source] ttrpc::Error),
}

/// A running sink; dropping it stops serving and removes its socket.
pub struct DroppingSink {
    server: Server,
    path: PathBuf,
}

impl std::fmt::Debug for DroppingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DroppingSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Whether the shim serving under this environment has nowhere to send events: `TTRPC_ADDRESS`
/// empty (CRI-O) while the shim serves (`-socket` given; `start` and `delete` publish nothing).
pub fn needed(ttrpc_address: Option<&str>, args: &[String]) -> bool {
    ttrpc_address.is_some_and(str::is_empty) && args.iter().any(|a| a == "-socket")
}

impl DroppingSink {
    /// Serves the sink at [`SOCKET`] in the working directory and points `TTRPC_ADDRESS` at it.
    /// Call before containerd-shim's bootstrap, on the runtime it will run on.
    pub async fn start() -> Result<Self, EventSinkError> {
        let path = PathBuf::from(SOCKET);
        // A socket left by a shim that was killed in this bundle.
        let _ = std::fs::remove_file(&path);
        let bind = |source| EventSinkError::Bind {
            path: path.clone(),
            source,
        };
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let listener = Listener::try_from(listener).map_err(EventSinkError::Listen)?;
        let services: HashMap<_, _> = create_events(Arc::new(Drop));
        let mut server = Server::new()
            .add_listener(listener)
            .register_service(services);
        server.start().await.map_err(EventSinkError::Serve)?;
        std::env::set_var(TTRPC_ADDRESS, &path);
        Ok(Self { server, path })
    }

    /// Stops serving and removes the socket.
    pub async fn stop(mut self) {
        let _ = self.server.shutdown().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The `Events` service that drops what it is given.
struct Drop;

#[async_trait]
impl Events for Drop {
    async fn forward(&self, _: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        tracing::debug!(topic = %req.envelope().topic, "event dropped: the engine takes none");
        Ok(Empty::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_serving_shim_without_an_address_needs_it() {
        let serving: Vec<String> = ["-namespace", "default", "-socket", "unix:///x", "-id", "a"]
            .map(String::from)
            .to_vec();
        let start: Vec<String> = ["-id", "a", "start"].map(String::from).to_vec();
        assert!(needed(Some(""), &serving));
        assert!(!needed(
            Some("/run/containerd/containerd.sock.ttrpc"),
            &serving
        ));
        assert!(!needed(None, &serving));
        assert!(!needed(Some(""), &start));
    }
}
