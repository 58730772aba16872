//! Memory: every host process of one idle container (`sleep`), and density — N idle containers
//! started one after another (none removed until the end), with each start's latency, and at 1,
//! 10, 20 … N the PSS per container (every host process of each: shim, VMM and jailer,
//! virtiofsd, vsock backend; runc's shim and container) and the host's `MemAvailable`.

use std::time::Duration;

use super::procs;
use super::schema::{Density, DensityStep, PodMemory};
use super::target::{self, Target};
use super::Ctx;

/// The idle workload.
pub const IDLE: &[&str] = &["sleep", "1000000"];

/// How long an idle container settles before its memory is read.
pub fn settle(t: &Target, quick: bool) -> Duration {
    match (t.is_hull(), quick) {
        (true, true) => Duration::from_secs(2),
        (true, false) => Duration::from_secs(4),
        (false, _) => Duration::from_millis(500),
    }
}

/// Reads the memory of the running idle container `id`.
pub fn of_pod(ctx: &Ctx<'_>, t: &Target, id: &str) -> anyhow::Result<PodMemory> {
    let processes = procs::measure(&target::processes_of(ctx.c, t, id));
    anyhow::ensure!(
        processes.iter().any(|p| p.role == "shim"),
        "no shim process found for {id}"
    );
    Ok(PodMemory {
        runtime: t.label(),
        processes,
    })
}

/// The pod counts at which memory is read: 1, every multiple of 10 up to `n`, and `n`.
pub fn steps(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::once(1)
        .chain((10..=n).step_by(10))
        .filter(|k| *k <= n)
        .collect();
    if v.last() != Some(&n) && n > 0 {
        v.push(n);
    }
    v
}

/// How many idle pods this host's memory allows: half of `MemAvailable` over guest RAM plus
/// 96 MiB of VMM, TCG cache and helpers per pod, at most `cap`.
pub fn pods_for_host(guest_mib: u32, cap: usize) -> usize {
    let available_kib = mem_available_kib();
    let per_pod_kib = (u64::from(guest_mib) + 96) * 1024;
    let fit = usize::try_from(available_kib / 2 / per_pod_kib).unwrap_or(usize::MAX);
    fit.clamp(1, cap.max(1))
}

/// The host's `MemAvailable`, KiB (0 when unreadable).
pub fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_ascii_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Density of one target up to `n` containers. Every container is removed before it returns,
/// also when a start or a reading failed or the run was interrupted.
pub fn density(ctx: &Ctx<'_>, t: &Target, index: usize, n: usize) -> anyhow::Result<Density> {
    let mut ids: Vec<String> = Vec::new();
    let before = mem_available_kib();
    let result = density_inner(ctx, t, index, n, &mut ids);
    ctx.message(&format!("density: removing {} containers", ids.len()));
    for id in &ids {
        target::remove(ctx.c, id);
    }
    // What the host got back once they were gone (the page cache may keep some).
    std::thread::sleep(settle(t, ctx.opts.quick));
    let after = mem_available_kib();
    result.map(|d| Density {
        mem_available_before_kib: before,
        mem_available_after_kib: after,
        ..d
    })
}

fn density_inner(
    ctx: &Ctx<'_>,
    t: &Target,
    index: usize,
    n: usize,
    ids: &mut Vec<String>,
) -> anyhow::Result<Density> {
    let at = steps(n);
    let mut out = Density {
        runtime: t.label(),
        start_ms: Vec::new(),
        steps: Vec::new(),
        mem_available_before_kib: 0,
        mem_available_after_kib: 0,
    };
    for k in 1..=n {
        ctx.check()?;
        ctx.message(&format!("density: {} container {k}/{n}", t.label()));
        let id = format!("hb-dens-{index}-{k}");
        ids.push(id.clone());
        let took = target::run_detached(ctx.c, t, &id, IDLE)?;
        out.start_ms.push(took.as_secs_f64() * 1e3);
        ctx.inc();
        if at.contains(&k) {
            std::thread::sleep(settle(t, ctx.opts.quick));
            let mut total = 0u64;
            for id in ids.iter() {
                total += of_pod(ctx, t, id)?
                    .processes
                    .iter()
                    .map(|p| p.pss_kib)
                    .sum::<u64>();
            }
            out.steps.push(DensityStep {
                pods: k,
                pss_per_pod_kib: total / k as u64,
                load1: super::env::load()[0],
                mem_available_kib: mem_available_kib(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_then_tens_then_n() {
        assert_eq!(steps(1), vec![1]);
        assert_eq!(steps(4), vec![1, 4]);
        assert_eq!(steps(10), vec![1, 10]);
        assert_eq!(steps(30), vec![1, 10, 20, 30]);
        assert_eq!(steps(25), vec![1, 10, 20, 25]);
    }
}
