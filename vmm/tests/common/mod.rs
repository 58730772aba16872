//! Running test guests under the real hull-vmm binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_vmm::devices::virtio::mmio::reg;
use hull_vmm::testing::{guest, guest_elf, Cmd, SCRATCH};

/// The binary under test.
pub fn vmm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hull-vmm"))
}

/// Whether this host can run the tests; under CI a missing /dev/kvm fails instead of skipping.
pub fn kvm_available() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "/dev/kvm is required for hull-vmm's real-KVM tests under CI"
        );
        eprintln!("SKIPPED: /dev/kvm is not available");
    }
    ok
}

/// What a guest run produced.
#[derive(Debug)]
pub struct GuestRun {
    /// Exit status code.
    pub code: Option<i32>,
    /// Console output (lossy UTF-8).
    pub console: String,
    /// Console output, raw.
    pub console_bytes: Vec<u8>,
    /// hull-vmm's stderr.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl GuestRun {
    /// Asserts the exit code, printing everything otherwise.
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{self:#?}");
    }
}

/// Writes an ELF for `image` into `dir`.
pub fn write_guest(dir: &Path, image: &[u8]) -> PathBuf {
    let path = dir.join("guest.elf");
    std::fs::write(&path, guest_elf(image)).unwrap();
    path
}

/// Runs `cmds` as a test guest with extra hull-vmm `args`; `None` when KVM is not available.
pub fn run_guest(cmds: &[Cmd], args: &[&str]) -> Option<GuestRun> {
    if !kvm_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &guest(cmds));
    Some(run_kernel(
        dir.path(),
        &kernel,
        args,
        Duration::from_secs(60),
    ))
}

/// Runs hull-vmm on `kernel` with a console file in `dir`, killing it after `timeout`.
pub fn run_kernel(dir: &Path, kernel: &Path, args: &[&str], timeout: Duration) -> GuestRun {
    run_kernel_via(&[], dir, kernel, args, timeout)
}

/// [`run_kernel`] through a wrapper command that execs hull-vmm (`ip netns exec NS`).
pub fn run_kernel_via(
    wrapper: &[&str],
    dir: &Path,
    kernel: &Path,
    args: &[&str],
    timeout: Duration,
) -> GuestRun {
    let console = dir.join("console.log");
    let start = Instant::now();
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(vmm_bin());
            c
        }
        None => Command::new(vmm_bin()),
    };
    let mut child = cmd
        .arg("--kernel")
        .arg(kernel)
        .arg("--console")
        .arg(&console)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let console_bytes = std::fs::read(&console).unwrap_or_default();
    GuestRun {
        code: status.and_then(|s| s.code()),
        console: String::from_utf8_lossy(&console_bytes).into_owned(),
        console_bytes,
        stderr,
        elapsed,
    }
}

/// The first virtio-mmio window (the first device on the command line).
pub const MMIO: u64 = 0xd000_0000;
/// Queue size the test guests use.
pub const QSIZE: u32 = 4;

/// Where queue `q`'s rings live in the test guest: descriptors, then the available ring at
/// +0x100 and the used ring at +0x200.
pub fn queue_base(q: u64) -> u64 {
    SCRATCH + q * 0x400
}

/// The available ring of queue `q`.
pub fn avail(q: u64) -> u64 {
    queue_base(q) + 0x100
}

/// The used ring of queue `q`.
pub fn used(q: u64) -> u64 {
    queue_base(q) + 0x200
}

/// A 32-bit write to the first device's register `off`.
pub fn w(off: u64, value: u32) -> Cmd {
    Cmd::Write32 {
        addr: MMIO + off,
        value,
    }
}

/// The low 32 bits of a test-guest address (they all fit).
pub fn lo(a: u64) -> u32 {
    u32::try_from(a).unwrap()
}

/// A split-ring descriptor.
pub fn desc(addr: u64, len: u32, flags: u16) -> Vec<u8> {
    desc_next(addr, len, flags, 0)
}

/// A split-ring descriptor with its `next` field.
pub fn desc_next(addr: u64, len: u32, flags: u16, next: u16) -> Vec<u8> {
    let mut d = addr.to_le_bytes().to_vec();
    d.extend_from_slice(&len.to_le_bytes());
    d.extend_from_slice(&flags.to_le_bytes());
    d.extend_from_slice(&next.to_le_bytes());
    d
}

/// The driver side of the virtio-mmio handshake for the first device: status, features
/// (`VIRTIO_F_VERSION_1` only), `queues` queues of [`QSIZE`] at [`queue_base`], DRIVER_OK, and
/// an `A` on the serial port once done.
pub fn handshake(queues: u32) -> Vec<Cmd> {
    let mut cmds = vec![
        w(reg::STATUS, 1),
        w(reg::STATUS, 3),
        w(reg::DRIVER_FEATURES_SEL, 1),
        w(reg::DRIVER_FEATURES, 1), // VIRTIO_F_VERSION_1
        w(reg::DRIVER_FEATURES_SEL, 0),
        w(reg::DRIVER_FEATURES, 0),
        w(reg::STATUS, 0xb),
        Cmd::Poll32 {
            addr: MMIO + reg::STATUS,
            mask: 0x8,
            value: 0x8,
        },
    ];
    for q in 0..queues {
        let base = queue_base(u64::from(q));
        cmds.extend([
            w(reg::QUEUE_SEL, q),
            w(reg::QUEUE_NUM, QSIZE),
            w(reg::QUEUE_DESC_LOW, lo(base)),
            w(reg::QUEUE_DESC_HIGH, 0),
            w(reg::QUEUE_DRIVER_LOW, lo(base + 0x100)),
            w(reg::QUEUE_DRIVER_HIGH, 0),
            w(reg::QUEUE_DEVICE_LOW, lo(base + 0x200)),
            w(reg::QUEUE_DEVICE_HIGH, 0),
            w(reg::QUEUE_READY, 1),
        ]);
    }
    cmds.extend([
        w(reg::STATUS, 0xf),
        Cmd::Out8 {
            port: 0x3f8,
            value: b'A',
        },
    ]);
    cmds
}
