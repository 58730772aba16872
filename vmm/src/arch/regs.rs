//! The state a vCPU starts in: flat GDT, identity page tables for the first 4 GiB, long mode
//! (Linux 64-bit boot protocol) or 32-bit protected mode without paging (PVH), FPU, MSRs and the
//! local APIC's LINT0/LINT1 wiring.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use crate::layout;
use crate::memory::GuestMemory;

/// Setting up a vCPU's registers failed.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// Writing the GDT or page tables to guest memory failed.
    #[error("cannot write boot structures to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
    /// A KVM register ioctl failed.
    #[error("cannot set vCPU {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// KVM accepted fewer MSRs than given.
    #[error("KVM set {set} of {wanted} boot MSRs")]
    Msrs {
        /// How many were set.
        set: usize,
        /// How many were asked.
        wanted: usize,
    },
}

/// The CPU mode a kernel is entered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit long mode, paging on, `rsi` = zero page (Linux 64-bit boot protocol).
    Long,
    /// 32-bit protected mode, paging off, `rbx` = `hvm_start_info` (PVH).
    Pvh,
}

/// GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18), 32-bit code (0x20).
pub const GDT: [u64; 5] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
    gdt_entry(0xc09b, 0, 0xfffff),
];
const CODE64: usize = 1;
const DATA: usize = 2;
const TSS: usize = 3;
const CODE32: usize = 4;

/// Packs a segment descriptor from its flags (access byte low, flags nibble at bits 12..16),
/// base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The KVM view of GDT entry `index`.
#[allow(clippy::cast_possible_truncation)] // each field is masked to its width first
pub fn segment(index: usize) -> kvm_segment {
    let e = GDT[index];
    let base = ((e >> 16) & 0xff_ffff) | ((e >> 32) & 0xff00_0000);
    let limit = (e & 0xffff) | ((e >> 32) & 0xf_0000);
    let g = ((e >> 55) & 1) as u8;
    kvm_segment {
        base,
        limit: if g == 1 {
            ((limit as u32) << 12) | 0xfff
        } else {
            limit as u32
        },
        selector: (index * 8) as u16,
        type_: ((e >> 40) & 0xf) as u8,
        present: ((e >> 47) & 1) as u8,
        dpl: ((e >> 45) & 3) as u8,
        db: ((e >> 54) & 1) as u8,
        s: ((e >> 44) & 1) as u8,
        l: ((e >> 53) & 1) as u8,
        g,
        avl: ((e >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Writes the GDT, an empty IDT and the identity page tables (first 4 GiB, 2 MiB pages).
pub fn write_boot_tables(mem: &GuestMemory) -> Result<(), RegsError> {
    for (i, e) in GDT.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::GDT_START + 8 * i as u64))
            .map_err(RegsError::Memory)?;
    }
    mem.write_obj(0u64, GuestAddress(layout::IDT_START))
        .map_err(RegsError::Memory)?;
    mem.write_obj(layout::PDPTE_START | 0x3, GuestAddress(layout::PML4_START))
        .map_err(RegsError::Memory)?;
    for pd in 0..4u64 {
        let pd_addr = layout::PDE_START + pd * 0x1000;
        mem.write_obj(pd_addr | 0x3, GuestAddress(layout::PDPTE_START + pd * 8))
            .map_err(RegsError::Memory)?;
        for i in 0..512u64 {
            let phys = (pd << 30) | (i << 21);
            mem.write_obj(phys | 0x83, GuestAddress(pd_addr + i * 8))
                .map_err(RegsError::Memory)?;
        }
    }
    Ok(())
}

const X86_CR0_PE: u64 = 1;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Sets segment, control and descriptor-table registers for `mode`.
pub fn setup_sregs(vcpu: &VcpuFd, mode: EntryMode) -> Result<(), RegsError> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(|e| RegsError::Kvm("sregs", e))?;
    sregs.gdt.base = layout::GDT_START;
    sregs.gdt.limit = u16::try_from(GDT.len() * 8 - 1).expect("small GDT");
    sregs.idt.base = layout::IDT_START;
    sregs.idt.limit = 0;
    let data = segment(DATA);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(TSS);
    match mode {
        EntryMode::Long => {
            sregs.cs = segment(CODE64);
            sregs.cr3 = layout::PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        EntryMode::Pvh => {
            sregs.cs = segment(CODE32);
            sregs.cr0 = (sregs.cr0 & !X86_CR0_PG) | X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    vcpu.set_sregs(&sregs)
        .map_err(|e| RegsError::Kvm("sregs", e))
}

/// Sets the general registers: entry point, stack, and the boot-info pointer for `mode`.
pub fn setup_regs(vcpu: &VcpuFd, entry: u64, mode: EntryMode) -> Result<(), RegsError> {
    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: layout::BOOT_STACK,
        rbp: layout::BOOT_STACK,
        ..Default::default()
    };
    match mode {
        EntryMode::Long => regs.rsi = layout::ZERO_PAGE_START,
        EntryMode::Pvh => regs.rbx = layout::PVH_INFO_START,
    }
    vcpu.set_regs(&regs).map_err(|e| RegsError::Kvm("regs", e))
}

/// Sets the x87/SSE control words to their reset values.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|e| RegsError::Kvm("fpu", e))
}

/// The MSRs every vCPU boots with: SYSENTER/SYSCALL state cleared, TSC at 0, fast strings on,
/// MTRRs default write-back.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    const MSRS: [(u32, u64); 10] = [
        (0x174, 0),       // IA32_SYSENTER_CS
        (0x175, 0),       // IA32_SYSENTER_ESP
        (0x176, 0),       // IA32_SYSENTER_EIP
        (0xc000_0081, 0), // STAR
        (0xc000_0082, 0), // LSTAR
        (0xc000_0083, 0), // CSTAR
        (0xc000_0084, 0), // SYSCALL_MASK
        (0xc000_0102, 0), // KERNEL_GS_BASE
        (0x10, 0),        // TSC
        (0x1a0, 1),       // IA32_MISC_ENABLE: fast strings
    ];
    MSRS.iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .chain(std::iter::once(kvm_msr_entry {
            index: 0x2ff, // MTRRdefType: enabled, write-back
            data: (1 << 11) | 6,
            ..Default::default()
        }))
        .collect()
}

