//! The virtio-mmio transport (virtio 1.2, §4.2, version 2 registers): feature negotiation, queue
//! set-up, the device status state machine, interrupt status/acknowledge and the config space.
//! Queue notifications normally arrive on per-queue ioeventfds that KVM signals without an exit;
//! a notify write that does reach the transport is forwarded to the same eventfd.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{DeviceSnapshot, Interrupt, QueueSnapshot, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::bus::{lock, BusDevice};
use crate::memory::GuestMemory;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4c4c_5548; // "HULL"

/// Register offsets.
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits.
pub mod status {
    #![allow(missing_docs)]
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// A virtio device on the MMIO bus.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemory,
    interrupt: Interrupt,
    queue_evts: Vec<Arc<EventFd>>,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    activated: bool,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("status", &self.status)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

fn new_queues(device: &dyn VirtioDevice) -> Vec<Queue> {
    device
        .queue_max_sizes()
        .iter()
        .map(|&max| Queue::new(max).expect("device queue sizes are powers of two"))
        .collect()
}

impl MmioTransport {
    /// Wraps `device`; `queue_evts` (one per queue) are what the event loop watches.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemory,
        interrupt: Interrupt,
        queue_evts: Vec<Arc<EventFd>>,
    ) -> Self {
        let queues = new_queues(&*lock(&device));
        Self {
            device,
            mem,
            interrupt,
            queue_evts,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            activated: false,
        }
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Whether the device was activated.
    pub fn activated(&self) -> bool {
        self.activated
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        let can_configure =
            self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0;
        let q = self.queues.get_mut(self.queue_sel as usize)?;
        (can_configure && !q.ready()).then_some(q)
    }

    #[allow(clippy::cast_possible_truncation)] // feature words are masked or shifted to 32 bits
    fn read32(&self, offset: u64) -> u32 {
        let dev = lock(&self.device);
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => dev.device_type(),
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => (dev.features() & 0xffff_ffff) as u32,
                1 => (dev.features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u64, v: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => {
                let negotiating =
                    self.status & status::DRIVER != 0 && self.status & status::FEATURES_OK == 0;
                if negotiating {
                    match self.driver_features_sel {
                        0 => {
                            self.driver_features =
                                (self.driver_features & !0xffff_ffff) | u64::from(v)
                        }
                        1 => {
                            self.driver_features =
                                (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32);
                        }
                        _ => {}
                    }
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.queue() {
                    q.set_size(u16::try_from(v).unwrap_or(0));
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                } else if v == 0 {
                    if let Some(q) = self.queues.get_mut(self.queue_sel as usize) {
                        if self.status & status::DRIVER_OK == 0 {
                            q.set_ready(false);
                        }
                    }
                }
            }
            reg::QUEUE_NOTIFY => {
                if let Some(evt) = self.queue_evts.get(v as usize) {
                    let _ = evt.write(1);
                }
            }
            reg::INTERRUPT_ACK => self.interrupt.ack(v),
            reg::STATUS => self.set_status(v),
            reg::QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            reg::QUEUE_DESC_HIGH => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            reg::QUEUE_DRIVER_LOW => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            reg::QUEUE_DRIVER_HIGH => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            reg::QUEUE_DEVICE_LOW => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            reg::QUEUE_DEVICE_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            _ => {}
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.queue() {
            f(q);
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // Bits can only be added (the spec's driver never clears one but through reset).
        if v & old != old {
            return;
        }
        let added = v & !old;
        if added & status::FEATURES_OK != 0 {
            let offered = lock(&self.device).features();
            let ok = self.driver_features & !offered == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                self.status = v & !status::FEATURES_OK;
                return;
            }
            lock(&self.device).ack_features(self.driver_features);
        }
        self.status = v;
        if added & status::DRIVER_OK != 0 && v & status::FEATURES_OK != 0 {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let mem = &self.mem;
        let all_valid = self.queues.iter().all(|q| !q.ready() || q.is_valid(mem));
        if !all_valid {
            self.status |= status::DEVICE_NEEDS_RESET;
            return;
        }
        let fresh = new_queues(&*lock(&self.device));
        let queues = std::mem::replace(&mut self.queues, fresh);
        // The guard must be gone before the match: the arms lock the device again.
        let (result, id) = {
            let mut dev = lock(&self.device);
            let r = dev.activate(self.mem.clone(), queues, self.interrupt.clone());
            (r, dev.device_type())
        };
        match result {
            Ok(()) => {
                self.activated = true;
                eprintln!("hull-vmm: virtio device (id {id}) activated by the driver");
            }
            Err(e) => {
                eprintln!("hull-vmm: virtio device activation failed: {e}");
                self.status |= status::DEVICE_NEEDS_RESET;
            }
        }
    }

    /// The transport's registers, the queues it still holds (before activation) and the
    /// device's part, for a snapshot; `Err` names why the device cannot be snapshotted.
    pub fn state(&self) -> Result<MmioSnapshot, String> {
        Ok(MmioSnapshot {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            activated: self.activated,
            interrupt_status: self.interrupt.status(),
            queues: self
                .queues
                .iter()
                .map(|q| QueueSnapshot::from(q.state()))
                .collect(),
            device: lock(&self.device).state()?,
        })
    }

    /// Puts a fresh transport (and its device) back in the state of `s`; an activated device is
    /// activated again with its saved queues. `Err` says what in `s` does not fit this device.
    pub fn restore(&mut self, s: &MmioSnapshot) -> Result<(), String> {
        let (id, nqueues) = {
            let dev = lock(&self.device);
            (dev.device_type(), dev.queue_max_sizes().len())
        };
        let queue_count_ok = |n: usize| n == nqueues || (n == 0 && !s.activated);
        if s.device.device_type != id
            || s.queues.len() != nqueues
            || !queue_count_ok(s.device.queues.len())
        {
            return Err(format!(
                "the snapshot has a device of type {} with {}+{} queues where this VM has type \
                 {id} with {nqueues}",
                s.device.device_type,
                s.queues.len(),
                s.device.queues.len()
            ));
        }
        let queues = |qs: &[QueueSnapshot]| -> Result<Vec<Queue>, String> {
            qs.iter()
                .map(|q| {
                    q.to_queue()
                        .ok_or_else(|| format!("invalid saved queue {q:?}"))
                })
                .collect()
        };
        self.queues = queues(&s.queues)?;
        self.status = s.status;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.interrupt.ack(u32::MAX);
        self.interrupt.raise(s.interrupt_status);
        lock(&self.device).restore(&s.device)?;
        if s.activated {
            let saved = queues(&s.device.queues)?;
            if let Some(q) = saved.iter().find(|q| q.ready() && !q.is_valid(&self.mem)) {
                return Err(format!(
                    "a saved queue's rings lie outside guest memory ({:?})",
                    q.state()
                ));
            }
            lock(&self.device)
                .activate(self.mem.clone(), saved, self.interrupt.clone())
                .map_err(|e| format!("re-activating the device: {e}"))?;
            self.activated = true;
        }
        Ok(())
    }

    fn reset(&mut self) {
        if self.activated {
            lock(&self.device).reset();
        }
        self.activated = false;
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.queues = new_queues(&*lock(&self.device));
        self.interrupt.ack(u32::MAX);
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            lock(&self.device).read_config(offset - reg::CONFIG, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read32(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            lock(&self.device).write_config(offset - reg::CONFIG, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            let v = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            self.write32(offset, v);
        }
    }
}

/// A virtio-mmio transport's part of a snapshot ([`MmioTransport::state`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub struct MmioSnapshot {
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub activated: bool,
    pub interrupt_status: u32,
    /// The queues the transport holds (being set up, before activation).
    pub queues: Vec<QueueSnapshot>,
    /// The device's own part.
    pub device: DeviceSnapshot,
}

#[cfg(test)]
mod tests;
