//! Giving guest pages back to the host. A range comes from the guest (a reported free range, a
//! run of inflated PFNs), so it is checked before a host page is touched: page aligned, not
//! empty, and wholly inside one region of guest memory. The host pages are then discarded:
//! `MADV_REMOVE` where the region is a shared file (the memfd: punching the hole frees the pages
//! for every process that maps them; `MADV_DONTNEED` would only drop this process's mapping),
//! `MADV_DONTNEED` where it is private anonymous memory (unit tests).

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::PAGE_SIZE;
use crate::memory::GuestMemory;

/// A range the guest named that cannot be discarded.
#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    /// Start or length is not a multiple of 4 KiB, or the length is zero.
    #[error("range {addr:#x}+{len:#x} is not page aligned or is empty")]
    Unaligned {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// The range is not wholly inside one region of guest memory.
    #[error("range {addr:#x}+{len:#x} is not inside guest memory")]
    OutOfRange {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// The host refused to discard the pages.
    #[error("cannot discard range {addr:#x}+{len:#x}")]
    Madvise {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Discards the host pages behind guest range `[addr, addr + len)` after checking it.
pub fn discard(mem: &GuestMemory, addr: u64, len: u64) -> Result<(), DiscardError> {
    if len == 0 || !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(DiscardError::Unaligned { addr, len });
    }
    let out = || DiscardError::OutOfRange { addr, len };
    let region = mem.find_region(GuestAddress(addr)).ok_or_else(out)?;
    let offset = GuestAddress(addr)
        .checked_offset_from(region.start_addr())
        .ok_or_else(out)?;
    let end = offset.checked_add(len).ok_or_else(out)?;
    if end > region.len() {
        return Err(out());
    }
    let host_len = usize::try_from(len).map_err(|_| out())?;
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(offset))
        .map_err(|_| out())?;
    let advice = if region.file_offset().is_some() {
        libc::MADV_REMOVE
    } else {
        libc::MADV_DONTNEED
    };
    // SAFETY: `host .. host + host_len` lies inside the region's mapping (checked above against
    // the region's length); discarding only replaces the guest's contents with zero pages, which
    // the guest asked for. The return value is checked.
    let rc = unsafe { libc::madvise(host.cast(), host_len, advice) };
    if rc != 0 {
        return Err(DiscardError::Madvise {
            addr,
            len,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Collects consecutive 4 KiB pages (the inflate queue's PFNs) into runs, so a run costs one
/// `madvise` however many PFNs it spans.
#[derive(Debug, Default)]
pub struct PageRuns {
    run: Option<(u64, u64)>,
}

impl PageRuns {
    /// Adds the page at `addr`; returns the run it ends, if `addr` does not extend it.
    pub fn push(&mut self, addr: u64) -> Option<(u64, u64)> {
        match self.run {
            Some((start, len)) if start.checked_add(len) == Some(addr) => {
                self.run = Some((start, len + PAGE_SIZE));
                None
            }
            prev => {
                self.run = Some((addr, PAGE_SIZE));
                prev
            }
        }
    }

    /// The run in progress, if any.
    pub fn finish(&mut self) -> Option<(u64, u64)> {
        self.run.take()
    }
}
