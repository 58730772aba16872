//! The garbage itself: register values, addresses that are nowhere or somewhere a device may
//! write, descriptors (sane, wrong or absurd), vsock headers, packets, and the arena holding the
//! rings, indirect tables, packets and data the commands point at.

// Random bits are cut to field widths on purpose.
#![allow(clippy::cast_possible_truncation)]

use super::{
    Gen, Target, ARENA, ARENA_LEN, AVAIL_OFF, DATA, DATA_LEN, F_INDIRECT, F_NEXT, F_WRITE,
    INDIRECT, INDIRECT_STRIDE, INDIRECT_TABLES, MMIO, PACKETS, PACKET_COUNT, PACKET_STRIDE,
    RING_SLOTS, RING_STRIDE, SLOT_DESCS, SPIN, WRITABLE_CEILING, WRITABLE_FLOOR,
};
use crate::testing::GUEST_BASE;

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
    pub(super) fn value(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=5 => self.rng.pick(VALUES),
            6 => u32::try_from(self.rng.below(16)).expect("small"),
            _ => self.rng.next_u32(),
        }
    }

    /// An address nothing is at: past RAM, the MMIO hole, beyond the physical address width.
    pub(super) fn nowhere(&mut self) -> u64 {
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
    pub(super) fn buf_addr(&mut self, writable: bool) -> u64 {
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
    pub(super) fn desc(&mut self, index: u16, size: u16) -> [u8; 16] {
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

    pub(super) fn port(&mut self, guest_side: bool) -> u32 {
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

    pub(super) fn vsock_header(&mut self) -> [u8; 44] {
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
    pub(super) fn packet(&mut self) -> Vec<u8> {
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

    pub(super) fn arena(&mut self) -> Vec<u8> {
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
}
