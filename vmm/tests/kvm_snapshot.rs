//! Real-KVM snapshot tests: a counting test guest (`testing::counter`) runs under the real
//! hull-vmm binary with a control socket; it is snapshotted while running, restored in new
//! processes, and must carry on from where it was (RAM counter, register counter and console all
//! continue); two restores of one snapshot run side by side as independent VMs; damaged
//! snapshots are refused with their own error. They need `/dev/kvm`; under `CI=true` a missing
//! one is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{kvm_available, vmm_bin};
use hull_vmm::snapshot::control;
use hull_vmm::snapshot::format::{self, MEMORY_FILE, STATE_FILE};
use hull_vmm::testing::counter::{counter_guest, first_break, COUNTER};

/// A hull-vmm process of the test's, killed if the test fails before it stops it.
struct Vmm {
    child: Option<Child>,
    console: PathBuf,
    stderr: PathBuf,
    api: PathBuf,
}

impl Vmm {
    /// Starts hull-vmm with `args`, its console, stderr and control socket in `dir` under `name`.
    fn start(dir: &Path, name: &str, args: &[&str]) -> Self {
        let console = dir.join(format!("{name}.console"));
        let stderr = dir.join(format!("{name}.stderr"));
        let api = dir.join(format!("{name}.api"));
        let child = Command::new(vmm_bin())
            .args(args)
            .arg("--console")
            .arg(&console)
            .arg("--api-sock")
            .arg(&api)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            console,
            stderr,
            api,
        }
    }

    fn console(&self) -> Vec<u8> {
        std::fs::read(&self.console).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the console holds at least `n` bytes.
    fn wait_console(&mut self, n: usize) -> Vec<u8> {
        let start = Instant::now();
        loop {
            let c = self.console();
            if c.len() >= n {
                return c;
            }
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "hull-vmm ended ({s}) with {} console bytes: {}",
                    c.len(),
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "only {} console bytes after 60 s: {}",
                c.len(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a control request once the socket exists; returns the answer.
    fn request(&self, req: &str) -> String {
        let start = Instant::now();
        loop {
            match control::request(&self.api, req) {
                Ok(answer) => return answer,
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!(
                    "control socket {}: {e}: {}",
                    self.api.display(),
                    self.stderr()
                ),
            }
        }
    }

    /// SIGTERM, then the exit code (a hull-vmm that does not stop in 30 s is killed: failure).
    fn stop(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status.code(), self.stderr())
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Boots the counting guest on `vcpus` vCPUs (the others wait for a SIPI that never comes: their
/// LAPIC and MP state are saved too), lets it count past `n`, snapshots it into `dir/snap` and
/// returns the still-paused original, the snapshot directory and how many steps it had taken.
fn counting_snapshot(dir: &Path, n: usize, vcpus: &str) -> (Vmm, PathBuf, u64) {
    let kernel = dir.join("counter.elf");
    std::fs::write(&kernel, counter_guest(u64::MAX >> 1)).unwrap();
    let mut vm = Vmm::start(
        dir,
        "original",
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--mem-mib",
            "16",
            "--vcpus",
            vcpus,
        ],
    );
    vm.wait_console(n);
    let snap = dir.join("snap");
    let answer = vm.request(&format!("snapshot {}", snap.display()));
    assert!(
        answer.starts_with("OK snapshot "),
        "{answer}: {}",
        vm.stderr()
    );
    // The memory file is sparse: the test guest wrote a few pages of its 16 MiB.
    let memory = std::fs::metadata(snap.join(MEMORY_FILE)).unwrap();
    assert_eq!(memory.len(), 16 << 20);
    let allocated = std::os::unix::fs::MetadataExt::blocks(&memory) * 512;
    assert!(allocated < 1 << 20, "{allocated} bytes allocated");
    // Paused: the console holds exactly the steps taken before the snapshot.
    let before = vm.console();
    assert_eq!(
        first_break(&before, 1),
        None,
        "the original counts 1, 2, 3 …"
    );
    (vm, snap, before.len() as u64)
}

fn restore(dir: &Path, name: &str, snap: &Path) -> Vmm {
    Vmm::start(dir, name, &["--restore", snap.to_str().unwrap()])
}

#[test]
fn a_restored_guest_carries_on_and_two_restores_are_independent() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut original, snap, steps) = counting_snapshot(dir.path(), 200, "2");

    // The original resumes where it paused.
    assert_eq!(original.request("resume"), "OK running");
    let after = original.wait_console(usize::try_from(steps).unwrap() + 200);
    assert_eq!(first_break(&after, 1), None);
    let (code, stderr) = original.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // Two VMs from one snapshot, at the same time: each goes on from step `steps + 1` with its
    // own copy of RAM (a shared page would break the RAM/register agreement: a triple fault).
    let mut a = restore(dir.path(), "a", &snap);
    let mut b = restore(dir.path(), "b", &snap);
    let ca = a.wait_console(300);
    let cb = b.wait_console(300);
    assert_eq!(first_break(&ca, steps + 1), None, "{}", a.stderr());
    assert_eq!(first_break(&cb, steps + 1), None, "{}", b.stderr());
    // Their RAM is the snapshot's memory file, mapped privately (copy on write), in both.
    for vm in [&a, &b] {
        let pid = vm.child.as_ref().unwrap().id();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let memory = snap.join(MEMORY_FILE);
        let line = maps
            .lines()
            .find(|l| l.ends_with(memory.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no mapping of {}: {maps}", memory.display()));
        assert!(line.contains(" rw-p "), "{line}");
    }
    // One paused, the other still counts.
    assert_eq!(a.request("pause"), "OK paused");
    let paused_at = a.console().len();
    let more = b.console().len() + 200;
    b.wait_console(more);
    assert_eq!(a.console().len(), paused_at);
    for vm in [a, b] {
        let (code, stderr) = vm.stop();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("Stopped"), "{stderr}");
        assert!(!stderr.contains("TripleFault"), "{stderr}");
    }
    // The restores wrote only their private copies: the snapshot still checks out.
    hull_vmm::snapshot::machine::read_snapshot(&snap).unwrap();
}

/// A copy of the snapshot `src` in `dst`, with `damage` applied to (state bytes, memory bytes).
fn damaged(src: &Path, dst: &Path, damage: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) {
    std::fs::create_dir_all(dst).unwrap();
    let mut state = std::fs::read(src.join(STATE_FILE)).unwrap();
    let mut memory = std::fs::read(src.join(MEMORY_FILE)).unwrap();
    damage(&mut state, &mut memory);
    std::fs::write(dst.join(STATE_FILE), state).unwrap();
    std::fs::write(dst.join(MEMORY_FILE), memory).unwrap();
}

/// Re-encodes a state file with its body changed by `edit` (a valid checksum: only the shape
/// check can find the problem).
fn edit_body(state: &mut Vec<u8>, edit: impl FnOnce(&mut serde_json::Value)) {
    let (mut header, body) = format::decode_state(state).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    edit(&mut v);
    let body = serde_json::to_vec(&v).unwrap();
    header.state_len = body.len() as u64;
    header.state_crc32 = crc32fast::hash(&body);
    *state = format::encode_state(&header, &body);
}

#[test]
fn damaged_snapshots_are_refused_with_their_own_error() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (original, snap, _) = counting_snapshot(dir.path(), 50, "1");
    let (code, stderr) = original.stop();
    assert_eq!(code, Some(0), "{stderr}");
    // Guest RAM starts at 0: the counter's file offset is its address.
    let counter_at = usize::try_from(COUNTER).unwrap();
    type Damage = Box<dyn FnOnce(&mut Vec<u8>, &mut Vec<u8>)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            // A byte in what was a hole (the last page: the guest never wrote it).
            "memory-hole-filled",
            Box::new(|_, m| {
                let at = m.len() - 100;
                assert_eq!(m[at], 0);
                m[at] = 1;
            }),
            "snapshot memory checksum mismatch",
        ),
        (
            "memory-truncated",
            Box::new(|_, m| m.truncate(m.len() - 4096)),
            "snapshot memory file is truncated",
        ),
        (
            "memory-tampered",
            Box::new(move |_, m| m[counter_at] ^= 0x40),
            "snapshot memory checksum mismatch",
        ),
        (
            "state-truncated",
            Box::new(|s, _| s.truncate(s.len() - 10)),
            "snapshot state file is truncated",
        ),
        (
            "state-tampered",
            Box::new(|s, _| {
                let at = s.len() - 20;
                s[at] ^= 0x01;
            }),
            "snapshot state checksum mismatch",
        ),
        (
            "other-format",
            Box::new(|s, _| s[8..12].copy_from_slice(&99u32.to_le_bytes())),
            "snapshot format version 99",
        ),
        (
            "not-a-snapshot",
            Box::new(|s, _| s[..8].copy_from_slice(b"ELF\0\0\0\0\0")),
            "not a hull snapshot",
        ),
        (
            "wrong-shape",
            Box::new(|s, _| edit_body(s, |v| v["shape"]["vcpus"] = 2.into())),
            "1 vCPU states for 2 vCPUs",
        ),
    ];
    for (name, damage, expected) in cases {
        let bad = dir.path().join(name);
        damaged(&snap, &bad, damage);
        let out = Command::new(vmm_bin())
            .arg("--restore")
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        std::fs::remove_dir_all(&bad).unwrap();
    }
    // A memory file known to be checked (--memory-checked) still gets its length checked.
    let bad = dir.path().join("checked-but-truncated");
    damaged(&snap, &bad, |_, m| m.truncate(m.len() - 4096));
    let out = Command::new(vmm_bin())
        .arg("--restore")
        .arg(&bad)
        .arg("--memory-checked")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("snapshot memory file is truncated"),
        "{stderr}"
    );
    // Descriptors that are not a snapshot's: refused by name.
    for (fds, expected) in [
        ("0,1", "descriptor 0"),
        ("3,3", "descriptor 3"),
        ("x", "3,4"),
    ] {
        let out = Command::new(vmm_bin())
            .args(["--restore-fds", fds])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fds}: {stderr}");
        assert!(stderr.contains(expected), "{fds}: {stderr}");
    }
}

