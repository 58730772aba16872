//! The vsock device against a mock driver: connection set-up both ways, data, credit, RST and
//! hostile packets.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use virtio_queue::desc::split::Descriptor;

use super::connection::BUF_ALLOC;
use super::muxer::{guest_to_host_path, LOCAL_PORT_BASE, MAX_CONTROL};
use super::packet::{Header, Op, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND};
use super::test_utils::{guest_hdr, TestContext, GUEST_CID};
use crate::devices::virtio::VirtioDevice;

fn ops(pkts: &[(Header, Vec<u8>)]) -> Vec<u16> {
    pkts.iter().map(|(h, _)| h.op).collect()
}

fn listen(ctx: &TestContext, port: u32) -> UnixListener {
    let path = guest_to_host_path(&ctx.uds(), port);
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(path).unwrap()
}

/// Guest connects to host port 1025 from guest port 5000; returns the host's end.
fn guest_connect(ctx: &mut TestContext) -> UnixStream {
    let l = listen(ctx, 1025);
    ctx.send(guest_hdr(Op::Request, 5000, 1025, 0), &[]);
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let got = ctx.received();
    assert_eq!(ops(&got), vec![Op::Response as u16]);
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (1025, 5000));
    assert_eq!((got[0].0.src_cid, got[0].0.dst_cid), (2, GUEST_CID));
    s
}

#[test]
fn config_space_holds_the_cid_and_features_are_version_1() {
    let ctx = TestContext::new();
    assert_eq!(ctx.dev.device_type(), 19);
    assert_eq!(ctx.dev.features(), 1 << 32);
    let mut cid = [0u8; 8];
    ctx.dev.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
    let mut hi = [0xffu8; 4];
    ctx.dev.read_config(4, &mut hi);
    assert_eq!(hi, [0; 4]);
    let mut past = [0xffu8; 4];
    ctx.dev.read_config(6, &mut past);
    assert_eq!(past, [0; 4], "reads past the config space are zero");
    ctx.dev.read_config(u64::MAX, &mut past);
}

#[test]
fn guest_connection_lands_on_the_suffixed_socket_and_carries_data_both_ways() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    let mut host = guest_connect(&mut ctx);

    ctx.send(guest_hdr(Op::Rw, 5000, 1025, 4), b"ping");
    let mut got = [0u8; 4];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");

    host.write_all(b"pong").unwrap();
    let mut pkts = Vec::new();
    ctx.pump_until(|c| {
        pkts.extend(c.received());
        !pkts.is_empty()
    });
    assert_eq!(pkts[0].0.op(), Some(Op::Rw));
    assert_eq!(pkts[0].1, b"pong");
    assert_eq!(pkts[0].0.fwd_cnt, 4, "host consumed the guest's 4 bytes");
    assert_ne!(ctx.irq.read().unwrap(), 0, "the guest was interrupted");
}

#[test]
fn host_connect_gets_ok_after_the_guest_accepts() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    let mut host = UnixStream::connect(ctx.uds()).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT 1024\n").unwrap();
    let mut pkts = Vec::new();
    ctx.pump_until(|c| {
        pkts.extend(c.received());
        !pkts.is_empty()
    });
    let req = pkts[0].0;
    assert_eq!(req.op(), Some(Op::Request));
    assert_eq!((req.src_port, req.dst_port), (LOCAL_PORT_BASE, 1024));

    let mut resp = guest_hdr(Op::Response, 1024, LOCAL_PORT_BASE, 0);
    resp.buf_alloc = 4096;
    ctx.send(resp, &[]);
    let mut line = [0u8; 14];
    host.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"OK 1073741824\n");

    host.write_all(b"hello").unwrap();
    let mut pkts = Vec::new();
    ctx.pump_until(|c| {
        pkts.extend(c.received());
        !pkts.is_empty()
    });
    assert_eq!(pkts[0].1, b"hello");
    assert_eq!(ctx.dev.muxer().connections(), 1);
}

#[test]
fn bad_connect_lines_close_the_host_stream() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(2, 4096);
    let mut host = UnixStream::connect(ctx.uds()).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT nope\n").unwrap();
    ctx.pump_until(|c| c.dev.muxer().stats().bad_connect == 1);
    let mut b = [0u8; 1];
    assert_eq!(host.read(&mut b).unwrap(), 0, "closed");
    assert!(ctx.received().is_empty());
}

#[test]
fn request_to_a_port_nobody_listens_on_is_reset() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(2, 4096);
    ctx.send(guest_hdr(Op::Request, 5000, 7777, 0), &[]);
    let pkts = ctx.received();
    assert_eq!(ops(&pkts), vec![Op::Rst as u16]);
    assert_eq!((pkts[0].0.src_port, pkts[0].0.dst_port), (7777, 5000));
}

