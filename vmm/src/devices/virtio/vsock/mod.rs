//! virtio-vsock (placeholder while the device lands).

use std::path::PathBuf;

use virtio_queue::Queue;
use vmm_sys_util::epoll::{Epoll, EventSet};

use super::{ActivateError, Interrupt, VirtioDevice};
use crate::memory::GuestMemory;

/// vsock errors.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// OS error.
    #[error("cannot {0}")]
    Os(&'static str, #[source] std::io::Error),
}

/// The device.
#[derive(Debug)]
pub struct VsockDevice {
    _cid: u64,
    _uds: PathBuf,
}

impl VsockDevice {
    /// New.
    pub fn new(cid: u64, uds: PathBuf) -> Result<Self, VsockError> {
        Ok(Self {
            _cid: cid,
            _uds: uds,
        })
    }
    /// Register.
    pub fn register(&mut self, _epoll: &Epoll, _token: u64) -> Result<(), VsockError> {
        Ok(())
    }
    /// Event.
    pub fn backend_event(&mut self, _epoll: &Epoll, _token: u64, _events: EventSet) {}
}

impl VirtioDevice for VsockDevice {
    fn device_type(&self) -> u32 {
        19
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }
    fn features(&self) -> u64 {
        super::VIRTIO_F_VERSION_1
    }
    fn ack_features(&mut self, _features: u64) {}
    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        _m: GuestMemory,
        _q: Vec<Queue>,
        _i: Interrupt,
    ) -> Result<(), ActivateError> {
        Ok(())
    }
    fn reset(&mut self) {}
    fn queue_notify(&mut self, _queue: u16) {}
}
