//! The balloon's virtio face: id 5, `VIRTIO_F_VERSION_1`, deflate-on-OOM and free page
//! reporting, three queues, and the config space (`num_pages`: the host's target, 0 until the
//! control socket's `balloon MIB` sets one, announced by a config-change interrupt; `actual`:
//! what the guest says it holds, the one field it may write).

use virtio_queue::Queue;

use super::{
    DEFLATEQ, INFLATEQ, QUEUE_SIZE, REPORTQ, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
    VIRTIO_BALLOON_F_REPORTING, VIRTIO_ID_BALLOON,
};
use crate::devices::virtio::{
    read_config_space, ActivateError, DeviceSnapshot, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::memory::GuestMemory;

/// Config space: `num_pages`, `actual`, `free_page_hint_cmd_id`, `poison_val` (le32 each).
const CONFIG_LEN: usize = 16;
/// Offset of `actual`, the field the driver writes.
const ACTUAL: u64 = 4;

/// A driver that activated the device.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) mem: GuestMemory,
    pub(super) queues: Vec<Queue>,
    pub(super) interrupt: Interrupt,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BalloonStats {
    /// Bytes of reported free ranges discarded.
    pub reported_bytes: u64,
    /// Reported ranges discarded.
    pub reported_ranges: u64,
    /// Pages (4 KiB) inflated and discarded.
    pub inflated_pages: u64,
    /// Pages (4 KiB) the guest took back.
    pub deflated_pages: u64,
    /// Ranges or PFNs refused: unaligned, outside guest memory, or the host refused them.
    pub refused: u64,
    /// Chains that could not be read.
    pub bad_chains: u64,
}

/// virtio-balloon with free page reporting.
#[derive(Debug, Default)]
pub struct BalloonDevice {
    acked_features: u64,
    /// The host's target: pages (4 KiB) the guest should hold in the balloon.
    num_pages: u32,
    /// What the guest last wrote to `actual` (pages it says are in the balloon).
    actual: u32,
    pub(super) active: Option<Active>,
    pub(super) stats: BalloonStats,
}

impl BalloonDevice {
    /// A balloon with a target of zero pages: it gives back what the guest frees and reports.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters.
    pub fn stats(&self) -> BalloonStats {
        self.stats
    }

    /// Features the driver accepted.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Pages the guest says are in the balloon.
    pub fn actual_pages(&self) -> u32 {
        self.actual
    }

    /// The host's target, pages.
    pub fn target_pages(&self) -> u32 {
        self.num_pages
    }
}

impl VirtioDevice for BalloonDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_DEFLATE_ON_OOM | VIRTIO_BALLOON_F_REPORTING
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.features();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; CONFIG_LEN];
        cfg[0..4].copy_from_slice(&self.num_pages.to_le_bytes());
        cfg[4..8].copy_from_slice(&self.actual.to_le_bytes());
        read_config_space(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only a whole write of `actual`: anything else in the config space is the device's.
        if let (ACTUAL, Ok(bytes)) = (offset, <[u8; 4]>::try_from(data)) {
            self.actual = u32::from_le_bytes(bytes);
        }
    }

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
        // Chains posted before the driver said it was ready.
        for q in [INFLATEQ, DEFLATEQ, REPORTQ] {
            self.process(q);
        }
        Ok(())
    }

    fn reset(&mut self) {
        // The target is the host's: it outlives a driver reset.
        self.active = None;
        self.acked_features = 0;
        self.actual = 0;
    }

    fn queue_notify(&mut self, queue: u16) {
        let q = usize::from(queue);
        if [INFLATEQ, DEFLATEQ, REPORTQ].contains(&q) {
            self.process(q);
        }
    }

    fn set_balloon_target(&mut self, pages: u32) -> Option<u32> {
        self.num_pages = pages;
        // A driver that is not there yet reads the target when it starts.
        if let Some(a) = &self.active {
            a.interrupt.signal_config_change();
        }
        Some(self.actual)
    }

    /// The accepted features, the queues once activated (free page reporting's included), and
    /// the config words that are state: the host's target (`num_pages`) and the guest's
    /// `actual`. The counters are this process's, not the VM's: a restore starts them at 0.
    fn state(&self) -> Result<DeviceSnapshot, String> {
        let queues = self.active.as_ref().map_or(&[][..], |a| &a.queues[..]);
        let mut s = DeviceSnapshot::of(VIRTIO_ID_BALLOON, self.acked_features, queues);
        s.config = vec![self.num_pages, self.actual];
        Ok(s)
    }

    /// Takes back the features and both config words; a state without exactly those two words
    /// is not a balloon's.
    fn restore(&mut self, state: &DeviceSnapshot) -> Result<(), String> {
        let [num_pages, actual] = state.config[..] else {
            return Err(format!(
                "a balloon's state has 2 config words (target, actual), this one {}",
                state.config.len()
            ));
        };
        self.ack_features(state.acked_features);
        self.num_pages = num_pages;
        self.actual = actual;
        Ok(())
    }

    fn counters(&self) -> Option<String> {
        let s = self.stats;
        Some(format!(
            "balloon reported_bytes={} reported_ranges={} inflated_pages={} deflated_pages={} refused={} bad_chains={}",
            s.reported_bytes, s.reported_ranges, s.inflated_pages, s.deflated_pages, s.refused, s.bad_chains
        ))
    }
}
