//! Where the guest kernel and initramfs live.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Installation directory of the guest images.
pub const INSTALL_DIR: &str = "/usr/local/share/hull";

/// The kernel and initramfs a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImages {
    /// PVH vmlinux or bzImage; both VMMs boot either.
    pub kernel: PathBuf,
    /// LZ4-compressed cpio with hull-agent as `/init`.
    pub initramfs: PathBuf,
}

/// The ELF kernel with a PVH note, preferred when installed: QEMU and hull-vmm enter it directly
/// in 32-bit protected mode, which skips the bzImage's real-mode loader and its decompression
/// (under TCG a boot to ready takes ~0.87× the time), and QEMU maps the file, so its pages are
/// shared by every pod instead of each QEMU holding a decompressed copy (docs/guest.md).
pub const PVH_KERNEL: &str = "vmlinux";
/// The compressed kernel, the fallback when no vmlinux is installed.
pub const BZIMAGE_KERNEL: &str = "vmlinuz";

impl GuestImages {
    /// The images under `dir`: `vmlinux` when it is there, else `vmlinuz`; `initramfs.img`.
    pub fn in_dir(dir: &Path) -> Self {
        let pvh = dir.join(PVH_KERNEL);
        Self {
            kernel: if pvh.is_file() {
                pvh
            } else {
                dir.join(BZIMAGE_KERNEL)
            },
            initramfs: dir.join("initramfs.img"),
        }
    }

    /// The installed images, each overridable with `HULL_KERNEL` / `HULL_INITRAMFS`.
    pub fn from_env() -> Self {
        let installed = Self::in_dir(Path::new(INSTALL_DIR));
        Self {
            kernel: std::env::var_os("HULL_KERNEL").map_or(installed.kernel, PathBuf::from),
            initramfs: std::env::var_os("HULL_INITRAMFS")
                .map_or(installed.initramfs, PathBuf::from),
        }
    }
}

/// What a kernel file is, as far as the VMMs care: both boot a bzImage and an x86-64 ELF with a
/// PVH entry note (QEMU refuses an ELF without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// A bzImage (`HdrS` at 0x202).
    BzImage,
    /// A 64-bit x86 vmlinux with a PVH entry note.
    PvhElf,
}

/// Why a file is not a kernel hull can boot.
#[derive(Debug, thiserror::Error)]
pub enum KernelFormatError {
    /// The file cannot be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// An ELF, but not a 64-bit x86 one, or one without a PVH entry note.
    #[error("{0} is an ELF kernel without a PVH entry note (or not x86-64): no VMM can enter it")]
    ElfWithoutPvh(PathBuf),
    /// Neither a bzImage nor an ELF.
    #[error("{0} is neither a bzImage nor a PVH vmlinux")]
    Unknown(PathBuf),
}

/// Most program headers a vmlinux is read for (it has a handful).
const MAX_PHDRS: u16 = 64;
/// Largest note segment read (a vmlinux's notes are a few hundred bytes).
const MAX_NOTES: u64 = 64 * 1024;
/// `XEN_ELFNOTE_PHYS32_ENTRY`, the note (owner "Xen") that holds the PVH entry point.
const PVH_NOTE_TYPE: u32 = 18;

