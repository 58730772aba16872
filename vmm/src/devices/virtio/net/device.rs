//! The net device's virtio face: id 1, `VIRTIO_F_VERSION_1` and `VIRTIO_NET_F_MAC`, two queues
//! (RX, TX) and the config space holding the MAC.

use std::os::fd::RawFd;

use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;

use super::tap::Tap;
use super::{NetError, MAX_FRAME, QUEUE_SIZE, RXQ, TXQ, VIRTIO_ID_NET, VIRTIO_NET_F_MAC};
use crate::devices::virtio::{
    read_config_space, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::memory::GuestMemory;

/// A driver that activated the device.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) mem: GuestMemory,
    pub(super) queues: Vec<Queue>,
    pub(super) interrupt: Interrupt,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Frames sent out on the tap.
    pub tx_frames: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// TX chains dropped: unreadable, shorter than the header, or a frame over the cap.
    pub tx_dropped: u64,
    /// Frames from the tap dropped: an RX chain too small (or unwritable) for them.
    pub rx_dropped: u64,
    /// Frames the tap refused (its queue full, or it is down).
    pub tap_errors: u64,
}

/// virtio-net on a tap.
#[derive(Debug)]
pub struct NetDevice {
    mac: [u8; 6],
    pub(super) tap: Tap,
    acked_features: u64,
    pub(super) active: Option<Active>,
    /// One frame buffer each way, allocated once: no allocation follows a guest's numbers.
    pub(super) rx_buf: Vec<u8>,
    pub(super) tx_buf: Vec<u8>,
    /// Length of a frame read from the tap that waits for an RX buffer.
    pub(super) rx_pending: Option<usize>,
    pub(super) stats: NetStats,
}

impl NetDevice {
    /// Attaches to the tap `name`; the guest gets `mac`.
    pub fn open(name: &str, mac: [u8; 6]) -> Result<Self, NetError> {
        Ok(Self::with_tap(Tap::open(name)?, mac))
    }

    /// A device on an open tap (or a stand-in for one).
    pub fn with_tap(tap: Tap, mac: [u8; 6]) -> Self {
        Self {
            mac,
            tap,
            acked_features: 0,
            active: None,
            rx_buf: vec![0; MAX_FRAME],
            tx_buf: vec![0; MAX_FRAME],
            rx_pending: None,
            stats: NetStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Features the driver accepted.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 2]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.features();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // mac[6], then status (le16, meaningful only with VIRTIO_NET_F_STATUS: not offered).
        let mut cfg = [0u8; 8];
        cfg[..6].copy_from_slice(&self.mac);
        read_config_space(&cfg, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<Queue>,
        interrupt: Interrupt,
    ) -> Result<(), ActivateError> {
        if queues.len() != 2 {
            return Err(ActivateError::QueueCount {
                want: 2,
                got: queues.len(),
            });
        }
        self.active = Some(Active {
            mem,
            queues,
            interrupt,
        });
        // Frames that arrived before the driver was ready, and TX chains already posted.
        self.process_tx();
        self.process_rx();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked_features = 0;
        self.rx_pending = None;
    }

    fn queue_notify(&mut self, queue: u16) {
        match usize::from(queue) {
            RXQ => self.process_rx(),
            TXQ => self.process_tx(),
            _ => {}
        }
    }

    fn backend_events(&self) -> Vec<(RawFd, EventSet)> {
        // Edge-triggered: a frame that waits for an RX buffer must not wake the loop again
        // and again; the RX queue's kick resumes reading.
        vec![(
            self.tap.as_raw_fd(),
            EventSet::IN | EventSet::EDGE_TRIGGERED,
        )]
    }

    fn backend_event(&mut self, _index: usize) {
        self.process_rx();
    }

    /// A frame waiting for an RX buffer is not part of it: it is lost, as on a wire.
    fn state(&self) -> Result<crate::devices::virtio::DeviceSnapshot, String> {
        let queues = self.active.as_ref().map_or(&[][..], |a| &a.queues[..]);
        Ok(crate::devices::virtio::DeviceSnapshot::of(
            VIRTIO_ID_NET,
            self.acked_features,
            queues,
        ))
    }

    fn counters(&self) -> Option<String> {
        let s = self.stats;
        Some(format!(
            "net tx_frames={} tx_dropped={} rx_frames={} rx_dropped={} tap_errors={}",
            s.tx_frames, s.tx_dropped, s.rx_frames, s.rx_dropped, s.tap_errors
        ))
    }
}