#[test]
fn packets_for_no_connection_or_with_wrong_addressing_are_reset() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    ctx.send(guest_hdr(Op::Rw, 1, 2, 3), b"abc");
    let mut wrong_cid = guest_hdr(Op::Request, 1, 2, 0);
    wrong_cid.src_cid = 99;
    ctx.send(wrong_cid, &[]);
    let mut wrong_dst = guest_hdr(Op::Request, 1, 2, 0);
    wrong_dst.dst_cid = 7;
    ctx.send(wrong_dst, &[]);
    let mut dgram = guest_hdr(Op::Request, 1, 2, 0);
    dgram.type_ = 2;
    ctx.send(dgram, &[]);
    let mut unknown = guest_hdr(Op::Rw, 1, 2, 0);
    unknown.op = 42;
    ctx.send(unknown, &[]);
    ctx.send(guest_hdr(Op::CreditRequest, 1, 2, 0), &[]);
    // An RST for nothing is not answered (no RST storms).
    ctx.send(guest_hdr(Op::Rst, 1, 2, 0), &[]);
    assert_eq!(ops(&ctx.received()), vec![Op::Rst as u16; 6]);
    assert_eq!(ctx.tx_used(), 7);
}

#[test]
fn malformed_tx_chains_are_consumed_without_harm() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    // Shorter than a header.
    ctx.send_raw(&[Descriptor::new(0x10_0000, 10, 0, 0)]);
    // Outside guest memory.
    ctx.send_raw(&[Descriptor::new(0xdead_0000_0000, 4096, 0, 0)]);
    // A length larger than the chain holds: RST to the named connection.
    let mut lying = guest_hdr(Op::Rw, 1, 2, 1000);
    lying.len = 1000;
    ctx.send(lying, b"short");
    // A length beyond the payload cap.
    let mut huge = guest_hdr(Op::Rw, 1, 2, 0);
    huge.len = MAX_PAYLOAD + 1;
    ctx.send(huge, &[]);
    assert_eq!(ctx.tx_used(), 4);
    assert_eq!(ctx.dev.stats().malformed_tx, 4);
    assert_eq!(ops(&ctx.received()), vec![Op::Rst as u16; 2]);
}

/// A guest that floods the TX queue with packets that each call for an RST and posts no RX
/// buffer: the answers waiting for it stop at the cap (they grew without end before), a host
/// CONNECT meanwhile is refused instead of waiting for a REQUEST the guest could not get, and
/// once the guest reads again the device answers as before.
#[test]
fn answers_to_a_guest_that_never_reads_are_capped() {
    let mut ctx = TestContext::new();
    let cap = u64::try_from(MAX_CONTROL).unwrap();
    for _ in 0..3 * cap {
        ctx.send(guest_hdr(Op::Rw, 1, 2, 0), &[]);
    }
    assert_eq!(ctx.tx_used(), u16::try_from(3 * cap % 65536).unwrap());
    assert_eq!(ctx.dev.muxer().pending_control(), MAX_CONTROL);
    assert_eq!(ctx.dev.muxer().stats().control_dropped, 2 * cap);
    let mut host = UnixStream::connect(ctx.uds()).unwrap();
    host.write_all(b"CONNECT 1024\n").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ctx.dev.process_backend();
    let mut buf = [0u8; 16];
    assert_eq!(host.read(&mut buf).unwrap(), 0, "refused: closed");
    assert_eq!(ctx.dev.muxer().connections(), 0);
    // At most 8 buffers at a time: virtio-queue's mock puts the used ring over the second half
    // of a 16-entry available ring.
    ctx.add_rx_buffers(8, 4096);
    ctx.dev.queue_notify(0);
    assert_eq!(ops(&ctx.received()), vec![Op::Rst as u16; 8]);
    assert_eq!(ctx.dev.muxer().pending_control(), MAX_CONTROL - 8);
}

#[test]
fn rx_buffers_too_small_for_a_header_are_returned_empty() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(1, 8);
    ctx.add_rx_buffers(1, 4096);
    ctx.send(guest_hdr(Op::Request, 5000, 7777, 0), &[]);
    assert_eq!(ctx.dev.stats().bad_rx_buffers, 1);
}