impl KernelFormat {
    /// Reads the headers of `path` (not the whole file) to tell what it is.
    pub fn detect(path: &Path) -> Result<Self, KernelFormatError> {
        let read_err = |e| KernelFormatError::Read(path.to_owned(), e);
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let mut head = Vec::with_capacity(0x206);
        file.by_ref()
            .take(0x206)
            .read_to_end(&mut head)
            .map_err(read_err)?;
        if head.starts_with(b"\x7fELF") {
            return match has_pvh_note(&mut file, &head) {
                Ok(true) => Ok(Self::PvhElf),
                Ok(false) => Err(KernelFormatError::ElfWithoutPvh(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    Err(KernelFormatError::ElfWithoutPvh(path.to_owned()))
                }
                Err(e) => Err(read_err(e)),
            };
        }
        if head.len() >= 0x206 && head[0x202..0x206] == *b"HdrS" {
            return Ok(Self::BzImage);
        }
        Err(KernelFormatError::Unknown(path.to_owned()))
    }
}

/// Whether an x86-64 little-endian ELF64 file has a `PT_NOTE` segment holding the PVH entry note.
/// `InvalidData` for a header that is not such an ELF or does not add up.
fn has_pvh_note(file: &mut std::fs::File, head: &[u8]) -> std::io::Result<bool> {
    use hull_guest_image::elf::{self, u32_at, u64_at};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    const PT_NOTE: u32 = 4;
    let header =
        elf::Header::parse(head).ok_or_else(|| bad("not an x86-64 little-endian ELF64"))?;
    if header.phentsize < 56 || header.phnum > MAX_PHDRS {
        return Err(bad("odd program headers"));
    }
    let phentsize = usize::from(header.phentsize);
    let mut phdrs = vec![0u8; phentsize * usize::from(header.phnum)];
    file.seek(SeekFrom::Start(header.phoff))?;
    file.read_exact(&mut phdrs)?;
    for ph in phdrs.chunks_exact(phentsize) {
        if u32_at(ph, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(ph, 8), u64_at(ph, 32));
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s as u64 <= MAX_NOTES)
            .ok_or_else(|| bad("note segment too large"))?;
        let mut notes = vec![0u8; size];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut notes)?;
        if notes_have(&notes, b"Xen\0", PVH_NOTE_TYPE) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the ELF note records in `notes` include one owned by `name` (with its NUL) of `kind`.
fn notes_have(notes: &[u8], name: &[u8], kind: u32) -> bool {
    let align4 = |n: usize| n.div_ceil(4) * 4;
    let mut at = 0;
    while at + 12 <= notes.len() {
        let word = |o: usize| hull_guest_image::elf::u32_at(notes, o) as usize;
        let (namesz, descsz, ntype) = (word(at), word(at + 4), word(at + 8));
        let name_start = at + 12;
        let Some(next) = name_start
            .checked_add(align4(namesz))
            .and_then(|d| d.checked_add(align4(descsz)))
        else {
            return false;
        };
        if name_start + namesz > notes.len() {
            return false;
        }
        if ntype == kind as usize && &notes[name_start..name_start + namesz] == name {
            return true;
        }
        at = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 header with one PT_NOTE program header over `notes`.
    fn elf_with_notes(machine: u16, notes: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        f.extend_from_slice(notes);
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
        n.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn kernel_formats_are_told_apart_by_their_headers() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(
            KernelFormat::detect(&write("bz", &bz)).unwrap(),
            KernelFormat::BzImage
        );
        // The PVH note after another note.
        let mut notes = note(b"GNU\0", 3, &[1; 20]);
        notes.extend(note(b"Xen\0", PVH_NOTE_TYPE, &0x100_0000u32.to_le_bytes()));
        let pvh = write("pvh", &elf_with_notes(62, &notes));
        assert_eq!(KernelFormat::detect(&pvh).unwrap(), KernelFormat::PvhElf);
        // No PVH note, another machine, a truncated header, garbage, a missing file.
        let plain = write("plain", &elf_with_notes(62, &note(b"GNU\0", 3, &[1; 20])));
        let arm = write("arm", &elf_with_notes(183, &notes));
        let short = write("short", b"\x7fELF\x02\x01");
        let junk = write("junk", &[0x55; 4096]);
        for p in [&plain, &arm, &short] {
            let e = KernelFormat::detect(p).unwrap_err();
            assert!(matches!(e, KernelFormatError::ElfWithoutPvh(_)), "{e}");
        }
        let e = KernelFormat::detect(&junk).unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a bzImage nor a PVH vmlinux"),
            "{e}"
        );
        let e = KernelFormat::detect(&dir.path().join("none")).unwrap_err();
        assert!(matches!(e, KernelFormatError::Read(..)), "{e}");
        // A note whose sizes run past the segment ends the scan.
        let mut broken = note(b"Xen\0", 1, &[]);
        broken[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!notes_have(&broken, b"Xen\0", PVH_NOTE_TYPE));
    }

    #[test]
    fn the_pvh_vmlinux_is_preferred_and_the_bzimage_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        // Neither: the bzImage's name, so a missing-kernel error names the usual file.
        assert_eq!(
            GuestImages::in_dir(dir.path()).kernel,
            dir.path().join("vmlinuz")
        );
        std::fs::write(dir.path().join("vmlinuz"), b"bz").unwrap();
        assert_eq!(
            GuestImages::in_dir(dir.path()).kernel,
            dir.path().join("vmlinuz")
        );
        std::fs::write(dir.path().join("vmlinux"), b"elf").unwrap();
        let images = GuestImages::in_dir(dir.path());
        assert_eq!(images.kernel, dir.path().join("vmlinux"));
        assert_eq!(images.initramfs, dir.path().join("initramfs.img"));
    }
}
