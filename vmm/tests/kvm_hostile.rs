//! The guest is hostile: a seeded test guest (`hull_vmm::testing::hostile`) writes garbage into
//! every virtio-mmio register and queue of one device — vsock, net (on a real tap) or virtio-fs
//! (through the vhost-user frontend to a real virtiofsd) — while the host side does its normal
//! work (vsock: a listener the guest may connect to and host `CONNECT`s; net: frames arriving on
//! the tap). Whatever the seed, hull-vmm must come out of it running and stoppable: the guest
//! reaches its end marker, hull-vmm's peak RSS (`VmHWM`) stays under guest RAM + 64 MiB, and
//! SIGTERM ends it with status 0 — no panic, no signal. A seed that ever breaks this is kept here
//! as a regression case once the VMM is fixed.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{kvm_available, packet_socket, vmm_bin, NetNs};
use hull_runtime::share::{CacheMode, Virtiofsd};
use hull_vmm::testing::hostile::{hostile_guest, Target, MARKER};

const MEM_MIB: u64 = 64;
/// hull-vmm's peak RSS may exceed guest RAM (all of which a hostile guest can make it touch) by
/// this much.
const RSS_SLACK_MIB: u64 = 64;
/// Commands per hostile guest: register writes, ring rewrites and kicks (about 0.1 s per 4000 on
/// this PVM host).
const BUDGET: usize = 40_000;

/// Kills hull-vmm if the test fails before stopping it.
struct VmmProcess(Option<Child>);

