//! Draining the balloon's queues. Inflate: each chain's readable bytes are little-endian 32-bit
//! PFNs of 4 KiB pages the guest gave up; runs of consecutive pages are discarded together.
//! Deflate: the guest took pages back; they fault in again as zero pages, nothing to do but count.
//! Reporting: each descriptor of a chain is one free range (Linux posts them device-writable);
//! each is discarded on its own, so one bad range costs only itself. Every chain goes back to the
//! driver as used with 0 bytes written, and a pass takes at most a queue's size of chains
//! ([`crate::devices::virtio::pass_budget`]).

use std::io::Read;

use virtio_queue::{DescriptorChain, Reader};

use super::device::{BalloonDevice, BalloonStats};
use super::discard::{discard, PageRuns};
use super::{DEFLATEQ, INFLATEQ, PAGE_SHIFT, REPORTQ};
use crate::devices::virtio::drain_tx_queue;
use crate::memory::GuestMemory;

/// Discards `(addr, len)`, counting what happened under `ok`.
fn discard_counted(mem: &GuestMemory, (addr, len): (u64, u64), stats: &mut BalloonStats) -> bool {
    match discard(mem, addr, len) {
        Ok(()) => true,
        Err(_) => {
            stats.refused += 1;
            false
        }
    }
}

/// Reads the PFNs of one inflate or deflate chain and hands each page's guest address to `page`.
/// A chain whose length is not a whole number of PFNs is read up to its last whole one. Returns
/// `false` when the chain cannot be read at all.
pub fn for_each_pfn(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    mut page: impl FnMut(u64),
) -> bool {
    let Ok(mut reader) = Reader::new(mem, chain) else {
        return false;
    };
    let mut pfn = [0u8; 4];
    while reader.available_bytes() >= pfn.len() {
        if reader.read_exact(&mut pfn).is_err() {
            return false;
        }
        page(u64::from(u32::from_le_bytes(pfn)) << PAGE_SHIFT);
    }
    true
}

/// Discards every range one reporting chain names.
pub fn discard_reported(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    stats: &mut BalloonStats,
) {
    // The chain's iterator follows `next` links (and an indirect table) at most a queue's size
    // of times, so a looping chain ends.
    for desc in chain {
        let range = (desc.addr().0, u64::from(desc.len()));
        if discard_counted(mem, range, stats) {
            stats.reported_ranges += 1;
            stats.reported_bytes += range.1;
        }
    }
}

impl BalloonDevice {
    /// Drains queue `q` (one of [`INFLATEQ`], [`DEFLATEQ`], [`REPORTQ`]).
    pub(super) fn process(&mut self, q: usize) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let stats = &mut self.stats;
        let mem = &active.mem;
        let Some(queue) = active.queues.get_mut(q) else {
            return;
        };
        drain_tx_queue(queue, mem, &active.interrupt, |chain| match q {
            INFLATEQ => {
                let mut runs = PageRuns::default();
                let mut pages = 0;
                let readable = for_each_pfn(mem, chain, |addr| {
                    pages += 1;
                    if let Some(run) = runs.push(addr) {
                        discard_counted(mem, run, stats);
                    }
                });
                if let Some(run) = runs.finish() {
                    discard_counted(mem, run, stats);
                }
                stats.inflated_pages += pages;
                if !readable {
                    stats.bad_chains += 1;
                }
            }
            DEFLATEQ => {
                let mut pages = 0;
                if !for_each_pfn(mem, chain, |_| pages += 1) {
                    stats.bad_chains += 1;
                }
                stats.deflated_pages += pages;
            }
            REPORTQ => discard_reported(mem, chain, stats),
            _ => {}
        });
    }
}
