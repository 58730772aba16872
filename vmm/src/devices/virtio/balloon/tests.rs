//! The balloon against a mock driver (`virtio_queue::mock`): reported ranges and inflated pages
//! read back as zeros (on private memory and on hull-vmm's shared memfd, whose pages really go),
//! deflation only counts, and hostile chains (unaligned, empty, past the end, wrapping, looping,
//! unreadable) are refused and counted without touching memory they do not name.

use virtio_queue::desc::{split::Descriptor, RawDescriptor};

use super::discard::{discard, DiscardError, PageRuns};
use super::test_utils::{TestContext, MEM_LEN, NEXT, WRITE};
use super::{
    DEFLATEQ, INFLATEQ, PAGE_SIZE, REPORTQ, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
    VIRTIO_BALLOON_F_REPORTING, VIRTIO_ID_BALLOON,
};
use crate::devices::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};

const MIB2: u64 = 2 << 20;

#[test]
fn features_queues_and_config_space() {
    let mut ctx = TestContext::new();
    assert_eq!(ctx.dev.device_type(), VIRTIO_ID_BALLOON);
    assert_eq!(
        ctx.dev.features(),
        VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_DEFLATE_ON_OOM | VIRTIO_BALLOON_F_REPORTING
    );
    assert_eq!(ctx.dev.features() & (1 << 5), 1 << 5, "reporting is bit 5");
    assert_eq!(
        ctx.dev.features() & (1 << 2),
        1 << 2,
        "deflate-on-OOM is bit 2"
    );
    assert_eq!(ctx.dev.queue_max_sizes().len(), 3);
    let mut cfg = [0xaau8; 8];
    ctx.dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0; 8], "target 0 pages, none in the balloon");
    ctx.dev.write_config(4, &7u32.to_le_bytes());
    ctx.dev.read_config(4, &mut cfg[..4]);
    assert_eq!(cfg[..4], 7u32.to_le_bytes());
    assert_eq!(ctx.dev.actual_pages(), 7);
    // num_pages is the host's; partial writes of actual and writes past the end are ignored.
    ctx.dev.write_config(0, &9u32.to_le_bytes());
    ctx.dev.write_config(4, &[1, 2]);
    ctx.dev.write_config(u64::MAX, &[1, 2, 3, 4]);
    ctx.dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0, 0, 0, 0, 7, 0, 0, 0]);
    let mut past = [0xaau8; 4];
    ctx.dev.read_config(u64::MAX - 1, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn a_reported_range_reads_back_as_zeros_and_its_neighbours_stay() {
    let mut ctx = TestContext::new();
    ctx.fill(MIB2 - PAGE_SIZE, MIB2 + 2 * PAGE_SIZE, 0x5a);
    ctx.post(REPORTQ, &[(MIB2, u32::try_from(MIB2).unwrap(), WRITE)]);
    assert_eq!(ctx.used(REPORTQ), 1);
    assert_eq!(ctx.irq.read().unwrap(), 1);
    assert!(ctx.read(MIB2, MIB2).iter().all(|&b| b == 0));
    assert!(ctx
        .read(MIB2 - PAGE_SIZE, PAGE_SIZE)
        .iter()
        .all(|&b| b == 0x5a));
    assert!(ctx.read(2 * MIB2, PAGE_SIZE).iter().all(|&b| b == 0x5a));
    let s = ctx.dev.stats();
    assert_eq!(
        (s.reported_ranges, s.reported_bytes, s.refused),
        (1, MIB2, 0)
    );
}

#[test]
fn reported_pages_of_the_shared_memfd_leave_the_host() {
    // hull-vmm's own guest RAM: a shared memfd, where only MADV_REMOVE frees the pages.
    let mem = crate::memory::create(64 << 20).unwrap();
    let mut ctx = TestContext::with_memory(mem);
    let at = 8 * MIB2;
    ctx.fill(at, 4 * MIB2, 0x77);
    let before = resident_of(&ctx, at, 4 * MIB2);
    assert_eq!(before, 4 * MIB2 / PAGE_SIZE, "all touched");
    ctx.post(
        REPORTQ,
        &[
            (at, u32::try_from(MIB2).unwrap(), WRITE),
            (at + MIB2, u32::try_from(3 * MIB2).unwrap(), WRITE),
        ],
    );
    assert_eq!(
        resident_of(&ctx, at, 4 * MIB2),
        0,
        "the memfd's pages are gone"
    );
    assert!(ctx.read(at, 4 * MIB2).iter().all(|&b| b == 0));
    assert_eq!(ctx.dev.stats().reported_bytes, 4 * MIB2);
}

/// Pages of `[addr, addr + len)` resident in the host (mincore on the mapping).
fn resident_of(ctx: &TestContext, addr: u64, len: u64) -> u64 {
    use vm_memory::{GuestAddress, GuestMemoryBackend};
    let host = ctx.mem.get_host_address(GuestAddress(addr)).unwrap();
    let pages = usize::try_from(len / PAGE_SIZE).unwrap();
    let mut vec = vec![0u8; pages];
    // SAFETY: `host .. host + len` is inside the test's guest memory mapping; `vec` has one byte
    // per page. The return value is checked.
    let rc = unsafe { libc::mincore(host.cast(), usize::try_from(len).unwrap(), vec.as_mut_ptr()) };
    assert_eq!(rc, 0);
    vec.iter().filter(|&&b| b & 1 == 1).count() as u64
}

#[test]
fn inflated_pfns_are_discarded_and_deflated_ones_only_counted() {
    let mut ctx = TestContext::new();
    let base = 0x20_0000u64;
    ctx.fill(base, 0x10_0000, 0x33);
    // Three consecutive pages, one apart, and one past the end of memory.
    let first = u32::try_from(base / PAGE_SIZE).unwrap();
    let past = u32::try_from(MEM_LEN / PAGE_SIZE).unwrap() + 5;
    let (addr, len) = ctx.pfns(&[first, first + 1, first + 2, first + 10, past]);
    ctx.post(INFLATEQ, &[(addr, len, 0)]);
    assert_eq!(ctx.used(INFLATEQ), 1);
    let zero = |ctx: &TestContext, page: u64| {
        ctx.read(base + page * PAGE_SIZE, PAGE_SIZE)
            .iter()
            .all(|&b| b == 0)
    };
    for page in [0, 1, 2, 10] {
        assert!(zero(&ctx, page), "page {page}");
    }
    for page in [3, 9, 11] {
        assert!(!zero(&ctx, page), "page {page} was not inflated");
    }
    let s = ctx.dev.stats();
    assert_eq!((s.inflated_pages, s.refused), (5, 1));

    ctx.fill(base, PAGE_SIZE, 0x44);
    let (addr, len) = ctx.pfns(&[first, first + 1]);
    ctx.post(DEFLATEQ, &[(addr, len, 0)]);
    assert_eq!(ctx.used(DEFLATEQ), 1);
    assert_eq!(ctx.dev.stats().deflated_pages, 2);
    assert!(!zero(&ctx, 0), "deflating touches nothing");
}

#[test]
fn hostile_reported_ranges_are_refused_without_touching_memory() {
    let mut ctx = TestContext::new();
    ctx.fill(0, MEM_LEN, 0x11);
    let page = u32::try_from(PAGE_SIZE).unwrap();
    let hostile = [
        (MIB2 + 1, page),                      // unaligned start
        (MIB2, page - 1),                      // unaligned length
        (MIB2, 0),                             // empty
        (MEM_LEN - u64::from(page), 2 * page), // runs past the end
        (MEM_LEN, page),                       // starts past the end
        (!(PAGE_SIZE - 1), page),              // wraps around
        (0x1_0000_0000, page),                 // far outside
    ];
    for (addr, len) in hostile {
        ctx.post(REPORTQ, &[(addr, len, WRITE)]);
    }
    assert_eq!(
        ctx.used(REPORTQ),
        u16::try_from(hostile.len()).unwrap(),
        "all returned"
    );
    let s = ctx.dev.stats();
    assert_eq!((s.refused, s.reported_ranges), (hostile.len() as u64, 0));
    // The queues themselves live in the first pages: skip them.
    let mem = ctx.read(0x10_0000, MEM_LEN - 0x10_0000);
    assert!(mem.iter().all(|&b| b == 0x11), "nothing was discarded");
}

#[test]
fn one_bad_range_in_a_chain_costs_only_itself() {
    let mut ctx = TestContext::new();
    ctx.fill(MIB2, MIB2, 0x22);
    let two = u32::try_from(MIB2).unwrap();
    ctx.post(REPORTQ, &[(MEM_LEN, two, WRITE), (MIB2, two, WRITE)]);
    let s = ctx.dev.stats();
    assert_eq!((s.refused, s.reported_ranges), (1, 1));
    assert!(ctx.read(MIB2, MIB2).iter().all(|&b| b == 0));
}

#[test]
fn looping_and_unreadable_chains_end_and_are_returned() {
    let mut ctx = TestContext::new();
    // A reporting chain whose last descriptor links back to its first: the walk is bounded.
    ctx.write_desc(
        REPORTQ,
        0,
        RawDescriptor::from(Descriptor::new(MIB2, 4096, WRITE | NEXT, 1)),
    );
    ctx.write_desc(
        REPORTQ,
        1,
        RawDescriptor::from(Descriptor::new(MIB2, 4096, WRITE | NEXT, 0)),
    );
    ctx.publish(REPORTQ, 0);
    ctx.dev.queue_notify(u16::try_from(REPORTQ).unwrap());
    assert_eq!(ctx.used(REPORTQ), 1);
    assert!(
        ctx.dev.stats().reported_ranges <= 16,
        "bounded by the queue size"
    );
    // An inflate chain whose buffer is past the end of memory, and one that is write-only.
    ctx.post(INFLATEQ, &[(MEM_LEN + 0x1000, 16, 0)]);
    ctx.post(INFLATEQ, &[(MIB2, 16, WRITE)]);
    assert_eq!(ctx.used(INFLATEQ), 2);
    // A head index past the table.
    ctx.publish(DEFLATEQ, 999);
    ctx.dev.queue_notify(u16::try_from(DEFLATEQ).unwrap());
    // Kicks of queues the device does not have.
    ctx.dev.queue_notify(3);
    ctx.dev.queue_notify(u16::MAX);
    // A PFN array cut short keeps its whole PFNs.
    let (addr, _) = ctx.pfns(&[0x300, 0x301]);
    ctx.post(DEFLATEQ, &[(addr, 6, 0)]);
    assert_eq!(ctx.dev.stats().deflated_pages, 1);
}

#[test]
fn nothing_happens_before_activation_or_after_reset() {
    let mut ctx = TestContext::new();
    ctx.dev.reset();
    ctx.fill(MIB2, PAGE_SIZE, 0x66);
    ctx.post(REPORTQ, &[(MIB2, 4096, WRITE)]);
    assert_eq!(ctx.used(REPORTQ), 0);
    assert_eq!(ctx.read(MIB2, 1), [0x66]);
    assert_eq!(ctx.dev.acked_features(), 0);
}

#[test]
fn discard_checks_every_bound() {
    let ctx = TestContext::new();
    assert!(matches!(
        discard(&ctx.mem, 0, 0),
        Err(DiscardError::Unaligned { .. })
    ));
    assert!(matches!(
        discard(&ctx.mem, MEM_LEN, PAGE_SIZE),
        Err(DiscardError::OutOfRange { .. })
    ));
    assert!(matches!(
        discard(&ctx.mem, PAGE_SIZE, !(PAGE_SIZE - 1)),
        Err(DiscardError::OutOfRange { .. })
    ));
    discard(&ctx.mem, MEM_LEN - PAGE_SIZE, PAGE_SIZE).unwrap();
}

#[test]
fn page_runs_join_consecutive_pages() {
    let mut runs = PageRuns::default();
    assert_eq!(runs.push(0x1000), None);
    assert_eq!(runs.push(0x2000), None);
    assert_eq!(runs.push(0x5000), Some((0x1000, 0x2000)));
    assert_eq!(runs.push(!0xfff_u64), Some((0x5000, 0x1000)));
    assert_eq!(runs.push(0), Some((!0xfff_u64, 0x1000)));
    assert_eq!(runs.finish(), Some((0, 0x1000)));
    assert_eq!(runs.finish(), None);
}

#[test]
fn a_host_target_is_in_the_config_space_and_raises_a_config_change() {
    let mut ctx = TestContext::new();
    ctx.dev.write_config(4, &3u32.to_le_bytes());
    assert_eq!(ctx.dev.set_balloon_target(256 * 64), Some(3));
    assert_eq!(ctx.dev.target_pages(), 256 * 64);
    let mut cfg = [0u8; 4];
    ctx.dev.read_config(0, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg), 256 * 64);
    assert_eq!(ctx.irq.read().unwrap(), 1, "the interrupt was raised");
    let status = ctx.dev.active.as_ref().unwrap().interrupt.status();
    assert_eq!(
        status & crate::devices::virtio::INT_CONFIG,
        crate::devices::virtio::INT_CONFIG
    );
    // The target outlives a driver reset; a device not yet active raises nothing.
    ctx.dev.reset();
    ctx.dev.read_config(0, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg), 256 * 64);
    assert_eq!(ctx.dev.set_balloon_target(0), Some(0));
    assert!(ctx.irq.read().is_err(), "no interrupt without a driver");
}

