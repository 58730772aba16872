//! `hull-bench engines`: what a user of Podman or Docker waits for — `podman run --rm busybox
//! true` and `docker run --rm busybox true`, hull (`hull` as the engine's OCI runtime,
//! `docs/oci-cli.md`) against runc, interleaved in one run, each engine with its own daemons and
//! storage in a network namespace of its own (`hull_tests::podman`, `hull_tests::docker`) and its
//! default network. The wall time of the whole client command is measured: create, start, the
//! process, its exit, delete.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// One engine with one runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineRow {
    /// `podman` or `docker`.
    pub engine: String,
    /// `runc` or `hull`.
    pub runtime: String,
    /// `<engine> run --rm busybox true`, ms.
    pub run_ms: Option<Summary>,
}

/// The suite's results (also the main comparison's `engines` step).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineResults {
    /// Timed runs per engine and runtime (after one untimed run of each).
    pub runs: usize,
    /// How hull's VMs run here (TCG, KVM).
    pub accel: String,
    /// The figures.
    pub rows: Vec<EngineRow>,
    /// Engines that could not be measured, and why.
    pub errors: Vec<String>,
}

/// Runs the suite and writes `engines.json` and `engines.md` into `out`.
pub fn run(runs: usize, out: &Path) -> anyhow::Result<EngineResults> {
    let results = measure_all(runs);
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("engines.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    std::fs::write(out.join("engines.md"), markdown(&results))?;
    Ok(results)
}

/// Measures every engine installed here; what could not be measured is in `errors`.
pub fn measure_all(runs: usize) -> EngineResults {
    let accel = hull_runtime::vm::accel::detect()
        .map(|c| format!("{:?}", c.accel))
        .unwrap_or_else(|e| e.to_string());
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    match hull_tests::podman::Podman::launch() {
        Ok(p) => {
            // Podman 4.3 as root asks for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC 4194304, and
            // runc 1.1.5 (which sets them on its init from outside, with prlimit) fails with
            // "error setting rlimit type 6/7: operation not permitted" above what its parent
            // holds (here: open files above the host's hard 20000, processes somewhere between
            // 30000 and 40000, measured). Both runtimes get the same modest limits instead.
            let ulimits = BENCH_ULIMITS;
            // The harness names hull with --runtime; a second --runtime wins.
            let command = |runtime: &str| {
                let mut c = p.command();
                if runtime == "runc" {
                    c.args(["--runtime", "runc"]);
                }
                c.arg("run").arg("--rm");
                for u in ulimits {
                    c.args(["--ulimit", u]);
                }
                c.args([p.image(), "true"]);
                c
            };
            match measure("podman", runs, command) {
                Ok(r) => rows.extend(r),
                Err(e) => errors.push(format!("podman: {e:#}")),
            }
        }
        Err(e) => errors.push(format!("podman: {e}")),
    }
    match hull_tests::docker::Docker::launch() {
        Ok(d) => {
            let command = |runtime: &str| {
                let mut c = d.command();
                c.args(["run", "--rm", "--runtime", runtime])
                    .args([hull_tests::docker::IMAGE, "true"]);
                c
            };
            match measure("docker", runs, command) {
                Ok(r) => rows.extend(r),
                Err(e) => errors.push(format!("docker: {e:#}")),
            }
        }
        Err(e) => errors.push(format!("docker: {e}")),
    }
    EngineResults {
        runs,
        accel,
        rows,
        errors,
    }
}

/// The `--ulimit`s both runtimes get under Podman (see [`run`]): far below any host's hard
/// limits, far above what `true` needs.
const BENCH_ULIMITS: [&str; 2] = ["nofile=1024:4096", "nproc=4096:4096"];

/// `runs` timed runs of `command(runtime)` for runc and hull, interleaved, after one untimed run
/// of each (image and page cache warm for both).
fn measure(
    engine: &str,
    runs: usize,
    command: impl Fn(&str) -> Command,
) -> anyhow::Result<Vec<EngineRow>> {
    const RUNTIMES: [&str; 2] = ["runc", "hull"];
    let mut samples = [Vec::new(), Vec::new()];
    for round in 0..=runs {
        for (i, runtime) in RUNTIMES.iter().enumerate() {
            let t0 = Instant::now();
            let out = command(runtime)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| anyhow::anyhow!("cannot run {engine}: {e}"))?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(
                out.status.success(),
                "{engine} run --rm ({runtime}): {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if round > 0 {
                samples[i].push(ms);
            }
        }
    }
    for (runtime, s) in RUNTIMES.iter().zip(&samples) {
        eprintln!(
            "hull-bench engines: {engine} run --rm ({runtime}): median {:.0} ms",
            Summary::of(s).map_or(0.0, |s| s.median)
        );
    }
    Ok(RUNTIMES
        .iter()
        .zip(samples)
        .map(|(runtime, s)| EngineRow {
            engine: engine.into(),
            runtime: (*runtime).into(),
            run_ms: Summary::of(&s),
        })
        .collect())
}

/// The Markdown report.
pub fn markdown(r: &EngineResults) -> String {
    format!("# Podman and Docker: hull vs runc\n\n{}", section_body(r))
}

/// What the suite measured, as a paragraph and a table (the main report's section too).
pub fn section_body(r: &EngineResults) -> String {
    let mut s = format!(
        "`<engine> run --rm busybox true` (the client's wall \
         time), {} runs per row interleaved with the other runtime, after one untimed run each; \
         each engine's default network; accel {}.\n\n\
         | command | runtime | median ms | p95 ms | hull / runc (median) |\n|---|---|---|---|---|\n",
        r.runs, r.accel
    );
    for row in &r.rows {
        let (median, p95) = row
            .run_ms
            .as_ref()
            .map_or((0.0, 0.0), |s| (s.median, s.p95));
        let runc = r
            .rows
            .iter()
            .find(|o| o.engine == row.engine && o.runtime == "runc")
            .and_then(|o| o.run_ms.as_ref())
            .map(|s| s.median);
        let ratio = match (row.runtime.as_str(), runc) {
            ("hull", Some(base)) if base > 0.0 => format!("{:.2}", median / base),
            _ => String::new(),
        };
        s.push_str(&format!(
            "| `{} run --rm` | {} | {median:.0} | {p95:.0} | {ratio} |\n",
            row.engine, row.runtime
        ));
    }
    for e in &r.errors {
        s.push_str(&format!("\nNot measured: {e}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_the_ratio_to_runc() {
        let summary = |ms: f64| Summary::of(&[ms]);
        let r = EngineResults {
            runs: 1,
            accel: "Tcg".into(),
            rows: vec![
                EngineRow {
                    engine: "docker".into(),
                    runtime: "runc".into(),
                    run_ms: summary(400.0),
                },
                EngineRow {
                    engine: "docker".into(),
                    runtime: "hull".into(),
                    run_ms: summary(3000.0),
                },
            ],
            errors: vec!["podman: not installed".into()],
        };
        let md = markdown(&r);
        assert!(
            md.contains("| `docker run --rm` | runc | 400 | 400 |  |"),
            "{md}"
        );
        assert!(
            md.contains("| `docker run --rm` | hull | 3000 | 3000 | 7.50 |"),
            "{md}"
        );
        assert!(md.contains("Not measured: podman: not installed"), "{md}");
    }
}
