//! hull-vmm in the VMM jail, behind the runtime's hypervisor seam (`HullVmm::jailed`): test guests
//! started through `hull-jailer` print on the console, exchange vsock data with the host both ways
//! through the jailed socket directory `<run_dir>/vsock/`, stop on request, and leave nothing
//! behind; while they run, the VMM is checked to really be jailed (its own mount and PID
//! namespaces, the pod's unprivileged uid, `no_new_privs`, its own seccomp filter).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::vsock::{accepting_guest, vsock_guest};
use common::{
    avail, desc, handshake, kvm_available, packet_socket, queue_base, used, vmm_bin, w,
    write_guest, NetNs,
};
use hull_runtime::images::GuestImages;
use hull_runtime::jail::uid_for;
use hull_runtime::share::{CacheMode, Virtiofsd};
use hull_runtime::vm::hull_vmm::{vsock_dir, vsock_socket, HullVmm};
use hull_runtime::vm::jailed::jail_root;
use hull_runtime::vm::{Device, Hypervisor, Jailable, MacAddr, Vm, VmConfig};
use hull_vmm::devices::virtio::mmio::reg;
use hull_vmm::testing::virtio::{fs_guest, FS_GUEST_CONSOLE};
use hull_vmm::testing::{guest, poke, Cmd, SCRATCH};

/// The jailer: `HULL_JAILER`, else `hull-jailer` beside the hull-vmm under test. `cargo test -p
/// hull-vmm` builds only this crate's binaries, so it is built here (same target directory and
/// profile; a no-op when it is up to date, and never a stale one from an older checkout); if that
/// fails, the test fails saying so.
fn jailer() -> &'static Path {
    static JAILER: OnceLock<PathBuf> = OnceLock::new();
    JAILER.get_or_init(|| {
        if let Some(path) = std::env::var_os("HULL_JAILER") {
            return path.into();
        }
        let vmm = vmm_bin();
        let profile_dir = vmm.parent().unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        build
            .args(["build", "-p", "hull-runtime", "--bin", "hull-jailer"])
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "cannot build hull-jailer ({status:?}): run `cargo build -p hull-runtime --bins` \
             and set HULL_JAILER"
        );
        let path = profile_dir.join("hull-jailer");
        assert!(
            path.is_file(),
            "hull-jailer is missing at {} (set HULL_JAILER)",
            path.display()
        );
        path
    })
}

/// A VM of the test guest `image` with vsock, run by `dir`.
fn config(dir: &Path, image: &[u8]) -> VmConfig {
    let kernel = write_guest(dir, image);
    let initramfs = dir.join("initramfs.img");
    std::fs::write(&initramfs, b"unused by test guests").unwrap();
    VmConfig {
        images: GuestImages { kernel, initramfs },
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 64,
        devices: vec![Device::Vsock],
        run_dir: dir.to_owned(),
    }
}

fn jailed() -> HullVmm {
    HullVmm::new(vmm_bin()).jailed(jailer())
}

