use std::io::Write;

use super::*;
use crate::testing;

fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn e820_reserves_the_bios_area_and_skips_the_mmio_gap() {
    let map = e820_map(128 << 20);
    assert_eq!(
        map,
        vec![
            (0, 0x9fc00, E820_RAM),
            (0x9fc00, 0x10_0000 - 0x9fc00, E820_RESERVED),
            (0x10_0000, (128 << 20) - 0x10_0000, E820_RAM),
        ]
    );
    let big = e820_map(5 << 30);
    assert_eq!(big.len(), 4);
    assert_eq!(big[2], (0x10_0000, 0xc000_0000 - 0x10_0000, E820_RAM));
    assert_eq!(big[3], (1 << 32, (5 << 30) - 0xc000_0000, E820_RAM));
}

#[test]
fn initrd_goes_high_and_page_aligned_or_is_refused() {
    let addr = initrd_addr(10_000, 0x20_0000, 64 << 20, 0x37ff_ffff).unwrap();
    assert_eq!(addr % 4096, 0);
    assert!(addr + 10_000 <= 64 << 20 && addr >= 0x20_0000);
    // initrd_addr_max caps it.
    let capped = initrd_addr(4096, 0x20_0000, 1 << 30, 0x0fff_ffff).unwrap();
    assert_eq!(capped, 0x1000_0000 - 4096);
    let err = initrd_addr(64 << 20, 0x20_0000, 64 << 20, u64::MAX).unwrap_err();
    assert!(matches!(err, BootError::InitrdTooLarge { .. }), "{err}");
}

#[test]
fn elf_test_guest_loads_at_its_address_and_enters_in_long_mode() {
    let mem = crate::memory::create(16 << 20).unwrap();
    let image = testing::guest(&[]);
    let f = file_with(&testing::guest_elf(&image));
    let loaded = load_kernel(&mem, f.path(), false).unwrap();
    assert_eq!(
        loaded.entry,
        Entry {
            addr: testing::GUEST_BASE,
            mode: EntryMode::Long
        }
    );
    let mut first = [0u8; 2];
    mem.read_slice(&mut first, GuestAddress(testing::GUEST_BASE))
        .unwrap();
    assert_eq!(first, [0x48, 0xbe]);
}

#[test]
fn garbage_and_missing_kernels_are_named_errors() {
    let mem = crate::memory::create(16 << 20).unwrap();
    let f = file_with(b"this is not a kernel at all, not even close");
    let err = load_kernel(&mem, f.path(), false).unwrap_err();
    assert!(matches!(err, BootError::KernelFormat(_)), "{err}");
    let err = load_kernel(&mem, Path::new("/nonexistent/vmlinux"), false).unwrap_err();
    assert!(matches!(err, BootError::KernelOpen(..)), "{err}");
    // An ELF that is not x86_64 is refused before loading.
    let mut elf = testing::guest_elf(&[0x90; 16]);
    elf[18] = 183; // EM_AARCH64
    let f = file_with(&elf);
    let err = load_kernel(&mem, f.path(), false).unwrap_err();
    assert!(matches!(err, BootError::KernelFormat(_)), "{err}");
    // A big-endian one is refused by the loader.
    let mut elf = testing::guest_elf(&[0x90; 16]);
    elf[5] = 2;
    let f = file_with(&elf);
    let err = load_kernel(&mem, f.path(), false).unwrap_err();
    assert!(matches!(err, BootError::KernelLoad(..)), "{err}");
    // A truncated bzImage header is not a bzImage.
    let f = file_with(&[0u8; 0x100]);
    assert!(matches!(
        load_kernel(&mem, f.path(), false),
        Err(BootError::KernelFormat(_))
    ));
}

#[test]
fn zero_page_carries_cmdline_initrd_and_e820() {
    let mem = crate::memory::create(32 << 20).unwrap();
    let f = file_with(&testing::guest_elf(&testing::guest(&[])));
    let loaded = load_kernel(&mem, f.path(), false).unwrap();
    let initrd = file_with(&[7u8; 5000]);
    let rd = load_initrd(&mem, &loaded, Some(initrd.path()))
        .unwrap()
        .unwrap();
    assert_eq!(rd.1, 5000);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(rd.0 + 4999)).unwrap(), 7);
    write_cmdline(&mem, "console=ttyS0").unwrap();
    write_boot_info(&mem, &loaded, "console=ttyS0", Some(rd), 32 << 20).unwrap();
    let params: boot_params = mem.read_obj(GuestAddress(layout::ZERO_PAGE_START)).unwrap();
    assert_eq!({ params.hdr.cmd_line_ptr }, 0x20000);
    assert_eq!({ params.hdr.ramdisk_image } as u64, rd.0);
    assert_eq!({ params.hdr.boot_flag }, 0xaa55);
    assert_eq!(params.e820_entries, 3);
    assert_eq!({ params.e820_table[2].size }, (32 << 20) - 0x10_0000);
    let mut cl = [0u8; 14];
    mem.read_slice(&mut cl, GuestAddress(layout::CMDLINE_START))
        .unwrap();
    assert_eq!(&cl, b"console=ttyS0\0");
}

#[test]
fn initrd_larger_than_ram_is_refused() {
    let mem = crate::memory::create(16 << 20).unwrap();
    let f = file_with(&testing::guest_elf(&testing::guest(&[])));
    let loaded = load_kernel(&mem, f.path(), false).unwrap();
    let big = tempfile::NamedTempFile::new().unwrap();
    big.as_file().set_len(17 << 20).unwrap();
    let err = load_initrd(&mem, &loaded, Some(big.path())).unwrap_err();
    assert!(matches!(err, BootError::InitrdTooLarge { .. }), "{err}");
}

#[test]
fn cmdline_limits() {
    let mem = crate::memory::create(16 << 20).unwrap();
    assert!(write_cmdline(&mem, &"x".repeat(layout::CMDLINE_MAX)).is_err());
    assert!(write_cmdline(&mem, "a\0b").is_err());
    assert!(write_cmdline(&mem, &"x".repeat(layout::CMDLINE_MAX - 1)).is_ok());
}

#[test]
fn pvh_start_info_points_at_memmap_and_module() {
    let mem = crate::memory::create(32 << 20).unwrap();
    let f = file_with(&testing::guest_elf(&testing::guest(&[])));
    let mut loaded = load_kernel(&mem, f.path(), false).unwrap();
    loaded.entry.mode = EntryMode::Pvh;
    write_boot_info(&mem, &loaded, "x", Some((0x100_0000, 100)), 32 << 20).unwrap();
    let info: hvm_start_info = mem.read_obj(GuestAddress(layout::PVH_INFO_START)).unwrap();
    assert_eq!(info.magic, XEN_HVM_START_MAGIC);
    assert_eq!(info.memmap_entries, 3);
    assert_eq!(info.nr_modules, 1);
    let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
    assert_eq!((m.paddr, m.size), (0x100_0000, 100));
    let e: hvm_memmap_table_entry = mem
        .read_obj(GuestAddress(layout::PVH_MEMMAP_START + 24))
        .unwrap();
    assert_eq!(e.type_, E820_RESERVED);
}
