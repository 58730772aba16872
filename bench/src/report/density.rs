//! The report's density parts: the headline row (how much slower the last of a row of idle pods
//! starts than the first) and the section with PSS per pod, the k-th start and the host's
//! `MemAvailable` at each step, per runtime.

use std::fmt::Write as _;

use super::tick;
use crate::compare::schema::{Density, Results};

/// KiB as MiB.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The headline's density row.
pub(super) fn row(s: &mut String, r: &Results, hull: &str) {
    let Some(d) = r.density.iter().find(|d| d.runtime == hull) else {
        return;
    };
    let rd = r.density.iter().find(|d| d.runtime == "runc");
    let last_over_first =
        |v: &[f64]| -> Option<f64> { (v.len() >= 2 && v[0] > 0.0).then(|| v[v.len() - 1] / v[0]) };
    let h = last_over_first(&d.start_ms);
    let _ = writeln!(
        s,
        "| {n} idle pods one after another: {n}th start / 1st | {} | {} | – | ≤ 1.5× ({n} ≥ 20) | {} |",
        h.map_or("–".to_owned(), |v| format!("{v:.2}×")),
        rd.and_then(|x| last_over_first(&x.start_ms))
            .map_or("–".to_owned(), |v| format!("{v:.2}×")),
        if d.start_ms.len() >= 20 {
            tick(h.map(|v| v <= 1.5))
        } else {
            "n/a: fewer than 20"
        },
        n = d.start_ms.len(),
    );
}

/// Host memory that `pods` containers took out of `MemAvailable`, per container, MiB.
fn taken_per_pod(d: &Density, available_kib: u64, pods: usize) -> f64 {
    let taken = d.mem_available_before_kib.saturating_sub(available_kib);
    mib(taken) / pods.max(1) as f64
}

/// The density section.
pub(super) fn section(s: &mut String, r: &Results) {
    if r.density.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Density\n\nIdle containers (`sleep`) started one after another with `ctr run -d`, \
         none removed until the end, one runtime after the other. At 1, 10, 20 … N: the k-th \
         start, host PSS per container (every host process of it: shim, VMM and jailer, \
         virtiofsd, vsock backend; runc's shim and container), and the host's `MemAvailable` \
         (and how much of it the containers took, per container).\n"
    );
    let _ = writeln!(
        s,
        "| runtime | containers | k-th start | PSS per container | MemAvailable | taken per container | load (1 min) |\n|---|---|---|---|---|---|---|"
    );
    for d in &r.density {
        for st in &d.steps {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} ms | {:.1} MiB | {:.0} MiB | {:.1} MiB | {:.2} |",
                d.runtime,
                st.pods,
                d.start_ms.get(st.pods - 1).copied().unwrap_or(0.0),
                mib(st.pss_per_pod_kib),
                mib(st.mem_available_kib),
                taken_per_pod(d, st.mem_available_kib, st.pods),
                st.load1
            );
        }
    }
    let _ = writeln!(
        s,
        "\n| runtime | MemAvailable before | after all were removed |\n|---|---|---|"
    );
    for d in &r.density {
        let _ = writeln!(
            s,
            "| {} | {:.0} MiB | {:.0} MiB |",
            d.runtime,
            mib(d.mem_available_before_kib),
            mib(d.mem_available_after_kib)
        );
    }
}
