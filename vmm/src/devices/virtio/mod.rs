//! virtio: the [`VirtioDevice`] contract between a device model and its transport
//! ([`mmio`]), and the interrupt a device raises when it used a buffer. Devices: [`vsock`]
//! (in process), [`fs`] (a vhost-user frontend: virtiofsd serves the queues), [`net`] (a tap),
//! [`balloon`] (memory the guest frees goes back to the host).

pub mod balloon;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod vsock;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::memory::GuestMemory;

/// `VIRTIO_F_VERSION_1`: every hull device is a modern (1.0+) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Interrupt status bit: a queue has used buffers.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

/// How many chains a device takes from `queue` in one pass: its size. A driver cannot have more
/// outstanding at once, and what it adds during the pass comes with a new notification (hull's
/// devices never suppress them), so nothing is left behind. Without the bound a guest that keeps
/// the available index ahead — republishing as fast as the device consumes, or with a used ring
/// laid over its available ring — kept the event loop in one queue forever (found by the
/// `virtqueue` fuzz target): no other device, and no SIGTERM, was served again.
pub fn pass_budget(queue: &Queue) -> usize {
    usize::from(queue.size())
}

/// Copies `data.len()` bytes of a device's configuration space `config`, from `offset`, into
/// `data`: what a driver reads through the transport. Bytes past the end read as zero, and any
/// offset (the guest chooses it) is safe.
pub fn read_config_space(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|at| config.get(at).copied())
            .unwrap_or(0);
    }
}

/// Takes at most a pass budget ([`pass_budget`]) of chains from `queue`, hands each to `handle`,
/// and returns it to the driver as used (0 bytes written: a TX queue); raises the interrupt once
/// if any was used. A chain the device cannot return (the guest's used ring is broken) ends the
/// pass.
pub fn drain_tx_queue<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemory,
    interrupt: &Interrupt,
    mut handle: impl FnMut(virtio_queue::DescriptorChain<&'m GuestMemory>),
) {
    let mut used = false;
    for _ in 0..pass_budget(queue) {
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        handle(chain);
        if queue.add_used(mem, head, 0).is_err() {
            break;
        }
        used = true;
    }
    if used {
        interrupt.signal_used_queue();
    }
}

/// A device's interrupt: the status bits the driver reads and acknowledges through the
/// transport, and the irqfd that raises the GSI.
#[derive(Debug, Clone)]
pub struct Interrupt {
    status: Arc<AtomicU32>,
    irqfd: Arc<EventFd>,
}

impl Interrupt {
    /// An interrupt raised through `irqfd`.
    pub fn new(irqfd: Arc<EventFd>) -> Self {
        Self {
            status: Arc::new(AtomicU32::new(0)),
            irqfd,
        }
    }

    /// Tells the driver a queue has used buffers.
    pub fn signal_used_queue(&self) {
        self.status.fetch_or(INT_VRING, Ordering::SeqCst);
        let _ = self.irqfd.write(1);
    }

    /// Tells the driver the device's config space changed (a new balloon target, say).
    pub fn signal_config_change(&self) {
        self.status.fetch_or(INT_CONFIG, Ordering::SeqCst);
        let _ = self.irqfd.write(1);
    }

    /// The status register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// The driver acknowledges `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Sets status `bits` without raising the interrupt (a restored device's pending status:
    /// the interrupt controller's own state was restored with it).
    pub fn raise(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
    }

    /// The irqfd (for KVM registration).
    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }
}

/// A device refused activation.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The queues given do not match what the device needs.
    #[error("device needs {want} queues, got {got}")]
    QueueCount {
        /// Needed.
        want: usize,
        /// Given.
        got: usize,
    },
    /// The device's backend could not start.
    #[error("device backend failed to start")]
    Backend(#[source] std::io::Error),
}

