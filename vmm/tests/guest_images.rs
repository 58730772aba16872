//! hull's real guest kernels load the way hull-vmm expects: the bzImage (`vmlinuz`) at 1 MiB with
//! its 64-bit entry, the vmlinux through its PVH note. No KVM needed: this checks the loader on the
//! images `scripts/build.sh` produced (required under CI, skipped with a message elsewhere).

use std::path::{Path, PathBuf};

use hull_vmm::arch::regs::EntryMode;
use hull_vmm::boot;

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/hull")
}

fn image(env: &str, name: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env).map_or_else(|| images_dir().join(name), PathBuf::from);
    if p.is_file() {
        return Some(p);
    }
    hull_test_support::skip_or_fail(&format!(
        "{} is not built (scripts/build.sh builds it)",
        p.display()
    ));
    None
}

#[test]
fn bzimage_loads_at_1_mib_with_its_64_bit_entry() {
    // Not HULL_KERNEL: scripts/test.sh points that at the vmlinux pods boot.
    let Some(kernel) = image("HULL_BZIMAGE", "vmlinuz") else {
        return;
    };
    let mem = hull_vmm::memory::create(128 << 20).unwrap();
    let loaded = boot::load_kernel(&mem, &kernel, false).unwrap();
    assert_eq!(loaded.entry.addr, 0x10_0200);
    assert_eq!(loaded.entry.mode, EntryMode::Long);
}

#[test]
fn vmlinux_is_entered_through_its_pvh_note() {
    let Some(kernel) = image("HULL_VMLINUX", "vmlinux") else {
        return;
    };
    let mem = hull_vmm::memory::create(128 << 20).unwrap();
    let loaded = boot::load_kernel(&mem, &kernel, false).unwrap();
    assert_eq!(loaded.entry.mode, EntryMode::Pvh);
    assert!(
        (0x100_0000..0x400_0000).contains(&loaded.entry.addr),
        "{:#x}",
        loaded.entry.addr
    );
    let linux64 = boot::load_kernel(&mem, &kernel, true).unwrap();
    assert_eq!(linux64.entry.mode, EntryMode::Long);
    assert_eq!(linux64.entry.addr, 0x100_0000);
}
