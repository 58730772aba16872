//! virtio-balloon, for memory given back to the host: the guest reports free memory and gives up
//! pages, and hull-vmm discards their host pages so a pod that freed memory stops costing it.
//!
//! Three queues, no stats queue: inflate (PFNs the guest gives up), deflate (PFNs it takes back)
//! and the free page reporting queue (`VIRTIO_BALLOON_F_REPORTING`: each descriptor of a chain is
//! one free range, 2 MiB or more in Linux). Inflated pages and reported ranges are discarded with
//! [`discard::discard`]: `MADV_REMOVE` on hull-vmm's shared memfd (which frees the pages for
//! every process mapping them, virtiofsd included), `MADV_DONTNEED` on private memory. The guest
//! finds zero pages there when it touches them again. `VIRTIO_BALLOON_F_DEFLATE_ON_OOM` lets the
//! guest take balloon pages back before its OOM killer runs (docs/balloon.md).
//!
//! [`device`] holds the virtio state and config space, [`event_handler`] drains the queues,
//! [`discard`] checks each range against guest memory before a host page is touched: every
//! address and length comes from the guest, so a range that is unaligned, empty, past the end of
//! a region or across a hole is refused and counted, never trusted.

pub mod device;
pub mod discard;
pub mod event_handler;
#[cfg(test)]
pub mod test_utils;
#[cfg(test)]
mod tests;

pub use device::BalloonDevice;
pub use discard::DiscardError;

/// virtio device id of a memory balloon.
pub const VIRTIO_ID_BALLOON: u32 = 5;
/// `VIRTIO_BALLOON_F_DEFLATE_ON_OOM`: the guest may deflate the balloon when it runs out of
/// memory, rather than OOM-kill.
pub const VIRTIO_BALLOON_F_DEFLATE_ON_OOM: u64 = 1 << 2;
/// `VIRTIO_BALLOON_F_REPORTING`: the free page reporting queue exists.
pub const VIRTIO_BALLOON_F_REPORTING: u64 = 1 << 5;
/// Index of the inflate queue (driver → device: PFNs given up).
pub const INFLATEQ: usize = 0;
/// Index of the deflate queue (driver → device: PFNs taken back).
pub const DEFLATEQ: usize = 1;
/// Index of the reporting queue. Without a stats or free-page-hint queue, Linux numbers the
/// queues it uses in order, so the reporting queue follows the deflate queue.
pub const REPORTQ: usize = 2;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// The balloon's page: PFNs on the inflate and deflate queues count 4 KiB pages whatever the
/// guest's own page size.
pub const PAGE_SHIFT: u32 = 12;
/// 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
