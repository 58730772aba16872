//! virtio-fs through a vhost-user backend. hull-vmm keeps the virtio face of the device (id 26,
//! the config space with the mount tag, feature negotiation on virtio-mmio) and hands the queues
//! to virtiofsd, which maps guest RAM (the shared memfd) and serves the FUSE requests itself:
//! the guest's queue kicks are KVM ioeventfds that virtiofsd reads directly, and its "used
//! buffer" calls come back on eventfds that the event loop turns into the device's interrupt.
//!
//! [`device`] holds the virtio state and config space; [`vhost_user`] speaks the vhost-user
//! protocol (the `vhost` crate's frontend): features, memory table, vring set-up and stop. The
//! protocol runs on the event-loop thread only (activation on a vCPU thread just wakes it), so
//! only that thread's seccomp filter needs the socket calls.

pub mod device;
#[cfg(test)]
mod tests;
pub mod vhost_user;

use std::path::PathBuf;

pub use device::FsDevice;

/// virtio device id of virtio-fs.
pub const VIRTIO_ID_FS: u32 = 26;
/// Queues: the high-priority queue and one request queue.
pub const NUM_QUEUES: usize = 2;
/// Largest queue size offered to the driver.
pub const QUEUE_SIZE: u16 = 1024;

/// Setting up or running the virtio-fs device failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The backend's socket could not be connected.
    #[error("cannot connect to the vhost-user backend at {0}")]
    Connect(PathBuf, #[source] vhost::Error),
    /// A vhost-user request failed.
    #[error("vhost-user {0} failed")]
    Request(&'static str, #[source] vhost::Error),
    /// The backend lacks something hull-vmm needs.
    #[error("the vhost-user backend {0}")]
    Backend(&'static str),
    /// A guest memory region is not backed by a file the backend could map.
    #[error("guest memory region at {0:#x} has no file to share")]
    NotShared(u64),
    /// A queue address is outside guest memory.
    #[error("queue {0} {1} address {2:#x} is outside guest memory")]
    QueueAddress(usize, &'static str, u64),
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
}
