//! Memory given back (issue 18): a pod whose container fills 200 MiB of guest memory and frees it
//! costs the host its idle memory again, through virtio-balloon free page reporting (the guest
//! reports free 2 MiB blocks, the VMM discards their host pages). Measured as the PSS of the VMM
//! process (with its jailer): idle (after the boot settled), peak (while the 200 MiB are held: the
//! positive control that the fill reached host memory at all), and after the free. The deadline
//! is generous: the assertion is about the memory coming back, not how fast (the time is printed
//! for the report).
//!
//! And memory the host asks back: a pod whose guest holds 200 MiB of page cache (a file read over
//! virtio-fs) is given a balloon target through its VMM's control socket (QMP for QEMU,
//! `hull pod balloon`'s path); the guest drops the cache to inflate, and the pod's PSS (VMM and
//! virtiofsd, which wrote the cached pages) falls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_runtime::share::{guest_rootfs, CacheMode};
use hull_runtime::vm::balloon;
use hull_tests::pod::TestPod;
use hull_tests::rootfs::busybox_rootfs;
use hull_tests::spec::spec;

const MIB: u64 = 1 << 20;
/// What the container fills and frees.
const FILL_MIB: u64 = 200;
/// How far above its idle PSS the VMM may stay once the memory is freed.
const BACK_WITHIN_MIB: u64 = 20;
/// How long the memory may take to come back (Linux reports free blocks 2 s after they appear).
const DEADLINE: Duration = Duration::from_secs(60);

/// The PSS of process `pid` and its descendants, bytes (`/proc/<pid>/smaps_rollup`): the VMM
/// runs jailed, as the jailer's child.
fn pss(pid: u32) -> u64 {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        tree.extend(children(tree[i]));
        i += 1;
    }
    tree.iter().map(|&p| pss_of(p)).sum()
}

fn pss_of(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib * 1024
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The ppid is the second field after the parenthesised command name.
        let ppid = stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_ascii_whitespace().nth(1)?.parse().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// The PSS of the whole pod, bytes: the VMM's tree and every process whose command line names
/// the pod's run directory (virtiofsd, which alone touches the pages it reads into guest RAM
/// when the guest never copies them, e.g. `cat` to `/dev/null` splices), with their children.
fn pod_pss(vmm: u32, run_dir: &std::path::Path) -> u64 {
    let marker = run_dir.display().to_string();
    let mut tree = vec![vmm];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != vmm && String::from_utf8_lossy(&cmdline).contains(&marker) {
            tree.push(pid);
        }
    }
    let mut i = 0;
    while i < tree.len() {
        for c in children(tree[i]) {
            if !tree.contains(&c) {
                tree.push(c);
            }
        }
        i += 1;
    }
    tree.iter().map(|&p| pss_of(p)).sum()
}

/// Waits until `pid`'s PSS stops falling (two samples a second apart within 1 MiB), at most 30 s.
async fn settled_pss(pid: u32) -> u64 {
    settled(|| pss(pid)).await
}

