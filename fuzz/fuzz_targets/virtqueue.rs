//! Descriptor chains from the guest, as hull-vmm's devices parse them: guest memory
//! (a vm-memory `GuestMemoryMmap` of two regions with a hole) filled from the input, queues whose
//! size, ring addresses and indexes come from the input, and the vsock or net device activated
//! on them and kicked for a few rounds — TX chains parsed into packets or frames, RX chains
//! filled with what the host side has (RSTs and REQUESTs, host stream data, tap frames).
//! Nothing the guest wrote may panic the device, make it loop or allocate without bound.
#![no_main]

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hull_vmm::devices::virtio::net::tap::Tap;
use hull_vmm::devices::virtio::net::NetDevice;
use hull_vmm::devices::virtio::vsock::muxer::guest_to_host_path;
use hull_vmm::devices::virtio::vsock::VsockDevice;
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

fn socket_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hull-fuzz-vq-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn queue(max: u16, h: &[u8]) -> Queue {
    let mut q = Queue::new(max).expect("power of two");
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
    let net = flags & 1 == 1;
    let nqueues = if net { 2 } else { 3 };
    let Some((headers, contents)) = rest.split_at_checked(QUEUE_HEADER * nqueues) else {
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
    let queues: Vec<Queue> = headers
        .chunks(QUEUE_HEADER)
        .map(|h| queue(256, h))
        .collect();
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    let rounds = 1 + (flags >> 4);
    if net {
        let (ours, host) = UnixDatagram::pair().expect("socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        host.set_nonblocking(true).expect("non-blocking");
        let tap = Tap::from_file(File::from(OwnedFd::from(ours)), "fuzz0");
        let mut dev = NetDevice::with_tap(tap, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        dev.ack_features(VIRTIO_F_VERSION_1);
        dev.activate(mem.clone(), queues, Interrupt::new(irq))
            .expect("two queues");
        for r in 0..rounds {
            // Frames from the "tap": sizes from the input's first bytes.
            let len = usize::from(contents.get(usize::from(r)).copied().unwrap_or(60)) * 8;
            let _ = host.send(&contents[..len.min(contents.len())]);
            dev.queue_notify(1);
            dev.backend_event(0);
            dev.queue_notify(0);
        }
        let mut buf = vec![0u8; 70_000];
        while host.recv(&mut buf).is_ok() {}
    } else {
        let uds = socket_dir().join("v.sock");
        let mut dev = VsockDevice::new(3, uds.clone()).expect("vsock device");
        // A host process listening on port 1025, for the guest's REQUESTs.
        let port = guest_to_host_path(&uds, 1025);
        let _ = std::fs::remove_file(&port);
        let listener = (flags & 2 != 0).then(|| UnixListener::bind(&port).expect("listener"));
        if let Some(l) = &listener {
            l.set_nonblocking(true).expect("non-blocking");
        }
        dev.ack_features(VIRTIO_F_VERSION_1);
        dev.activate(mem.clone(), queues, Interrupt::new(irq))
            .expect("three queues");
        // A host connection into the guest, with data behind its CONNECT line.
        let mut host = (flags & 4 != 0).then(|| {
            let mut s = UnixStream::connect(&uds).expect("connect");
            s.write_all(b"CONNECT 1024\n").expect("write");
            s.set_nonblocking(true).expect("non-blocking");
            s
        });
        let mut accepted = Vec::new();
        for _ in 0..rounds {
            dev.process_backend();
            dev.queue_notify(1);
            dev.queue_notify(0);
            if let Some(l) = &listener {
                while let Ok((mut s, _)) = l.accept() {
                    s.set_nonblocking(true).expect("non-blocking");
                    let _ = s.write(&contents[..contents.len().min(4096)]);
                    accepted.push(s);
                }
            }
            if let Some(h) = host.as_mut() {
                let _ = h.write(&contents[..contents.len().min(4096)]);
            }
        }
        dev.close();
        drop(listener);
        let _ = std::fs::remove_file(&port);
    }
});