#[test]
fn host_data_respects_the_guest_credit() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(16, 4096);
    let l = listen(&ctx, 1025);
    let mut req = guest_hdr(Op::Request, 5000, 1025, 0);
    req.buf_alloc = 1000;
    ctx.send(req, &[]);
    let (mut host, _) = l.accept().unwrap();
    assert_eq!(ops(&ctx.received()), vec![Op::Response as u16]);
    host.write_all(&[7u8; 3000]).unwrap();
    let mut total = 0;
    for _ in 0..50 {
        ctx.dev.process_backend();
        total += ctx.received().iter().map(|(_, p)| p.len()).sum::<usize>();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(total, 1000, "no more than the credit");
    let mut update = guest_hdr(Op::CreditUpdate, 5000, 1025, 0);
    update.buf_alloc = 1000;
    update.fwd_cnt = 1000;
    ctx.send(update, &[]);
    total += ctx.received().iter().map(|(_, p)| p.len()).sum::<usize>();
    assert_eq!(total, 2000);
}

#[test]
fn a_guest_that_overruns_its_credit_is_reset() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(16, 4096);
    let _host = guest_connect(&mut ctx);
    // The host never reads: socket buffer, then hull-vmm's BUF_ALLOC, then RST.
    let chunk = vec![1u8; 60 * 1024];
    let mut reset = false;
    for _ in 0..(2 * BUF_ALLOC as usize / chunk.len() + 16) {
        ctx.send(guest_hdr(Op::Rw, 5000, 1025, 60 * 1024), &chunk);
        if ctx.received().iter().any(|(h, _)| h.op() == Some(Op::Rst)) {
            reset = true;
            break;
        }
    }
    // Hosts with large socket buffers may absorb it all; then there must be no connection loss.
    assert!(reset || ctx.dev.muxer().connections() == 1);
    if reset {
        assert_eq!(ctx.dev.muxer().connections(), 0);
    }
}

#[test]
fn full_shutdown_from_the_guest_resets_and_closes_the_host_side() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    let mut host = guest_connect(&mut ctx);
    let mut shut = guest_hdr(Op::Shutdown, 5000, 1025, 0);
    shut.flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
    ctx.send(shut, &[]);
    assert_eq!(ops(&ctx.received()), vec![Op::Rst as u16]);
    let mut b = [0u8; 1];
    assert_eq!(host.read(&mut b).unwrap(), 0);
    assert_eq!(ctx.dev.muxer().connections(), 0);
}

#[test]
fn host_close_reaches_the_guest_as_shutdown() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    let host = guest_connect(&mut ctx);
    drop(host);
    let mut pkts = Vec::new();
    ctx.pump_until(|c| {
        pkts.extend(c.received());
        !pkts.is_empty()
    });
    assert_eq!(pkts[0].0.op(), Some(Op::Shutdown));
    assert_eq!(pkts[0].0.flags, SHUTDOWN_SEND);
}

#[test]
fn guest_rst_and_device_reset_drop_connections() {
    let mut ctx = TestContext::new();
    ctx.add_rx_buffers(8, 4096);
    let mut host = guest_connect(&mut ctx);
    ctx.send(guest_hdr(Op::Rst, 5000, 1025, 0), &[]);
    assert_eq!(ctx.dev.muxer().connections(), 0);
    assert!(ctx.received().is_empty(), "RST is not answered");
    let mut b = [0u8; 1];
    assert_eq!(host.read(&mut b).unwrap(), 0);

    let _host2 = guest_connect(&mut ctx);
    assert_eq!(ctx.dev.muxer().connections(), 1);
    ctx.dev.reset();
    assert_eq!(ctx.dev.muxer().connections(), 0);
}

/// The state the `virtqueue` fuzz target found: a used ring laid over the available ring, the
/// device's used index ahead of its available one, so every used entry the device writes makes
/// one more chain available. One pass now takes at most the queue's size of chains and returns
/// to the event loop (before, it never returned).
#[test]
fn a_used_ring_over_the_available_ring_cannot_keep_the_device_busy() {
    use crate::devices::virtio::{Interrupt, VIRTIO_F_VERSION_1};
    use std::sync::Arc;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    use vmm_sys_util::eventfd::EventFd;

    let mem: crate::memory::GuestMemory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut dev = super::VsockDevice::new(GUEST_CID, dir.path().join("v.sock")).unwrap();
    let ring: u32 = 0x3000;
    // Descriptor 0: ten bytes, too short for a header. One chain available (head 0).
    mem.write_obj(Descriptor::new(0x2000, 10, 0, 0), GuestAddress(0x1000))
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
    let idle = || Queue::new(256).unwrap();
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
    dev.ack_features(VIRTIO_F_VERSION_1);
    dev.activate(mem, vec![idle(), trap, idle()], Interrupt::new(irq))
        .unwrap();
    dev.queue_notify(1);
    assert_eq!(dev.stats().malformed_tx, 4);
    dev.queue_notify(1);
    assert_eq!(dev.stats().malformed_tx, 8, "the next kick, the next pass");
}
