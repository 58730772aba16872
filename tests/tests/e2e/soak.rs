//! Soak: 200 sequential `ctr run --rm` while four loops exec into one long-lived container. After
//! it, nothing has grown: no process, mount, pod directory or shim socket is left by the runs;
//! containerd's and the long-lived pod's shim, VMM and jailer hold no more descriptors; and their
//! memory is within a small margin of what it was after a warm-up. The figures are printed
//! (`--nocapture`) for the record.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_tests::containerd::{mounts_under, processes, Containerd};

/// Sequential `ctr run --rm` runs (`HULL_SOAK_RUNS` overrides).
const RUNS: usize = 200;
/// Parallel exec loops into the long-lived container.
const LOOPS: usize = 4;
/// Memory any one long-lived host process may gain over the soak (allocator noise, lazily touched
/// pages), KiB.
const RSS_MARGIN_KIB: u64 = 4096;
/// How far virtiofsd's descriptor count may move (see the check).
const FS_FD_SLACK: usize = 8;
/// Pause between two execs of a loop: a steady background, not a CPU hog on a 2-core host.
const EXEC_PAUSE: Duration = Duration::from_millis(300);
/// The VMM's RSS is mostly guest RAM the guest touched and, under TCG, its translation cache:
/// guest-driven and capped (guest RAM + `tb-size`) rather than a leak. It must stay under the cap:
/// the pod's guest RAM (the shim's default, 256 MiB) + QEMU's TCG cache (128 MiB) + QEMU itself.
const VMM_CAP_KIB: u64 = (256 + 128 + 96) * 1024;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Children of every thread of `pid` (each thread has its own list).
fn children(pid: u32) -> Vec<u32> {
    let mut all: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    all.sort_unstable();
    all
}

#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    /// (what, pid, open fds, RSS KiB) of containerd and the long-lived pod's processes.
    long_lived: Vec<(String, u32, usize, u64)>,
    /// Processes of this containerd's pods (shims, jailers, virtiofsd, vsock backends).
    pod_processes: Vec<String>,
    /// Mounts under the test directory.
    mounts: usize,
    /// Pod directories.
    pod_dirs: usize,
}

fn snapshot(c: &Containerd, containerd_pid: u32, shim: u32) -> Snapshot {
    let mut long_lived = vec![(
        "containerd".to_owned(),
        containerd_pid,
        fds(containerd_pid),
        rss_kib(containerd_pid),
    )];
    long_lived.push(("shim".into(), shim, fds(shim), rss_kib(shim)));
    for child in children(shim) {
        let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        long_lived.push((comm.trim().to_owned(), child, fds(child), rss_kib(child)));
        for grandchild in children(child) {
            let comm =
                std::fs::read_to_string(format!("/proc/{grandchild}/comm")).unwrap_or_default();
            long_lived.push((
                comm.trim().to_owned(),
                grandchild,
                fds(grandchild),
                rss_kib(grandchild),
            ));
        }
    }
    long_lived.sort_by(|a, b| a.0.cmp(&b.0));
    let marker = c.socket().display().to_string();
    let run_marker = c.run_dir().display().to_string();
    let pod_processes = processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(&marker) || cmd.contains(&run_marker))
        .map(|(pid, cmd)| format!("{pid} {}", cmd.chars().take(160).collect::<String>()))
        .collect();
    Snapshot {
        long_lived,
        pod_processes,
        mounts: mounts_under(c.dir()).len(),
        pod_dirs: std::fs::read_dir(c.run_dir()).map_or(0, Iterator::count),
    }
}

fn containerd_pid(c: &Containerd) -> u32 {
    let socket = c.socket().display().to_string();
    processes()
        .into_iter()
        .find(|(_, cmd)| {
            cmd.starts_with("containerd ") && cmd.contains(&c.dir().display().to_string())
        })
        .or_else(|| {
            processes().into_iter().find(|(_, cmd)| {
                cmd.contains("containerd") && !cmd.contains("shim") && cmd.contains(&socket)
            })
        })
        .map(|(pid, _)| pid)
        .expect("containerd's pid")
}

fn shim_of(c: &Containerd, id: &str) -> u32 {
    c.shim_pid(id).expect("the shim")
}

