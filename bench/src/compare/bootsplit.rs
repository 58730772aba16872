//! Boot: VMM start → the agent answers, for a pod VM set up as the shim sets one up (vsock
//! backend, virtiofsd with the default cache mode, the production initramfs), and where the time
//! goes. Quiet boots (the shim's kernel command line) give the total; boots with
//! `loglevel=7 printk.time=1` interleaved with them give the split: a thread follows the console
//! file and stamps each line's arrival on the host clock, the kernel stamps its own lines.
//!
//! - VMM: spawn → the kernel's clock starts (host arrival of `Run /init` minus the kernel's own
//!   timestamp of it): VMM set-up, kernel load and decompression;
//! - kernel: its clock start → `Run /init` (the kernel's timestamp);
//! - user space: `Run /init` → the agent's "serving" line (arrival times);
//! - connect: "serving" → the first `Check` answered over vsock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hull_runtime::images::GuestImages;
use hull_runtime::sandbox::{SandboxVm, SandboxVmConfig, SERVING_LINE};
use hull_runtime::share::CacheMode;
use hull_runtime::vm::{accel, qemu::Qemu, Hypervisor, Jailable};

use super::schema::{BootRun, BootSplit, KernelGap};
use super::Progress;

const INIT_LINE: &str = "Run /init as init process";

