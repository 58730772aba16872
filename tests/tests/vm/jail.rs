//! The VMM's jail (`hull-jailer`): the VMM runs as PID 1 of its own PID namespace, in its own
//! mount, IPC and UTS namespaces, on a tmpfs root holding only what it needs, as an unprivileged
//! uid without capabilities and with `no_new_privs`; it dies with its jailer; and a missing jailer
//! is a clear error.

use std::time::{Duration, Instant};

use hull_runtime::jail;
use hull_runtime::vm::{Hypervisor, Jailable, VmConfig, VmError};
use hull_tests::{guest_images, qemu};

fn pid_alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, None).is_ok()
}

fn config(run_dir: &std::path::Path) -> Option<VmConfig> {
    Some(VmConfig {
        images: guest_images()?,
        cmdline: vec![],
        vcpus: 1,
        memory_mib: 128,
        devices: vec![],
        run_dir: run_dir.to_owned(),
    })
}

/// The jailer's only child: the VMM.
fn vmm_of(jailer: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{jailer}/task/{jailer}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            let pid: u32 = pid.parse().unwrap();
            // Wait until stage 2 has exec'd the VMM.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.starts_with("qemu") {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "no VMM under jailer {jailer}");
        std::thread::sleep(Duration::from_millis(20));
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

fn ns(pid: &str, kind: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// What every jailed VMM is: the jail's uid (not root) for all four ids, no effective
/// capability, `no_new_privs`, PID 1 of its own PID namespace, its own mount, PID, IPC and UTS
/// namespaces.
fn assert_jailed(vmm: u32, run_dir: &std::path::Path) {
    let uid = jail::uid_for(run_dir).to_string();
    assert_ne!(uid, "0");
    assert_eq!(
        status_field(vmm, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [uid.as_str(); 4]
    );
    assert_eq!(status_field(vmm, "CapEff"), "0000000000000000");
    assert_eq!(status_field(vmm, "NoNewPrivs"), "1");
    assert_eq!(
        status_field(vmm, "NSpid").split_whitespace().last(),
        Some("1")
    );
    for kind in ["mnt", "pid", "ipc", "uts"] {
        assert_ne!(
            ns(&vmm.to_string(), kind),
            ns("self", kind),
            "{kind} namespace shared"
        );
    }
}

#[test]
fn the_vmm_runs_unprivileged_in_its_own_namespaces_and_root() {
    let run_dir = tempfile::tempdir().unwrap();
    let (Some(config), Some(qemu)) = (config(run_dir.path()), qemu()) else {
        return;
    };
    let mut vm = qemu.start(&config).unwrap();
    let vmm = vmm_of(vm.pid());

    assert_jailed(vmm, run_dir.path());
    assert_eq!(status_field(vmm, "Groups"), "");
    assert_eq!(status_field(vmm, "CapPrm"), "0000000000000000");
    // No file-size limit: it would cap the guest-RAM memfd too (pods above 1 GiB failed).
    let limits = std::fs::read_to_string(format!("/proc/{vmm}/limits")).unwrap();
    let fsize = limits
        .lines()
        .find(|l| l.starts_with("Max file size"))
        .unwrap();
    assert!(fsize.contains("unlimited"), "{fsize}");
    assert_eq!(ns(&vmm.to_string(), "net"), ns("self", "net"));
    // Its root is a tmpfs with /usr, the images and a few devices: nothing else (the console
    // is its stdout, not a host file it writes).
    let mounts = std::fs::read_to_string(format!("/proc/{vmm}/mountinfo")).unwrap();
    let points: Vec<&str> = mounts
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap())
        .collect();
    assert_eq!(
        points,
        ["/", "/dev", "/usr", "/vm/kernel", "/vm/initrd", "/proc"],
        "{mounts}"
    );
    let root_line = mounts.lines().next().unwrap();
    assert!(root_line.contains(" - tmpfs "), "{root_line}");
    let usr = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/usr"))
        .unwrap();
    assert!(usr.split(' ').nth(5).unwrap().starts_with("ro"), "{usr}");
    // Host files outside the jail are out of sight.
    let devices = std::fs::read_dir(format!("/proc/{vmm}/root/dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(devices, ["null", "urandom"].map(String::from).into());
    assert!(!std::path::Path::new(&format!("/proc/{vmm}/root/etc/passwd")).exists());
    // Nothing of the jail is visible on the host.
    assert_eq!(
        std::fs::read_dir(run_dir.path().join("jail"))
            .unwrap()
            .count(),
        0
    );

    vm.stop(Duration::from_secs(10)).unwrap();
    assert!(!pid_alive(vmm));
}

#[test]
fn the_vmm_dies_with_its_jailer() {
    let run_dir = tempfile::tempdir().unwrap();
    let (Some(config), Some(qemu)) = (config(run_dir.path()), qemu()) else {
        return;
    };
    let mut vm = qemu.start(&config).unwrap();
    let vmm = vmm_of(vm.pid());
    let jailer = nix::unistd::Pid::from_raw(i32::try_from(vm.pid()).unwrap());
    nix::sys::signal::kill(jailer, nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = vm.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some(), "the jailer survived SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(vmm) && !status_field(vmm, "State").starts_with('Z') {
        assert!(Instant::now() < deadline, "VMM {vmm} outlived its jailer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes whose command line is `/bin/sleep <marker>`.
fn sleepers(marker: &str) -> Vec<u32> {
    let cmdline = format!("/bin/sleep {marker} ");
    hull_tests::containerd::processes()
        .into_iter()
        .filter(|(_, c)| *c == cmdline)
        .map(|(pid, _)| pid)
        .collect()
}

/// A jailer killed while it builds the jail (a stop that comes before the VMM runs: stage 2, a
/// PID 1 without handlers yet, drops the SIGTERM, and SIGKILL follows after the grace) takes its
/// stage 2 with it: no VMM goes on to run as an orphan of PID 1 that nothing would stop. The
/// jailer is killed at 100 moments over its first 50 ms, with `/bin/sleep` as the VMM (no VM
/// needed); before stage 2 died with stage 1 from its first moment, 3-5 in 100 survived here.
#[test]
fn a_jailer_killed_while_it_builds_the_jail_leaves_no_vmm() {
    let Some(jailer) = hull_tests::built_jailer() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let config = serde_json::to_string(&jail::JailConfig {
        root: root.path().to_owned(),
        uid: 65534,
        gid: 65534,
        hostname: "jail-test".into(),
        binds: vec![jail::Bind {
            host: "/usr".into(),
            jail: "/usr".into(),
            writable: false,
        }],
        devices: vec![],
        tap: None,
        max_open_files: 64,
        cgroups: vec![],
        files: vec![],
    })
    .unwrap();
    // A duration no other sleep on the host has: the VMMs of this test are told apart by it.
    let marker = format!("1000.{}", std::process::id());
    let start = |marker: &str| {
        std::process::Command::new(&jailer)
            .args(["--config", &config, "--", "/bin/sleep", marker])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    for i in 0..100u64 {
        let mut child = start(&marker);
        std::thread::sleep(Duration::from_micros(i * 500));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // A stage 2 killed with its jailer is gone within moments; an orphan stays.
    std::thread::sleep(Duration::from_millis(500));
    let orphans = sleepers(&marker);
    for pid in &orphans {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(*pid).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(
        orphans.is_empty(),
        "VMMs outlived their jailers: {orphans:?}"
    );

    // Positive control: left alone, the same jail runs its VMM (so the kills above came while
    // it was being built or running, not before it could start at all).
    let mut child = start(&marker);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the jail never ran its VMM");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sleepers(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the VMM outlived its jailer");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A root-only file handed to the jail as a descriptor (`JailConfig::files`, how a jailed
/// hull-vmm gets a template's snapshot): the unprivileged process reads it at its descriptor,
/// and cannot open it by name even where it can see it.
#[test]
fn a_root_only_file_reaches_the_jail_as_a_descriptor_only() {
    use std::os::unix::fs::PermissionsExt;
    let Some(jailer) = hull_tests::built_jailer() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let secret = files.path().join("state");
    std::fs::write(&secret, b"root-only bytes").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = jail::JailConfig::new(root.path().join("jail"), root.path());
    std::fs::create_dir(&config.root).unwrap();
    config.uid = 65534;
    config.gid = 65534;
    // The file's directory bound too: by name it stays closed to the jail's uid.
    config.bind(files.path(), "/vm/files", false);
    config.files = vec![jail::JailFile {
        host: secret.clone(),
        fd: 4,
    }];
    let script = "id -u; cat <&4; echo; cat /vm/files/state 2>/dev/null || echo refused";
    let out = jail::command(
        &jailer,
        &config,
        std::path::Path::new("/bin/sh"),
        vec!["-c".into(), script.into()],
    )
    .unwrap()
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "65534\nroot-only bytes\nrefused\n");
    // A symlink is not followed.
    let link = files.path().join("link");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    config.files[0].host = link;
    let out = jail::command(&jailer, &config, std::path::Path::new("/bin/true"), vec![])
        .unwrap()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open"), "{stderr}");
}

#[test]
fn a_missing_jailer_is_a_clear_error() {
    let run_dir = tempfile::tempdir().unwrap();
    let (Some(config), Some(qemu)) = (config(run_dir.path()), qemu()) else {
        return;
    };
    let qemu = qemu.jailed("/nonexistent/hull-jailer");
    let err = qemu.start(&config).unwrap_err();
    assert!(matches!(err, VmError::Jail(_)), "{err:?}");
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("/nonexistent/hull-jailer"), "{text}");
}

/// On the backend under test (`HULL_TEST_HYPERVISOR`: QEMU here, hull-vmm and QEMU+KVM in the
/// nested-KVM tier), a booted pod's VMM — the process that reads guest memory — is jailed and
/// confined while its agent answers: its own namespaces, the pod's unprivileged uid, no
/// capabilities, `no_new_privs`, and a seccomp filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booted_pods_vmm_is_jailed_and_filtered() {
    let Some(pod) = hull_tests::pod::TestPod::boot(1, 256).await else {
        return;
    };
    pod.agent().check().await.expect("the agent answers");
    let jailer = pod.vm.vm_pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let vmm = loop {
        let children = std::fs::read_to_string(format!("/proc/{jailer}/task/{jailer}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            break pid.parse::<u32>().unwrap();
        }
        assert!(Instant::now() < deadline, "no VMM under jailer {jailer}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let comm = std::fs::read_to_string(format!("/proc/{vmm}/comm")).unwrap();
    eprintln!(
        "backend {}: VMM {}",
        hull_tests::hypervisor_choice(),
        comm.trim()
    );
    assert_jailed(vmm, pod.run_dir());
    assert_eq!(status_field(vmm, "Seccomp"), "2");
    assert!(!std::path::Path::new(&format!("/proc/{vmm}/root/etc/passwd")).exists());
}
