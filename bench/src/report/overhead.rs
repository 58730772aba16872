//! The report's RuntimeClass section: the `overhead.podFixed` measured per hull backend, with the
//! margin added and why, ready to paste.

use std::fmt::Write as _;

use crate::compare::schema::Results;

/// Appends the section (nothing when no overhead was measured).
pub fn section(s: &mut String, r: &Results) {
    if r.overhead.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## RuntimeClass overhead (measured)\n\nWhat one idle pod costs the host beyond its \
         containers: PSS of the shim, VMM, virtiofsd, vsock backend and the guest RAM the VM \
         touched (its kernel and agent), and the CPU of those processes at idle, with {} MiB of \
         guest RAM. `hull check` prints the last figures.\n",
        r.env.guest_memory_mib
    );
    let _ = writeln!(
        s,
        "| backend | idle PSS | of which guest RAM | margin | podFixed memory | idle CPU | podFixed cpu |\n|---|---|---|---|---|---|---|"
    );
    for o in &r.overhead {
        let _ = writeln!(
            s,
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {}Mi | {}m | {}m |",
            o.backend,
            o.measured_kib as f64 / 1024.0,
            o.guest_ram_kib as f64 / 1024.0,
            o.margin_kib as f64 / 1024.0,
            o.pod_fixed_memory_mib,
            o.idle_cpu_millicores,
            o.pod_fixed_cpu_millicores
        );
    }
    for o in &r.overhead {
        let _ = writeln!(
            s,
            "\n{}: margin {}. CPU: twice the idle figure, at least 50m (the VMM's cost per unit \
             of guest work scales with the containers' CPU and is not a fixed overhead).\n\n```yaml\n{}```",
            o.backend,
            o.margin_why,
            o.runtime_class_yaml()
        );
    }
}
