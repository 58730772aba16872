//! A driver's view of the net device for unit tests: RX and TX queues built with virtio-queue's
//! `MockSplitQueue` in test memory, and in place of the tap one end of a `SOCK_DGRAM` socket
//! pair (it keeps frame boundaries as a tap does); the test holds the other end.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::tap::Tap;
use super::{NetDevice, RXQ, TXQ};
use crate::devices::virtio::{Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::memory::GuestMemory;

const QLEN: u16 = 16;
const RX_BASE: u64 = 0x0;
const TX_BASE: u64 = 0x2000;
/// Where test buffers start.
pub const BUF_BASE: u64 = 0x10_0000;
/// The guest's MAC in tests.
pub const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
/// Descriptor flag: another descriptor follows.
pub const NEXT: u16 = 1;
/// Descriptor flag: device-writable.
pub const WRITE: u16 = 2;

/// A device, the driver side of its queues, and the host end of its "tap".
pub struct TestContext {
    /// Guest memory.
    pub mem: GuestMemory,
    /// The device.
    pub dev: NetDevice,
    /// The other end of the device's frame descriptor.
    pub host: UnixDatagram,
    /// The irqfd behind the device's interrupt.
    pub irq: Arc<EventFd>,
    rings: [(u64, u64); 2],
    next_desc: [u16; 2],
    avail_idx: [u16; 2],
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
    /// An activated device with empty queues.
    pub fn new() -> Self {
        let mem: GuestMemory =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        let (ours, host) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        host.set_nonblocking(true).unwrap();
        let tap = Tap::from_file(File::from(OwnedFd::from(ours)), "test0");
        let mut dev = NetDevice::with_tap(tap, MAC);
        let mut rings = [(0, 0); 2];
        let queues: Vec<Queue> = [RX_BASE, TX_BASE]
            .iter()
            .zip(rings.iter_mut())
            .map(|(b, ring)| {
                let mock = MockSplitQueue::create(&mem, GuestAddress(*b), QLEN);
                *ring = (mock.avail_addr().0, mock.used_addr().0);
                mock.create_queue().unwrap()
            })
            .collect();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        dev.ack_features(VIRTIO_F_VERSION_1);
        dev.activate(mem.clone(), queues, Interrupt::new(irq.clone()))
            .unwrap();
        Self {
            mem,
            dev,
            host,
            irq,
            rings,
            next_desc: [0; 2],
            avail_idx: [0; 2],
            next_buf: BUF_BASE,
        }
    }

    /// Guest memory for `len` bytes holding `data` (zeros past it).
    pub fn buffer(&mut self, data: &[u8], len: u32) -> u64 {
        let at = self.next_buf;
        self.mem.write_slice(data, GuestAddress(at)).unwrap();
        self.next_buf += (u64::from(len) + 0xfff) & !0xfff;
        at
    }

    /// Makes a chain of `(addr, len, flags)` available on `queue` (NEXT links are added).
    pub fn post(&mut self, queue: usize, descs: &[(u64, u32, u16)]) -> u16 {
        let first = self.next_desc[queue];
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let at = first + u16::try_from(i).unwrap();
                let last = i + 1 == descs.len();
                let flags = if last { flags } else { flags | NEXT };
                RawDescriptor::from(Descriptor::new(
                    addr,
                    len,
                    flags,
                    if last { 0 } else { at + 1 },
                ))
            })
            .collect();
        let base = if queue == RXQ { RX_BASE } else { TX_BASE };
        for (i, d) in raw.iter().enumerate() {
            let at = base + (u64::from(first) + i as u64) * 16;
            self.mem.write_obj(*d, GuestAddress(at)).unwrap();
        }
        let (avail, _) = self.rings[queue];
        let slot = avail + 4 + u64::from(self.avail_idx[queue] % QLEN) * 2;
        self.mem.write_obj(first, GuestAddress(slot)).unwrap();
        self.avail_idx[queue] += 1;
        self.mem
            .write_obj(self.avail_idx[queue], GuestAddress(avail + 2))
            .unwrap();
        self.next_desc[queue] += u16::try_from(descs.len()).unwrap();
        first
    }

    /// A TX chain of one descriptor: the virtio-net header and `frame`.
    pub fn send(&mut self, frame: &[u8]) {
        let mut bytes = vec![0u8; super::VNET_HDR_LEN];
        bytes.extend_from_slice(frame);
        let len = u32::try_from(bytes.len()).unwrap();
        let at = self.buffer(&bytes, len);
        self.post(TXQ, &[(at, len, 0)]);
        self.dev.queue_notify(1);
    }

    /// Posts one RX buffer of `len` bytes; returns its address.
    pub fn rx_buffer(&mut self, len: u32) -> u64 {
        let at = self.buffer(&[], len);
        self.post(RXQ, &[(at, len, WRITE)]);
        at
    }

    /// The used ring of `queue`: (index, entries as (id, len)).
    pub fn used(&self, queue: usize) -> (u16, Vec<(u32, u32)>) {
        let (_, used) = self.rings[queue];
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let entries = (0..idx)
            .map(|i| {
                let e = used + 4 + u64::from(i % QLEN) * 8;
                (
                    self.mem.read_obj(GuestAddress(e)).unwrap(),
                    self.mem.read_obj(GuestAddress(e + 4)).unwrap(),
                )
            })
            .collect();
        (idx, entries)
    }

    /// Reads `len` bytes of guest memory.
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// The next frame the device wrote to its "tap", if any.
    pub fn host_recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 70_000];
        self.host.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }
}
