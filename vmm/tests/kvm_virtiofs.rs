//! Real-KVM test of the vhost-user virtio-fs frontend against a real virtiofsd: a test guest
//! does the virtio-mmio handshake for the fs device (two queues), which makes hull-vmm run the
//! vhost-user handshake (features, memory table with the guest's memfd, vring sizes, addresses
//! and bases, the queue ioeventfd as kick, an eventfd as call). The guest then puts one
//! FUSE_INIT request on the request queue and kicks it: virtiofsd reads the kick straight from
//! KVM, answers in guest memory, and its call comes back as the device's interrupt status. The
//! guest echoes the reply's error and protocol major version to the serial port.

mod common;

use std::time::{Duration, Instant};

use common::{handshake, kvm_available, run_kernel, vmm_bin, write_guest};
use hull_runtime::images::GuestImages;
use hull_runtime::share::{CacheMode, Virtiofsd};
use hull_runtime::vm::hull_vmm::HullVmm;
use hull_runtime::vm::{Device, Hypervisor, VmConfig};
use hull_vmm::testing::virtio::{fs_guest, FS_GUEST_CONSOLE};
use hull_vmm::testing::{guest, Cmd, SCRATCH};

#[test]
fn guest_fuse_init_is_answered_by_virtiofsd_through_the_vhost_user_frontend() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let daemon = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .expect("virtiofsd (scripts/install-tools.sh installs it)");
    let kernel = write_guest(dir.path(), &fs_guest());
    let run = run_kernel(
        dir.path(),
        &kernel,
        &[
            "--fs-socket",
            daemon.socket().to_str().unwrap(),
            "--fs-tag",
            "hull",
        ],
        Duration::from_secs(60),
    );
    run.assert_exit(0);
    assert_eq!(run.console_bytes, FS_GUEST_CONSOLE, "{run:#?}");
    for line in [
        "virtio device (id 26) activated",
        "vhost-user backend serves the queues",
    ] {
        assert!(run.stderr.contains(line), "{}", run.stderr);
    }
}

/// The runtime's hull-vmm backend turns a `VhostUserFs` device into `--fs-socket/--fs-tag`: the
/// same guest, started through the hypervisor seam, gets its answer from the pod's virtiofsd.
#[test]
fn the_runtime_seam_attaches_the_pods_virtiofsd() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let daemon = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let kernel = write_guest(dir.path(), &fs_guest());
    let initramfs = dir.path().join("initramfs.img");
    std::fs::write(&initramfs, b"unused by test guests").unwrap();
    let config = VmConfig {
        images: GuestImages { kernel, initramfs },
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 64,
        devices: vec![Device::VhostUserFs {
            socket: daemon.socket().to_owned(),
            tag: "hull".into(),
        }],
        run_dir: dir.path().to_owned(),
    };
    let mut vm = HullVmm::new(vmm_bin()).start(&config).unwrap();
    let status = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let console = std::fs::read(vm.console_path()).unwrap();
    assert_eq!(console, FS_GUEST_CONSOLE);
}

#[test]
fn a_missing_backend_socket_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &guest(&[]));
    let run = run_kernel(
        dir.path(),
        &kernel,
        &[
            "--fs-socket",
            dir.path().join("none.sock").to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    run.assert_exit(2);
    assert!(
        run.stderr.contains("start virtiofsd first"),
        "{}",
        run.stderr
    );
}

/// virtiofsd dies under a running VM: hull-vmm keeps running (the guest's requests would wait;
/// the runtime aborts the share in the guest) and still stops cleanly when asked.
#[test]
fn a_backend_that_dies_under_a_running_vm_does_not_wedge_hull_vmm() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let daemon = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    // Activate the device, then spin (nothing ever writes that word).
    let mut cmds = handshake(2);
    cmds.push(Cmd::Poll32 {
        addr: SCRATCH + 0x7000,
        mask: 1,
        value: 1,
    });
    let kernel = write_guest(dir.path(), &guest(&cmds));
    let initramfs = dir.path().join("initramfs.img");
    std::fs::write(&initramfs, b"unused by test guests").unwrap();
    let config = VmConfig {
        images: GuestImages { kernel, initramfs },
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 64,
        devices: vec![Device::VhostUserFs {
            socket: daemon.socket().to_owned(),
            tag: "hull".into(),
        }],
        run_dir: dir.path().to_owned(),
    };
    let mut vm = HullVmm::new(vmm_bin()).start(&config).unwrap();
    let start = Instant::now();
    let served = loop {
        let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
        if log.contains("vhost-user backend serves the queues") {
            break true;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        served,
        "{}",
        std::fs::read_to_string(vm.log_path()).unwrap_or_default()
    );
    drop(daemon); // SIGKILL, reaped, socket removed
    assert!(vm
        .wait_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    let status = vm.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
}

/// A socket whose virtiofsd is gone (killed, socket file left behind) is refused at start-up
/// with the reason, before any VM runs.
#[test]
fn a_backend_gone_before_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let mut daemon = Virtiofsd::start(
        dir.path(),
        &shared,
        CacheMode::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let pid = i32::try_from(daemon.pid()).unwrap();
    // SAFETY: signalling our own child, which is not reaped yet, so the pid is still its.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let start = Instant::now();
    while !daemon.has_exited() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(daemon.socket().exists(), "the stale socket stays");
    let kernel = write_guest(dir.path(), &guest(&[]));
    let run = run_kernel(
        dir.path(),
        &kernel,
        &["--fs-socket", daemon.socket().to_str().unwrap()],
        Duration::from_secs(30),
    );
    run.assert_exit(2);
    assert!(
        run.stderr
            .contains("cannot connect to the vhost-user backend"),
        "{}",
        run.stderr
    );
}
