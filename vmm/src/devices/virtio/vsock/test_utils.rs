//! A driver's view of the vsock device for unit tests: queues built with virtio-queue's
//! `MockSplitQueue` in test memory, packets written into TX buffers, RX buffers read back.

use std::sync::Arc;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::packet::{Header, Op, HDR_LEN, TYPE_STREAM};
use super::VsockDevice;
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::memory::GuestMemory;

const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

/// The guest's CID in tests.
pub const GUEST_CID: u64 = 3;
const QLEN: u16 = 16;
const RX_BASE: u64 = 0x0;
const TX_BASE: u64 = 0x2000;
const EV_BASE: u64 = 0x4000;
const BUF_BASE: u64 = 0x10000;
const BUF_SIZE: u64 = 0x1000;

/// A device plus the driver side of its queues.
pub struct TestContext {
    /// Guest memory (shared with the device).
    pub mem: GuestMemory,
    /// The device.
    pub dev: VsockDevice,
    /// The irqfd behind the device's interrupt.
    pub irq: Arc<EventFd>,
    /// Keeps the socket directory.
    pub dir: tempfile::TempDir,
    rx_next: u16,
    tx_next: u16,
    rx_seen: u16,
    rings: Vec<(u64, u64)>,
}

impl std::fmt::Debug for TestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestContext")
    }
}

fn buf_addr(queue_base: u64, index: u16) -> u64 {
    BUF_BASE + queue_base * 8 + u64::from(index) * BUF_SIZE
}

/// A guest→host header.
pub fn guest_hdr(op: Op, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: 2,
        src_port,
        dst_port,
        len,
        type_: TYPE_STREAM,
        op: op as u16,
        flags: 0,
        buf_alloc: 64 * 1024,
        fwd_cnt: 0,
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
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut dev = VsockDevice::new(GUEST_CID, dir.path().join("v.sock")).unwrap();
        let mut rings = Vec::new();
        let queues: Vec<Queue> = [RX_BASE, TX_BASE, EV_BASE]
            .iter()
            .map(|b| {
                // Creating a mock zeroes its rings: after set-up the driver side is driven by
                // hand, at the addresses the mock chose.
                let mock = MockSplitQueue::create(&mem, GuestAddress(*b), QLEN);
                rings.push((mock.avail_addr().0, mock.used_addr().0));
                mock.create_queue().unwrap()
            })
            .collect();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        dev.ack_features(crate::devices::virtio::VIRTIO_F_VERSION_1);
        dev.activate(mem.clone(), queues, Interrupt::new(irq.clone()))
            .unwrap();
        Self {
            mem,
            dev,
            irq,
            dir,
            rx_next: 0,
            tx_next: 0,
            rx_seen: 0,
            rings,
        }
    }

    /// The host-side socket path.
    pub fn uds(&self) -> std::path::PathBuf {
        self.dir.path().join("v.sock")
    }

    /// Posts `n` RX buffers of `size` bytes.
    pub fn add_rx_buffers(&mut self, n: u16, size: u32) {
        for _ in 0..n {
            let i = self.rx_next % QLEN;
            let d = Descriptor::new(buf_addr(RX_BASE, i), size, DESC_WRITE, 0);
            self.publish(RX_BASE, i, &[d]);
            self.rx_next += 1;
        }
    }

    /// Puts raw descriptors on the TX queue (for malformed chains) and kicks it.
    pub fn send_raw(&mut self, descs: &[Descriptor]) {
        let start = self.tx_next % QLEN;
        self.publish(TX_BASE, start, descs);
        self.tx_next += u16::try_from(descs.len()).unwrap();
        self.dev.queue_notify(1);
    }

    /// Sends one packet (header and payload in one buffer) and kicks the TX queue.
    pub fn send(&mut self, hdr: Header, payload: &[u8]) {
        let i = self.tx_next % QLEN;
        let addr = buf_addr(TX_BASE, i);
        self.mem
            .write_slice(&hdr.encode(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(addr + HDR_LEN as u64))
            .unwrap();
        let len = u32::try_from(HDR_LEN + payload.len()).unwrap();
        self.send_raw(&[Descriptor::new(addr, len, 0, 0)]);
    }

    fn ring(&self, base: u64) -> (u64, u64) {
        match base {
            RX_BASE => self.rings[0],
            TX_BASE => self.rings[1],
            _ => self.rings[2],
        }
    }

    /// Writes `descs` as one chain starting at table index `head` and makes it available.
    fn publish(&self, base: u64, head: u16, descs: &[Descriptor]) {
        for (k, d) in descs.iter().enumerate() {
            let i = (head + u16::try_from(k).unwrap()) % QLEN;
            let last = k + 1 == descs.len();
            let flags = if last {
                d.flags()
            } else {
                d.flags() | DESC_NEXT
            };
            let next = (i + 1) % QLEN;
            let at = base + 16 * u64::from(i);
            self.mem.write_obj(d.addr().0, GuestAddress(at)).unwrap();
            self.mem.write_obj(d.len(), GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        }
        let avail = self.ring(base).0;
        let idx: u16 = self.mem.read_obj(GuestAddress(avail + 2)).unwrap();
        self.mem
            .write_obj(head, GuestAddress(avail + 4 + 2 * u64::from(idx % QLEN)))
            .unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(avail + 2))
            .unwrap();
    }

    /// RX packets the device delivered since the last call.
    pub fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
        let used = GuestAddress(self.ring(RX_BASE).1);
        let idx: u16 = self.mem.read_obj(GuestAddress(used.0 + 2)).unwrap();
        let mut out = Vec::new();
        while self.rx_seen != idx {
            let slot = u64::from(self.rx_seen % QLEN);
            let id: u32 = self
                .mem
                .read_obj(GuestAddress(used.0 + 4 + slot * 8))
                .unwrap();
            let len: u32 = self
                .mem
                .read_obj(GuestAddress(used.0 + 8 + slot * 8))
                .unwrap();
            let addr = buf_addr(RX_BASE, u16::try_from(id).unwrap());
            let mut hdr = [0u8; HDR_LEN];
            self.mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
            let hdr = Header::decode(&hdr);
            let mut payload = vec![0u8; len as usize - HDR_LEN];
            self.mem
                .read_slice(&mut payload, GuestAddress(addr + HDR_LEN as u64))
                .unwrap();
            assert_eq!(
                payload.len(),
                hdr.len as usize,
                "used length matches the header"
            );
            out.push((hdr, payload));
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }
        out
    }

    /// TX chains the device consumed.
    pub fn tx_used(&self) -> u16 {
        self.mem
            .read_obj(GuestAddress(self.ring(TX_BASE).1 + 2))
            .unwrap()
    }

    /// Lets the device handle host-side events until `done` or a timeout.
    pub fn pump_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "timed out"
            );
            self.dev.process_backend();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}
