//! virtio-fs: container root filesystems and volumes from the host, through virtiofsd and the
//! QEMU backend, with POSIX behaviour checked from both sides.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hull_runtime::share::{guest_rootfs, mountinfo, mounts, spec as share_spec, CacheMode};
use hull_tests::pod::TestPod;
use hull_tests::rootfs::busybox_rootfs;
use hull_tests::spec::spec;
use serde_json::json;

/// A container root as containerd's overlay snapshotter would give it: busybox as the lower
/// layer, an empty upper layer.
struct Layers {
    _dir: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

fn layers() -> Layers {
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper, work) = (
        dir.path().join("lower"),
        dir.path().join("upper"),
        dir.path().join("work"),
    );
    busybox_rootfs(&lower).unwrap();
    std::fs::write(lower.join("etc/hostname"), "inside\n").unwrap();
    let probe = hull_tests::rootfs::fs_probe_binary();
    std::fs::copy(&probe, lower.join("bin/hull-fs-probe"))
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/build.sh builds it)", probe.display()));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    Layers {
        _dir: dir,
        lower,
        upper,
        work,
    }
}

/// Mounts `layers` as container `cid`'s rootfs in the pod's share.
fn mount_overlay(pod: &TestPod, cid: &str, l: &Layers) -> PathBuf {
    let shared = pod.vm.shared_dir().expect("a share");
    let target = shared.join(cid).join("rootfs");
    let m = mounts::RootfsMount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", l.lower.display()),
            format!("upperdir={}", l.upper.display()),
            format!("workdir={}", l.work.display()),
        ],
    };
    mounts::mount_rootfs(&[m], &target, None).unwrap();
    target
}

/// `spec` for `cid` rewritten as the shim does: root on the share, bind volumes moved into it.
fn shared_spec(pod: &TestPod, cid: &str, mut s: serde_json::Value) -> serde_json::Value {
    let mut spec: oci_spec::runtime::Spec = serde_json::from_value(s.take()).unwrap();
    let binds = share_spec::rewrite(&mut spec, cid, pod.vm.shared_dir().unwrap()).unwrap();
    share_spec::apply(&binds).unwrap();
    serde_json::to_value(&spec).unwrap()
}

fn mounted_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo::mounts_under(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        dir,
    )
}

async fn boot() -> Option<TestPod> {
    TestPod::boot_shared(1, 256, CacheMode::Auto).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_rootfs_from_the_host_runs_and_writes_reach_the_host() {
    let Some(pod) = boot().await else {
        return;
    };
    let l = layers();
    let host_root = mount_overlay(&pod, "c1", &l);
    std::fs::write(host_root.join("from-host"), "written on the host\n").unwrap();
    let s = shared_spec(
        &pod,
        "c1",
        spec(&["sh", "-c", "ls /bin/busybox && cat /from-host && cat /etc/hostname && echo from-guest > /from-guest"]),
    );
    let done = pod.run_on("c1", &s, &guest_rootfs("c1")).await;
    assert_eq!(done.exit.exit_status, 0, "{}", done.err());
    assert_eq!(done.out(), "/bin/busybox\nwritten on the host\ninside\n");
    // The guest's write went through the overlay to its upper layer on the host.
    assert_eq!(
        std::fs::read_to_string(l.upper.join("from-guest")).unwrap(),
        "from-guest\n"
    );
    assert_eq!(
        std::fs::read_to_string(host_root.join("from-guest")).unwrap(),
        "from-guest\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_semantics_on_a_volume_match_the_host() {
    let Some(pod) = boot().await else {
        return;
    };
    let l = layers();
    mount_overlay(&pod, "c2", &l);
    let vol = tempfile::tempdir().unwrap();
    let mut s = spec(&["sh", "-c", "cd /vol && echo data > f && chmod 640 f && chown 1000:2000 f \
        && ln -s f sl && ln f hl && mv f g && sync && mkdir d && rmdir d && stat -c '%a %u %g %h' g \
        && readlink sl && cat hl && cat ../../../vol/../etc/hostname"]);
    s["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/vol", "type": "bind", "source": vol.path(), "options": ["rbind", "rw"]
    }));
    let s = shared_spec(&pod, "c2", s);
    let done = pod.run_on("c2", &s, &guest_rootfs("c2")).await;
    assert_eq!(done.exit.exit_status, 0, "{}", done.err());
    // Inside: mode, owner, link count, symlink target, hard link content; `..` stops at the
    // container's root (its own /etc/hostname, not the host's).
    assert_eq!(done.out(), "640 1000 2000 2\nf\ndata\ninside\n");
    // On the host: the same.
    let g = std::fs::symlink_metadata(vol.path().join("g")).unwrap();
    assert_eq!(
        (g.mode() & 0o7777, g.uid(), g.gid(), g.nlink()),
        (0o640, 1000, 2000, 2)
    );
    assert_eq!(
        std::fs::read_link(vol.path().join("sl")).unwrap(),
        Path::new("f")
    );
    assert!(!vol.path().join("f").exists(), "renamed away");
    assert!(!vol.path().join("d").exists());
}