/// The jailer's child once it has exec'd hull-vmm (failing with the log if the jailer exits).
fn vmm_of(vm: &mut dyn Vm) -> u32 {
    let jailer = vm.pid();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{jailer}/task/{jailer}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            let pid: u32 = pid.parse().unwrap();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "hull-vmm" {
                return pid;
            }
        }
        if let Some(status) = vm.wait_timeout(Duration::ZERO).unwrap() {
            let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
            panic!("the jailer exited ({status}) before hull-vmm ran: {log}");
        }
        assert!(
            Instant::now() < deadline,
            "no hull-vmm under jailer {jailer}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

fn alive(pid: u32) -> bool {
    let pid = nix_pid(pid);
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn nix_pid(pid: u32) -> i32 {
    i32::try_from(pid).unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks that hull-vmm `vmm` of the pod at `run_dir` runs jailed: its own mount and PID
/// namespaces, the pod's uid and gid, no capabilities, `no_new_privs`, and (once its event loop
/// runs) its seccomp filter; its socket is its own, in the socket directory.
fn assert_jailed(vmm: u32, run_dir: &Path) {
    let me = std::process::id().to_string();
    for kind in ["mnt", "pid", "ipc", "uts"] {
        assert_ne!(
            ns(&vmm.to_string(), kind),
            ns(&me, kind),
            "{kind} namespace shared"
        );
    }
    let uid = uid_for(run_dir);
    assert_ne!(uid, 0);
    let id = uid.to_string();
    for field in ["Uid", "Gid"] {
        assert_eq!(
            status_field(vmm, field)
                .split_whitespace()
                .collect::<Vec<_>>(),
            [id.as_str(); 4],
            "{field}"
        );
    }
    assert_eq!(status_field(vmm, "CapEff"), "0000000000000000");
    assert_eq!(status_field(vmm, "NoNewPrivs"), "1");
    // PID 1 of its PID namespace.
    assert_eq!(
        status_field(vmm, "NSpid").split_whitespace().last(),
        Some("1")
    );
    // The filter is installed once the VM is built.
    wait_for("hull-vmm's seccomp filter", || {
        status_field(vmm, "Seccomp") == "2"
    });
    use std::os::unix::fs::MetadataExt;
    let socket = std::fs::metadata(vsock_socket(run_dir)).unwrap();
    assert_eq!(socket.uid(), uid, "the jailed VMM made its socket");
    // Its root is the jail: the host's files are out of sight.
    assert!(!Path::new(&format!("/proc/{vmm}/root/etc/passwd")).exists());
    assert!(Path::new(&format!("/proc/{vmm}/root/run/vsock/vsock.sock")).exists());
    // …and nothing of it shows on the host.
    assert_eq!(std::fs::read_dir(jail_root(run_dir)).unwrap().count(), 0);
}

/// Once the VM has gone: no VMM, no socket, the socket directory and the jail's root empty.
fn assert_nothing_left(vmm: u32, run_dir: &Path) {
    wait_for("the VMM to be gone", || !alive(vmm));
    assert!(!vsock_socket(run_dir).exists(), "the VMM's socket is left");
    assert!(
        !vsock_dir(run_dir).exists(),
        "{:?}",
        std::fs::read_dir(vsock_dir(run_dir)).map(|d| d.count())
    );
    assert_eq!(std::fs::read_dir(jail_root(run_dir)).unwrap().count(), 0);
}

fn connect(uds: &Path) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(uds) {
            Ok(s) => return s,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{}: {e}", uds.display()),
        }
    }
}

#[test]
fn a_jailed_guest_accepts_a_host_connect_prints_and_exits_cleanly() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let mut vm = jailed()
        .start(&config(run_dir, &accepting_guest()))
        .unwrap();
    assert_eq!(vm.vsock_uds(), Some(vsock_socket(run_dir).as_path()));
    let vmm = vmm_of(&mut *vm);
    wait_for("the vsock socket", || vsock_socket(run_dir).exists());
    // The guest waits for the host's CONNECT: the VMM runs while it is looked at.
    assert_jailed(vmm, run_dir);

    let mut s = connect(vm.vsock_uds().unwrap());
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"CONNECT 1024\n").unwrap();
    let mut ok = [0u8; 14];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"OK 1073741824\n");
    let mut hi = [0u8; 4];
    s.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi!!");
    s.write_all(b"ciao\n").unwrap();

    let status = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    let console = std::fs::read(vm.console_path()).unwrap();
    let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; log: {log}"
    );
    assert_eq!(console, b"A\x01ciao\n", "log: {log}");
    drop(s);
    assert_nothing_left(vmm, run_dir);
}

