//! virtio-fs: the config space, the memory table and vring translation, feature filtering, and
//! the whole frontend against a real virtiofsd (the one `scripts/install-tools.sh` installs):
//! connect, activate with queues in memfd guest memory, one FUSE_INIT request through the
//! request queue, the call eventfd becoming the device's interrupt, and a reset stopping it.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use hull_runtime::share::{CacheMode, Virtiofsd};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::device::{config_space, CONFIG_LEN};
use super::vhost_user::{memory_regions, vring_config, GUEST_FEATURES};
use super::{FsDevice, FsError, NUM_QUEUES, VIRTIO_ID_FS};
use crate::devices::virtio::{Interrupt, VirtioDevice, INT_VRING, VIRTIO_F_VERSION_1};
use crate::memory::{self, GuestMemory};

#[test]
fn config_space_holds_the_tag_and_one_request_queue() {
    let c = config_space("hull");
    assert_eq!(CONFIG_LEN, 40);
    assert_eq!(&c[..4], b"hull");
    assert!(c[4..36].iter().all(|&b| b == 0));
    assert_eq!(&c[36..], &1u32.to_le_bytes());
    // A 36-byte tag fills the field without a NUL (the spec allows it); longer is cut.
    let long = "t".repeat(40);
    assert_eq!(&config_space(&long)[..36], "t".repeat(36).as_bytes());
}

#[test]
fn memory_table_names_the_memfd_and_offsets_of_every_region() {
    let mem = memory::create(4 << 30).unwrap();
    let t = memory_regions(&mem).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].guest_phys_addr, t[0].memory_size, t[0].mmap_offset),
        (0, 0xc000_0000, 0)
    );
    assert_eq!(
        (t[1].guest_phys_addr, t[1].memory_size, t[1].mmap_offset),
        (0x1_0000_0000, 0x4000_0000, 0xc000_0000)
    );
    for (info, region) in t.iter().zip(mem.iter()) {
        assert_eq!(info.userspace_addr, region.as_ptr() as u64);
        assert!(info.mmap_handle >= 0);
    }
    // Anonymous memory cannot be shared with a backend.
    let anon: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
    assert!(matches!(memory_regions(&anon), Err(FsError::NotShared(0))));
}

#[test]
fn vring_addresses_are_translated_and_checked() {
    let mem = memory::create(16 << 20).unwrap();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
    let q: Queue = mock.create_queue().unwrap();
    let c = vring_config(&mem, 1, &q).unwrap();
    let base = mem.iter().next().unwrap().as_ptr() as u64;
    assert_eq!(c.queue_size, 16);
    assert_eq!(c.desc_table_addr, base + 0x1000);
    assert_eq!(c.avail_ring_addr, base + mock.avail_addr().0);
    assert_eq!(c.used_ring_addr, base + mock.used_addr().0);
    // A guest that points a ring outside its RAM is refused, not translated.
    let mut bad: Queue = mock.create_queue().unwrap();
    bad.set_used_ring_address(Some(0), Some(1));
    assert!(matches!(
        vring_config(&mem, 1, &bad),
        Err(FsError::QueueAddress(1, "used ring", 0x1_0000_0000))
    ));
}

#[test]
fn guest_features_never_include_vhost_user_bits() {
    assert_eq!(GUEST_FEATURES & (1 << 30), 0);
    assert_ne!(GUEST_FEATURES & VIRTIO_F_VERSION_1, 0);
}

const QLEN: u16 = 16;
const HIPRIO: u64 = 0x1000;
const REQUEST: u64 = 0x3000;
const REQ_BUF: u64 = 0x10_0000;
const REPLY_BUF: u64 = 0x10_1000;
const FUSE_INIT: u32 = 26;

/// A FUSE_INIT request: `fuse_in_header` (40 bytes) + `fuse_init_in` (64 bytes, protocol 7.31).
fn fuse_init() -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&104u32.to_le_bytes());
    r.extend_from_slice(&FUSE_INIT.to_le_bytes());
    r.extend_from_slice(&7u64.to_le_bytes()); // unique
    r.extend_from_slice(&0u64.to_le_bytes()); // nodeid
    r.extend_from_slice(&[0; 12]); // uid, gid, pid
    r.extend_from_slice(&[0; 4]); // total_extlen, padding
    r.extend_from_slice(&7u32.to_le_bytes()); // major
    r.extend_from_slice(&31u32.to_le_bytes()); // minor
    r.extend_from_slice(&[0; 56]);
    assert_eq!(r.len(), 104);
    r
}

fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap();
    // SAFETY: `p` is one valid pollfd; the result is checked.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