fn host_xattr(path: &Path, name: &str) -> Option<String> {
    let (p, n) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap(),
        std::ffi::CString::new(name).unwrap(),
    );
    let mut buf = [0u8; 256];
    // SAFETY: NUL-terminated strings and a writable buffer of the given length; checked.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = usize::try_from(rc).ok()?;
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xattrs_and_shared_mmap_cross_the_share() {
    let Some(pod) = boot().await else {
        return;
    };
    let l = layers();
    mount_overlay(&pod, "c6", &l);
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("from-host"), "host bytes for mmap").unwrap();
    std::fs::write(vol.path().join("mapped"), vec![b'.'; 4096]).unwrap();
    let script = "hull-fs-probe mmap-read /vol/from-host 10 \
        && echo x > /vol/tagged && hull-fs-probe xattr-set /vol/tagged user.hull from-guest \
        && hull-fs-probe xattr-get /vol/tagged user.hull \
        && hull-fs-probe mmap-write /vol/mapped guest-mmap";
    let mut s = spec(&["sh", "-c", script]);
    s["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/vol", "type": "bind", "source": vol.path(), "options": ["rbind", "rw"]
    }));
    let s = shared_spec(&pod, "c6", s);
    let done = pod.run_on("c6", &s, &guest_rootfs("c6")).await;
    assert_eq!(done.exit.exit_status, 0, "{}", done.err());
    assert_eq!(done.out(), "host bytes\nfrom-guest\n");
    assert_eq!(
        host_xattr(&vol.path().join("tagged"), "user.hull").as_deref(),
        Some("from-guest")
    );
    let mapped = std::fs::read(vol.path().join("mapped")).unwrap();
    assert_eq!(&mapped[..10], b"guest-mmap");
    assert_eq!(mapped.len(), 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_volume_gives_erofs_and_symlinks_resolve_inside() {
    let Some(pod) = boot().await else {
        return;
    };
    let l = layers();
    let host_root = mount_overlay(&pod, "c3", &l);
    // An absolute symlink made on the host resolves inside the container, not on the host.
    std::os::unix::fs::symlink("/etc/hostname", host_root.join("escape")).unwrap();
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("kept"), "kept\n").unwrap();
    let mut s = spec(&[
        "sh",
        "-c",
        "cat /ro/kept; touch /ro/new; echo rc=$?; cat /escape",
    ]);
    s["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/ro", "type": "bind", "source": vol.path(), "options": ["rbind", "ro"]
    }));
    let s = shared_spec(&pod, "c3", s);
    let done = pod.run_on("c3", &s, &guest_rootfs("c3")).await;
    assert_eq!(done.out(), "kept\nrc=1\ninside\n", "{}", done.err());
    assert!(
        done.err().contains("Read-only file system"),
        "{}",
        done.err()
    );
    assert!(!vol.path().join("new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtiofsd_death_fails_guest_io_and_the_pod_still_stops_clean() {
    let Some(mut pod) = boot().await else {
        return;
    };
    let l = layers();
    mount_overlay(&pod, "c4", &l);
    let s = shared_spec(&pod, "c4", spec(&["sleep", "1000"]));
    let agent = pod.agent();
    agent
        .create_container(
            "c4",
            hull_tests::spec::to_bytes(&s),
            &guest_rootfs("c4"),
            Default::default(),
        )
        .await
        .unwrap();
    agent.start_container("c4").await.unwrap();
    let pid = pod.vm.virtiofsd_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The host notices and has the agent abort the share.
    let mut alive = true;
    for _ in 0..500 {
        alive = match pod.vm.check_share().await {
            Ok(a) => a,
            Err(e) => {
                let read = |name: &str| {
                    std::fs::read_to_string(pod.run_dir().join(name)).unwrap_or_default()
                };
                panic!(
                    "{e:?}\n--- console ---\n{}\n--- VMM log ---\n{}",
                    read("console.log"),
                    read("vmm.log")
                );
            }
        };
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!alive, "virtiofsd's death went unnoticed");
    // I/O on the share now fails with an error instead of hanging: the exec cannot even start
    // (its root is on the share), or it starts and its write fails. Either way, within bounds.
    let process = hull_tests::spec::process(&["sh", "-c", "echo x > /after-death"]);
    let process = serde_json::to_vec(&process).unwrap();
    let attempt = tokio::time::timeout(Duration::from_secs(20), async {
        match pod
            .agent()
            .exec_process("c4", "io", process, Default::default())
            .await
        {
            Err(e) => format!("exec refused: {e:?}"),
            Ok(_) => format!(
                "exit {:?}",
                pod.agent().wait_process("c4", "io").await.unwrap()
            ),
        }
    })
    .await
    .expect("guest I/O on a dead share must fail, not hang");
    assert!(
        attempt.contains("exec refused") || !attempt.contains("exit_status: 0,"),
        "{attempt}"
    );
    assert!(!l.upper.join("after-death").exists());
    let run_dir = pod.run_dir().to_owned();
    let vm_pid = pod.vm.vm_pid();
    let vsock_pid = pod.vm.vsock_pid();
    drop(pod);
    for p in [Some(vm_pid), vsock_pid, Some(pid)].into_iter().flatten() {
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), None).is_err(),
            "pid {p} left running"
        );
    }
    assert!(
        mounted_under(&run_dir).is_empty(),
        "{:?}",
        mounted_under(&run_dir)
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pod_leaves_no_mount_and_no_process() {
    let Some(pod) = boot().await else {
        return;
    };
    let l = layers();
    mount_overlay(&pod, "c5", &l);
    let vol = tempfile::tempdir().unwrap();
    let mut s = spec(&["true"]);
    s["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/vol", "type": "bind", "source": vol.path(), "options": ["rbind"]
    }));
    let s = shared_spec(&pod, "c5", s);
    assert_eq!(
        pod.run_on("c5", &s, &guest_rootfs("c5"))
            .await
            .exit
            .exit_status,
        0
    );
    let run_dir = pod.run_dir().to_owned();
    assert_eq!(
        mounted_under(&run_dir).len(),
        3,
        "share, rootfs, volume: {:?}",
        mounted_under(&run_dir)
    );
    let pids = [
        Some(pod.vm.vm_pid()),
        pod.vm.vsock_pid(),
        Some(pod.vm.virtiofsd_pid().unwrap()),
    ];
    pod.vm.shutdown(Duration::from_secs(5)).await.unwrap();
    for p in pids.into_iter().flatten() {
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), None).is_err(),
            "pid {p} left running"
        );
    }
    assert!(
        mounted_under(&run_dir).is_empty(),
        "{:?}",
        mounted_under(&run_dir)
    );
    assert!(!run_dir.join("shared").exists());
    // The layers and the volume themselves are untouched.
    assert!(l.lower.join("bin/busybox").exists());
    assert!(vol.path().exists());
}
