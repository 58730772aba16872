//! The pod's network, host side. CNI gives a Kubernetes pod a network namespace holding a veth with
//! the pod's MAC, addresses and routes. hull leaves that namespace as CNI made it and extends it
//! into the VM:
//!
//! - [`discover`] reads the veth's configuration (a [`PodNetwork`] for the agent, which gives the
//!   guest NIC the same MAC, addresses, MTU and routes);
//! - the VMM runs inside the namespace and creates a tap there (see `vm::Device::Net`);
//! - [`wire`] connects veth and tap with tc `mirred` redirects both ways, so every frame the veth
//!   receives leaves through the tap into the guest and every frame from the guest leaves through
//!   the veth;
//! - [`unwire`] removes what [`wire`] added (the tap itself goes away with the VMM);
//! - [`port_forward`] makes the namespace's loopback lead into the guest, for CRI `PortForward`.
//!
//! Every netlink conversation runs on a short-lived thread that entered the namespace
//! ([`netns::run_in`]), so the shim's own threads never change namespace.

mod discover;
pub mod netns;
pub mod port_forward;
mod tc;

use std::path::PathBuf;

pub use discover::{discover, PodInterface};
pub use hull_protocol::network::PodNetwork;
pub use tc::{unwire, wire};

/// Setting up or tearing down the pod network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The network namespace could not be entered.
    #[error("cannot enter the network namespace {0}")]
    Netns(PathBuf, #[source] std::io::Error),
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("{0}")]
    Netlink(String, #[source] rtnetlink::Error),
    /// The tap did not appear in time.
    #[error("the VMM's tap {0} did not appear")]
    TapMissing(String),
    /// The configuration found cannot be passed on.
    #[error("unusable network configuration")]
    Config(#[from] hull_protocol::network::NetworkError),
}

/// Deletes the interface `name` in the calling thread's network namespace; one that does not
/// exist is not an error.
pub fn delete_link_here(name: &str) -> Result<(), NetworkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(NetworkError::Socket)?;
    runtime.block_on(netns::with_handle(|handle| async move {
        tc::delete_link(&handle, name).await
    }))
}

/// Deletes the interface `name` in the network namespace at `netns` (nothing if either is gone).
pub fn delete_link(netns: &std::path::Path, name: &str) -> Result<(), NetworkError> {
    if !netns.exists() {
        return Ok(());
    }
    netns::run_in(netns, || {
        netns::with_handle(|handle| async move { tc::delete_link(&handle, name).await })
    })
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |e| NetworkError::Netlink(what, e)
}
