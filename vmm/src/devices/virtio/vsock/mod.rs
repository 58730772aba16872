//! virtio-vsock, in process: the guest's sockets reach host processes through unix sockets
//! (the hybrid protocol of [`muxer`]), so the host side is the same whether hull-vmm or QEMU with
//! a vhost-user backend runs the VM.
//!
//! [`device`] holds the virtio state and config space, [`event_handler`] moves packets between
//! the queues and the [`muxer`], [`packet`] parses headers, [`connection`] keeps per-stream
//! credit. Everything read from a queue is bounds-checked: a malformed packet is dropped (or
//! answered with RST when its header names a connection), never trusted.

pub mod connection;
pub mod device;
pub mod event_handler;
pub mod muxer;
pub mod packet;
#[cfg(test)]
pub mod test_utils;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use device::VsockDevice;

/// Setting up or running the vsock device failed.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// Binding the host-side socket failed.
    #[error("cannot listen on the vsock socket {0}")]
    Bind(PathBuf, #[source] std::io::Error),
    /// Something other than a socket is at the socket path.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Another OS call failed.
    #[error("cannot {0}")]
    Os(&'static str, #[source] std::io::Error),
}

/// Index of the RX queue (device → driver).
pub const RXQ: usize = 0;
/// Index of the TX queue (driver → device).
pub const TXQ: usize = 1;
/// Index of the event queue.
pub const EVQ: usize = 2;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
