//! A hostile test guest: for one virtio-mmio device, seeded pseudo-random garbage in every
//! register (in and out of the device's window, every width), feature negotiations and queue
//! set-ups with sizes and ring addresses that are wrong in every way (outside RAM, in the MMIO
//! hole, unaligned, huge), and queues full of nonsense: descriptor chains with loops, lengths up to
//! `u32::MAX`, addresses outside guest memory, indirect tables pointing anywhere, available rings
//! with random indexes, vsock headers with absurd lengths, credit, ops and ports — kicked over
//! and over. The same seed gives the same guest, so a failure reproduces.
//!
//! The guest is data for the interpreter of [`super`]: the commands come from the seed, and the
//! garbage they point at lives in an arena loaded with the guest (a second ELF segment at
//! [`ARENA`]). Whatever a device may write (used rings, device-writable buffers) is in the arena
//! after its rings, or at or above [`WRITABLE_FLOOR`], or outside RAM, so a device doing exactly
//! what the guest asks never overwrites the guest's own code, commands or page tables: the guest
//! reaches its end, prints [`MARKER`] on the serial port and spins, and the test can measure the
//! VMM and stop it.

// Random bits and addresses are cut to register widths on purpose.
#![allow(clippy::cast_possible_truncation)]

use super::virtio::MMIO;
use super::{elf64_segments, long_guest, Cmd, GUEST_BASE};
use crate::devices::virtio::mmio::reg;

/// Where the garbage lives: ring slots, then indirect tables, packet buffers and data.
pub const ARENA: u64 = 0x100_0000;
/// Lowest RAM address (besides the arena) a descriptor may let a device write to.
pub const WRITABLE_FLOOR: u64 = 0x40_0000;
/// What the guest prints on the serial port once all its commands ran.
pub const MARKER: u8 = b'Z';
/// Writable RAM below the arena ends here, far enough below it that no write the devices make
/// (a packet, a frame, a FUSE reply) runs into the arena's rings.
pub const WRITABLE_CEILING: u64 = ARENA - (4 << 20);
/// The least guest RAM the hostile guest needs (its arena and data area).
pub const MIN_MEM_BYTES: u64 = 32 << 20;

const RING_SLOTS: u64 = 8;
const RING_STRIDE: u64 = 0x4000;
const AVAIL_OFF: u64 = 0x1000;
const USED_OFF: u64 = 0x2000;
const SLOT_DESCS: u16 = 256;
const INDIRECT: u64 = ARENA + RING_SLOTS * RING_STRIDE;
const INDIRECT_TABLES: u64 = 16;
const INDIRECT_STRIDE: u64 = 0x400;
const PACKETS: u64 = INDIRECT + INDIRECT_TABLES * INDIRECT_STRIDE;
const PACKET_COUNT: u64 = 256;
const PACKET_STRIDE: u64 = 0x100;
const DATA: u64 = PACKETS + PACKET_COUNT * PACKET_STRIDE;
const DATA_LEN: u64 = 0x2_0000;
const ARENA_LEN: u64 = DATA + DATA_LEN - ARENA;
/// The word the guest spins on at the end: inside its image, which nothing writes.
const SPIN: u64 = GUEST_BASE + 0x900;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// A small, seeded pseudo-random generator (SplitMix64): deterministic across platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `true` with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).expect("small")]
    }
}

/// The device the hostile guest attacks (the first virtio-mmio device of the VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// virtio-vsock: rx, tx and event queues; packets carry vsock headers.
    Vsock,
    /// virtio-net: rx and tx queues; packets are a virtio-net header and a frame.
    Net,
    /// virtio-fs (vhost-user): two queues; packets look like FUSE requests.
    Fs,
}

impl Target {
    /// The device's number of queues.
    pub fn queues(self) -> u16 {
        match self {
            Target::Vsock => 3,
            Target::Net | Target::Fs => 2,
        }
    }

    /// The device-specific feature bits (low word) a real driver would accept.
    fn features_lo(self) -> u32 {
        match self {
            Target::Net => 1 << 5, // VIRTIO_NET_F_MAC
            Target::Vsock | Target::Fs => 0,
        }
    }
}

