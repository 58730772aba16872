//! `hull-bench start --pods N`: the host memory of N idle pods held at once, restored from one
//! template against booted (issue 19: do restored pods share the template's pages?). Each side's
//! pods run through its own private containerd (`start = "boot"` / `"snapshot"`); at N, the PSS
//! of every host process of each pod (shim, VMM and jailer, virtiofsd), its guest-RAM part, and
//! what the host's `MemAvailable` lost per pod. Every pod is removed before it returns, also on
//! failure.

use std::time::Duration;

use hull_tests::containerd::Containerd;
use serde::Serialize;

use crate::compare::memory::{mem_available_kib, IDLE};
use crate::compare::procs;

/// How long the pods settle before their memory is read.
const SETTLE: Duration = Duration::from_secs(5);

/// N idle pods of one start mode.
#[derive(Debug, Clone, Serialize)]
pub struct PodsMemory {
    /// `boot` or `snapshot`.
    pub start: String,
    /// Pods held at once.
    pub pods: usize,
    /// PSS of every host process of a pod, per pod, KiB.
    pub pss_per_pod_kib: u64,
    /// The guest-RAM part of it, KiB.
    pub guest_ram_pss_per_pod_kib: u64,
    /// `MemAvailable` before the first pod minus with all N running, per pod, KiB.
    pub mem_available_taken_per_pod_kib: u64,
}

/// Holds `n` idle pods on `c` (whose shim starts pods by `start`) and reads their memory.
pub fn measure(c: &Containerd, start: &str, n: usize) -> anyhow::Result<PodsMemory> {
    let mut ids = Vec::new();
    let before = mem_available_kib();
    let result = hold(c, start, n, before, &mut ids);
    for id in &ids {
        let _ = c.remove(id);
    }
    result
}

fn hold(
    c: &Containerd,
    start: &str,
    n: usize,
    before: u64,
    ids: &mut Vec<String>,
) -> anyhow::Result<PodsMemory> {
    for k in 0..n {
        let id = format!("pods-{start}-{k}");
        ids.push(id.clone());
        let mut args = vec!["run", "-d", "--runtime", hull_tests::containerd::RUNTIME];
        args.extend_from_slice(&[hull_tests::containerd::IMAGE, &id]);
        args.extend_from_slice(IDLE);
        let out = c.ctr(&args);
        anyhow::ensure!(out.status.success(), "{id}: {}", c.explain(&out));
    }
    std::thread::sleep(SETTLE);
    let (mut pss, mut guest) = (0u64, 0u64);
    for id in ids.iter() {
        let processes = procs::pod_processes(
            "containerd-shim-hull-v2",
            &c.socket(),
            id,
            Some(&c.run_dir().join(id)),
        );
        let measured = procs::measure(&processes);
        anyhow::ensure!(
            measured.iter().any(|p| p.role == "vmm"),
            "no VMM process found for {id}"
        );
        pss += measured.iter().map(|p| p.pss_kib).sum::<u64>();
        guest += measured.iter().map(|p| p.guest_ram_pss_kib).sum::<u64>();
    }
    let n64 = n.max(1) as u64;
    Ok(PodsMemory {
        start: start.to_owned(),
        pods: n,
        pss_per_pod_kib: pss / n64,
        guest_ram_pss_per_pod_kib: guest / n64,
        mem_available_taken_per_pod_kib: before.saturating_sub(mem_available_kib()) / n64,
    })
}
