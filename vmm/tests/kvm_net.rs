//! Real-KVM test of virtio-net on a real tap. The test makes its own network namespace (removed
//! at the end, also on failure) with IPv6 off (so the kernel sends nothing of its own) and a tap
//! in it, and runs hull-vmm there (`ip netns exec`). A test guest does the virtio-mmio handshake
//! for the net device, sends one Ethernet frame (ethertype 0x88b5, local experimental) and waits
//! for one: a raw packet socket on the tap, opened by a test thread inside the namespace, sees
//! the guest's frame and answers it; the guest echoes the answer's payload to the serial port.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{
    avail, desc, handshake, kvm_available, packet_socket, queue_base, run_kernel_via, used,
    vmm_bin, w, write_guest, NetNs,
};
use hull_runtime::images::GuestImages;
use hull_runtime::vm::hull_vmm::HullVmm;
use hull_runtime::vm::{Device, Hypervisor, MacAddr, VmConfig};
use hull_vmm::devices::virtio::mmio::reg;
use hull_vmm::testing::{guest, poke, Cmd, SCRATCH};

const TAP: &str = "hvtap0";
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const ETHERTYPE: u16 = 0x88b5;
const RX_BUF: u64 = SCRATCH + 0x1000;
const TX_BUF: u64 = SCRATCH + 0x2000;
const PING: &[u8] = b"ping-from-guest";
const PONG: &[u8] = b"pong-from-host";

fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Waits (up to 60 s) for the guest's frame on the tap, answers it, and returns it.
fn host_side(ns: String, ready: mpsc::Sender<()>) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let sock = packet_socket(&ns, TAP);
    ready.send(()).unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..60 {
        // SAFETY: `buf` is a writable buffer of its length; the result is checked.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else { continue };
        let f = &buf[..n];
        if n >= 14 && f[6..12] == GUEST_MAC && f[12..14] == ETHERTYPE.to_be_bytes() {
            let reply = frame(GUEST_MAC, HOST_MAC, PONG);
            // SAFETY: `reply` is a readable buffer of its length; the result is checked.
            let sent =
                unsafe { libc::send(sock.as_raw_fd(), reply.as_ptr().cast(), reply.len(), 0) };
            assert_eq!(usize::try_from(sent).ok(), Some(reply.len()));
            return Some(f.to_vec());
        }
    }
    None
}

fn net_guest() -> Vec<u8> {
    let out = frame([0xff; 6], GUEST_MAC, PING);
    let tx_len = u32::try_from(12 + out.len()).unwrap();
    let mut cmds = handshake(2);
    cmds.extend([
        Cmd::Write32 {
            addr: avail(1),
            value: 1 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        Cmd::Poll32 {
            addr: used(0),
            mask: 0xffff_0000,
            value: 1 << 16,
        },
        Cmd::Echo {
            addr: RX_BUF + 12 + 14,
            len: u32::try_from(PONG.len()).unwrap(),
            port: 0x3f8,
        },
        Cmd::Out8 {
            port: 0x3f8,
            value: b'\n',
        },
    ]);
    let mut image = guest(&cmds);
    // RX: one 2 KiB buffer, available from the start. TX: the header (zeros) and the frame.
    poke(&mut image, queue_base(0), &desc(RX_BUF, 2048, 2));
    poke(&mut image, avail(0), &[0, 0, 1, 0, 0, 0]);
    poke(&mut image, queue_base(1), &desc(TX_BUF, tx_len, 0));
    poke(&mut image, TX_BUF + 12, &out);
    image
}

#[test]
fn guest_frame_goes_out_on_a_tap_and_the_answer_comes_back() {
    if !kvm_available() {
        return;
    }
    let ns = NetNs::with_tap("net", TAP);
    let (tx, rx) = mpsc::channel();
    let name = ns.0.clone();
    let host = std::thread::spawn(move || host_side(name, tx));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &net_guest());
    let run = run_kernel_via(
        &["ip", "netns", "exec", &ns.0],
        dir.path(),
        &kernel,
        &["--net-tap", TAP, "--net-mac", "52:54:00:12:34:56"],
        Duration::from_secs(60),
    );
    let got = host.join().unwrap();
    run.assert_exit(0);
    assert_eq!(got, Some(frame([0xff; 6], GUEST_MAC, PING)), "{run:#?}");
    let mut expected = b"A".to_vec();
    expected.extend_from_slice(PONG);
    expected.push(b'\n');
    assert_eq!(run.console_bytes, expected, "{run:#?}");
    assert!(
        run.stderr.contains("virtio device (id 1) activated"),
        "{}",
        run.stderr
    );
}

/// The runtime's hull-vmm backend with a `Net` device: hull-vmm is started in the NIC's network
/// namespace (as the shim does for a pod) with `--net-tap/--net-mac`, and the frames flow.
#[test]
fn the_runtime_seam_starts_hull_vmm_in_the_nics_netns() {
    if !kvm_available() {
        return;
    }
    let ns = NetNs::with_tap("seam", TAP);
    let (tx, rx) = mpsc::channel();
    let name = ns.0.clone();
    let host = std::thread::spawn(move || host_side(name, tx));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &net_guest());
    let initramfs = dir.path().join("initramfs.img");
    std::fs::write(&initramfs, b"unused by test guests").unwrap();
    let config = VmConfig {
        images: GuestImages { kernel, initramfs },
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 64,
        devices: vec![Device::Net {
            tap: TAP.into(),
            mac: MacAddr(GUEST_MAC),
            netns: format!("/run/netns/{}", ns.0).into(),
        }],
        run_dir: dir.path().to_owned(),
    };
    let mut vm = HullVmm::new(vmm_bin()).start(&config).unwrap();
    let status = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    let got = host.join().unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(got, Some(frame([0xff; 6], GUEST_MAC, PING)));
    let mut expected = b"A".to_vec();
    expected.extend_from_slice(PONG);
    expected.push(b'\n');
    assert_eq!(std::fs::read(vm.console_path()).unwrap(), expected);
}

#[test]
fn a_bad_mac_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &guest(&[]));
    let run = common::run_kernel(
        dir.path(),
        &kernel,
        &["--net-tap", TAP, "--net-mac", "01:00:5e:00:00:01"],
        Duration::from_secs(10),
    );
    run.assert_exit(2);
    assert!(
        run.stderr.contains("not a unicast address"),
        "{}",
        run.stderr
    );
}
