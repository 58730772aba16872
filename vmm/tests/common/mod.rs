//! Running test guests under the real hull-vmm binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_vmm::testing::{guest, guest_elf, Cmd};

pub mod vsock;

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
    hull_test_support::runnable(
        ok,
        "/dev/kvm is not available (hull-vmm's real-KVM tests need it)",
    )
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

#[allow(unused_imports)]
pub use hull_vmm::testing::virtio::*;

/// A network namespace of the test's own (IPv6 off, so its kernel sends nothing by itself),
/// deleted on drop with everything in it.
pub struct NetNs(pub String);

impl NetNs {
    /// A namespace named after `what` and this process.
    pub fn new(what: &str) -> Self {
        let ns = NetNs(format!("hullvmm-{what}-{}", std::process::id()));
        ns.ip(&["netns", "add", &ns.0]);
        ns.exec(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        ]);
        ns
    }

    /// A namespace with the tap `tap` in it, up.
    pub fn with_tap(what: &str, tap: &str) -> Self {
        let ns = Self::new(what);
        ns.exec(&["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.exec(&["ip", "link", "set", tap, "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `args` inside the namespace; panics if it fails.
    pub fn exec(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.0];
        all.extend_from_slice(args);
        self.ip(&all);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A raw packet socket on the interface `tap` inside the namespace `ns` (the calling thread joins
/// the namespace), receiving with a 1 s timeout.
pub fn packet_socket(ns: &str, tap: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: `f` is an open netns file; setns only changes this thread's namespace.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let proto = u16::try_from(libc::ETH_P_ALL).unwrap().to_be();
    // SAFETY: plain socket call; the result is checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(tap).unwrap();
    // SAFETY: `name` is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0);
    // SAFETY: sockaddr_ll is plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
    addr.sll_protocol = proto;
    addr.sll_ifindex = i32::try_from(ifindex).unwrap();
    // SAFETY: `addr` is a valid sockaddr_ll of the given size; the result is checked.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap(),
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval of the given size; the result is checked.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            u32::try_from(std::mem::size_of::<libc::timeval>()).unwrap(),
        )
    };
    assert_eq!(r, 0);
    sock
}
