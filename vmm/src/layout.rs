//! The guest-physical memory map: where hull-vmm puts the boot structures, the kernel, the
//! initrd and the devices, and how guest RAM is split around the 32-bit MMIO gap.
//!
//! ```text
//! 0x0000_0500  GDT                     0x0000_9000  PML4, PDPT (0xa000), PDs (0xb000..)
//! 0x0000_0520  IDT (empty)             0x0002_0000  kernel command line (4 KiB max)
//! 0x0000_6000  PVH start info + memmap 0x0009_fc00  MP table (EBDA, reserved in e820)
//! 0x0000_7000  boot_params (zero page) 0x0010_0000  kernel (bzImage) / high memory start
//! 0x0000_8ff0  boot stack              top of low RAM: initrd (page aligned)
//! 0xc000_0000 .. 0x1_0000_0000  MMIO gap: virtio-mmio from 0xd000_0000, IOAPIC, LAPIC
//! 0x1_0000_0000 ..              RAM beyond 3 GiB, if any
//! ```

use vm_memory::GuestAddress;

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table (limit 0: any exception before the kernel installs its own
/// table is a triple fault, which ends the VM).
pub const IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH memory map, right after the start info.
pub const PVH_MEMMAP_START: u64 = 0x6040;
/// Most PVH memory map entries.
pub const PVH_MEMMAP_MAX: usize = 64;
/// PVH module list (the initrd).
pub const PVH_MODLIST_START: u64 = 0x6800;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Page map level 4.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Page directories: 4 of them identity-map the first 4 GiB with 2 MiB pages.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line (with its NUL).
pub const CMDLINE_MAX: usize = 4096;
/// Start of the EBDA, where the MP table lives.
pub const EBDA_START: u64 = 0x9fc00;
/// End of conventional memory.
pub const LOW_RAM_END: u64 = 0xa0000;
/// Where bzImage kernels are loaded and high memory starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device window.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// Size of each virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First GSI given to virtio-mmio devices (4 is COM1).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Most virtio-mmio devices (GSIs 5..=23 on the IOAPIC).
pub const VIRTIO_MAX_DEVICES: u32 = 19;
/// IOAPIC registers.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC registers.
pub const APIC_START: u64 = 0xfee0_0000;
/// Smallest guest RAM: kernel, initrd and boot structures must fit.
pub const MIN_MEM_MIB: u64 = 16;
/// Largest guest RAM hull-vmm accepts.
pub const MAX_MEM_MIB: u64 = 1 << 20;

/// Guest RAM regions for `mem_bytes` of memory: below the MMIO gap, and the rest from 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(GuestAddress, u64)> {
    if mem_bytes <= MMIO_GAP_START {
        vec![(GuestAddress(0), mem_bytes)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START),
            (GuestAddress(MMIO_GAP_END), mem_bytes - MMIO_GAP_START),
        ]
    }
}

/// The guest-physical window of virtio-mmio device `index`.
pub fn virtio_mmio_base(index: u32) -> u64 {
    VIRTIO_MMIO_START + u64::from(index) * VIRTIO_MMIO_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_region() {
        assert_eq!(ram_regions(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
        assert_eq!(
            ram_regions(MMIO_GAP_START),
            vec![(GuestAddress(0), MMIO_GAP_START)]
        );
    }

    #[test]
    fn large_memory_skips_the_mmio_gap() {
        let r = ram_regions(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START));
        assert_eq!(
            r[1],
            (GuestAddress(MMIO_GAP_END), (4 << 30) - MMIO_GAP_START)
        );
        assert_eq!(r[0].1 + r[1].1, 4 << 30);
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let mut spans = [
            (GDT_START, 0x20),
            (IDT_START, 0x8),
            (PVH_INFO_START, 0x40),
            (PVH_MEMMAP_START, (PVH_MEMMAP_MAX as u64) * 24),
            (PVH_MODLIST_START, 32),
            (ZERO_PAGE_START, 0x1000),
            (PML4_START, 0x1000),
            (PDPTE_START, 0x1000),
            (PDE_START, 0x4000),
            (CMDLINE_START, CMDLINE_MAX as u64),
            (EBDA_START, LOW_RAM_END - EBDA_START),
        ];
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{:x?} overlaps {:x?}",
                w[0],
                w[1]
            );
        }
        const { assert!(BOOT_STACK < PML4_START && BOOT_STACK > ZERO_PAGE_START + 0x1000) };
        assert!(virtio_mmio_base(VIRTIO_MAX_DEVICES) < IOAPIC_START);
        const { assert!(VIRTIO_MMIO_START >= MMIO_GAP_START) };
    }
}
