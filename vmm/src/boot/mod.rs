//! Loading a guest: the kernel (a bzImage, or an ELF vmlinux — entered through its PVH note when
//! it has one), the initrd, the command line, and the boot information the kernel reads first:
//! the zero page with its e820 map (Linux 64-bit boot protocol) or `hvm_start_info` with its
//! memory map (PVH).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::arch::regs::EntryMode;
use crate::layout;
use crate::memory::GuestMemory;

/// Loading the guest failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file cannot be opened or read.
    #[error("cannot read kernel {0}")]
    KernelOpen(PathBuf, #[source] std::io::Error),
    /// The kernel is neither an ELF vmlinux nor a bzImage.
    #[error("kernel {0} is neither an x86_64 ELF vmlinux nor a bzImage")]
    KernelFormat(PathBuf),
    /// linux-loader refused the kernel.
    #[error("cannot load kernel {0} into guest memory")]
    KernelLoad(PathBuf, #[source] linux_loader::loader::Error),
    /// The kernel ends beyond guest RAM.
    #[error("kernel needs memory up to {end:#x}, guest RAM ends at {ram_end:#x}")]
    KernelTooLarge {
        /// End of the loaded kernel.
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
    /// The initrd file cannot be opened or read.
    #[error("cannot read initrd {0}")]
    InitrdOpen(PathBuf, #[source] std::io::Error),
    /// The initrd does not fit between the kernel and the end of RAM.
    #[error(
        "initrd of {size} bytes does not fit in guest RAM ({room} bytes free above the kernel)"
    )]
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// Room there is.
        room: u64,
    },
    /// The command line is too long or holds a NUL.
    #[error("kernel command line is invalid: {0}")]
    Cmdline(String),
    /// Writing to guest memory failed.
    #[error("cannot write boot information to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Guest-physical entry point.
    pub addr: u64,
    /// CPU mode at entry.
    pub mode: EntryMode,
}

/// An e820 memory type.
pub const E820_RAM: u32 = 1;
/// An e820 reserved range.
pub const E820_RESERVED: u32 = 2;

/// The guest's memory map: low RAM, the reserved EBDA/BIOS area, high RAM, RAM above 4 GiB.
pub fn e820_map(mem_bytes: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, layout::EBDA_START, E820_RAM),
        (
            layout::EBDA_START,
            layout::HIMEM_START - layout::EBDA_START,
            E820_RESERVED,
        ),
    ];
    for (start, len) in layout::ram_regions(mem_bytes) {
        let s = start.0.max(layout::HIMEM_START);
        let e = start.0 + len;
        if e > s {
            map.push((s, e - s, E820_RAM));
        }
    }
    map
}

enum Format {
    Elf,
    BzImage,
}

fn detect(path: &Path, file: &mut File) -> Result<Format, BootError> {
    let io = |e| BootError::KernelOpen(path.to_owned(), e);
    let mut head = [0u8; 0x206];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let n = file.read(&mut head).map_err(io)?;
    if n >= 20 && head[..4] == *b"\x7fELF" {
        // linux-loader checks neither the class nor the machine: a 32-bit or non-x86 ELF
        // would be loaded and then crash the guest.
        const ELFCLASS64: u8 = 2;
        const EM_X86_64: u16 = 62;
        if head[4] == ELFCLASS64 && u16::from_le_bytes([head[18], head[19]]) == EM_X86_64 {
            return Ok(Format::Elf);
        }
        return Err(BootError::KernelFormat(path.to_owned()));
    }
    if n >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        return Ok(Format::BzImage);
    }
    Err(BootError::KernelFormat(path.to_owned()))
}

/// A guest after loading: where it starts and what the boot information needs.
#[derive(Debug)]
pub struct Loaded {
    /// Entry point and mode.
    pub entry: Entry,
    loader: KernelLoaderResult,
}

/// Loads `kernel` into `mem`. A vmlinux with a PVH note is entered through it unless
/// `prefer_linux64` asks for its 64-bit entry point.
pub fn load_kernel(
    mem: &GuestMemory,
    kernel: &Path,
    prefer_linux64: bool,
) -> Result<Loaded, BootError> {
    let mut file = File::open(kernel).map_err(|e| BootError::KernelOpen(kernel.to_owned(), e))?;
    let load_err = |e| BootError::KernelLoad(kernel.to_owned(), e);
    let himem = Some(GuestAddress(layout::HIMEM_START));
    let (loader, entry) = match detect(kernel, &mut file)? {
        Format::Elf => {
            let r = Elf::load(mem, None, &mut file, himem).map_err(load_err)?;
            let entry = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) if !prefer_linux64 => Entry {
                    addr: addr.0,
                    mode: EntryMode::Pvh,
                },
                _ => Entry {
                    addr: r.kernel_load.0,
                    mode: EntryMode::Long,
                },
            };
            (r, entry)
        }
        Format::BzImage => {
            let r = BzImage::load(mem, None, &mut file, himem).map_err(load_err)?;
            // The 64-bit entry point is 0x200 past the protected-mode kernel's start.
            let entry = Entry {
                addr: r.kernel_load.0 + 0x200,
                mode: EntryMode::Long,
            };
            (r, entry)
        }
    };
    let ram_end = low_ram_end(mem);
    if loader.kernel_end > ram_end {
        return Err(BootError::KernelTooLarge {
            end: loader.kernel_end,
            ram_end,
        });
    }
    Ok(Loaded { entry, loader })
}