/// A hostile guest, ready to be written out as the VM's kernel.
#[derive(Debug)]
pub struct HostileGuest {
    /// The ELF file.
    pub elf: Vec<u8>,
    /// The interpreter commands it runs.
    pub commands: Vec<Cmd>,
    /// The arena loaded at [`ARENA`].
    pub arena: Vec<u8>,
}

/// What the guest last told the device about one queue.
#[derive(Debug, Clone, Copy)]
struct QueueState {
    slot: u64,
    size: u16,
    avail_idx: u16,
}

struct Gen {
    rng: Rng,
    target: Target,
    mem_bytes: u64,
    cmds: Vec<Cmd>,
    queues: Vec<QueueState>,
}

const VALUES: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    0xb,
    0xf,
    0x40,
    0x80,
    0xff,
    0x100,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

const LENS: &[u32] = &[
    0,
    1,
    11,
    12,
    13,
    43,
    44,
    45,
    48,
    100,
    0x1000,
    0xffff,
    0x1_0000,
    0x1_000c,
    0x1_002c,
    0x1_002d,
    0x10_0000,
    0x7fff_ffff,
    0xffff_fffc,
    0xffff_ffff,
];

impl Gen {
    fn value(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=5 => self.rng.pick(VALUES),
            6 => u32::try_from(self.rng.below(16)).expect("small"),
            _ => self.rng.next_u32(),
        }
    }

    fn w(&mut self, off: u64, value: u32) {
        self.cmds.push(Cmd::Write32 {
            addr: MMIO + off,
            value,
        });
    }

    fn write32(&mut self, addr: u64, value: u32) {
        self.cmds.push(Cmd::Write32 { addr, value });
    }

    /// An address nothing is at: past RAM, the MMIO hole, beyond the physical address width.
    fn nowhere(&mut self) -> u64 {
        let r = self.rng.below(0x1000);
        match self.rng.below(9) {
            0 => self.mem_bytes + r,
            1 => 0xc000_0000 + r * 16,
            2 => MMIO,
            3 => MMIO + 0x1000 * self.rng.below(4) + r,
            4 => 0xfec0_0000,
            5 => (1 << 32) + self.rng.below(1 << 32),
            6 => 1 << 47,
            7 => u64::MAX - r,
            _ => self.rng.next_u64() | (1 << 40),
        }
    }

    /// A buffer address for a descriptor; `writable` ones never point below the writable floor
    /// (except into the arena's packet buffers and data, which come after everything the guest
    /// reads its rings from).
    fn buf_addr(&mut self, writable: bool) -> u64 {
        match self.rng.below(20) {
            0..=7 => PACKETS + self.rng.below(PACKET_COUNT) * PACKET_STRIDE,
            8..=10 => DATA + self.rng.below(DATA_LEN),
            11 => self.mem_bytes - 1 - self.rng.below(0x100),
            12..=15 => self.nowhere(),
            16 if !writable => ARENA + self.rng.below(RING_SLOTS * RING_STRIDE),
            17 if !writable => INDIRECT + self.rng.below(INDIRECT_TABLES * INDIRECT_STRIDE),
            18 if !writable => self.rng.pick(&[0, 0x500, 0x9000, GUEST_BASE, SPIN]),
            _ if self.rng.percent(50) => {
                WRITABLE_FLOOR + self.rng.below(WRITABLE_CEILING - WRITABLE_FLOOR)
            }
            _ => ARENA + ARENA_LEN + self.rng.below(self.mem_bytes - ARENA - ARENA_LEN),
        }
    }

    /// One descriptor of a table of `size` entries, at index `index`.
    fn desc(&mut self, index: u16, size: u16) -> [u8; 16] {
        let sane = self.rng.percent(40);
        let flags = if sane {
            self.rng
                .pick(&[0, F_WRITE, F_NEXT, F_NEXT | F_WRITE, F_INDIRECT])
        } else if self.rng.percent(85) {
            self.rng.pick(&[
                0,
                F_NEXT,
                F_WRITE,
                F_NEXT | F_WRITE,
                F_INDIRECT,
                F_INDIRECT | F_NEXT,
                F_INDIRECT | F_WRITE,
                F_INDIRECT | F_NEXT | F_WRITE,
            ])
        } else {
            u16::try_from(self.rng.below(1 << 16)).expect("16 bits")
        };
        let writable = flags & F_WRITE != 0;
        let (addr, len) = if flags & F_INDIRECT != 0 && self.rng.percent(75) {
            let table = INDIRECT + self.rng.below(INDIRECT_TABLES) * INDIRECT_STRIDE;
            let addr = if self.rng.percent(80) {
                table
            } else {
                table + self.rng.below(16)
            };
            let len = match self.rng.below(6) {
                0..=2 => 16 * (1 + u32::try_from(self.rng.below(64)).expect("small")),
                3 => self.rng.pick(&[0, 8, 17, 0x10_0000, 0xffff_fff0, u32::MAX]),
                _ => self.rng.next_u32(),
            };
            (addr, len)
        } else if sane {
            let addr = if writable {
                DATA + self.rng.below(DATA_LEN / 0x1000) * 0x1000
            } else {
                PACKETS + self.rng.below(PACKET_COUNT) * PACKET_STRIDE
            };
            let len = if writable {
                self.rng.pick(&[0x1000, 44, 100, 12])
            } else {
                self.rng.pick(&[44, 48, 100, 0x100, 12, 76])
            };
            (addr, len)
        } else {
            let len = if self.rng.percent(80) {
                self.rng.pick(LENS)
            } else {
                self.rng.next_u32()
            };
            (self.buf_addr(writable), len)
        };
        let next = match self.rng.below(10) {
            0..=4 => index.wrapping_add(1) % size.max(1),
            5 => index,
            6 => 0,
            7 | 8 => u16::try_from(self.rng.below(u64::from(size.max(1)))).expect("16 bits"),
            _ => u16::try_from(self.rng.below(1 << 16)).expect("16 bits"),
        };
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        d
    }

    fn port(&mut self, guest_side: bool) -> u32 {
        if guest_side {
            // Never below 0x100: a header the device writes over a descriptor then points
            // outside RAM (see `hostile_descriptors_never_let_a_device_write_to_the_guest`).
            match self.rng.below(10) {
                0..=5 => self.rng.pick(&[5000, 5001, 5002, 1024]),
                6 => u32::MAX,
                _ => 0x100 + u32::try_from(self.rng.below(0xffff_ff00)).expect("32 bits"),
            }
        } else {
            match self.rng.below(10) {
                0..=4 => 1025,
                5 | 6 => self
                    .rng
                    .pick(&[1 << 30, (1 << 30) + 1, (1 << 30) + 2, 1024]),
                7 => self.rng.pick(&[0, u32::MAX]),
                _ => self.rng.next_u32(),
            }
        }
    }

    fn vsock_header(&mut self) -> [u8; 44] {
        let src_cid: u64 = if self.rng.percent(85) {
            3
        } else {
            self.rng.pick(&[0, 2, 4, u64::MAX, 1 << 32 | 3])
        };
        let dst_cid: u64 = if self.rng.percent(85) {
            2
        } else {
            self.rng.pick(&[0, 3, u64::MAX, 1 << 32 | 2])
        };
        let len = match self.rng.below(10) {
            0..=3 => 0,
            4..=6 => u32::try_from(self.rng.below(212)).expect("small"),
            _ => self.rng.pick(LENS),
        };
        let type_: u16 = if self.rng.percent(90) {
            1
        } else {
            self.rng.pick(&[0, 2, 3, 0xffff])
        };
        let op: u16 = if self.rng.percent(90) {
            1 + u16::try_from(self.rng.below(7)).expect("small")
        } else {
            self.rng.pick(&[0, 8, 0x100, 0xffff])
        };
        let flags: u32 = self.rng.pick(&[0, 1, 2, 3, 0xffff_ffff]);
        let buf_alloc: u32 = self
            .rng
            .pick(&[0, 1, 4096, 256 << 10, 0x7fff_ffff, u32::MAX]);
        let fwd_cnt: u32 = self.rng.pick(&[0, 1, 0x8000_0000, u32::MAX]);
        let (src_port, dst_port) = (self.port(true), self.port(false));
        let mut h = [0u8; 44];
        h[0..8].copy_from_slice(&src_cid.to_le_bytes());
        h[8..16].copy_from_slice(&dst_cid.to_le_bytes());
        h[16..20].copy_from_slice(&src_port.to_le_bytes());
        h[20..24].copy_from_slice(&dst_port.to_le_bytes());
        h[24..28].copy_from_slice(&len.to_le_bytes());
        h[28..30].copy_from_slice(&type_.to_le_bytes());
        h[30..32].copy_from_slice(&op.to_le_bytes());
        h[32..36].copy_from_slice(&flags.to_le_bytes());
        h[36..40].copy_from_slice(&buf_alloc.to_le_bytes());
        h[40..44].copy_from_slice(&fwd_cnt.to_le_bytes());
        h
    }

    /// A packet buffer: a header for the target and a random tail.
    fn packet(&mut self) -> Vec<u8> {
        let mut p: Vec<u8> = (0..PACKET_STRIDE)
            .map(|_| self.rng.next_u64() as u8)
            .collect();
        match self.target {
            Target::Vsock => p[..44].copy_from_slice(&self.vsock_header()),
            Target::Net => p[..12].fill(0),
            Target::Fs => {
                // fuse_in_header: len, opcode, unique, nodeid…
                let len = self.rng.pick(&[40, 64, 104, 0x100, 0, u32::MAX]);
                let opcode = u32::try_from(self.rng.below(60)).expect("small");
                p[..4].copy_from_slice(&len.to_le_bytes());
                p[4..8].copy_from_slice(&opcode.to_le_bytes());
            }
        }
        p
    }

    fn arena(&mut self) -> Vec<u8> {
        let mut a = vec![0u8; usize::try_from(ARENA_LEN).expect("small")];
        let at = |addr: u64| usize::try_from(addr - ARENA).expect("in the arena");
        for slot in 0..RING_SLOTS {
            let base = ARENA + slot * RING_STRIDE;
            for i in 0..SLOT_DESCS {
                let d = self.desc(i, SLOT_DESCS);
                let o = at(base + u64::from(i) * 16);
                a[o..o + 16].copy_from_slice(&d);
            }
            // Available ring: flags and idx 0 (the commands publish), then heads.
            for i in 0..u64::from(SLOT_DESCS) {
                let head: u16 = if self.rng.percent(85) {
                    u16::try_from(self.rng.below(u64::from(SLOT_DESCS))).expect("small")
                } else {
                    u16::try_from(self.rng.below(1 << 16)).expect("16 bits")
                };
                let o = at(base + AVAIL_OFF + 4 + i * 2);
                a[o..o + 2].copy_from_slice(&head.to_le_bytes());
            }
        }
        for t in 0..INDIRECT_TABLES {
            let n = u16::try_from(INDIRECT_STRIDE / 16).expect("small");
            for i in 0..n {
                let d = self.desc(i, n);
                let o = at(INDIRECT + t * INDIRECT_STRIDE + u64::from(i) * 16);
                a[o..o + 16].copy_from_slice(&d);
            }
        }
        for k in 0..PACKET_COUNT {
            let p = self.packet();
            let o = at(PACKETS + k * PACKET_STRIDE);
            a[o..o + p.len()].copy_from_slice(&p);
        }
        a
    }

    /// Random accesses to registers: the device's window (most), the windows after it and odd
    /// offsets past its end; all widths; reads too.
    fn storm(&mut self, n: u64) {
        for _ in 0..n {
            let window = if self.rng.percent(85) {
                0
            } else {
                1 + self.rng.below(3)
            };
            let off = if self.rng.percent(85) {
                self.rng.below(0x110) * 4
            } else {
                self.rng.below(0x1004)
            };
            let addr = MMIO + window * 0x1000 + off;
            let v = self.value();
            self.cmds.push(match self.rng.below(20) {
                0 => Cmd::Write8 {
                    addr,
                    value: v as u8,
                },
                1 => Cmd::Write16 {
                    addr,
                    value: v as u16,
                },
                2 => Cmd::Write64 {
                    addr,
                    value: self.rng.next_u64(),
                },
                3 | 4 => Cmd::ReadOut { addr, port: 0x80 },
                _ => Cmd::Write32 { addr, value: v },
            });
        }
    }

    /// A ring address in `slot`; with `garbage`, sometimes a wrong one.
    fn ring_addr(&mut self, slot: u64, off: u64, garbage: bool) -> u64 {
        let proper = ARENA + slot * RING_STRIDE + off;
        if !garbage || self.rng.percent(75) {
            return proper;
        }
        match self.rng.below(4) {
            // Unaligned.
            0 => proper + self.rng.pick(&[1, 2, 3, 6, 8]),
            // Running past the end of RAM.
            1 => self.mem_bytes - 0x10,
            _ => self.nowhere(),
        }
    }

    fn set_addr(&mut self, lo_reg: u64, addr: u64) {
        self.w(lo_reg, addr as u32);
        self.w(lo_reg + 4, (addr >> 32) as u32);
    }

    /// Status, features and queues, right or wrong, then DRIVER_OK.
    fn handshake(&mut self) {
        if self.rng.percent(85) {
            self.w(reg::STATUS, 0);
        }
        self.w(reg::STATUS, 1);
        self.w(reg::STATUS, 3);
        if self.rng.percent(70) {
            let lo = self.target.features_lo();
            self.w(reg::DRIVER_FEATURES_SEL, 1);
            self.w(reg::DRIVER_FEATURES, 1);
            self.w(reg::DRIVER_FEATURES_SEL, 0);
            self.w(reg::DRIVER_FEATURES, lo);
        } else {
            for _ in 0..2 {
                let sel = self.rng.pick(&[0, 1, 2, 0xffff_ffff]);
                self.w(reg::DRIVER_FEATURES_SEL, sel);
                let v = self.value();
                self.w(reg::DRIVER_FEATURES, v);
            }
        }
        let features_ok = if self.rng.percent(90) {
            0xb
        } else {
            self.value()
        };
        self.w(reg::STATUS, features_ok);
        let n = self.target.queues();
        let extra = if self.rng.percent(20) { 2 } else { 0 };
        // Most set-ups place every ring properly, so the device runs and meets the garbage in
        // its queues; the others may be refused (and need a reset) or half work.
        let garbage = self.rng.percent(35);
        let mut queues = Vec::new();
        for q in 0..n + extra {
            let size: u16 = if !garbage || self.rng.percent(60) {
                self.rng.pick(&[2, 4, 16, 32, 64, 128, 256, 256])
            } else {
                self.rng.pick(&[0, 1, 3, 255, 257, 512, 0x8000, 0xffff])
            };
            let raw_size = if garbage && self.rng.percent(10) {
                self.value()
            } else {
                u32::from(size)
            };
            let slot = self.rng.below(RING_SLOTS);
            self.w(reg::QUEUE_SEL, u32::from(q));
            self.w(reg::QUEUE_NUM, raw_size);
            let desc = self.ring_addr(slot, 0, garbage);
            let avail = self.ring_addr(slot, AVAIL_OFF, garbage);
            let used = self.ring_addr(slot, USED_OFF, garbage);
            self.set_addr(reg::QUEUE_DESC_LOW, desc);
            self.set_addr(reg::QUEUE_DRIVER_LOW, avail);
            self.set_addr(reg::QUEUE_DEVICE_LOW, used);
            if self.rng.percent(80) {
                // A fresh start for this ring's available index.
                self.write32(ARENA + slot * RING_STRIDE + AVAIL_OFF, 0);
            }
            let ready = if !garbage || self.rng.percent(80) {
                1
            } else {
                self.value()
            };
            self.w(reg::QUEUE_READY, ready);
            if q < n {
                queues.push(QueueState {
                    slot,
                    size: size.clamp(1, SLOT_DESCS),
                    avail_idx: 0,
                });
            }
        }
        self.queues = queues;
        let driver_ok = if self.rng.percent(90) {
            0xf
        } else {
            self.value()
        };
        self.w(reg::STATUS, driver_ok);
    }

    fn kick(&mut self, q: u16) {
        let value = if self.rng.percent(90) {
            u32::from(q)
        } else {
            self.value()
        };
        self.w(reg::QUEUE_NOTIFY, value);
    }

    /// Rewrites descriptors, heads, headers; publishes and kicks.
    fn traffic(&mut self, n: u64) {
        for _ in 0..n {
            if self.queues.is_empty() {
                return;
            }
            let qi = usize::try_from(self.rng.below(self.queues.len() as u64)).expect("small");
            let q = u16::try_from(qi).expect("small");
            let QueueState {
                slot,
                size,
                avail_idx,
            } = self.queues[qi];
            let base = ARENA + slot * RING_STRIDE;
            match self.rng.below(12) {
                0..=2 => {
                    let i = u16::try_from(self.rng.below(u64::from(size))).expect("small");
                    let d = self.desc(i, size);
                    let at = base + u64::from(i) * 16;
                    // Flags first to 0 (read-only), so no torn state lets the device write to
                    // the new address with the old flags or the other way round.
                    self.write32(at + 12, 0);
                    let addr = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
                    self.cmds.push(Cmd::Write64 {
                        addr: at,
                        value: addr,
                    });
                    let len = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                    self.write32(at + 8, len);
                    let fl = u32::from_le_bytes(d[12..16].try_into().expect("4 bytes"));
                    self.write32(at + 12, fl);
                }
                3 => {
                    let i = self.rng.below(u64::from(size));
                    let heads = if self.rng.percent(85) {
                        let a = self.rng.below(u64::from(size));
                        let b = self.rng.below(u64::from(size));
                        u32::try_from(a | (b << 16)).expect("32 bits")
                    } else {
                        self.rng.next_u32()
                    };
                    self.write32(base + AVAIL_OFF + 4 + (i & !1) * 2, heads);
                }
                4 => {
                    let k = self.rng.below(PACKET_COUNT);
                    let off = self.rng.below(11) * 4;
                    let v = match self.target {
                        Target::Vsock => {
                            let h = self.vsock_header();
                            let o = usize::try_from(off).expect("small");
                            u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"))
                        }
                        Target::Net | Target::Fs => self.value(),
                    };
                    self.write32(PACKETS + k * PACKET_STRIDE + off, v);
                }
                5..=8 => {
                    // Mostly a few new entries with heads inside the queue, as a driver would
                    // publish them; sometimes an index that jumps, goes back or is random.
                    // (An index more than `size` ahead of the device's makes it give up on the
                    // queue until the next reset: rare, or the device would mostly idle.)
                    let n = match self.rng.below(100) {
                        0..=96 => 1 + self.rng.below(u64::from(size).min(8)),
                        97 => u64::from(size) + 1 + self.rng.below(u64::from(size)),
                        98 => u64::from(u16::MAX), // one back
                        _ => self.rng.below(1 << 16),
                    };
                    if n <= 8 {
                        for j in (0..n).step_by(2) {
                            let pos = (u64::from(avail_idx) + j) % u64::from(size);
                            let a = self.rng.below(u64::from(size));
                            let b = self.rng.below(u64::from(size));
                            let heads = u32::try_from(a | (b << 16)).expect("32 bits");
                            self.write32(base + AVAIL_OFF + 4 + (pos & !1) * 2, heads);
                        }
                    }
                    let idx = avail_idx.wrapping_add(u16::try_from(n & 0xffff).expect("16 bits"));
                    self.queues[qi].avail_idx = idx;
                    let flags = u32::from(self.rng.percent(20));
                    self.write32(base + AVAIL_OFF, flags | (u32::from(idx) << 16));
                    self.kick(q);
                }
                _ => {
                    for _ in 0..1 + self.rng.below(4) {
                        self.kick(q);
                    }
                }
            }
        }
    }
}

