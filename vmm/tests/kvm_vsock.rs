//! Real-KVM test of the virtio-mmio transport and the vsock device: a test guest does the
//! virtio-mmio handshake, sets up the rx/tx/event queues in its own memory, connects to host
//! port 1025 (which lands on `<uds>_1025`), sends "ping", and echoes what the host answers.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::vsock::{accepting_guest, vsock_guest};
use common::{kvm_available, run_kernel, write_guest};

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
