//! A driver's view of the balloon for unit tests: its three queues built with virtio-queue's
//! `MockSplitQueue` in guest memory (private test memory, or hull-vmm's own shared memfd).

use std::sync::Arc;

use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::{BalloonDevice, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_REPORTING};
use crate::devices::virtio::{Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::memory::GuestMemory;

const QLEN: u16 = 16;
const BASES: [u64; 3] = [0x0, 0x2000, 0x4000];
/// Where test buffers start.
pub const BUF_BASE: u64 = 0x10_0000;
/// Size of private test memory.
pub const MEM_LEN: u64 = 0x80_0000;
/// Descriptor flag: another descriptor follows.
pub const NEXT: u16 = 1;
/// Descriptor flag: device-writable.
pub const WRITE: u16 = 2;

/// A device and the driver side of its queues.
pub struct TestContext {
    /// Guest memory.
    pub mem: GuestMemory,
    /// The device.
    pub dev: BalloonDevice,
    /// The irqfd behind the device's interrupt.
    pub irq: Arc<EventFd>,
    rings: [(u64, u64); 3],
    next_desc: [u16; 3],
    avail_idx: [u16; 3],
    next_buf: u64,
}

impl std::fmt::Debug for TestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestContext")
    }
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    /// An activated device on [`MEM_LEN`] bytes of private memory.
    pub fn new() -> Self {
        Self::with_memory(
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), usize::try_from(MEM_LEN).unwrap())])
                .unwrap(),
        )
    }

    /// An activated device on `mem` (at least [`MEM_LEN`] bytes from address 0).
    pub fn with_memory(mem: GuestMemory) -> Self {
        let mut dev = BalloonDevice::new();
        let mut rings = [(0, 0); 3];
        let queues: Vec<Queue> = BASES
            .iter()
            .zip(rings.iter_mut())
            .map(|(b, ring)| {
                let mock = MockSplitQueue::create(&mem, GuestAddress(*b), QLEN);
                *ring = (mock.avail_addr().0, mock.used_addr().0);
                mock.create_queue().unwrap()
            })
            .collect();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        dev.ack_features(
            VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_REPORTING | VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
        );
        dev.activate(mem.clone(), queues, Interrupt::new(irq.clone()))
            .unwrap();
        Self {
            mem,
            dev,
            irq,
            rings,
            next_desc: [0; 3],
            avail_idx: [0; 3],
            next_buf: BUF_BASE,
        }
    }

    /// Guest memory holding `data`, page aligned; returns its address.
    pub fn buffer(&mut self, data: &[u8]) -> u64 {
        let at = self.next_buf;
        self.mem.write_slice(data, GuestAddress(at)).unwrap();
        self.next_buf += (data.len() as u64 + 0xfff) & !0xfff;
        at
    }

    /// A buffer holding `pfns` as le32; returns its address and length.
    pub fn pfns(&mut self, pfns: &[u32]) -> (u64, u32) {
        let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        let len = u32::try_from(bytes.len()).unwrap();
        (self.buffer(&bytes), len)
    }

    /// Makes a chain of `(addr, len, flags)` available on `queue` (NEXT links are added) and
    /// kicks the device.
    pub fn post(&mut self, queue: usize, descs: &[(u64, u32, u16)]) {
        self.post_quiet(queue, descs);
        self.dev.queue_notify(u16::try_from(queue).unwrap());
    }

    /// [`Self::post`] without the kick.
    pub fn post_quiet(&mut self, queue: usize, descs: &[(u64, u32, u16)]) {
        let first = self.next_desc[queue];
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let at = first + u16::try_from(i).unwrap();
            let last = i + 1 == descs.len();
            let flags = if last { flags } else { flags | NEXT };
            let next = if last { 0 } else { at + 1 };
            self.write_desc(
                queue,
                at,
                RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
            );
        }
        self.publish(queue, first);
        self.next_desc[queue] += u16::try_from(descs.len()).unwrap();
    }

    /// Writes descriptor `index` of `queue` as given (for chains no driver would build).
    pub fn write_desc(&mut self, queue: usize, index: u16, desc: RawDescriptor) {
        let at = BASES[queue] + u64::from(index % QLEN) * 16;
        self.mem.write_obj(desc, GuestAddress(at)).unwrap();
    }

    /// Puts descriptor `head` on `queue`'s available ring.
    pub fn publish(&mut self, queue: usize, head: u16) {
        let (avail, _) = self.rings[queue];
        let slot = avail + 4 + u64::from(self.avail_idx[queue] % QLEN) * 2;
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx[queue] += 1;
        self.mem
            .write_obj(self.avail_idx[queue], GuestAddress(avail + 2))
            .unwrap();
    }

    /// The used ring index of `queue`.
    pub fn used(&self, queue: usize) -> u16 {
        let (_, used) = self.rings[queue];
        self.mem.read_obj(GuestAddress(used + 2)).unwrap()
    }

    /// Fills `len` bytes at `addr` with `byte`.
    pub fn fill(&self, addr: u64, len: u64, byte: u8) {
        let len = usize::try_from(len).unwrap();
        self.mem
            .write_slice(&vec![byte; len], GuestAddress(addr))
            .unwrap();
    }

    /// Reads `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: u64) -> Vec<u8> {
        let mut v = vec![0u8; usize::try_from(len).unwrap()];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}