/// The hostile guest for `seed` against `target`, in a VM of `mem_bytes` of RAM (at least
/// [`MIN_MEM_BYTES`]), running about `budget` commands.
pub fn hostile_guest(seed: u64, target: Target, mem_bytes: u64, budget: usize) -> HostileGuest {
    assert!(mem_bytes >= MIN_MEM_BYTES, "the hostile guest needs 32 MiB");
    let mut g = Gen {
        rng: Rng::new(seed),
        target,
        mem_bytes,
        cmds: Vec::new(),
        queues: Vec::new(),
    };
    let arena = g.arena();
    // A first activation early, so queues are served from the start.
    g.handshake();
    g.traffic(20);
    while g.cmds.len() < budget {
        match g.rng.below(10) {
            0 => {
                let n = 10 + g.rng.below(50);
                g.storm(n);
            }
            1 | 2 => g.handshake(),
            _ => {
                let n = 10 + g.rng.below(40);
                g.traffic(n);
            }
        }
    }
    g.cmds.extend([
        Cmd::Out8 {
            port: 0x3f8,
            value: MARKER,
        },
        Cmd::Poll32 {
            addr: SPIN,
            mask: 1,
            value: 1,
        },
    ]);
    let image = long_guest(&g.cmds);
    assert!(
        GUEST_BASE + image.len() as u64 <= WRITABLE_FLOOR,
        "budget too large: the commands would run into device-writable memory"
    );
    let elf = elf64_segments(GUEST_BASE, &[(GUEST_BASE, &image), (ARENA, &arena)]);
    HostileGuest {
        elf,
        commands: g.cmds,
        arena,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: u64 = 64 << 20;

    fn descs(arena: &[u8]) -> impl Iterator<Item = (u64, u32, u16)> + '_ {
        let tables = [
            (ARENA, RING_SLOTS, RING_STRIDE, 256u64),
            (
                INDIRECT,
                INDIRECT_TABLES,
                INDIRECT_STRIDE,
                INDIRECT_STRIDE / 16,
            ),
        ];
        tables.into_iter().flat_map(move |(start, n, stride, per)| {
            (0..n).flat_map(move |t| {
                (0..per).map(move |i| {
                    let o = usize::try_from(start - ARENA + t * stride + i * 16).unwrap();
                    let d = &arena[o..o + 16];
                    (
                        u64::from_le_bytes(d[..8].try_into().unwrap()),
                        u32::from_le_bytes(d[8..12].try_into().unwrap()),
                        u16::from_le_bytes(d[12..14].try_into().unwrap()),
                    )
                })
            })
        })
    }

    /// Packets and data, RAM above the arena or between the floor and the ceiling, or no RAM.
    fn writable_ok(addr: u64) -> bool {
        (PACKETS..MEM).contains(&addr)
            || (WRITABLE_FLOOR..WRITABLE_CEILING).contains(&addr)
            || addr >= MEM
    }

    #[test]
    fn the_same_seed_gives_the_same_guest() {
        let a = hostile_guest(7, Target::Vsock, MEM, 2000);
        let b = hostile_guest(7, Target::Vsock, MEM, 2000);
        let c = hostile_guest(8, Target::Vsock, MEM, 2000);
        assert_eq!(a.elf, b.elf);
        assert_ne!(a.elf, c.elf);
        assert!(a.commands.len() >= 2000);
        assert_eq!(
            a.commands.last(),
            Some(&Cmd::Poll32 {
                addr: SPIN,
                mask: 1,
                value: 1
            })
        );
    }

    /// Whatever the seed, a device that writes where the guest's descriptors say never reaches
    /// the guest's code, commands, page tables or rings: the guest always reaches its marker.
    #[test]
    fn hostile_descriptors_never_let_a_device_write_to_the_guest() {
        for seed in 0..20 {
            for target in [Target::Vsock, Target::Net, Target::Fs] {
                let g = hostile_guest(seed, target, MEM, 3000);
                let mut writable = 0;
                for (addr, len, flags) in descs(&g.arena) {
                    if flags & F_WRITE != 0 && flags & F_INDIRECT == 0 {
                        writable += 1;
                        assert!(writable_ok(addr), "seed {seed}: {addr:#x}+{len:#x}");
                    }
                }
                assert!(
                    writable > 100,
                    "seed {seed}: {writable} writable descriptors"
                );
                // The guest's own writes stay in MMIO, the arena's rings and packets.
                for c in &g.commands {
                    let addr = match *c {
                        Cmd::Write32 { addr, .. }
                        | Cmd::Write64 { addr, .. }
                        | Cmd::Write16 { addr, .. }
                        | Cmd::Write8 { addr, .. } => addr,
                        _ => continue,
                    };
                    assert!(
                        addr >= MMIO || (ARENA..ARENA + ARENA_LEN).contains(&addr),
                        "seed {seed}: guest write to {addr:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_elf_loads_the_arena_as_a_second_segment() {
        let g = hostile_guest(1, Target::Net, MEM, 100);
        assert_eq!(u16::from_le_bytes([g.elf[56], g.elf[57]]), 2, "e_phnum");
        let second = 64 + 56;
        let paddr = u64::from_le_bytes(g.elf[second + 24..second + 32].try_into().unwrap());
        assert_eq!(paddr, ARENA);
        assert_eq!(g.arena.len() as u64, ARENA_LEN);
    }
}