/// A snapshot's balloon (issue 19): the target, `actual`, the accepted features and the three
/// queues survive a round trip through the state file's JSON into a fresh device, which then
/// carries on with the queues where the saved one stopped (a report after the restore is used
/// and discarded).
#[test]
fn balloon_state_round_trips_and_reporting_carries_on() {
    use crate::devices::virtio::{DeviceSnapshot, Interrupt};
    let mut ctx = TestContext::new();
    assert_eq!(ctx.dev.set_balloon_target(64), Some(0));
    ctx.dev.write_config(4, &16u32.to_le_bytes());
    ctx.post(REPORTQ, &[(MIB2, u32::try_from(MIB2).unwrap(), WRITE)]);
    assert_eq!(ctx.used(REPORTQ), 1);
    let saved = ctx.dev.state().unwrap();
    assert_eq!(saved.config, vec![64, 16]);
    assert_eq!(saved.queues.len(), 3);
    assert_eq!(saved.queues[REPORTQ].next_avail, 1);
    let json = serde_json::to_vec(&saved).unwrap();
    let back: DeviceSnapshot = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, saved);

    let mut restored = super::BalloonDevice::new();
    restored.restore(&back).unwrap();
    let queues = back.queues.iter().map(|q| q.to_queue().unwrap()).collect();
    restored
        .activate(ctx.mem.clone(), queues, Interrupt::new(ctx.irq.clone()))
        .unwrap();
    assert_eq!(restored.state().unwrap(), saved);
    let mut cfg = [0u8; 8];
    restored.read_config(0, &mut cfg);
    assert_eq!(cfg, [64, 0, 0, 0, 16, 0, 0, 0], "target and actual");
    assert_eq!(
        restored.acked_features(),
        VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_REPORTING | VIRTIO_BALLOON_F_DEFLATE_ON_OOM
    );
    ctx.dev = restored;
    ctx.fill(2 * MIB2, MIB2, 0x5a);
    ctx.post(REPORTQ, &[(2 * MIB2, u32::try_from(MIB2).unwrap(), WRITE)]);
    assert_eq!(ctx.used(REPORTQ), 2, "the restored queue carries on");
    assert!(ctx.read(2 * MIB2, MIB2).iter().all(|&b| b == 0));
    assert_eq!(ctx.dev.stats().reported_ranges, 1);
}

/// A state that is not a balloon's (no config words, or the wrong number) is refused.
#[test]
fn a_balloon_state_without_its_config_words_is_refused() {
    let ctx = TestContext::new();
    let mut s = ctx.dev.state().unwrap();
    s.config.clear();
    let mut fresh = super::BalloonDevice::new();
    assert!(fresh.restore(&s).unwrap_err().contains("2 config words"));
    s.config = vec![1, 2, 3];
    assert!(fresh.restore(&s).unwrap_err().contains("this one 3"));
}
