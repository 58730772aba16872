//! virtio-net on a tap: the guest's frames go out through a tap device (which the runtime puts in
//! the pod's network namespace and joins to the pod's veth), and frames arriving on the tap fill
//! the guest's RX buffers. No offloads: every frame is a plain Ethernet frame behind the 12-byte
//! virtio-net header, so hull-vmm never parses more than lengths.
//!
//! [`device`] holds the virtio state and config space (the MAC), [`event_handler`] moves frames
//! between the queues and the [`tap`]. Every length comes from the chain it travels in and is
//! checked against fixed caps: a frame larger than [`MAX_FRAME`] or a chain too small for the
//! header is dropped and counted, never trusted.

pub mod device;
pub mod event_handler;
pub mod tap;
#[cfg(test)]
pub mod test_utils;
#[cfg(test)]
mod tests;

pub use device::NetDevice;

/// virtio device id of a network card.
pub const VIRTIO_ID_NET: u32 = 1;
/// `VIRTIO_NET_F_MAC`: the config space holds the MAC the guest must use.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Index of the RX queue (device → driver).
pub const RXQ: usize = 0;
/// Index of the TX queue (driver → device).
pub const TXQ: usize = 1;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// The virtio-net header with `VIRTIO_F_VERSION_1`: flags, gso type, header length, gso size,
/// checksum start and offset, buffer count.
pub const VNET_HDR_LEN: usize = 12;
/// Largest frame moved either way (no GSO: an MTU of up to 64 KiB fits).
pub const MAX_FRAME: usize = 65_535;

/// Setting up the virtio-net device failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] std::io::Error),
    /// The tap could not be created or attached to.
    #[error("cannot attach to tap {0}")]
    Attach(String, #[source] std::io::Error),
}
