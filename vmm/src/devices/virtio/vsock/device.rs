//! The vsock device's virtio face: id 19, `VIRTIO_F_VERSION_1`, three queues (rx, tx, event) and
//! an 8-byte config space holding the guest's CID.

use std::os::fd::RawFd;
use std::path::PathBuf;

use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;

use super::muxer::Muxer;
use super::{VsockError, QUEUE_SIZE};
use crate::devices::virtio::{
    read_config_space, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::memory::GuestMemory;

/// virtio device id of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;

/// A driver that activated the device: its memory, queues and interrupt.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) mem: GuestMemory,
    pub(super) queues: Vec<Queue>,
    pub(super) interrupt: Interrupt,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VsockStats {
    /// TX chains that could not be parsed (too short, bad lengths, unreadable descriptors).
    pub malformed_tx: u64,
    /// RX chains too small for a header.
    pub bad_rx_buffers: u64,
    /// Packets sent to the guest.
    pub rx_packets: u64,
    /// Packets received from the guest.
    pub tx_packets: u64,
}

/// virtio-vsock.
#[derive(Debug)]
pub struct VsockDevice {
    cid: u64,
    pub(super) muxer: Muxer,
    acked_features: u64,
    pub(super) active: Option<Active>,
    pub(super) buf: Vec<u8>,
    pub(super) stats: VsockStats,
}

impl VsockDevice {
    /// A device for guest CID `cid` whose host side listens on `uds`.
    pub fn new(cid: u64, uds: PathBuf) -> Result<Self, VsockError> {
        Ok(Self {
            cid,
            muxer: Muxer::new(cid, uds)?,
            acked_features: 0,
            active: None,
            buf: vec![0; super::packet::MAX_PAYLOAD as usize],
            stats: VsockStats::default(),
        })
    }

    /// The descriptor the VMM's event loop watches for host-side activity.
    pub fn backend_fd(&self) -> RawFd {
        self.muxer.epoll_fd()
    }

    /// Host-side activity: accept, read `CONNECT` lines, move data to the guest.
    pub fn process_backend(&mut self) {
        self.muxer.process_host_events();
        self.process_rx();
    }

    /// The VM stops: close host streams and remove the socket file.
    pub fn close(&mut self) {
        self.muxer.close();
    }

    /// Counters.
    pub fn stats(&self) -> VsockStats {
        self.stats
    }

    /// The host side.
    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// Features the driver accepted.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }
}

impl VirtioDevice for VsockDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.features();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_space(&self.cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<Queue>,
        interrupt: Interrupt,
    ) -> Result<(), ActivateError> {
        if queues.len() != 3 {
            return Err(ActivateError::QueueCount {
                want: 3,
                got: queues.len(),
            });
        }
        self.active = Some(Active {
            mem,
            queues,
            interrupt,
        });
        // Anything the host queued before the driver was ready (a CONNECT) goes out now.
        self.process_rx();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked_features = 0;
        self.muxer.reset_all();
    }

    fn queue_notify(&mut self, queue: u16) {
        match usize::from(queue) {
            super::RXQ => self.process_rx(),
            super::TXQ => {
                self.process_tx();
                self.process_rx();
            }
            _ => {}
        }
    }

    fn backend_events(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.backend_fd(), EventSet::IN)]
    }

    fn backend_event(&mut self, _index: usize) {
        self.process_backend();
    }

    fn shutdown(&mut self) {
        self.close();
    }

    fn state(&self) -> Result<crate::devices::virtio::DeviceSnapshot, String> {
        let (open, control) = (self.muxer.connections(), self.muxer.pending_control());
        if open > 0 || control > 0 {
            return Err(format!(
                "vsock has {open} open connections and {control} pending control packets: \
                 snapshot a guest whose vsock is idle"
            ));
        }
        let queues = self.active.as_ref().map_or(&[][..], |a| &a.queues[..]);
        Ok(crate::devices::virtio::DeviceSnapshot::of(
            VIRTIO_ID_VSOCK,
            self.acked_features,
            queues,
        ))
    }

    fn counters(&self) -> Option<String> {
        let s = self.stats;
        let m = self.muxer.stats();
        Some(format!(
            "vsock tx_packets={} malformed_tx={} rx_packets={} bad_rx_buffers={} rst_sent={} \
             bad_connect={} control_dropped={}",
            s.tx_packets,
            s.malformed_tx,
            s.rx_packets,
            s.bad_rx_buffers,
            m.rst_sent,
            m.bad_connect,
            m.control_dropped
        ))
    }
}