/// Lines of a growing file with the instant each was first seen.
#[derive(Debug)]
struct Follower {
    stop: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), lines.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = 0usize;
            let mut partial = String::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok(bytes) = std::fs::read(&path) {
                    if bytes.len() > seen {
                        let now = Instant::now();
                        partial.push_str(&String::from_utf8_lossy(&bytes[seen..]));
                        seen = bytes.len();
                        while let Some(end) = partial.find('\n') {
                            let line: String = partial.drain(..=end).collect();
                            if let Ok(mut v) = l.lock() {
                                v.push((now, line.trim_end().to_owned()));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            lines,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The kernel timestamp of a `[   12.345678] …` line, seconds.
pub fn kernel_stamp(line: &str) -> Option<f64> {
    let inner = line.trim_start().strip_prefix('[')?;
    inner.split(']').next()?.trim().parse().ok()
}

/// The `n` largest gaps between consecutive timestamped kernel lines up to `Run /init`.
pub fn kernel_gaps(lines: &[(Instant, String)], n: usize) -> Vec<KernelGap> {
    let mut gaps = Vec::new();
    let mut last: Option<f64> = None;
    for (_, line) in lines {
        let Some(t) = kernel_stamp(line) else {
            continue;
        };
        if let Some(prev) = last {
            let text = line
                .split_once(']')
                .map_or(line.as_str(), |(_, r)| r.trim());
            gaps.push(KernelGap {
                ms: (t - prev) * 1e3,
                line: text.to_owned(),
            });
        }
        last = Some(t);
        if line.contains(INIT_LINE) {
            break;
        }
    }
    gaps.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    gaps.truncate(n);
    gaps
}

/// Splits one verbose boot from its followed console lines.
fn split(
    spawned: Instant,
    total: Duration,
    lines: &[(Instant, String)],
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let init = lines.iter().find(|(_, l)| l.contains(INIT_LINE));
    let serving = lines.iter().find(|(_, l)| l.contains(SERVING_LINE));
    let kernel_s = init.and_then(|(_, l)| kernel_stamp(l));
    let (Some((init_at, _)), Some(kernel_s)) = (init, kernel_s) else {
        return (None, None, None, None);
    };
    let init_ms = ms(init_at.duration_since(spawned));
    let vmm = (init_ms - kernel_s * 1e3).max(0.0);
    let user = serving.map(|(at, _)| ms(at.saturating_duration_since(*init_at)));
    let connect = serving.map(|(at, _)| (ms(total) - ms(at.duration_since(spawned))).max(0.0));
    (Some(vmm), Some(kernel_s * 1e3), user, connect)
}

async fn one_boot(
    qemu: &Qemu,
    images: &GuestImages,
    p: &Progress<'_>,
    verbose: bool,
    dir: &Path,
) -> anyhow::Result<BootRun> {
    let run_dir = tempfile::tempdir_in(dir)?;
    let cmdline = if verbose {
        vec!["loglevel=7".to_owned(), "printk.time=1".to_owned()]
    } else {
        vec![]
    };
    let config = SandboxVmConfig {
        images: images.clone(),
        vcpus: p.opts.guest_vcpus,
        memory_mib: p.opts.guest_memory_mib,
        run_dir: run_dir.path().to_owned(),
        cmdline,
        boot_timeout: Duration::from_secs(120),
        share: Some(CacheMode::default()),
        netns: None,
        confine_host: false,
        template_root: None,
    };
    let follower = Follower::start(run_dir.path().join("console.log"));
    let spawned = Instant::now();
    let vm = SandboxVm::start(qemu, &config).await?;
    let total = vm.boot_time();
    let lines = follower.finish();
    vm.shutdown(Duration::from_secs(5)).await?;
    let (vmm_ms, kernel_ms, userspace_ms, connect_ms) = if verbose {
        split(spawned, total, &lines)
    } else {
        (None, None, None, None)
    };
    Ok(BootRun {
        verbose,
        total_ms: total.as_secs_f64() * 1e3,
        vmm_ms,
        kernel_ms,
        userspace_ms,
        connect_ms,
        kernel_gaps: if verbose {
            kernel_gaps(&lines, 8)
        } else {
            Vec::new()
        },
    })
}

/// The jailer: `HULL_JAILER`, else beside this binary.
fn jailer() -> Option<PathBuf> {
    std::env::var_os("HULL_JAILER")
        .map(PathBuf::from)
        .or_else(|| {
            let beside = std::env::current_exe().ok()?.parent()?.join("hull-jailer");
            beside.is_file().then_some(beside)
        })
}

/// `boots` quiet and `boots` verbose boots, alternating.
pub async fn run(p: &Progress<'_>, boots: usize) -> anyhow::Result<BootSplit> {
    let choice = accel::detect()?;
    let mut qemu = Qemu::for_host(choice.accel);
    let mut backend = qemu.name();
    // Jailed as the shim runs it, when the jailer is there.
    if let Some(jailer) = jailer() {
        qemu = qemu.jailed(jailer);
        backend.push_str(", jailed");
    }
    let images = GuestImages::from_env();
    let dir = tempfile::Builder::new()
        .prefix("hull-bench-boot-")
        .tempdir_in("/tmp")?;
    let mut runs = Vec::new();
    for i in 0..boots * 2 {
        p.check()?;
        let verbose = i % 2 == 1;
        p.message(&format!(
            "boot: {} {}/{boots}",
            if verbose { "split" } else { "quiet" },
            i / 2 + 1
        ));
        runs.push(one_boot(&qemu, &images, p, verbose, dir.path()).await?);
        p.inc();
    }
    Ok(BootSplit { backend, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stamps_parse() {
        assert_eq!(
            kernel_stamp("[    0.523456] Run /init as init process"),
            Some(0.523456)
        );
        assert_eq!(kernel_stamp("hull-agent: serving on vsock"), None);
    }

    #[test]
    fn a_boot_splits_into_its_parts() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let lines = vec![
            (at(300), "[    0.100000] Linux version 6.1".to_owned()),
            (at(900), format!("[    0.700000] {INIT_LINE}")),
            (at(1100), format!("{SERVING_LINE} 1024")),
        ];
        let (vmm, kernel, user, connect) = split(t0, Duration::from_millis(1150), &lines);
        assert!((vmm.unwrap() - 200.0).abs() < 1e-6);
        assert!((kernel.unwrap() - 700.0).abs() < 1e-6);
        assert!((user.unwrap() - 200.0).abs() < 1e-6);
        assert!((connect.unwrap() - 50.0).abs() < 1e-6);
        let gaps = kernel_gaps(&lines, 5);
        assert_eq!(gaps.len(), 1);
        assert!((gaps[0].ms - 600.0).abs() < 1e-6);
        assert_eq!(gaps[0].line, INIT_LINE);
    }
}
