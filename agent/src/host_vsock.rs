//! The agent's vsock listeners serve the host only.
//!
//! vsock has no network namespaces: any process in the guest, a container's included, can
//! connect to the agent's ports through the loopback transport (CID 1, or the guest's own CID).
//! Served, that would let a container drive the agent API (start a privileged container, exec in
//! its neighbours) or take another process's stdio. The host's connections arrive from
//! [`VMADDR_CID_HOST`] (both backends' hybrid vsock sets it), which no guest process can claim on
//! loopback, so every other peer is dropped at accept.

use tokio_vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY, VMADDR_CID_HOST};

/// Whether a connection from `peer` may be served.
pub fn from_host(peer: &VsockAddr) -> bool {
    peer.cid() == VMADDR_CID_HOST
}

/// Listens on `port` for connections from the host.
#[derive(Debug)]
pub struct HostListener(VsockListener);

impl HostListener {
    /// Binds `port` on every local CID.
    pub fn bind(port: u32) -> std::io::Result<Self> {
        VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port)).map(Self)
    }

    /// The next connection from the host; connections from anyone else are closed (and logged
    /// on the console) without a byte read or written.
    pub async fn accept(&self) -> std::io::Result<VsockStream> {
        loop {
            let (stream, peer) = self.0.accept().await?;
            if from_host(&peer) {
                return Ok(stream);
            }
            eprintln!(
                "hull-agent: refused a vsock connection to port {} from CID {} (not the host)",
                self.0.local_addr().map_or(0, |a| a.port()),
                peer.cid()
            );
        }
    }

    /// The connections as a stream, for ttrpc's server.
    pub fn incoming(self) -> ttrpc::r#async::transport::Listener {
        ttrpc::r#async::transport::Listener::new(futures::stream::unfold(
            self,
            |listener| async move {
                let next = listener.accept().await;
                Some((next, listener))
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_host_cid_is_served() {
        assert!(from_host(&VsockAddr::new(2, 1024)));
        for cid in [0, 1, 3, 4, VMADDR_CID_ANY] {
            assert!(!from_host(&VsockAddr::new(cid, 1024)), "CID {cid}");
        }
    }
}
