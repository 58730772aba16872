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

mod garbage;
mod rng;

pub use rng::Rng;

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

impl Gen {
    fn w(&mut self, off: u64, value: u32) {
        self.cmds.push(Cmd::Write32 {
            addr: MMIO + off,
            value,
        });
    }

    fn write32(&mut self, addr: u64, value: u32) {
        self.cmds.push(Cmd::Write32 { addr, value });
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
