//! Memory given back (issue 18): a pod whose container fills 200 MiB of guest memory and frees it
//! costs the host its idle memory again, through virtio-balloon free page reporting (the guest
//! reports free 2 MiB blocks, the VMM discards their host pages). Measured as the PSS of the VMM
//! process (with its jailer): idle (after the boot settled), peak (while the 200 MiB are held: the
//! positive control that the fill reached host memory at all), and after the free. The deadline
//! is generous: the assertion is about the memory coming back, not how fast (the time is printed
//! for the report).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_tests::pod::TestPod;
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

/// Waits until `pid`'s PSS stops falling (two samples a second apart within 1 MiB), at most 30 s.
async fn settled_pss(pid: u32) -> u64 {
    let mut last = pss(pid);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = pss(pid);
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
    // The boot's own free memory is reported first; measure idle once that is done.
    let warm = pod.run("warm", &spec(&["true"])).await;
    assert_eq!(warm.exit.exit_status, 0, "{}", warm.err());
    let idle = settled_pss(vmm).await;

    // Fill a tmpfs with 200 MiB, hold it while the host samples, then free it.
    let script = format!(
        "dd if=/dev/zero of=/tmp/fill bs=1M count={FILL_MIB} 2>/dev/null && sync && sleep 8 && \
         rm /tmp/fill && echo freed"
    );
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