fn low_ram_end(mem: &GuestMemory) -> u64 {
    (mem.last_addr().0 + 1).min(layout::MMIO_GAP_START)
}

/// Where an initrd of `size` bytes goes: page aligned, as high in low RAM as `max_addr` allows,
/// above `kernel_end`.
pub fn initrd_addr(
    size: u64,
    kernel_end: u64,
    ram_end: u64,
    max_addr: u64,
) -> Result<u64, BootError> {
    let top = ram_end.min(max_addr.saturating_add(1));
    let floor = kernel_end.max(layout::HIMEM_START).next_multiple_of(4096);
    let room = top.saturating_sub(floor);
    if size > room {
        return Err(BootError::InitrdTooLarge { size, room });
    }
    Ok((top - size) & !0xfff)
}

/// Loads `initrd` (if any); returns its guest address and size.
pub fn load_initrd(
    mem: &GuestMemory,
    loaded: &Loaded,
    initrd: Option<&Path>,
) -> Result<Option<(u64, u64)>, BootError> {
    let Some(path) = initrd else { return Ok(None) };
    let io = |e| BootError::InitrdOpen(path.to_owned(), e);
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let max = loaded
        .loader
        .setup_header
        .map_or(0xffff_ffff, |h| u64::from(h.initrd_addr_max));
    let max = if max == 0 { 0x37ff_ffff } else { max };
    let addr = initrd_addr(size, loaded.loader.kernel_end, low_ram_end(mem), max)?;
    let len = usize::try_from(size).map_err(|_| BootError::InitrdTooLarge { size, room: 0 })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| io(std::io::Error::other(e)))?;
    Ok(Some((addr, size)))
}

/// Checks and writes the command line.
pub fn write_cmdline(mem: &GuestMemory, cmdline: &str) -> Result<(), BootError> {
    if cmdline.len() >= layout::CMDLINE_MAX {
        return Err(BootError::Cmdline(format!(
            "{} bytes, at most {}",
            cmdline.len(),
            layout::CMDLINE_MAX - 1
        )));
    }
    if cmdline.contains('\0') {
        return Err(BootError::Cmdline("contains a NUL byte".into()));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE_START))
        .map_err(BootError::Memory)
}

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// Writes the zero page (Linux 64-bit boot protocol) or `hvm_start_info` (PVH).
#[allow(clippy::cast_possible_truncation)] // addresses below 4 GiB by layout
pub fn write_boot_info(
    mem: &GuestMemory,
    loaded: &Loaded,
    cmdline: &str,
    initrd: Option<(u64, u64)>,
    mem_bytes: u64,
) -> Result<(), BootError> {
    let map = e820_map(mem_bytes);
    match loaded.entry.mode {
        EntryMode::Long => {
            let mut params = boot_params::default();
            if let Some(hdr) = loaded.loader.setup_header {
                params.hdr = hdr;
            } else {
                params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
                params.hdr.header = KERNEL_HDR_MAGIC;
                params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
            }
            params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
            params.hdr.cmd_line_ptr = layout::CMDLINE_START as u32;
            params.hdr.cmdline_size = (cmdline.len() + 1) as u32;
            if let Some((addr, size)) = initrd {
                params.hdr.ramdisk_image = addr as u32;
                params.hdr.ramdisk_size = size as u32;
            }
            for (i, (addr, size, kind)) in map.iter().enumerate() {
                params.e820_table[i] = boot_e820_entry {
                    addr: *addr,
                    size: *size,
                    r#type: *kind,
                };
            }
            params.e820_entries = map.len() as u8;
            mem.write_obj(params, GuestAddress(layout::ZERO_PAGE_START))
                .map_err(BootError::Memory)
        }
        EntryMode::Pvh => {
            let mut info = hvm_start_info {
                magic: XEN_HVM_START_MAGIC,
                version: 1,
                cmdline_paddr: layout::CMDLINE_START,
                memmap_paddr: layout::PVH_MEMMAP_START,
                memmap_entries: map.len() as u32,
                ..Default::default()
            };
            for (i, (addr, size, kind)) in map.iter().enumerate() {
                let e = hvm_memmap_table_entry {
                    addr: *addr,
                    size: *size,
                    type_: *kind,
                    reserved: 0,
                };
                mem.write_obj(e, GuestAddress(layout::PVH_MEMMAP_START + 24 * i as u64))
                    .map_err(BootError::Memory)?;
            }
            if let Some((addr, size)) = initrd {
                let module = hvm_modlist_entry {
                    paddr: addr,
                    size,
                    ..Default::default()
                };
                mem.write_obj(module, GuestAddress(layout::PVH_MODLIST_START))
                    .map_err(BootError::Memory)?;
                info.nr_modules = 1;
                info.modlist_paddr = layout::PVH_MODLIST_START;
            }
            mem.write_obj(info, GuestAddress(layout::PVH_INFO_START))
                .map_err(BootError::Memory)
        }
    }
}

#[cfg(test)]
mod tests;
