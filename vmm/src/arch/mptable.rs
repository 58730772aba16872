//! The Intel MultiProcessor table (spec 1.4): how a guest without ACPI learns its CPUs, its
//! IOAPIC and the ISA interrupt routing. The floating pointer sits at the start of the EBDA;
//! the configuration table in the reserved BIOS area at 0xf0000.

use vm_memory::{Bytes, GuestAddress};

use crate::layout;
use crate::memory::GuestMemory;

/// Where the configuration table goes.
pub const MPTABLE_START: u64 = 0xf_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const IOAPIC_PINS: u8 = 24;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;

/// Writing the MP table failed.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    /// Too many vCPUs for the APIC id space (the IOAPIC takes the next id).
    #[error("{0} vCPUs do not fit in the MP table (at most 254)")]
    TooManyCpus(u32),
    /// Guest memory write failed.
    #[error("cannot write the MP table to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Builds the floating pointer and configuration table for `vcpus` CPUs.
pub fn build(vcpus: u8) -> Result<([u8; 16], Vec<u8>), MpTableError> {
    if vcpus == 0 || vcpus > 254 {
        return Err(MpTableError::TooManyCpus(u32::from(vcpus)));
    }
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[0, id, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(
        &u32::try_from(layout::IOAPIC_START)
            .expect("32-bit")
            .to_le_bytes(),
    );
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // I/O interrupt: INT, bus default polarity/trigger, ISA bus 0, IRQ pin -> IOAPIC pin.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, pin, ioapic_id, pin]);
        count += 1;
    }
    // Local interrupts: ExtINT on LINT0, NMI on LINT1, all local APICs (0xff).
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let len = u16::try_from(44 + entries.len()).expect("MP table under 64 KiB");
    let mut table = Vec::with_capacity(usize::from(len));
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&len.to_le_bytes());
    table.push(4); // spec 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"HULL    ");
    table.extend_from_slice(b"HULL-VMM    ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(
        &u32::try_from(layout::APIC_START)
            .expect("32-bit")
            .to_le_bytes(),
    );
    table.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = [0u8; 16];
    fp[..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&u32::try_from(MPTABLE_START).expect("32-bit").to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = 4;
    fp[10] = checksum(&fp);
    Ok((fp, table))
}

/// Writes the MP table for `vcpus` CPUs into guest memory.
pub fn write(mem: &GuestMemory, vcpus: u8) -> Result<(), MpTableError> {
    let (fp, table) = build(vcpus)?;
    mem.write_slice(&fp, GuestAddress(layout::EBDA_START))
        .map_err(MpTableError::Memory)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(MpTableError::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_are_zero_and_counts_match() {
        for n in [1u8, 2, 64, 254] {
            let (fp, table) = build(n).unwrap();
            assert_eq!(sum(&fp), 0);
            assert_eq!(sum(&table), 0, "{n} vCPUs");
            assert_eq!(&table[..4], b"PCMP");
            assert_eq!(
                usize::from(u16::from_le_bytes([table[4], table[5]])),
                table.len()
            );
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count, u16::from(n) + 1 + 1 + 24 + 2);
            // The first processor is the BSP, the others are not.
            assert_eq!(table[44 + 3], CPU_ENABLED | CPU_BSP);
            if n > 1 {
                assert_eq!(table[44 + 20 + 3], CPU_ENABLED);
            }
        }
    }

    #[test]
    fn zero_or_too_many_cpus_are_refused() {
        assert!(build(0).is_err());
        assert!(build(255).is_err());
    }

    #[test]
    fn written_table_is_found_where_linux_scans() {
        let mem = crate::memory::create(16 << 20).unwrap();
        write(&mem, 2).unwrap();
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(layout::EBDA_START))
            .unwrap();
        assert_eq!(&sig, b"_MP_");
        mem.read_slice(&mut sig, GuestAddress(MPTABLE_START))
            .unwrap();
        assert_eq!(&sig, b"PCMP");
    }
}