#[test]
fn two_hundred_runs_and_four_exec_loops_leave_nothing_and_grow_nothing() {
    let Some(c) = Containerd::start() else { return };
    let c = Arc::new(c);
    let runs = std::env::var("HULL_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    c.run_detached("longlived", &["sleep", "1000000"]);
    c.wait_status("longlived", "RUNNING", Duration::from_secs(60));
    let shim = shim_of(&c, "longlived");
    let containerd = containerd_pid(&c);
    // Warm-up: first-time allocations and caches.
    for i in 0..3 {
        let out = c.run_rm(&format!("warm{i}"), &["true"]);
        assert!(out.status.success(), "{}", c.explain(&out));
        c.exec_out("longlived", &format!("warm{i}"), &["true"]);
    }
    let before = snapshot(&c, containerd, shim);

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let execs = Arc::new(AtomicU32::new(0));
    let loops: Vec<_> = (0..LOOPS)
        .map(|l| {
            let (c, stop, execs) = (c.clone(), stop.clone(), execs.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let exec_id = format!("loop{l}-{n}");
                    let out = c.ctr(&[
                        "task",
                        "exec",
                        "--exec-id",
                        &exec_id,
                        "longlived",
                        "echo",
                        "soak",
                    ]);
                    if !out.status.success()
                        || String::from_utf8_lossy(&out.stdout).trim() != "soak"
                    {
                        stop.store(true, Ordering::Relaxed);
                        let about: Vec<String> = c
                            .log()
                            .lines()
                            .filter(|l| l.contains(&exec_id))
                            .map(str::to_owned)
                            .collect();
                        panic!(
                            "exec {exec_id}: {}\n--- log lines about {exec_id} ---\n{}",
                            c.explain(&out),
                            about.join("\n")
                        );
                    }
                    n += 1;
                    execs.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(EXEC_PAUSE);
                }
            })
        })
        .collect();
    let mut mid = None;
    for i in 0..runs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if i == runs / 2 {
            mid = Some(snapshot(&c, containerd, shim));
        }
        let id = format!("soak{i}");
        let out = c.run_rm(&id, &["sh", "-c", "echo $((6 * 7))"]);
        if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "42" {
            stop.store(true, Ordering::Relaxed);
            for l in loops {
                let _ = l.join();
            }
            panic!("run {i}: {}", c.explain(&out));
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Join every loop before judging, so that a failure still drops containerd (and with it
    // every pod) once the test unwinds.
    let failed = loops
        .into_iter()
        .map(|l| l.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(
        failed, 0,
        "{failed} exec loops failed (see their panics above)"
    );
    let elapsed = started.elapsed();
    // Let the last shims exit and their directories go.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = snapshot(&c, containerd, shim);
        if (now.pod_processes.len() <= before.pod_processes.len()
            && now.pod_dirs <= before.pod_dirs)
            || Instant::now() >= deadline
        {
            break now;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mid = mid.expect("a mid-soak snapshot");
    println!(
        "soak: {runs} runs + {} execs in {:.1} s\nbefore: {before:#?}\nhalfway: {mid:#?}\nafter: {after:#?}",
        execs.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    assert!(execs.load(Ordering::Relaxed) >= u32::try_from(LOOPS).unwrap());
    assert_eq!(
        after.pod_processes, before.pod_processes,
        "processes left: {after:#?}"
    );
    assert_eq!(after.mounts, before.mounts, "mounts left");
    assert_eq!(after.pod_dirs, before.pod_dirs, "pod directories left");
    assert_eq!(after.long_lived.len(), before.long_lived.len());
    assert_eq!(mid.long_lived.len(), before.long_lived.len());
    for ((b, a), m) in before
        .long_lived
        .iter()
        .zip(&after.long_lived)
        .zip(&mid.long_lived)
    {
        assert_eq!(a.0, b.0);
        if a.0 == "containerd" {
            // Not ours: its Go heap is its own business; its descriptors are checked.
            assert!(
                a.2 <= b.2 + 2,
                "containerd holds {} descriptors, {} before",
                a.2,
                b.2
            );
            continue;
        }
        if a.0.starts_with("qemu") {
            assert!(
                a.2 <= b.2,
                "the VMM holds {} descriptors, {} before",
                a.2,
                b.2
            );
            assert!(
                a.3 <= VMM_CAP_KIB,
                "the VMM's RSS {} KiB is over its cap",
                a.3
            );
            continue;
        }
        // virtiofsd holds a descriptor per inode the guest keeps in its cache: it follows the
        // guest's cache (bounded by guest memory), so it may move a little; nobody else's may.
        let slack = if a.0 == "virtiofsd" { FS_FD_SLACK } else { 0 };
        assert!(
            a.2 <= b.2 + slack && a.2 <= m.2 + slack,
            "{} holds {} descriptors, {} before the soak",
            a.0,
            a.2,
            b.2
        );
        // Memory may settle in the first half (buffers, allocator arenas); a leak grows with the
        // work, so it shows in the second half too.
        assert!(
            a.3 <= m.3 + RSS_MARGIN_KIB && a.3 <= b.3 + 4 * RSS_MARGIN_KIB,
            "{} grew from {} KiB (start) and {} KiB (halfway) to {} KiB RSS",
            a.0,
            b.3,
            m.3,
            a.3
        );
    }
    c.remove("longlived");
    c.assert_clean("longlived", Duration::from_secs(15));
}