#[test]
fn fuse_init_goes_through_a_real_virtiofsd() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let daemon = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .expect("virtiofsd (scripts/install-tools.sh installs it)");

    let mut dev = FsDevice::connect(daemon.socket(), "hull").unwrap();
    assert_eq!(dev.device_type(), VIRTIO_ID_FS);
    assert_eq!(dev.queue_max_sizes().len(), NUM_QUEUES);
    let offered = dev.features();
    assert_ne!(offered & VIRTIO_F_VERSION_1, 0, "{offered:#x}");
    assert_eq!(offered & !GUEST_FEATURES, 0, "{offered:#x}");
    let mut tag = [0u8; 4];
    dev.read_config(0, &mut tag);
    assert_eq!(&tag, b"hull");

    let mem = memory::create(16 << 20).unwrap();
    let hi = MockSplitQueue::create(&mem, GuestAddress(HIPRIO), QLEN);
    let rq = MockSplitQueue::create(&mem, GuestAddress(REQUEST), QLEN);
    mem.write_slice(&fuse_init(), GuestAddress(REQ_BUF))
        .unwrap();
    rq.add_desc_chains(
        &[
            RawDescriptor::from(Descriptor::new(REQ_BUF, 104, 1, 1)),
            RawDescriptor::from(Descriptor::new(REPLY_BUF, 4096, 2, 0)),
        ],
        0,
    )
    .unwrap();
    let queues: Vec<Queue> = vec![hi.create_queue().unwrap(), rq.create_queue().unwrap()];

    let kicks: Vec<Arc<EventFd>> = (0..NUM_QUEUES)
        .map(|_| Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()))
        .collect();
    assert!(dev.take_queue_events(&kicks), "the backend reads the kicks");
    let events = dev.backend_events();
    assert_eq!(events.len(), 1 + NUM_QUEUES);
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
    let interrupt = Interrupt::new(irq.clone());
    dev.ack_features(VIRTIO_F_VERSION_1);
    dev.activate(mem.clone(), queues, interrupt.clone())
        .unwrap();
    // Activation (on a vCPU thread) only wakes the event loop, which runs the protocol.
    assert!(!dev.running());
    assert!(wait_readable(events[0].0, Duration::from_secs(1)));
    dev.backend_event(0);
    assert!(dev.running());

    kicks[1].write(1).unwrap();
    assert!(
        wait_readable(events[2].0, Duration::from_secs(20)),
        "virtiofsd never signalled the request queue's call eventfd"
    );
    dev.backend_event(2);
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(interrupt.status() & INT_VRING, INT_VRING);

    let used_idx: u16 = mem.read_obj(GuestAddress(rq.used_addr().0 + 2)).unwrap();
    assert_eq!(used_idx, 1);
    let used_id: u32 = mem.read_obj(GuestAddress(rq.used_addr().0 + 4)).unwrap();
    let used_len: u32 = mem.read_obj(GuestAddress(rq.used_addr().0 + 8)).unwrap();
    assert_eq!(used_id, 0);
    let out_len: u32 = mem.read_obj(GuestAddress(REPLY_BUF)).unwrap();
    let error: i32 = mem.read_obj(GuestAddress(REPLY_BUF + 4)).unwrap();
    let unique: u64 = mem.read_obj(GuestAddress(REPLY_BUF + 8)).unwrap();
    let major: u32 = mem.read_obj(GuestAddress(REPLY_BUF + 16)).unwrap();
    assert_eq!((error, unique, major), (0, 7, 7));
    assert_eq!(used_len, out_len);

    // A driver reset stops the backend's queues.
    dev.reset();
    assert!(wait_readable(events[0].0, Duration::from_secs(1)));
    dev.backend_event(0);
    assert!(!dev.running());

    // The driver starts over (a driver reload): fresh rings elsewhere in memory, and the
    // backend serves them; its answer (whatever it thinks of a second INIT) lands there.
    let hi = MockSplitQueue::create(&mem, GuestAddress(0x8000), QLEN);
    let rq = MockSplitQueue::create(&mem, GuestAddress(0xa000), QLEN);
    rq.add_desc_chains(
        &[
            RawDescriptor::from(Descriptor::new(REQ_BUF, 104, 1, 1)),
            RawDescriptor::from(Descriptor::new(REPLY_BUF, 4096, 2, 0)),
        ],
        0,
    )
    .unwrap();
    mem.write_obj(0u64, GuestAddress(REPLY_BUF + 8)).unwrap();
    dev.ack_features(VIRTIO_F_VERSION_1);
    dev.activate(
        mem.clone(),
        vec![hi.create_queue().unwrap(), rq.create_queue().unwrap()],
        interrupt.clone(),
    )
    .unwrap();
    assert!(wait_readable(events[0].0, Duration::from_secs(1)));
    dev.backend_event(0);
    assert!(dev.running());
    kicks[1].write(1).unwrap();
    assert!(
        wait_readable(events[2].0, Duration::from_secs(20)),
        "no call after the restart"
    );
    let used_idx: u16 = mem.read_obj(GuestAddress(rq.used_addr().0 + 2)).unwrap();
    let unique: u64 = mem.read_obj(GuestAddress(REPLY_BUF + 8)).unwrap();
    assert_eq!((used_idx, unique), (1, 7));
}