impl Drop for VmmProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Host-side helper threads, stopped (and joined) on drop.
#[derive(Default)]
struct Helpers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Helpers {
    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || f(stop)));
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What one hostile run showed.
#[derive(Debug)]
struct Outcome {
    hwm_kib: u64,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the hostile guest for `seed` against `target` under hull-vmm (through `wrapper`, which
/// execs it, if any), waits for its end marker, measures, stops it with SIGTERM.
fn run_hostile(seed: u64, target: Target, dir: &Path, wrapper: &[&str], args: &[&str]) -> Outcome {
    let guest = hostile_guest(seed, target, MEM_MIB << 20, BUDGET);
    let kernel = dir.join(format!("hostile-{seed}.elf"));
    std::fs::write(&kernel, &guest.elf).unwrap();
    let console = dir.join(format!("console-{seed}.log"));
    let stderr_path = dir.join(format!("stderr-{seed}.log"));
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(vmm_bin());
            c
        }
        None => Command::new(vmm_bin()),
    };
    let mem = MEM_MIB.to_string();
    let start = Instant::now();
    let child = cmd
        .arg("--kernel")
        .arg(&kernel)
        .arg("--console")
        .arg(&console)
        .args(["--mem-mib", &mem, "--exit-stats"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut vmm = VmmProcess(Some(child));
    let pid = vmm.0.as_ref().unwrap().id();
    let read_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // The marker, or hull-vmm's end, or (a wedged VMM) the deadline.
    let deadline = Duration::from_secs(60);
    let mut hwm_kib = 0;
    loop {
        if let Some(h) = vm_hwm_kib(pid) {
            hwm_kib = hwm_kib.max(h);
        }
        if std::fs::read(&console)
            .unwrap_or_default()
            .contains(&MARKER)
        {
            break;
        }
        let child = vmm.0.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "seed {seed} {target:?}: hull-vmm ended before the guest's marker: {status:?}\n{}",
                read_stderr()
            );
        }
        assert!(
            start.elapsed() < deadline,
            "seed {seed} {target:?}: no marker after {deadline:?} (hull-vmm wedged?)\n{}",
            read_stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // VmHWM is the peak so far; read it once more with everything the guest did behind it.
    hwm_kib = hwm_kib.max(vm_hwm_kib(pid).expect("hull-vmm runs"));
    let mut child = vmm.0.take().unwrap();
    let raw_pid = i32::try_from(pid).unwrap();
    // SAFETY: signalling our own child, not reaped yet, so the pid is still its.
    let killed = unsafe { libc::kill(raw_pid, libc::SIGTERM) };
    assert_eq!(killed, 0);
    let stop = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stop.elapsed() > Duration::from_secs(20) {
            vmm.0 = Some(child);
            panic!(
                "seed {seed} {target:?}: SIGTERM did not stop hull-vmm\n{}",
                read_stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    Outcome {
        hwm_kib,
        code: status.code(),
        signal: status.signal(),
        stderr: read_stderr(),
        elapsed: start.elapsed(),
    }
}

/// `name=N` from hull-vmm's `--exit-stats` lines (0 when absent).
fn counter(stderr: &str, name: &str) -> u64 {
    stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The checks every hostile run must pass; `device_id` is the attacked device's virtio id.
fn assert_survived(seed: u64, target: Target, device_id: u32, o: &Outcome) {
    let ctx = format!("seed {seed} {target:?}: {o:#?}");
    assert_eq!(o.signal, None, "killed by a signal: {ctx}");
    assert_eq!(o.code, Some(0), "{ctx}");
    assert!(!o.stderr.contains("panicked"), "{ctx}");
    assert!(o.stderr.contains("guest stopped: Stopped"), "{ctx}");
    assert!(
        o.stderr
            .contains(&format!("virtio device (id {device_id}) activated")),
        "the garbage never reached an active device: {ctx}"
    );
    let writes = counter(&o.stderr, "mmio_write");
    assert!(writes > BUDGET as u64 / 10, "{ctx}");
    // The device saw traffic both ways (its counters, printed by --exit-stats).
    let busy: &[&[&str]] = match target {
        Target::Vsock => &[
            &["tx_packets", "malformed_tx"],
            &["rx_packets"],
            &["rst_sent"],
        ],
        Target::Net => &[&["tx_frames", "tx_dropped"], &["rx_frames", "rx_dropped"]],
        Target::Fs => &[],
    };
    for names in busy {
        let n: u64 = names.iter().map(|c| counter(&o.stderr, c)).sum();
        assert!(n > 0, "no {names:?}: {ctx}");
    }
    let cap_kib = (MEM_MIB + RSS_SLACK_MIB) << 10;
    assert!(
        o.hwm_kib <= cap_kib,
        "peak RSS {} KiB over the cap {cap_kib} KiB: {ctx}",
        o.hwm_kib
    );
    let devices: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("hull-vmm: vsock ") || l.starts_with("hull-vmm: net "))
        .collect();
    eprintln!(
        "hostile seed {seed} {target:?}: VmHWM {} KiB (cap {cap_kib} KiB), {writes} MMIO writes, \
         {:?}; {devices:?}",
        o.hwm_kib, o.elapsed
    );
}

/// A host process listening on the guest's port 1025: it reads whatever comes and sends a burst
/// of bytes (0xe1: read as a descriptor, that points nowhere) on each connection.
fn vsock_listener(path: PathBuf, stop: Arc<AtomicBool>) {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut streams: Vec<UnixStream> = Vec::new();
    let burst = vec![0xe1u8; 64 << 10];
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::SeqCst) {
        while let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(true).unwrap();
            let _ = (&s).write(&burst);
            streams.push(s);
        }
        streams.retain_mut(|s| !matches!(s.read(&mut buf), Ok(0)));
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Host connections into the guest: good `CONNECT`s and garbage lines, a few at a time.
fn vsock_connector(uds: PathBuf, stop: Arc<AtomicBool>) {
    let lines: [&[u8]; 4] = [
        b"CONNECT 1024\n",
        b"CONNECT 5000\n",
        b"CONNECT 99999999999\n",
        b"\xff\xfe garbage\n",
    ];
    let mut open: Vec<UnixStream> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        if let Ok(mut s) = UnixStream::connect(&uds) {
            let _ = s.write_all(lines[n % lines.len()]);
            let _ = s.write_all(&[0xe1; 512]);
            s.set_nonblocking(true).unwrap();
            open.push(s);
            n += 1;
        }
        open.retain_mut(|s| !matches!(s.read(&mut buf), Ok(0)));
        if open.len() > 16 {
            open.remove(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hostile_vsock(seed: u64) {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let mut helpers = Helpers::default();
    let port = dir.path().join("vsock.sock_1025");
    helpers.spawn(move |stop| vsock_listener(port, stop));
    let u = uds.clone();
    helpers.spawn(move |stop| vsock_connector(u, stop));
    let o = run_hostile(
        seed,
        Target::Vsock,
        dir.path(),
        &[],
        &["--vsock-uds", uds.to_str().unwrap()],
    );
    drop(helpers);
    assert_survived(seed, Target::Vsock, 19, &o);
    assert!(!uds.exists(), "hull-vmm removes its socket");
}

/// Frames into the tap (0xe1 everywhere but a broadcast destination) every 2 ms.
fn tap_injector(ns: String, tap: &'static str, stop: Arc<AtomicBool>) {
    let sock: OwnedFd = packet_socket(&ns, tap);
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let len = [60, 14, 1514, 300][n % 4];
        let mut frame = vec![0xe1u8; len];
        frame[..6].fill(0xff);
        // SAFETY: `frame` is a readable buffer of its length; failures are ignored.
        unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        n += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn hostile_net(seed: u64) {
    if !kvm_available() {
        return;
    }
    const TAP: &str = "hvhostile0";
    let ns = NetNs::with_tap(&format!("hostile{seed}"), TAP);
    let dir = tempfile::tempdir().unwrap();
    let mut helpers = Helpers::default();
    let name = ns.0.clone();
    helpers.spawn(move |stop| tap_injector(name, TAP, stop));
    let o = run_hostile(
        seed,
        Target::Net,
        dir.path(),
        &["ip", "netns", "exec", &ns.0],
        &["--net-tap", TAP, "--net-mac", "52:54:00:12:34:56"],
    );
    drop(helpers);
    assert_survived(seed, Target::Net, 1, &o);
}

fn hostile_fs(seed: u64) {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("file"), b"contents").unwrap();
    let daemon = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .expect("virtiofsd (scripts/install-tools.sh installs it)");
    let o = run_hostile(
        seed,
        Target::Fs,
        dir.path(),
        &[],
        &["--fs-socket", daemon.socket().to_str().unwrap()],
    );
    let log = std::fs::read_to_string(dir.path().join("virtiofsd.log")).unwrap_or_default();
    assert_survived(seed, Target::Fs, 26, &o);
    // The frontend brought the backend in line at least once (virtiofsd may well have given up
    // on the garbage since: that is its own business, hull-vmm only has to carry on).
    assert!(
        o.stderr.contains("hull-vmm: virtio-fs: "),
        "{o:#?}\nvirtiofsd: {log}"
    );
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    eprintln!("hostile seed {seed} Fs: virtiofsd's last words: {last}");
}

#[test]
fn hostile_vsock_guest_seed_1() {
    hostile_vsock(1);
}

#[test]
fn hostile_vsock_guest_seed_2() {
    hostile_vsock(2);
}

#[test]
fn hostile_vsock_guest_seed_3() {
    hostile_vsock(3);
}

#[test]
fn hostile_net_guest_seed_1() {
    hostile_net(1);
}

#[test]
fn hostile_net_guest_seed_2() {
    hostile_net(2);
}

#[test]
fn hostile_fs_guest_seed_1() {
    hostile_fs(1);
}

#[test]
fn hostile_fs_guest_seed_2() {
    hostile_fs(2);
}