/// A snapshot whose files are root-only, handed over as open descriptors (as hull's jailer does
/// for a jailed VMM, `--restore-fds`), restores and carries on; with `--memory-checked` too.
#[test]
fn a_snapshot_restores_from_inherited_descriptors() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (original, snap, steps) = counting_snapshot(dir.path(), 50, "1");
    let (code, stderr) = original.stop();
    assert_eq!(code, Some(0), "{stderr}");
    for name in [STATE_FILE, MEMORY_FILE] {
        std::fs::set_permissions(snap.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for (name, extra) in [("fds", None), ("fds-checked", Some("--memory-checked"))] {
        let state = std::fs::File::open(snap.join(STATE_FILE)).unwrap();
        let memory = std::fs::File::open(snap.join(MEMORY_FILE)).unwrap();
        let (s, m) = (state.as_raw_fd(), memory.as_raw_fd());
        let console = dir.path().join(format!("{name}.console"));
        let mut cmd = Command::new(vmm_bin());
        cmd.args(["--restore-fds", "3,4"])
            .args(extra)
            .arg("--console")
            .arg(&console)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: dup2(2) between fork and exec; `s` and `m` stay open in the parent until the
        // child is spawned. Both are first moved above 4 so neither overwrites the other.
        unsafe {
            cmd.pre_exec(move || {
                let (hs, hm) = (
                    libc::fcntl(s, libc::F_DUPFD, 5),
                    libc::fcntl(m, libc::F_DUPFD, 5),
                );
                if hs < 5 || hm < 5 || libc::dup2(hs, 3) != 3 || libc::dup2(hm, 4) != 4 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop((state, memory));
        let mut vm = Vmm {
            child: Some(child),
            console,
            stderr: dir.path().join("unused.stderr"),
            api: dir.path().join("unused.api"),
        };
        let c = vm.wait_console(100);
        // It goes on from its snapshot: every step after the snapshot, none twice.
        assert_eq!(first_break(&c, steps + 1), None, "{name}");
        let (code, _) = vm.stop();
        assert_eq!(code, Some(0), "{name}");
    }
}

/// Waits for the VMM to stop by itself; returns its exit code and stderr.
fn wait_exit(mut vm: Vmm) -> (Option<i32>, String) {
    let start = Instant::now();
    let mut child = vm.child.take().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), vm.stderr())
}

/// A guest whose vsock device is activated and waits for a host connection is snapshotted; the
/// restored VM (with a socket of its own) accepts the host's `CONNECT`, carries data both ways
/// through the queues it had set up before the snapshot, and finishes its program.
#[test]
fn a_restored_guest_keeps_its_vsock_queues_and_accepts_a_host_connection() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = common::write_guest(dir.path(), &common::vsock::accepting_guest());
    let uds = dir.path().join("original.vsock");
    let mut original = Vmm::start(
        dir.path(),
        "original",
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--mem-mib",
            "16",
            "--vsock-uds",
            uds.to_str().unwrap(),
        ],
    );
    // "A": the handshake is done, the queues are set up, the guest polls for a REQUEST.
    assert_eq!(original.wait_console(1), b"A");
    let snap = dir.path().join("snap");
    let answer = original.request(&format!("snapshot {}", snap.display()));
    assert!(answer.starts_with("OK snapshot "), "{answer}");
    let (code, stderr) = original.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // Without its host socket the restore is refused, naming the flag.
    let out = Command::new(vmm_bin())
        .arg("--restore")
        .arg(&snap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vsock-uds"));

    let uds = dir.path().join("restored.vsock");
    let restored = Vmm::start(
        dir.path(),
        "restored",
        &[
            "--restore",
            snap.to_str().unwrap(),
            "--vsock-uds",
            uds.to_str().unwrap(),
        ],
    );
    let start = Instant::now();
    let mut s = loop {
        match UnixStream::connect(&uds) {
            Ok(s) => break s,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"CONNECT 1024\n").unwrap();
    let mut ok = [0u8; 14];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"OK 1073741824\n");
    let mut hi = [0u8; 4];
    s.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi!!");
    s.write_all(b"ciao\n").unwrap();
    let console = restored.console.clone();
    let (code, stderr) = wait_exit(restored);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Reset"), "{stderr}");
    // The console goes on after the "A" of the original.
    assert_eq!(std::fs::read(console).unwrap(), b"\x01ciao\n", "{stderr}");
    assert!(!uds.exists(), "the VMM removes its socket");
}

/// A guest whose virtio-fs device is activated (its queues handed to virtiofsd) but has made no
/// request yet is snapshotted; the restored VM hands the saved queues to a fresh virtiofsd (its
/// guest RAM a memfd copy the daemon can map), and the guest's FUSE_INIT is answered by it.
#[test]
fn a_restored_guest_hands_its_virtio_fs_queues_to_a_fresh_virtiofsd() {
    use hull_runtime::share::{CacheMode, Virtiofsd};
    use hull_vmm::testing::virtio::{slow_fs_guest, FS_GUEST_CONSOLE};
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let daemon = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        Virtiofsd::start(&d, &shared, CacheMode::default(), Duration::from_secs(10))
            .expect("virtiofsd (scripts/install-tools.sh installs it)")
    };
    let first = daemon("first");
    let kernel = common::write_guest(dir.path(), &slow_fs_guest(5000));
    let original = Vmm::start(
        dir.path(),
        "original",
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--mem-mib",
            "16",
            "--fs-socket",
            first.socket().to_str().unwrap(),
        ],
    );
    // Step the guest a millisecond at a time until its handshake is done ("A"): it is then
    // paused inside the idle commands, before its FUSE_INIT.
    assert_eq!(original.request("pause"), "OK paused");
    let start = Instant::now();
    while original.console().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            original.stderr()
        );
        assert_eq!(original.request("resume"), "OK running");
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(original.request("pause"), "OK paused");
    }
    assert_eq!(original.console(), b"A");
    let snap = dir.path().join("snap");
    let answer = original.request(&format!("snapshot {}", snap.display()));
    assert!(answer.starts_with("OK snapshot "), "{answer}");
    let (code, stderr) = original.stop();
    assert_eq!(code, Some(0), "{stderr}");
    drop(first);

    let out = Command::new(vmm_bin())
        .arg("--restore")
        .arg(&snap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fs-socket"));

    // Checked while copied into the memfd, then (`--memory-checked`) read straight into it.
    for (name, checked) in [("second", None), ("third", Some("--memory-checked"))] {
        let backend = daemon(name);
        let mut args = vec![
            "--restore",
            snap.to_str().unwrap(),
            "--fs-socket",
            backend.socket().to_str().unwrap(),
        ];
        args.extend(checked);
        let restored = Vmm::start(dir.path(), name, &args);
        let console = restored.console.clone();
        let (code, stderr) = wait_exit(restored);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert!(
            stderr.contains("vhost-user backend serves the queues"),
            "{name}: {stderr}"
        );
        assert_eq!(
            std::fs::read(console).unwrap(),
            &FS_GUEST_CONSOLE[1..],
            "{name}: {stderr}"
        );
    }
}

