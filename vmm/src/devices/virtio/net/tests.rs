//! virtio-net against a mock driver (`virtio_queue::mock`) and a datagram socket in place of the
//! tap: frames both ways, the header, split chains, frames that wait for RX buffers, and hostile
//! chains (too short, write-only, oversized, too-small RX buffers) dropped and counted.

use super::event_handler::rx_header;
use super::test_utils::{TestContext, MAC, WRITE};
use super::{RXQ, TXQ, VIRTIO_ID_NET, VIRTIO_NET_F_MAC, VNET_HDR_LEN};
use crate::devices::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};

fn frame(n: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..n).map(|i| u8::try_from(i % 251).unwrap()));
    f
}

#[test]
fn config_space_holds_the_mac_and_features_are_plain() {
    let ctx = TestContext::new();
    assert_eq!(ctx.dev.device_type(), VIRTIO_ID_NET);
    assert_eq!(ctx.dev.features(), VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC);
    let mut mac = [0u8; 6];
    ctx.dev.read_config(0, &mut mac);
    assert_eq!(mac, MAC);
    let mut past = [0xaau8; 4];
    ctx.dev.read_config(6, &mut past);
    assert_eq!(past, [0; 4]);
    ctx.dev.read_config(u64::MAX, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn a_tx_frame_goes_out_without_its_header() {
    let mut ctx = TestContext::new();
    let f = frame(100);
    ctx.send(&f);
    assert_eq!(ctx.host_recv().unwrap(), f);
    assert_eq!(ctx.used(TXQ), (1, vec![(0, 0)]));
    assert_eq!(ctx.irq.read().unwrap(), 1);
    assert_eq!(ctx.dev.stats().tx_frames, 1);
}

#[test]
fn a_tx_frame_split_over_descriptors_is_joined() {
    let mut ctx = TestContext::new();
    let f = frame(300);
    let hdr = ctx.buffer(&[0; VNET_HDR_LEN], 12);
    let a = ctx.buffer(&f[..7], 7);
    let b = ctx.buffer(&f[7..], u32::try_from(f.len() - 7).unwrap());
    ctx.post(
        TXQ,
        &[
            (hdr, 12, 0),
            (a, 7, 0),
            (b, u32::try_from(f.len() - 7).unwrap(), 0),
        ],
    );
    ctx.dev.queue_notify(1);
    assert_eq!(ctx.host_recv().unwrap(), f);
}

#[test]
fn hostile_tx_chains_are_dropped_and_returned() {
    let mut ctx = TestContext::new();
    // Shorter than the header.
    let short = ctx.buffer(&[0; 5], 5);
    ctx.post(TXQ, &[(short, 5, 0)]);
    // Only a device-writable descriptor: nothing to read.
    let wo = ctx.buffer(&[0; 64], 64);
    ctx.post(TXQ, &[(wo, 64, WRITE)]);
    // A frame larger than the cap (64 KiB + header + 1).
    let big = ctx.buffer(&[], 70_000);
    ctx.post(TXQ, &[(big, 65_535 + 12 + 1, 0)]);
    // A descriptor past the end of guest memory.
    ctx.post(TXQ, &[(0x3f_ff00, 0x1000, 0)]);
    ctx.dev.queue_notify(1);
    assert_eq!(ctx.host_recv(), None);
    let (idx, used) = ctx.used(TXQ);
    assert_eq!(idx, 4);
    assert!(used.iter().all(|&(_, len)| len == 0));
    assert_eq!(ctx.dev.stats().tx_dropped, 4);
    // The device still works.
    ctx.send(&frame(10));
    assert_eq!(ctx.host_recv().unwrap(), frame(10));
}

#[test]
fn an_rx_frame_waits_for_a_buffer_then_arrives_with_its_header() {
    let mut ctx = TestContext::new();
    let f = frame(200);
    ctx.host.send(&f).unwrap();
    ctx.dev.backend_event(0);
    assert_eq!(ctx.used(RXQ).0, 0, "no buffer yet: the frame waits");
    let at = ctx.rx_buffer(2048);
    ctx.dev.queue_notify(0);
    let (idx, used) = ctx.used(RXQ);
    assert_eq!(idx, 1);
    let len = VNET_HDR_LEN + f.len();
    assert_eq!(used[0].1, u32::try_from(len).unwrap());
    assert_eq!(ctx.read(at, VNET_HDR_LEN), rx_header());
    assert_eq!(ctx.read(at + 12, f.len()), f);
    assert_eq!(ctx.dev.stats().rx_frames, 1);
}

#[test]
fn several_rx_frames_fill_several_buffers_in_order() {
    let mut ctx = TestContext::new();
    let bufs: Vec<u64> = (0..3).map(|_| ctx.rx_buffer(1600)).collect();
    for n in [1, 2, 3] {
        ctx.host.send(&frame(n)).unwrap();
    }
    ctx.dev.backend_event(0);
    let (idx, _) = ctx.used(RXQ);
    assert_eq!(idx, 3);
    for (n, at) in [1, 2, 3].iter().zip(&bufs) {
        assert_eq!(ctx.read(at + 12, frame(*n).len()), frame(*n));
    }
}

#[test]
fn an_rx_buffer_too_small_drops_the_frame_not_the_device() {
    let mut ctx = TestContext::new();
    ctx.rx_buffer(64);
    ctx.host.send(&frame(100)).unwrap();
    ctx.dev.backend_event(0);
    assert_eq!(ctx.used(RXQ), (1, vec![(0, 0)]));
    assert_eq!(ctx.dev.stats().rx_dropped, 1);
    let at = ctx.rx_buffer(2048);
    ctx.host.send(&frame(5)).unwrap();
    ctx.dev.backend_event(0);
    assert_eq!(ctx.read(at + 12, frame(5).len()), frame(5));
}

#[test]
fn reset_forgets_the_waiting_frame_and_the_queues() {
    let mut ctx = TestContext::new();
    ctx.host.send(&frame(1)).unwrap();
    ctx.dev.backend_event(0);
    ctx.dev.reset();
    ctx.dev.queue_notify(0);
    ctx.dev.queue_notify(1);
    assert_eq!(ctx.dev.acked_features(), 0);
    assert_eq!(ctx.dev.stats().rx_frames, 0);
}

/// A used ring laid over the available ring with the used index ahead (see the vsock test of
/// the same name): one TX pass takes at most the queue's size of chains.
#[test]
fn a_used_ring_over_the_available_ring_cannot_keep_the_device_busy() {
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Arc;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    use vmm_sys_util::eventfd::EventFd;

    use super::tap::Tap;
    use super::NetDevice;
    use crate::devices::virtio::Interrupt;

    let mem: crate::memory::GuestMemory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
    let (ours, _host) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut dev = NetDevice::with_tap(Tap::from_file(File::from(OwnedFd::from(ours)), "t"), MAC);
    let ring: u32 = 0x3000;
    // Descriptor 0: five bytes, shorter than the virtio-net header. One chain available.
    mem.write_obj(Descriptor::new(0x2000, 5, 0, 0), GuestAddress(0x1000))
        .unwrap();
    mem.write_obj(1u16, GuestAddress(u64::from(ring) + 2))
        .unwrap();
    let mut trap = Queue::new(256).unwrap();
    trap.set_size(4);
    trap.set_desc_table_address(Some(0x1000), Some(0));
    trap.set_avail_ring_address(Some(ring), Some(0));
    trap.set_used_ring_address(Some(ring), Some(0));
    trap.set_next_used(2);
    trap.set_ready(true);
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
    dev.ack_features(VIRTIO_F_VERSION_1);
    // Activation already runs a TX pass.
    dev.activate(
        mem,
        vec![Queue::new(256).unwrap(), trap],
        Interrupt::new(irq),
    )
    .unwrap();
    assert_eq!(dev.stats().tx_dropped, 4);
    dev.queue_notify(1);
    assert_eq!(dev.stats().tx_dropped, 8);
}

/// A snapshot of an activated NIC (issue 19: a template's NIC, which its guest's driver set
/// up): its features and queues go through the state file's JSON into a device on a new tap,
/// as a restore opens one; an RX buffer the guest posted before the snapshot takes the first
/// frame of the new tap, and TX carries on where the saved queue stopped.
#[test]
fn an_activated_nic_restores_onto_a_new_tap_and_carries_on() {
    use crate::devices::virtio::{DeviceSnapshot, Interrupt};
    use std::os::fd::OwnedFd;
    let mut ctx = TestContext::new();
    ctx.send(&frame(10));
    assert_eq!(ctx.host_recv().unwrap(), frame(10));
    let at = ctx.rx_buffer(2048);
    ctx.dev.queue_notify(0);
    let saved = ctx.dev.state().unwrap();
    assert_eq!(saved.acked_features, VIRTIO_F_VERSION_1);
    assert_eq!(saved.queues.len(), 2);
    assert_eq!(saved.queues[TXQ].next_avail, 1);
    assert!(saved.config.is_empty(), "the MAC is the shape's, not state");
    let back: DeviceSnapshot =
        serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();

    let (ours, host) = std::os::unix::net::UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    host.set_nonblocking(true).unwrap();
    let tap = super::tap::Tap::from_file(std::fs::File::from(OwnedFd::from(ours)), "new0");
    let mut dev = super::NetDevice::with_tap(tap, MAC);
    dev.restore(&back).unwrap();
    let queues = back.queues.iter().map(|q| q.to_queue().unwrap()).collect();
    dev.activate(ctx.mem.clone(), queues, Interrupt::new(ctx.irq.clone()))
        .unwrap();
    assert_eq!(dev.state().unwrap(), saved);
    ctx.dev = dev;
    ctx.host = host;

    let f = frame(64);
    ctx.host.send(&f).unwrap();
    ctx.dev.backend_event(0);
    let (idx, used) = ctx.used(RXQ);
    assert_eq!(idx, 1, "the buffer posted before the snapshot");
    assert_eq!(used[0].1, u32::try_from(VNET_HDR_LEN + f.len()).unwrap());
    assert_eq!(ctx.read(at + 12, f.len()), f);
    ctx.send(&frame(20));
    assert_eq!(ctx.host_recv().unwrap(), frame(20));
    assert_eq!(ctx.used(TXQ).0, 2, "TX carries on from the saved queue");
}
