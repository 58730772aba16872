//! The driver side of virtio-mmio for test guests: ring placement, descriptors, the handshake,
//! and a guest that sends one FUSE_INIT to a virtio-fs device (used by the tests and by
//! `hull-bench vmm`).

use super::{guest, poke, Cmd, SCRATCH};
use crate::devices::virtio::mmio::reg;

/// The first virtio-mmio window (the first device on the command line).
pub const MMIO: u64 = 0xd000_0000;
/// Queue size the test guests use.
pub const QSIZE: u32 = 4;

/// Where queue `q`'s rings live in the test guest: descriptors, then the available ring at
/// +0x100 and the used ring at +0x200.
pub fn queue_base(q: u64) -> u64 {
    SCRATCH + q * 0x400
}

/// The available ring of queue `q`.
pub fn avail(q: u64) -> u64 {
    queue_base(q) + 0x100
}

/// The used ring of queue `q`.
pub fn used(q: u64) -> u64 {
    queue_base(q) + 0x200
}

/// A 32-bit write to the first device's register `off`.
pub fn w(off: u64, value: u32) -> Cmd {
    Cmd::Write32 {
        addr: MMIO + off,
        value,
    }
}

/// The low 32 bits of a test-guest address (they all fit).
pub fn lo(a: u64) -> u32 {
    u32::try_from(a).expect("test guest addresses are below 4 GiB")
}

/// A split-ring descriptor.
pub fn desc(addr: u64, len: u32, flags: u16) -> Vec<u8> {
    desc_next(addr, len, flags, 0)
}

/// A split-ring descriptor with its `next` field.
pub fn desc_next(addr: u64, len: u32, flags: u16, next: u16) -> Vec<u8> {
    let mut d = addr.to_le_bytes().to_vec();
    d.extend_from_slice(&len.to_le_bytes());
    d.extend_from_slice(&flags.to_le_bytes());
    d.extend_from_slice(&next.to_le_bytes());
    d
}

/// The driver side of the virtio-mmio handshake for the first device: status, features
/// (`VIRTIO_F_VERSION_1` only), `queues` queues of [`QSIZE`] at [`queue_base`], DRIVER_OK, and
/// an `A` on the serial port once done.
pub fn handshake(queues: u32) -> Vec<Cmd> {
    let mut cmds = vec![
        w(reg::STATUS, 1),
        w(reg::STATUS, 3),
        w(reg::DRIVER_FEATURES_SEL, 1),
        w(reg::DRIVER_FEATURES, 1), // VIRTIO_F_VERSION_1
        w(reg::DRIVER_FEATURES_SEL, 0),
        w(reg::DRIVER_FEATURES, 0),
        w(reg::STATUS, 0xb),
        Cmd::Poll32 {
            addr: MMIO + reg::STATUS,
            mask: 0x8,
            value: 0x8,
        },
    ];
    for q in 0..queues {
        let base = queue_base(u64::from(q));
        cmds.extend([
            w(reg::QUEUE_SEL, q),
            w(reg::QUEUE_NUM, QSIZE),
            w(reg::QUEUE_DESC_LOW, lo(base)),
            w(reg::QUEUE_DESC_HIGH, 0),
            w(reg::QUEUE_DRIVER_LOW, lo(base + 0x100)),
            w(reg::QUEUE_DRIVER_HIGH, 0),
            w(reg::QUEUE_DEVICE_LOW, lo(base + 0x200)),
            w(reg::QUEUE_DEVICE_HIGH, 0),
            w(reg::QUEUE_READY, 1),
        ]);
    }
    cmds.extend([
        w(reg::STATUS, 0xf),
        Cmd::Out8 {
            port: 0x3f8,
            value: b'A',
        },
    ]);
    cmds
}

/// The test guests' first buffer.
const REQ_BUF: u64 = SCRATCH + 0x1000;
const REPLY_BUF: u64 = SCRATCH + 0x2000;
const FUSE_INIT: u32 = 26;

/// FUSE_INIT: `fuse_in_header` (40 bytes) + `fuse_init_in` (64 bytes, protocol 7.31).
pub fn fuse_init() -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&104u32.to_le_bytes());
    r.extend_from_slice(&FUSE_INIT.to_le_bytes());
    r.extend_from_slice(&9u64.to_le_bytes()); // unique
    r.extend_from_slice(&[0; 24]); // nodeid, uid, gid, pid, extlen, padding
    r.extend_from_slice(&7u32.to_le_bytes());
    r.extend_from_slice(&31u32.to_le_bytes());
    r.extend_from_slice(&[0; 56]);
    r
}

/// A guest that activates the virtio-fs device (the first virtio-mmio device), sends FUSE_INIT on
/// its request queue, waits for the interrupt status and the used entry, and echoes the reply's
/// error and major version: [`FS_GUEST_CONSOLE`] when virtiofsd answered.
pub fn fs_guest() -> Vec<u8> {
    fs_guest_image(0, guest)
}

/// [`fs_guest`] with `delay` idle commands (RAM writes) between the handshake (its `A`) and the
/// FUSE_INIT: a window in which a snapshot finds the device activated and no request made yet.
pub fn slow_fs_guest(delay: usize) -> Vec<u8> {
    fs_guest_image(delay, super::long_guest)
}

fn fs_guest_image(delay: usize, assemble: fn(&[Cmd]) -> Vec<u8>) -> Vec<u8> {
    let mut cmds = handshake(2);
    cmds.extend((0..delay).map(|i| Cmd::Write32 {
        addr: SCRATCH + 0x3000,
        value: u32::try_from(i).unwrap_or(u32::MAX),
    }));
    cmds.extend([
        // One chain on the request queue (1): the request, then a writable reply buffer.
        Cmd::Write32 {
            addr: avail(1),
            value: 1 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        // virtiofsd's call became the interrupt status bit.
        Cmd::Poll32 {
            addr: MMIO + reg::INTERRUPT_STATUS,
            mask: 1,
            value: 1,
        },
        Cmd::Poll32 {
            addr: used(1),
            mask: 0xffff_0000,
            value: 1 << 16,
        },
        w(reg::INTERRUPT_ACK, 1),
        // fuse_out_header.error, then fuse_init_out.major.
        Cmd::Echo {
            addr: REPLY_BUF + 4,
            len: 4,
            port: 0x3f8,
        },
        Cmd::Echo {
            addr: REPLY_BUF + 16,
            len: 4,
            port: 0x3f8,
        },
        Cmd::Out8 {
            port: 0x3f8,
            value: b'\n',
        },
    ]);
    let mut image = assemble(&cmds);
    poke(&mut image, queue_base(1), &desc_next(REQ_BUF, 104, 1, 1));
    poke(
        &mut image,
        queue_base(1) + 16,
        &desc_next(REPLY_BUF, 256, 2, 0),
    );
    poke(&mut image, REQ_BUF, &fuse_init());
    image
}

/// What [`fs_guest`] prints when virtiofsd answered its FUSE_INIT: `A` after the handshake, the
/// reply's error (0) and major version (7), a newline.
pub const FS_GUEST_CONSOLE: &[u8] = b"A\x00\x00\x00\x00\x07\x00\x00\x00\n";