/// The control socket's `balloon MIB` (issue 18): a VM with `--balloon` takes a target (the
/// counting guest has no balloon driver, so nothing is inflated: `actual` stays 0), a target
/// beyond guest RAM or a VM without a balloon is refused, and the VM runs on either way. A VM
/// with a balloon snapshots and restores with it (issue 19).
#[test]
fn the_control_socket_sets_a_balloon_target() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("counter.elf");
    std::fs::write(&kernel, counter_guest(u64::MAX >> 1)).unwrap();
    let args = ["--kernel", kernel.to_str().unwrap(), "--mem-mib", "16"];
    let mut with = Vmm::start(dir.path(), "with", &[&args[..], &["--balloon"]].concat());
    with.wait_console(50);
    assert_eq!(
        with.request("balloon 4"),
        "OK balloon target=4 actual=0 guest=16"
    );
    let refused = with.request("balloon 17");
    assert!(
        refused.starts_with("ERR ") && refused.contains("more than the guest's 16 MiB"),
        "{refused}"
    );
    let more = with.console().len() + 50;
    with.wait_console(more);
    // A VM with a balloon is snapshotted with it (issue 19); its restore carries on counting
    // and takes targets on its own control socket.
    let snap = dir.path().join("snap");
    let answer = with.request(&format!("snapshot {}", snap.display()));
    assert!(answer.starts_with("OK snapshot "), "{answer}");
    let steps = with.console().len();
    let mut restored = restore(dir.path(), "restored", &snap);
    let counted = restored.wait_console(50);
    assert_eq!(
        first_break(&counted, steps as u64 + 1),
        None,
        "{}",
        restored.stderr()
    );
    assert_eq!(
        restored.request("balloon 8"),
        "OK balloon target=8 actual=0 guest=16"
    );
    let mut without = Vmm::start(dir.path(), "without", &args);
    without.wait_console(50);
    let refused = without.request("balloon 4");
    assert!(refused.contains("no balloon"), "{refused}");
    for vm in [with, without, restored] {
        let (code, stderr) = vm.stop();
        assert_eq!(code, Some(0), "{stderr}");
    }
}
