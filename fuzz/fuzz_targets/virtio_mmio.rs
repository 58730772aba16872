//! hull-vmm's virtio-mmio transport with a real device behind it (vsock on a socket in a temp
//! directory, or net on a datagram socket pair standing in for the tap), driven by a sequence of
//! register reads and writes of any width and offset, guest memory writes, and the event loop's
//! side (queue kicks that reached the ioeventfds, backend events, frames from the "tap").
//! Whatever the guest does, the identity registers keep their values and the interrupt status
//! holds only the two defined bits.
#![no_main]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use hull_vmm::bus::BusDevice;
use hull_vmm::devices::virtio::mmio::{reg, MmioTransport};
use hull_vmm::devices::virtio::net::tap::Tap;
use hull_vmm::devices::virtio::net::NetDevice;
use hull_vmm::devices::virtio::vsock::VsockDevice;
use hull_vmm::devices::virtio::{Interrupt, VirtioDevice};
use hull_vmm::memory::GuestMemory;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Guest RAM: two small regions with a hole between them, so addresses can be in RAM, in the
/// hole, across a region's end, or nowhere.
const REGIONS: [(GuestAddress, usize); 2] =
    [(GuestAddress(0), 0x8000), (GuestAddress(0x1_0000), 0x8000)];

/// A directory of this process for the vsock socket.
fn socket_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hull-fuzz-mmio-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

/// Reads the input front to back; past its end everything is zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn read32(t: &mut MmioTransport, off: u64) -> u32 {
    let mut d = [0u8; 4];
    t.read(off, &mut d);
    u32::from_le_bytes(d)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let net = input.u8() & 1 == 1;
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&REGIONS).expect("guest memory");
    let (device, host): (Arc<Mutex<dyn VirtioDevice>>, Option<UnixDatagram>) = if net {
        let (ours, host) = UnixDatagram::pair().expect("socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        host.set_nonblocking(true).expect("non-blocking");
        let tap = Tap::from_file(File::from(OwnedFd::from(ours)), "fuzz0");
        let dev = NetDevice::with_tap(tap, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        (Arc::new(Mutex::new(dev)), Some(host))
    } else {
        let dev = VsockDevice::new(3, socket_dir().join("v.sock")).expect("vsock device");
        (Arc::new(Mutex::new(dev)), None)
    };
    let (device_id, nqueues) = {
        let d = device.lock().unwrap();
        (d.device_type(), d.queue_max_sizes().len())
    };
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    let evts: Vec<Arc<EventFd>> = (0..nqueues)
        .map(|_| Arc::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")))
        .collect();
    let mut t = MmioTransport::new(
        device.clone(),
        mem.clone(),
        Interrupt::new(irq.clone()),
        evts.clone(),
    );
    let mut ops = 0;
    while !input.done() && ops < 512 {
        ops += 1;
        match input.u8() % 8 {
            // The common case: an aligned 32-bit register write.
            0 | 1 => {
                let off = u64::from(input.u8()) * 4;
                let v = input.u32();
                t.write(off, &v.to_le_bytes());
            }
            // Any width at any offset (also past the 4 KiB window), read or write.
            2 => {
                let off = u64::from(input.u16());
                let width = [1usize, 2, 4, 8, 3, 0][usize::from(input.u8() % 6)];
                let bytes = input.bytes(width).to_vec();
                t.write(off, &bytes);
            }
            3 => {
                let off = u64::from(input.u16());
                let width = [1usize, 2, 4, 8, 3, 0][usize::from(input.u8() % 6)];
                let mut d = vec![0u8; width];
                t.read(off, &mut d);
            }
            // Guest memory: rings, descriptors, packets.
            4 => {
                let addr = u64::from(input.u32() & 0x1_ffff);
                let len = usize::from(input.u8());
                let bytes = input.bytes(len).to_vec();
                let _ = mem.write_slice(&bytes, GuestAddress(addr));
            }
            // The event loop: kicks that reached the queue eventfds, then a direct notify.
            5 => {
                for (q, e) in evts.iter().enumerate() {
                    if e.read().is_ok() {
                        device
                            .lock()
                            .unwrap()
                            .queue_notify(u16::try_from(q).expect("few queues"));
                    }
                }
                let q = input.u16();
                device.lock().unwrap().queue_notify(q);
            }
            // A backend event (vsock: host sockets; net: the tap is readable).
            6 => {
                let i = usize::from(input.u8() % 2);
                device.lock().unwrap().backend_event(i);
            }
            // A frame arrives on the "tap".
            _ => {
                let len = usize::from(input.u16() % 2048);
                let frame = input.bytes(len).to_vec();
                if let Some(h) = &host {
                    let _ = h.send(&frame);
                }
            }
        }
        assert_eq!(read32(&mut t, reg::MAGIC), 0x7472_6976);
        assert_eq!(read32(&mut t, reg::VERSION), 2);
        assert_eq!(read32(&mut t, reg::DEVICE_ID), device_id);
        assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS) & !3, 0);
    }
    // A reset always brings the transport back to the start.
    t.write(reg::STATUS, &0u32.to_le_bytes());
    assert_eq!(read32(&mut t, reg::STATUS), 0);
    assert!(!t.activated());
    device.lock().unwrap().shutdown();
});
