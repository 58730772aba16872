//! The host's side of the agent API: a typed client over hybrid vsock ([`client`]) and the stdio
//! streams ([`stdio`]). Everything the guest sends back is checked before it is used.

pub mod client;
pub mod stdio;

pub use client::{AgentClient, AgentClientError, ExitInfo};
