//! hull-vmm's virtio-balloon on queues and guest memory the input describes (two regions with a
//! hole, so a guest's range can be in RAM, in the hole, across a region's end or nowhere): the
//! inflate, deflate and reporting queues kicked for a few rounds. Whatever PFNs and ranges the
//! guest names, the device must not panic, loop or discard anything it did not check, and what
//! it says it discarded is whole pages.
#![no_main]

use std::sync::Arc;

use hull_vmm::devices::virtio::balloon::{BalloonDevice, PAGE_SIZE};
use hull_vmm::devices::virtio::{Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use hull_vmm::memory::GuestMemory;
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const REGIONS: [(GuestAddress, usize); 2] =
    [(GuestAddress(0), 0x8000), (GuestAddress(0x1_0000), 0x8000)];
/// Per queue: size (2), descriptor table, available ring, used ring (4 each, masked to the
/// 128 KiB the regions span), next available and next used index (2 each), ready (1).
const QUEUE_HEADER: usize = 2 + 4 * 3 + 2 + 2 + 1;

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn queue(h: &[u8]) -> Queue {
    let mut q = Queue::new(256).expect("power of two");
    q.set_size(le16(&h[0..2]));
    q.set_desc_table_address(Some(le32(&h[2..6]) & 0x1_ffff), Some(0));
    q.set_avail_ring_address(Some(le32(&h[6..10]) & 0x1_ffff), Some(0));
    q.set_used_ring_address(Some(le32(&h[10..14]) & 0x1_ffff), Some(0));
    q.set_next_avail(le16(&h[14..16]));
    q.set_next_used(le16(&h[16..18]));
    q.set_ready(h[18] & 1 == 1);
    q
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((headers, contents)) = rest.split_at_checked(QUEUE_HEADER * 3) else {
        return;
    };
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&REGIONS).expect("guest memory");
    let mut at = 0;
    for (start, len) in REGIONS {
        let n = len.min(contents.len() - at);
        mem.write_slice(&contents[at..at + n], start)
            .expect("inside the region");
        at += n;
    }
    let queues: Vec<Queue> = headers.chunks(QUEUE_HEADER).map(queue).collect();
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    let mut dev = BalloonDevice::new();
    dev.ack_features(VIRTIO_F_VERSION_1 | u64::from(flags & 0x24));
    dev.activate(mem, queues, Interrupt::new(irq))
        .expect("three queues");
    for r in 0..1 + (flags >> 6) {
        dev.queue_notify(u16::from(r % 3));
        dev.queue_notify(2);
        dev.queue_notify(0);
        dev.queue_notify(1);
    }
    let mut cfg = [0u8; 16];
    dev.write_config(u64::from(flags & 7), &contents[..contents.len().min(4)]);
    dev.read_config(u64::from(flags), &mut cfg);
    let s = dev.stats();
    assert_eq!(s.reported_bytes % PAGE_SIZE, 0, "only whole pages are discarded");
    dev.reset();
});
