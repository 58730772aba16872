//! Test guests that speak vsock through hull-vmm's real queues: [`vsock_guest`] connects to host
//! port 1025 (`<uds>_1025`) and sends "ping"; [`accepting_guest`] accepts the host's
//! `CONNECT 1024` and sends "hi!!". Each echoes what the host sends back on the console.

use hull_vmm::devices::virtio::mmio::reg;
use hull_vmm::devices::virtio::vsock::packet::{Header, Op, TYPE_STREAM};
use hull_vmm::testing::{guest, poke, Cmd, SCRATCH};

use super::{desc, queue_base, w};

const RX_BUF: u64 = SCRATCH + 0x1000;
const TX_BUF: u64 = SCRATCH + 0x3000;

fn hdr(op: Op, len: u32) -> [u8; 44] {
    hdr_ports(op, len, 5000, 1025)
}

fn hdr_ports(op: Op, len: u32, src_port: u32, dst_port: u32) -> [u8; 44] {
    Header {
        src_cid: 3,
        dst_cid: 2,
        src_port,
        dst_port,
        len,
        type_: TYPE_STREAM,
        op: op as u16,
        flags: 0,
        buf_alloc: 4096,
        fwd_cnt: 0,
    }
    .encode()
}

fn handshake() -> Vec<Cmd> {
    super::handshake(3)
}

const RX_USED: u64 = SCRATCH + 0x200;
const TX_AVAIL: u64 = SCRATCH + 0x400 + 0x100;

/// Queue memory: two RX buffers available from the start; two TX descriptors (made available
/// one by one by the commands) holding `first` and `second` (header + payload).
fn queues(image: &mut [u8], first: &[u8], second: &[u8]) {
    let rx = queue_base(0);
    poke(image, rx, &desc(RX_BUF, 4096, 2));
    poke(image, rx + 16, &desc(RX_BUF + 0x1000, 4096, 2));
    poke(image, rx + 0x100, &[0, 0, 2, 0, 0, 0, 1, 0]);
    let tx = queue_base(1);
    poke(
        image,
        tx,
        &desc(TX_BUF, u32::try_from(first.len()).unwrap(), 0),
    );
    poke(
        image,
        tx + 16,
        &desc(TX_BUF + 0x100, u32::try_from(second.len()).unwrap(), 0),
    );
    poke(image, tx + 0x100, &[0, 0, 0, 0, 0, 0, 1, 0]);
    poke(image, TX_BUF, first);
    poke(image, TX_BUF + 0x100, second);
}

pub fn vsock_guest() -> Vec<u8> {
    let rx_used = RX_USED;
    let tx_avail = TX_AVAIL;
    let mut cmds = handshake();
    cmds.extend([
        // REQUEST to host port 1025.
        Cmd::Write32 {
            addr: tx_avail,
            value: 1 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        Cmd::Poll32 {
            addr: rx_used,
            mask: 0xffff_0000,
            value: 1 << 16,
        },
        // The RESPONSE's op field.
        Cmd::Echo {
            addr: RX_BUF + 30,
            len: 1,
            port: 0x3f8,
        },
        // RW "ping".
        Cmd::Write32 {
            addr: tx_avail,
            value: 2 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        Cmd::Poll32 {
            addr: rx_used,
            mask: 0xffff_0000,
            value: 2 << 16,
        },
        Cmd::Echo {
            addr: RX_BUF + 0x1000 + 44,
            len: 4,
            port: 0x3f8,
        },
        Cmd::Out8 {
            port: 0x3f8,
            value: b'\n',
        },
    ]);
    let mut image = guest(&cmds);
    let mut rw = hdr(Op::Rw, 4).to_vec();
    rw.extend_from_slice(b"ping");
    queues(&mut image, &hdr(Op::Request, 0), &rw);
    image
}

/// A guest that accepts the host's `CONNECT 1024` (hull-vmm's first host port is 2^30), then
/// sends "hi!!" and echoes what the host sends.
pub fn accepting_guest() -> Vec<u8> {
    let host_port = 1 << 30;
    let mut cmds = handshake();
    cmds.extend([
        // The REQUEST for port 1024.
        Cmd::Poll32 {
            addr: RX_USED,
            mask: 0xffff_0000,
            value: 1 << 16,
        },
        Cmd::Echo {
            addr: RX_BUF + 30,
            len: 1,
            port: 0x3f8,
        },
        // RESPONSE, then RW "hi!!".
        Cmd::Write32 {
            addr: TX_AVAIL,
            value: 1 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        Cmd::Write32 {
            addr: TX_AVAIL,
            value: 2 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        Cmd::Poll32 {
            addr: RX_USED,
            mask: 0xffff_0000,
            value: 2 << 16,
        },
        Cmd::Echo {
            addr: RX_BUF + 0x1000 + 44,
            len: 5,
            port: 0x3f8,
        },
    ]);
    let mut image = guest(&cmds);
    let mut rw = hdr_ports(Op::Rw, 4, 1024, host_port).to_vec();
    rw.extend_from_slice(b"hi!!");
    queues(
        &mut image,
        &hdr_ports(Op::Response, 0, 1024, host_port),
        &rw,
    );
    image
}
