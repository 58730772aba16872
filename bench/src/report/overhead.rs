//! The report's RuntimeClass section (the `overhead.podFixed` measured per hull backend, with the
//! margin added and why, ready to paste) and its Podman and Docker section.

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

/// Appends the Podman and Docker section (nothing when that step did not run).
pub fn engines_section(s: &mut String, r: &Results) {
    let Some(e) = &r.engines else {
        return;
    };
    let _ = writeln!(
        s,
        "\n## Podman and Docker (`--runtime hull`)\n\n{}",
        crate::engines::section_body(e)
    );
}

#[cfg(test)]
mod tests {
    use crate::engines::{EngineResults, EngineRow};
    use crate::stats::Summary;

    #[test]
    fn the_engines_section_shows_each_engine_and_its_ratio_or_nothing() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quick-results.json");
        let mut r = crate::report::read(&path).unwrap();
        r.engines = None;
        let md = crate::report::markdown(&r, |_| false);
        assert!(!md.contains("## Podman and Docker"), "{md}");
        let row = |engine: &str, runtime: &str, ms: f64| EngineRow {
            engine: engine.into(),
            runtime: runtime.into(),
            run_ms: Summary::of(&[ms]),
        };
        r.engines = Some(EngineResults {
            runs: 1,
            accel: "Tcg".into(),
            rows: vec![
                row("podman", "runc", 500.0),
                row("podman", "hull", 2000.0),
                row("docker", "runc", 800.0),
                row("docker", "hull", 3200.0),
            ],
            errors: vec![],
        });
        let md = crate::report::markdown(&r, |_| false);
        assert!(
            md.contains("## Podman and Docker (`--runtime hull`)"),
            "{md}"
        );
        assert!(
            md.contains("| `podman run --rm` | hull | 2000 | 2000 | 4.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| `docker run --rm` | hull | 3200 | 3200 | 4.00 |"),
            "{md}"
        );
        // It survives the JSON round trip `hull bench report` relies on.
        let back: crate::compare::schema::Results =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.engines.unwrap().rows.len(), 4);
    }
}