/// A virtio device model, independent of the transport.
pub trait VirtioDevice: Send {
    /// The virtio device id.
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered.
    fn features(&self) -> u64;
    /// Feature bits the driver accepted (a subset of [`Self::features`]).
    fn ack_features(&mut self, features: u64);
    /// Reads the device configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space (ignored by read-only devices).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver is ready: start using `queues`.
    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<Queue>,
        interrupt: Interrupt,
    ) -> Result<(), ActivateError>;
    /// The driver reset the device: drop the queues and the backend state.
    fn reset(&mut self);
    /// A queue was kicked by the driver.
    fn queue_notify(&mut self, queue: u16);
    /// A device whose queues are served by another process (vhost-user) keeps the queue
    /// ioeventfds to hand them to that process, and returns `true`: the event loop then never
    /// reads them (it would steal the backend's kicks) and [`Self::queue_notify`] is not called.
    fn take_queue_events(&mut self, _evts: &[Arc<EventFd>]) -> bool {
        false
    }
    /// Descriptors of the device's backend the event loop watches, besides the queue
    /// ioeventfds (a vsock muxer's epoll, a tap, a vhost-user backend's call eventfds).
    fn backend_events(&self) -> Vec<(RawFd, EventSet)> {
        Vec::new()
    }
    /// Entry `index` of [`Self::backend_events`] is ready.
    fn backend_event(&mut self, _index: usize) {}
    /// The VM stops: close host-side resources (sockets, files the device created).
    fn shutdown(&mut self) {}
    /// The device's counters on one line (`name key=value …`), printed by `--exit-stats`.
    fn counters(&self) -> Option<String> {
        None
    }
    /// A balloon: asks the guest to hold `pages` 4 KiB pages in the balloon and returns the
    /// pages it holds now; `None` from every other device.
    fn set_balloon_target(&mut self, _pages: u32) -> Option<u32> {
        None
    }
    /// For a snapshot: the features the driver accepted and, once activated, the queues the
    /// device serves. `Err` says why this device cannot be snapshotted (now or at all).
    fn state(&self) -> Result<DeviceSnapshot, String> {
        Err("this device cannot be snapshotted yet".into())
    }
    /// On restore, before the transport re-activates the device with the saved queues: takes
    /// back the accepted features (and, for a device that keeps config words, those). `Err`
    /// says what in `state` does not fit the device.
    fn restore(&mut self, state: &DeviceSnapshot) -> Result<(), String> {
        self.ack_features(state.acked_features);
        Ok(())
    }
}

/// A device's part of a snapshot ([`VirtioDevice::state`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSnapshot {
    /// The virtio device id.
    pub device_type: u32,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// The activated device's queues (empty before activation).
    pub queues: Vec<QueueSnapshot>,
    /// The device's own config-space words that are state rather than fixed (the balloon's
    /// target and actual pages); empty for devices whose config is fixed by their shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<u32>,
}

impl DeviceSnapshot {
    /// The snapshot of a device of `device_type` with `acked_features` serving `queues`.
    pub fn of(device_type: u32, acked_features: u64, queues: &[Queue]) -> Self {
        Self {
            device_type,
            acked_features,
            queues: queues
                .iter()
                .map(|q| QueueSnapshot::from(q.state()))
                .collect(),
            config: Vec::new(),
        }
    }
}

/// A virtqueue's state: where its rings are and how far the device got (virtio-queue's
/// `QueueState`, which has no serde support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl From<virtio_queue::QueueState> for QueueSnapshot {
    fn from(s: virtio_queue::QueueState) -> Self {
        Self {
            max_size: s.max_size,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx_enabled: s.event_idx_enabled,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
        }
    }
}

impl QueueSnapshot {
    /// The queue back, or `None` when the saved values are not a valid queue (size not a power of
    /// two, larger than the maximum …).
    pub fn to_queue(self) -> Option<Queue> {
        Queue::try_from(virtio_queue::QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx_enabled,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
        })
        .ok()
    }
}
