//! hull's host⇄guest wire protocol, shared by the runtime (host) and hull-agent (guest):
//! - [`agent`] / [`agent_ttrpc`]: the agent API (`protos/agent.proto`), served by the agent with
//!   ttrpc on vsock port [`AGENT_PORT`];
//! - [`stdio`]: the stdio streams, one vsock stream per channel on port [`STDIO_PORT`];
//! - [`limits`]: the caps and checks every message goes through on both sides;
//! - [`network`]: the pod network request in typed, checked form;
//! - [`volume`]: copied volumes (ConfigMap/Secret directories kept in a guest tmpfs);
//! - [`error_chain`]: how both sides print an error for a human (in logs and in ttrpc statuses).
#![warn(missing_docs)]

#[allow(warnings, missing_docs, clippy::all, clippy::pedantic)]
pub mod agent {
    //! Messages of the agent API (generated).
    include!(concat!(env!("OUT_DIR"), "/agent.rs"));
}

#[allow(warnings, missing_docs, clippy::all, clippy::pedantic)]
pub mod agent_ttrpc {
    //! The ttrpc client and server of the agent API (generated).
    include!(concat!(env!("OUT_DIR"), "/agent_ttrpc.rs"));
}

pub mod limits;
pub mod network;
pub mod stdio;
pub mod volume;

/// An error and its sources on one line (`outer: inner: root cause`): how host and guest print
/// an error for a human, in logs and in the text of a ttrpc status.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The vsock port the agent serves its ttrpc API on.
pub const AGENT_PORT: u32 = 1024;
/// The vsock port the agent accepts stdio streams on.
pub const STDIO_PORT: u32 = 1025;
/// The vsock port the agent accepts port-forward streams on (CRI `PortForward`): the host sends
/// the guest TCP port as 2 bytes (big endian); the agent dials `127.0.0.1:<port>` in the pod's
/// network and answers one byte, 0 when connected, else the errno (at most 255); then the bytes
/// flow both ways until either side closes.
pub const FORWARD_PORT: u32 = 1026;

/// The guest path of the pod's shared-memory tmpfs (the agent mounts it at boot; the shim points
/// CRI pod containers' `/dev/shm` at it).
pub const GUEST_POD_SHM: &str = "/run/hull/pod-shm";