/// Writes [`boot_msrs`]; a host that refuses some of them is an error.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let entries = boot_msrs();
    let msrs = Msrs::from_entries(&entries).expect("fewer MSRs than KVM_MAX_MSR_ENTRIES");
    let set = vcpu
        .set_msrs(&msrs)
        .map_err(|e| RegsError::Kvm("msrs", e))?;
    if set != entries.len() {
        return Err(RegsError::Msrs {
            set,
            wanted: entries.len(),
        });
    }
    Ok(())
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

fn lvt_with_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Wires LINT0 to the PIC (ExtINT) and LINT1 to NMI, as a PC's BIOS would.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut lapic = vcpu.get_lapic().map_err(|e| RegsError::Kvm("lapic", e))?;
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let mut b = [0u8; 4];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = lapic.regs[offset + i].to_ne_bytes()[0];
        }
        let v = lvt_with_mode(u32::from_le_bytes(b), mode).to_le_bytes();
        for (i, byte) in v.iter().enumerate() {
            lapic.regs[offset + i] = std::ffi::c_char::from_ne_bytes([*byte]);
        }
    }
    vcpu.set_lapic(&lapic)
        .map_err(|e| RegsError::Kvm("lapic", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let cs = segment(CODE64);
        assert_eq!(
            (cs.base, cs.limit, cs.l, cs.db, cs.present, cs.s),
            (0, 0xffff_ffff, 1, 0, 1, 1)
        );
        assert_eq!(cs.selector, 0x8);
        let cs32 = segment(CODE32);
        assert_eq!((cs32.l, cs32.db, cs32.type_), (0, 1, 0xb));
        let ds = segment(DATA);
        assert_eq!((ds.type_, ds.db, ds.limit), (0x3, 1, 0xffff_ffff));
        let tss = segment(TSS);
        assert_eq!((tss.type_, tss.s), (0xb, 0));
        assert_eq!(GDT[CODE64], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[DATA], 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn page_tables_identity_map_4_gib() {
        let mem = crate::memory::create(16 << 20).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(layout::PML4_START)).unwrap();
        assert_eq!(pml4 & !0xfff, layout::PDPTE_START);
        let pdpte3: u64 = mem
            .read_obj(GuestAddress(layout::PDPTE_START + 24))
            .unwrap();
        assert_eq!(pdpte3 & !0xfff, layout::PDE_START + 0x3000);
        let last: u64 = mem
            .read_obj(GuestAddress(layout::PDE_START + 0x3000 + 511 * 8))
            .unwrap();
        assert_eq!(last, 0xffe0_0000 | 0x83);
    }

    #[test]
    fn lvt_mode_keeps_other_bits() {
        assert_eq!(lvt_with_mode(0x0001_0000, APIC_MODE_NMI), 0x0001_0400);
        assert_eq!(lvt_with_mode(0x0000_0700, APIC_MODE_EXTINT), 0x0000_0700);
    }

    #[test]
    fn boot_msrs_include_mtrr_default_type() {
        let m = boot_msrs();
        assert!(m.iter().any(|e| e.index == 0x2ff && e.data == 0x806));
        assert_eq!(m.len(), 11);
    }
}
