//! Real-KVM test of the virtio-mmio transport and the vsock device: a test guest does the
//! virtio-mmio handshake, sets up the rx/tx/event queues in its own memory, connects to host
//! port 1025 (which lands on `<uds>_1025`), sends "ping", and echoes what the host answers.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::{desc, kvm_available, queue_base, run_kernel, w, write_guest};
use hull_vmm::devices::virtio::mmio::reg;
use hull_vmm::devices::virtio::vsock::packet::{Header, Op, TYPE_STREAM};
use hull_vmm::testing::{guest, poke, Cmd, SCRATCH};

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
    common::handshake(3)
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

fn vsock_guest() -> Vec<u8> {
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
fn accepting_guest() -> Vec<u8> {
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

#[test]
fn guest_connects_sends_ping_and_receives_pong_through_real_queues() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &vsock_guest());
    let uds = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(dir.path().join("vsock.sock_1025")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        s.write_all(b"pong").unwrap();
        got
    });
    let run = run_kernel(
        dir.path(),
        &kernel,
        &["--vsock-uds", uds.to_str().unwrap(), "--exit-stats"],
        Duration::from_secs(60),
    );
    run.assert_exit(0);
    assert_eq!(&server.join().unwrap(), b"ping");
    assert_eq!(run.console_bytes, b"A\x02pong\n", "{run:#?}");
    assert!(
        run.stderr.contains("virtio device (id 19) activated"),
        "{}",
        run.stderr
    );
    assert!(!uds.exists(), "the VMM removes its socket");
}

#[test]
fn host_connect_is_accepted_by_the_guest_and_carries_data_both_ways() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &accepting_guest());
    let uds = dir.path().join("vsock.sock");
    let uds2 = uds.clone();
    let client = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut s = loop {
            match UnixStream::connect(&uds2) {
                Ok(s) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(b"CONNECT 1024\n").unwrap();
        let mut ok = [0u8; 14];
        s.read_exact(&mut ok).unwrap();
        let mut hi = [0u8; 4];
        s.read_exact(&mut hi).unwrap();
        s.write_all(b"ciao\n").unwrap();
        (ok, hi)
    });
    let run = run_kernel(
        dir.path(),
        &kernel,
        &["--vsock-uds", uds.to_str().unwrap()],
        Duration::from_secs(60),
    );
    run.assert_exit(0);
    let (ok, hi) = client.join().unwrap();
    assert_eq!(&ok, b"OK 1073741824\n");
    assert_eq!(&hi, b"hi!!");
    assert_eq!(run.console_bytes, b"A\x01ciao\n", "{run:#?}");
}
