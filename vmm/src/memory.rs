//! Guest RAM: one memfd, mapped shared, split into the regions of [`crate::layout`]. Being a
//! memfd lets vhost-user backends (virtiofsd) map the same pages.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;

use vm_memory::{FileOffset, GuestMemoryMmap, GuestRegionMmap};

use crate::layout;

/// Guest memory as hull-vmm uses it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Setting up guest RAM failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// `memfd_create` failed.
    #[error("cannot create the guest memory file")]
    Memfd(#[source] std::io::Error),
    /// Sizing the memfd failed.
    #[error("cannot size the guest memory file to {0} bytes")]
    Truncate(u64, #[source] std::io::Error),
    /// Mapping a region failed.
    #[error("cannot map guest memory")]
    Map(#[source] vm_memory::mmap::FromRangesError),
    /// Building the region collection failed.
    #[error("invalid guest memory regions")]
    Regions(#[source] vm_memory::GuestRegionCollectionError),
    /// Mapping a snapshot's memory file failed.
    #[error("cannot map the snapshot's memory file")]
    MapPrivate(#[source] vm_memory::mmap::MmapRegionError),
    /// Copying a snapshot's memory file failed.
    #[error("cannot copy the snapshot's memory file: {0}")]
    Copy(String),
    /// A size does not fit the host's address space.
    #[error("guest memory of {0} bytes does not fit this host")]
    TooLarge(u64),
}

/// Creates `mem_bytes` of guest RAM backed by one shared memfd.
pub fn create(mem_bytes: u64) -> Result<GuestMemory, MemoryError> {
    let name = CString::new("hull-guest-ram").expect("no NUL in the name");
    // SAFETY: `name` is a valid NUL-terminated string; the return value is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(mem_bytes)
        .map_err(|e| MemoryError::Truncate(mem_bytes, e))?;
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for (start, len) in layout::ram_regions(mem_bytes) {
        let size = usize::try_from(len).map_err(|_| MemoryError::TooLarge(mem_bytes))?;
        let fo = FileOffset::new(file.try_clone().map_err(MemoryError::Memfd)?, offset);
        regions.push(GuestRegionMmap::from_range(start, size, Some(fo)).map_err(MemoryError::Map)?);
        offset += len;
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Regions)
}

/// Maps guest RAM of `mem_bytes` from a snapshot's memory `file` (the memfd's layout)
/// `MAP_PRIVATE`: pages are read from the file when first touched and copied only when the guest
/// writes them, so VMs restored from one file share what they only read. The file itself is
/// never written. Such memory is not a memfd: vhost-user backends cannot map it.
pub fn map_private(file: &File, mem_bytes: u64) -> Result<GuestMemory, MemoryError> {
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for (start, len) in layout::ram_regions(mem_bytes) {
        let size = usize::try_from(len).map_err(|_| MemoryError::TooLarge(mem_bytes))?;
        let fo = FileOffset::new(file.try_clone().map_err(MemoryError::Memfd)?, offset);
        let mapping = vm_memory::MmapRegion::<()>::build(
            Some(fo),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(MemoryError::MapPrivate)?;
        regions.push(GuestRegionMmap::new(mapping, start).ok_or(MemoryError::TooLarge(mem_bytes))?);
        offset += len;
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Regions)
}

/// Guest RAM of `mem_bytes` in a fresh shared memfd ([`create`]) holding a copy of a snapshot's
/// memory `file`: what a restore with a vhost-user device needs (its backend maps the memfd), at
/// the price of a private copy of every page the guest had written. Only the file's data extents
/// are read ([`crate::snapshot::sparse`]): the memfd reads zeros in the holes without a page
/// behind them, so a restored guest holds host memory only for what it had touched (a freshly
/// booted template is mostly zeros). With `checksum`, pages of zeros inside data extents are not
/// written either and the memory checksum of what was read is returned
/// ([`crate::snapshot::sparse::PageCrc`]); without (a file known to be checked), the extents are
/// read straight into guest RAM.
pub fn copy_of(
    file: &File,
    mem_bytes: u64,
    checksum: bool,
) -> Result<(GuestMemory, Option<u32>), MemoryError> {
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};
    let mem = create(mem_bytes)?;
    let copy = |e: std::io::Error| MemoryError::Copy(e.to_string());
    // Each region's place in the file (the memfd's layout) and in the guest.
    let places: Vec<(u64, u64, u64)> = mem
        .iter()
        .map(|r| {
            let at = r.file_offset().map_or(0, FileOffset::start);
            (at, at + r.len(), r.start_addr().0)
        })
        .collect();
    if !checksum {
        for (start, end) in crate::snapshot::sparse::data_extents(file, mem_bytes).map_err(copy)? {
            for (region, &(from, to, _)) in mem.iter().zip(&places) {
                let (s, e) = (start.max(from), end.min(to));
                if s >= e {
                    continue;
                }
                let (at, len) = (
                    usize::try_from(s - from).map_err(|_| MemoryError::TooLarge(mem_bytes))?,
                    usize::try_from(e - s).map_err(|_| MemoryError::TooLarge(mem_bytes))?,
                );
                // SAFETY: `at + len` lies within the region (`s..e` within `from..to`, the
                // region's length), a live mapping `mem` owns; nothing else uses guest RAM yet
                // (no vCPU, no device exists).
                let dst = unsafe { std::slice::from_raw_parts_mut(region.as_ptr().add(at), len) };
                std::os::unix::fs::FileExt::read_exact_at(file, dst, s).map_err(copy)?;
            }
        }
        return Ok((mem, None));
    }
    let crc = crate::snapshot::sparse::scan(file, mem_bytes, |offset, page| {
        let (from, _, guest) = places
            .iter()
            .find(|(s, e, _)| (*s..*e).contains(&offset))
            .ok_or_else(|| std::io::Error::other(format!("offset {offset} is past guest RAM")))?;
        mem.write_slice(page, vm_memory::GuestAddress(guest + (offset - from)))
            .map_err(std::io::Error::other)
    })
    .map_err(copy)?;
    Ok((mem, Some(crc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn memory_is_a_shared_memfd_with_the_layout_regions() {
        let mem = create(64 << 20).unwrap();
        assert_eq!(mem.num_regions(), 1);
        let region = mem.iter().next().unwrap();
        assert!(region.file_offset().is_some());
        mem.write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0xdead_beef
        );
        assert!(mem.write_obj(0u8, GuestAddress(64 << 20)).is_err());
    }

    #[test]
    fn private_mappings_of_one_file_do_not_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let mut bytes = vec![0u8; 32 << 20];
        bytes[0x1000..0x1004].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let a = map_private(&f, 32 << 20).unwrap();
        let b = map_private(&f, 32 << 20).unwrap();
        a.write_obj(1u32, GuestAddress(0x1000)).unwrap();
        assert_eq!(b.read_obj::<u32>(GuestAddress(0x1000)).unwrap(), 7);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_copy_holds_the_file_and_leaves_zero_pages_unbacked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let mut bytes = vec![0u8; 32 << 20];
        bytes[0x1000..0x1004].copy_from_slice(&7u32.to_le_bytes());
        bytes[(32 << 20) - 1] = 9;
        std::fs::write(&path, &bytes).unwrap();
        let (mem, crc) = copy_of(&File::open(&path).unwrap(), 32 << 20, true).unwrap();
        assert_eq!(crc, Some(crate::snapshot::sparse::PageCrc::of(&bytes)));
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(), 7);
        assert_eq!(mem.read_obj::<u8>(GuestAddress((32 << 20) - 1)).unwrap(), 9);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x10_0000)).unwrap(), 0);
        // Two pages written of 8192: the memfd holds about that much.
        let region = mem.iter().next().unwrap();
        let fd = region.file_offset().unwrap().file();
        let blocks = std::os::unix::fs::MetadataExt::blocks(&fd.metadata().unwrap());
        assert!(blocks * 512 <= 64 << 10, "{} bytes allocated", blocks * 512);
    }

    #[test]
    fn an_unchecked_copy_reads_the_data_extents_into_guest_ram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let mut bytes = vec![0u8; 32 << 20];
        bytes[0x1000..0x1004].copy_from_slice(&7u32.to_le_bytes());
        bytes[(20 << 20)..(20 << 20) + 8192].fill(0x5a);
        let f = File::create(&path).unwrap();
        crate::snapshot::sparse::write(&f, &[&bytes]).unwrap();
        let (mem, crc) = copy_of(&File::open(&path).unwrap(), 32 << 20, false).unwrap();
        assert_eq!(crc, None);
        // Only the data pages are backed (read before reading the rest, which would back it).
        let region = mem.iter().next().unwrap();
        let fd = region.file_offset().unwrap().file();
        let blocks = std::os::unix::fs::MetadataExt::blocks(&fd.metadata().unwrap());
        assert!(blocks * 512 <= 64 << 10, "{} bytes allocated", blocks * 512);
        let mut back = vec![0u8; 32 << 20];
        mem.read_slice(&mut back, GuestAddress(0)).unwrap();
        assert!(back == bytes, "the copy differs from the file");
    }
}