/// Waits until `read` stops falling (two samples a second apart within 1 MiB), at most 30 s.
async fn settled(read: impl Fn() -> u64) -> u64 {
    let mut last = read();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read();
        if now + MIB >= last {
            return now.min(last);
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_pod_frees_goes_back_to_the_host() {
    let Some(pod) = TestPod::boot(1, 512).await else {
        return;
    };
    let vmm = pod.vm.vm_pid();
    // Fill a tmpfs with `mib` MiB, hold it for `hold` s while the host samples, then free it.
    let fill_script = |mib: u64, hold: u32| {
        format!(
            "dd if=/dev/zero of=/tmp/fill bs=1M count={mib} 2>/dev/null && sync && sleep {hold} && \
             rm /tmp/fill && echo freed"
        )
    };
    // The boot's own free memory is reported first; measure idle once that is done. The warm-up
    // runs the fill's own code on 8 MiB, so QEMU has translated it (its translation cache, up to
    // 16 MiB of the VMM's PSS, grows with new guest code, not with guest memory) and idle already
    // holds those translations.
    let warm = pod
        .run("warm", &spec(&["sh", "-c", &fill_script(8, 0)]))
        .await;
    assert_eq!(warm.exit.exit_status, 0, "{}", warm.err());
    let idle = settled_pss(vmm).await;

    let script = fill_script(FILL_MIB, 8);
    // The host samples the VMM's PSS while the container runs; the highest sample is the peak.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(pss(vmm), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let fill = pod.run("fill", &spec(&["sh", "-c", &script])).await;
    sampler.abort();
    assert_eq!(
        (fill.exit.exit_status, fill.out()),
        (0, "freed\n".to_owned()),
        "{}",
        fill.err()
    );
    let peak = peak.load(Ordering::Relaxed);
    // Positive control: the fill reached host memory, or coming back would prove nothing.
    assert!(
        peak >= idle + (FILL_MIB - 50) * MIB,
        "VMM PSS peaked at {} MiB, idle {} MiB: the fill never reached host memory",
        peak / MIB,
        idle / MIB
    );
    let freed_at = Instant::now();
    let mut after = pss(vmm);
    while after > idle + BACK_WITHIN_MIB * MIB && freed_at.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = pss(vmm);
    }
    let took = freed_at.elapsed();
    eprintln!(
        "balloon: VMM PSS idle {} MiB, peak {} MiB, after free {} MiB ({:.1} s after the container exited)",
        idle / MIB,
        peak / MIB,
        after / MIB,
        took.as_secs_f64()
    );
    assert!(
        after <= idle + BACK_WITHIN_MIB * MIB,
        "VMM PSS {} MiB stayed above idle {} MiB + {BACK_WITHIN_MIB} MiB for {DEADLINE:?}",
        after / MIB,
        idle / MIB
    );
}

/// What the guest reads into its page cache, and the balloon target that makes it drop the cache.
const CACHE_MIB: u64 = 200;
const TARGET_MIB: u64 = 400;
/// How far the pod's PSS must fall. The guest inflates with its free pages first (~270 of its 512
/// MiB, never touched, so never host memory) and reclaims cache for the rest: 400 − 270 ≈ 130 MiB.
const FALL_MIB: u64 = 80;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balloon_target_takes_the_guests_page_cache_back() {
    let Some(pod) = TestPod::boot_shared(1, 512, CacheMode::Auto).await else {
        return;
    };
    let vmm = pod.vm.vm_pid();
    // A container whose rootfs is on the share, with a file the host made.
    let root = pod
        .vm
        .shared_dir()
        .expect("a share")
        .join("c1")
        .join("rootfs");
    busybox_rootfs(&root).unwrap();
    let big = std::fs::File::create(root.join("big")).unwrap();
    big.set_len(CACHE_MIB * MIB).unwrap();
    drop(big);
    let warm = pod.run_on("w", &spec(&["true"]), &guest_rootfs("c1")).await;
    assert_eq!(warm.exit.exit_status, 0, "{}", warm.err());
    let idle = settled(|| pod_pss(vmm, pod.run_dir())).await;

    // Reading the file fills the guest's page cache, which the guest keeps (it is not free).
    let read = pod
        .run_on(
            "r",
            &spec(&["sh", "-c", "cat /big > /dev/null && echo read"]),
            &guest_rootfs("c1"),
        )
        .await;
    assert_eq!(
        (read.exit.exit_status, read.out()),
        (0, "read\n".to_owned()),
        "{}",
        read.err()
    );
    let cached = settled(|| pod_pss(vmm, pod.run_dir())).await;
    // Positive control: the cache is host memory, or its going would prove nothing.
    assert!(
        cached >= idle + (CACHE_MIB - 50) * MIB,
        "pod PSS {} MiB after the read, idle {} MiB: the page cache never reached host memory",
        cached / MIB,
        idle / MIB
    );

    let state = balloon::set_target(pod.run_dir(), TARGET_MIB).expect("set the balloon target");
    assert_eq!((state.target_mib, state.guest_mib), (TARGET_MIB, 512));
    let asked = Instant::now();
    let mut after = pod_pss(vmm, pod.run_dir());
    while after + FALL_MIB * MIB > cached && asked.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = pod_pss(vmm, pod.run_dir());
    }
    let took = asked.elapsed();
    let inflated = settled(|| pod_pss(vmm, pod.run_dir())).await;
    eprintln!(
        "balloon target: pod PSS idle {} MiB, with {CACHE_MIB} MiB of page cache {} MiB, {} MiB \
         {:.1} s after a target of {TARGET_MIB} MiB, {} MiB settled",
        idle / MIB,
        cached / MIB,
        after / MIB,
        took.as_secs_f64(),
        inflated / MIB
    );
    assert!(
        after + FALL_MIB * MIB <= cached,
        "pod PSS {} MiB did not fall {} MiB below {} MiB within {DEADLINE:?} of the target",
        after / MIB,
        FALL_MIB,
        cached / MIB
    );
    // The guest still runs containers (it kept what it needs), and gets its memory back.
    let ok = pod
        .run_on("a", &spec(&["echo", "alive"]), &guest_rootfs("c1"))
        .await;
    assert_eq!(
        (ok.exit.exit_status, ok.out()),
        (0, "alive\n".to_owned()),
        "{}",
        ok.err()
    );
    // Released through the CLI: `hull pod balloon <pod> 0` with a configuration whose run_dir
    // holds the pod's directory.
    let cfg = tempfile::tempdir().unwrap();
    let (parent, name) = (
        pod.run_dir().parent().unwrap(),
        pod.run_dir().file_name().unwrap(),
    );
    let cfg_file = cfg.path().join("config.toml");
    std::fs::write(
        &cfg_file,
        format!("run_dir = {:?}\n", parent.display().to_string()),
    )
    .unwrap();
    let hull = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/hull");
    let out = std::process::Command::new(&hull)
        .args(["pod", "balloon"])
        .arg(name)
        .arg("0")
        .arg("--config")
        .arg(&cfg_file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/build.sh builds it)", hull.display()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("balloon target 0 MiB of 512 MiB"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A target beyond the guest's RAM is refused, and nothing changes.
    let e = balloon::set_target(pod.run_dir(), 513).unwrap_err();
    assert!(e.to_string().contains("more than the guest"), "{e}");
}
