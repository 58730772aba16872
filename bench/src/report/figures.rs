//! Figures derived from the samples (medians, memory splits, ratios), shared by the tables and
//! the plots so both always say the same.

use crate::compare::schema::{CpuFigure, PodMemory, Results, Stdio};
use crate::stats::Summary;

/// Median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(0.0, |s| s.median)
}

/// The first hull runtime's label in the results (the headline's hull column).
pub fn hull_label(r: &Results) -> Option<String> {
    r.start
        .iter()
        .map(|l| &l.runtime)
        .chain(r.memory.iter().map(|m| &m.runtime))
        .chain(r.density.iter().map(|d| &d.runtime))
        .find(|l| l.starts_with("hull/"))
        .cloned()
}

/// The memory segments of a pod, MiB: (segment, MiB) in stacking order. Guest RAM is the memfd
/// share of every process; the rest of each process is counted by its role.
pub fn memory_segments(m: &PodMemory) -> Vec<(&'static str, f64)> {
    let mut seg = vec![
        ("shim", 0u64),
        ("VMM", 0),
        ("virtiofsd", 0),
        ("vsock backend", 0),
        ("guest RAM touched", 0),
        ("container process", 0),
        ("other", 0),
        ("jailer", 0),
    ];
    for p in &m.processes {
        let own = p.pss_kib - p.guest_ram_pss_kib;
        let i = match p.role.as_str() {
            "shim" => 0,
            "vmm" => 1,
            "virtiofsd" => 2,
            "vsock" => 3,
            "container" => 5,
            "jailer" => 7,
            _ => 6,
        };
        seg[i].1 += own;
        seg[4].1 += p.guest_ram_pss_kib;
    }
    seg.into_iter()
        .filter(|(_, k)| *k > 0)
        .map(|(n, k)| (n, k as f64 / 1024.0))
        .collect()
}

/// Total PSS of a pod, MiB.
pub fn pod_pss_mib(m: &PodMemory) -> f64 {
    m.processes.iter().map(|p| p.pss_kib).sum::<u64>() as f64 / 1024.0
}

/// The VMM's PSS without guest RAM, MiB.
pub fn vmm_own_mib(m: &PodMemory) -> Option<f64> {
    let vmm: Vec<_> = m.processes.iter().filter(|p| p.role == "vmm").collect();
    (!vmm.is_empty()).then(|| {
        vmm.iter()
            .map(|p| p.pss_kib - p.guest_ram_pss_kib)
            .sum::<u64>() as f64
            / 1024.0
    })
}

/// Median ns/op of `workload` on `runtime`.
pub fn cpu_ns(cpu: &[CpuFigure], workload: &str, runtime: &str) -> Option<f64> {
    cpu.iter()
        .find(|c| c.workload == workload && c.runtime == runtime)
        .map(|c| median(&c.ns_per_op))
}

/// stdout MiB/s of one runtime: bytes over (full − empty) medians.
pub fn stdio_mib_s(s: &Stdio) -> f64 {
    let secs = (median(&s.full_s) - median(&s.empty_s)).max(1e-6);
    s.bytes as f64 / 1048576.0 / secs
}

/// `a / b` as "1.23×", or "–" when either is missing or b is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

/// A figure with its unit, or "–".
pub fn fmt(v: Option<f64>, unit: &str, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$} {unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::schema::ProcMemory;

    fn proc(role: &str, pss: u64, guest: u64) -> ProcMemory {
        ProcMemory {
            role: role.to_owned(),
            comm: role.to_owned(),
            rss_kib: pss,
            pss_kib: pss,
            guest_ram_pss_kib: guest,
            top_mappings: Vec::new(),
        }
    }

    #[test]
    fn guest_ram_is_taken_out_of_every_process() {
        let m = PodMemory {
            runtime: "hull/qemu-tcg".to_owned(),
            processes: vec![
                proc("shim", 8192, 0),
                proc("vmm", 102400, 51200),
                proc("virtiofsd", 4096, 1024),
            ],
        };
        let seg = memory_segments(&m);
        assert_eq!(
            seg,
            vec![
                ("shim", 8.0),
                ("VMM", 50.0),
                ("virtiofsd", 3.0),
                ("guest RAM touched", 51.0)
            ]
        );
        assert_eq!(pod_pss_mib(&m), 112.0);
        assert_eq!(vmm_own_mib(&m), Some(50.0));
    }

    #[test]
    fn ratios_need_both_sides() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio(None, Some(2.0)), "–");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "–");
    }
}