#[test]
fn a_jailed_guest_reaches_a_host_listener_handed_to_the_vmm() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let config = config(run_dir, &vsock_guest());
    // The guest connects to host port 1025 as it boots: listen on `<uds>_1025` first, in the
    // socket directory, and let the VMM's uid connect.
    std::fs::create_dir(vsock_dir(run_dir)).unwrap();
    let port = run_dir.join("vsock/vsock.sock_1025");
    let listener = UnixListener::bind(&port).unwrap();
    let uid = uid_for(run_dir);
    std::os::unix::fs::chown(&port, Some(uid), Some(uid)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        s.write_all(b"pong").unwrap();
        got
    });
    let mut vm = jailed().start(&config).unwrap();
    let vmm = vmm_of(&mut *vm);
    let status = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; log: {log}"
    );
    assert_eq!(&server.join().unwrap(), b"ping");
    assert_eq!(std::fs::read(vm.console_path()).unwrap(), b"A\x02pong\n");
    assert!(!vsock_socket(run_dir).exists());
    // The directory holds the test's listener, which is the test's to remove.
    std::fs::remove_file(&port).unwrap();
    drop(vm);
    wait_for("the VMM to be gone", || !alive(vmm));
    assert_eq!(std::fs::read_dir(jail_root(run_dir)).unwrap().count(), 0);
}

/// A guest that prints "up" and spins until stopped.
fn spinning_guest() -> Vec<u8> {
    let mut cmds: Vec<Cmd> = b"up\n"
        .iter()
        .map(|&value| Cmd::Out8 { port: 0x3f8, value })
        .collect();
    cmds.push(Cmd::Poll32 {
        addr: SCRATCH,
        mask: 1,
        value: 1,
    });
    guest(&cmds)
}

#[test]
fn a_stop_reaches_the_jailed_vmm_and_ends_it_with_status_zero() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let mut vm = jailed().start(&config(run_dir, &spinning_guest())).unwrap();
    hull_runtime::vm::console::wait_for_line(&mut *vm, "up", Duration::from_secs(30)).unwrap();
    let vmm = vmm_of(&mut *vm);
    wait_for("the vsock socket", || vsock_socket(run_dir).exists());
    assert_jailed(vmm, run_dir);
    // Through the jailer, which forwards SIGTERM to the VMM (PID 1 of its namespace).
    let status = vm.stop(Duration::from_secs(10)).unwrap();
    let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
    assert!(status.success(), "{status:?}; log: {log}");
    assert!(log.contains("Stopped"), "{log}");
    assert_nothing_left(vmm, run_dir);
}

#[test]
fn a_killed_jailer_takes_the_vmm_and_its_socket_with_it() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let mut vm = jailed().start(&config(run_dir, &spinning_guest())).unwrap();
    let vmm = vmm_of(&mut *vm);
    wait_for("the vsock socket", || vsock_socket(run_dir).exists());
    // SAFETY: plain kill(2) of the jailer this test started.
    assert_eq!(unsafe { libc::kill(nix_pid(vm.pid()), libc::SIGKILL) }, 0);
    let status = vm.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(status.is_some(), "the jailer survived SIGKILL");
    // The VMM could not remove its socket: the runtime does once it has reaped the jailer.
    assert_nothing_left(vmm, run_dir);
}

/// virtio-fs from the jail: hull-vmm's vhost-user frontend reaches the pod's virtiofsd through its
/// socket bound as `/run/<name>` (handed to the VMM's uid), and virtiofsd maps the guest's memfd.
#[test]
fn a_jailed_vmm_reaches_the_pods_virtiofsd() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let shared = run_dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    let daemon = Virtiofsd::start(
        run_dir,
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .expect("virtiofsd (scripts/install-tools.sh installs it)");
    let mut config = config(run_dir, &fs_guest());
    // The guest drives the first device: virtio-fs alone.
    config.devices = vec![Device::VhostUserFs {
        socket: daemon.socket().to_owned(),
        tag: "hull".into(),
    }];
    let mut vm = jailed().start(&config).unwrap();
    let vmm = vmm_of(&mut *vm);
    let status = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; log: {log}"
    );
    assert_eq!(
        std::fs::read(vm.console_path()).unwrap(),
        FS_GUEST_CONSOLE,
        "log: {log}"
    );
    drop(vm);
    drop(daemon);
    assert_nothing_left(vmm, run_dir);
}

const TAP: &str = "hvjail0";
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const ETHERTYPE: u16 = 0x88b5;
const NET_RX_BUF: u64 = SCRATCH + 0x1000;
const NET_TX_BUF: u64 = SCRATCH + 0x2000;
const TO_GUEST: &[u8] = b"to-the-jailed-guest";
const FROM_GUEST: &[u8] = b"from-the-jailed-guest";

fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A guest that waits for one frame (the tap the jailer made is only up once the host sets it
/// up), echoes its payload on the console, then sends a frame of its own and waits until it went.
fn answering_net_guest() -> Vec<u8> {
    let out = frame([0xff; 6], GUEST_MAC, FROM_GUEST);
    let tx_len = u32::try_from(12 + out.len()).unwrap();
    let mut cmds = handshake(2);
    cmds.extend([
        Cmd::Poll32 {
            addr: used(0),
            mask: 0xffff_0000,
            value: 1 << 16,
        },
        Cmd::Echo {
            addr: NET_RX_BUF + 12 + 14,
            len: u32::try_from(TO_GUEST.len()).unwrap(),
            port: 0x3f8,
        },
        Cmd::Out8 {
            port: 0x3f8,
            value: b'\n',
        },
        Cmd::Write32 {
            addr: avail(1),
            value: 1 << 16,
        },
        w(reg::QUEUE_NOTIFY, 1),
        Cmd::Poll32 {
            addr: used(1),
            mask: 0xffff_0000,
            value: 1 << 16,
        },
    ]);
    let mut image = guest(&cmds);
    poke(&mut image, queue_base(0), &desc(NET_RX_BUF, 2048, 2));
    poke(&mut image, avail(0), &[0, 0, 1, 0, 0, 0]);
    poke(&mut image, queue_base(1), &desc(NET_TX_BUF, tx_len, 0));
    poke(&mut image, NET_TX_BUF + 12, &out);
    image
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The host end: once the jailer has made the tap, sets it up and sends the guest a frame (again
/// until hull-vmm has attached and the guest took one), and returns the guest's frame.
fn net_host_side(ns: &str) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    wait_for("the jailer's tap", || ip(&["-n", ns, "link", "show", TAP]));
    assert!(ip(&["-n", ns, "link", "set", TAP, "up"]));
    let sock = packet_socket(ns, TAP);
    let hello = frame(GUEST_MAC, HOST_MAC, TO_GUEST);
    let mut buf = [0u8; 2048];
    for _ in 0..60 {
        // SAFETY: a valid socket and a buffer of the given length; the result is only checked.
        unsafe { libc::send(sock.as_raw_fd(), hello.as_ptr().cast(), hello.len(), 0) };
        // SAFETY: a valid socket and a buffer of the given length (1 s receive timeout).
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else { continue };
        let f = &buf[..n];
        if n >= 14 && f[6..12] == GUEST_MAC {
            return f.to_vec();
        }
    }
    panic!("no frame from the jailed guest");
}

/// virtio-net from the jail: the jailer's stage 1 makes the pod's tap (persistent, owned by the
/// VMM's uid) in the pod's network namespace, the unprivileged hull-vmm attaches to it, frames go
/// both ways, and the jailer deletes the tap when the VMM has gone.
#[test]
fn a_jailed_vmm_attaches_to_the_tap_its_jailer_made() {
    if !kvm_available() {
        return;
    }
    let ns = NetNs::new("jail");
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let mut config = config(run_dir, &answering_net_guest());
    config.devices = vec![Device::Net {
        tap: TAP.into(),
        mac: MacAddr(GUEST_MAC),
        netns: format!("/run/netns/{}", ns.0).into(),
    }];
    let mut vm = jailed().start(&config).unwrap();
    let vmm = vmm_of(&mut *vm);
    let name = ns.0.clone();
    let host = std::thread::spawn(move || net_host_side(&name));
    let status = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; log: {log}"
    );
    assert_eq!(
        host.join().unwrap(),
        frame([0xff; 6], GUEST_MAC, FROM_GUEST),
        "log: {log}"
    );
    let mut console = TO_GUEST.to_vec();
    console.push(b'\n');
    assert!(
        std::fs::read(vm.console_path())
            .unwrap()
            .ends_with(&console),
        "log: {log}"
    );
    drop(vm);
    assert_nothing_left(vmm, run_dir);
    assert!(
        !ip(&["-n", &ns.0, "link", "show", TAP]),
        "the jailer left its tap"
    );
}
