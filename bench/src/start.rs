//! `hull-bench start`: what a template snapshot saves at pod start (docs/snapshot.md), on hull-vmm
//! only (hardware KVM; here, the nested-KVM tier). Interleaved in one run:
//! - a pod VM started by `SandboxVm::start` — booted, against restored from the template (with the
//!   pod's virtiofsd, vsock, and `Personalize`) — until its agent answers (the template made once
//!   before, its making timed apart);
//! - `ctr run --rm busybox true` through two private containerds, `start = "boot"` against
//!   `start = "snapshot"`.
//!
//! - with `--pods N`: N idle pods held at once on each containerd, their host memory
//!   ([`crate::start_pods`]).
//!
//! Medians, p95 and the ratios boot / snapshot; under emulation (the nested tier) only the ratios
//! mean anything.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_runtime::images::GuestImages;
use hull_runtime::sandbox::{SandboxVm, SandboxVmConfig};
use hull_runtime::share::CacheMode;
use hull_runtime::shim::config::{HullConfig, HypervisorChoice};
use hull_runtime::template::create::{create, TemplateSpec};
use hull_runtime::vm::hull_vmm;
use hull_tests::containerd::{Containerd, Options};
use serde::Serialize;

use crate::start_pods::{self, PodsMemory};
use crate::stats::Summary;

/// The suite's results.
#[derive(Debug, Serialize)]
pub struct StartResults {
    /// The suite.
    pub suite: &'static str,
    /// Timed runs of each kind.
    pub runs: usize,
    /// Guest vCPUs and RAM (the default pod shape).
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// Making the template once (boot, snapshot, rename), ms.
    pub template_ms: f64,
    /// `SandboxVm::start` → agent answers, booted, ms.
    pub vm_boot_ms: Option<Summary>,
    /// `SandboxVm::start` → agent answers (personalized), restored, ms.
    pub vm_restore_ms: Option<Summary>,
    /// `ctr run --rm busybox true` with `start = "boot"`, ms.
    pub ctr_boot_ms: Option<Summary>,
    /// `ctr run --rm busybox true` with `start = "snapshot"`, ms.
    pub ctr_snapshot_ms: Option<Summary>,
    /// N idle pods booted, then N restored, held at once (`--pods`; empty without it).
    pub pods: Vec<PodsMemory>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the suite and writes `start.json` and `start.md` into `out`.
pub fn run(runs: usize, pods: usize, out: &Path) -> anyhow::Result<StartResults> {
    if let Err(reason) = hull_vmm::usable() {
        anyhow::bail!("hull-bench start needs hull-vmm (hardware KVM): {reason}");
    }
    let results = tokio::runtime::Runtime::new()?.block_on(measure(runs, pods))?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("start.json"), serde_json::to_vec_pretty(&results)?)?;
    std::fs::write(out.join("start.md"), report(&results))?;
    Ok(results)
}

async fn measure(runs: usize, pods: usize) -> anyhow::Result<StartResults> {
    let mut config = HullConfig::load().context("hull configuration")?;
    config.hypervisor = HypervisorChoice::HullVmm;
    let hv = hull_runtime::shim::pod::hypervisor(&config, Vec::new())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = tempfile::tempdir()?;
    let templates = base.path().join("templates");
    let images = GuestImages::from_env();
    let vm_config = |run_dir: std::path::PathBuf, template: bool| SandboxVmConfig {
        images: images.clone(),
        vcpus: config.default_vcpus,
        memory_mib: config.default_memory_mib,
        run_dir,
        cmdline: config.kernel_params.clone(),
        boot_timeout: config.boot_timeout(),
        share: Some(CacheMode::default()),
        netns: None,
        confine_host: false,
        template_root: template.then(|| templates.clone()),
    };
    let spec = TemplateSpec::for_pods(
        images.clone(),
        (config.default_vcpus, config.default_memory_mib),
        &config.kernel_params,
        true,
        false,
    );
    let hull_vmm = hv
        .as_hull_vmm()
        .context("the configured backend is not hull-vmm")?;
    let t0 = Instant::now();
    create(&templates, hull_vmm, &spec, config.boot_timeout()).await?;
    let template_ms = ms(t0.elapsed());
    let (mut boots, mut restores) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for restore in [false, true] {
            let dir = base.path().join(format!("vm-{i}-{restore}"));
            std::fs::create_dir_all(&dir)?;
            let t = Instant::now();
            let vm = SandboxVm::start(hv.as_ref(), &vm_config(dir.clone(), restore)).await?;
            let took = ms(t.elapsed());
            vm.shutdown(Duration::from_secs(2)).await?;
            let _ = std::fs::remove_dir_all(&dir);
            if restore { &mut restores } else { &mut boots }.push(took);
        }
    }
    let (ctr_boot, ctr_snapshot, pods) =
        tokio::task::spawn_blocking(move || ctr_runs(runs, pods)).await??;
    Ok(StartResults {
        suite: "start",
        runs,
        vcpus: config.default_vcpus,
        memory_mib: config.default_memory_mib,
        template_ms,
        vm_boot_ms: Summary::of(&boots),
        vm_restore_ms: Summary::of(&restores),
        ctr_boot_ms: Summary::of(&ctr_boot),
        ctr_snapshot_ms: Summary::of(&ctr_snapshot),
        pods,
    })
}

/// The `ctr` figures: `--rm true` times booted and restored, and the idle pods' memory.
type CtrFigures = (Vec<f64>, Vec<f64>, Vec<PodsMemory>);

/// `ctr run --rm true`, interleaved on a containerd that boots pods and one that restores them
/// (one untimed run each first: the snapshot side makes its template then); then, with `pods`,
/// that many idle pods held on each side in turn.
fn ctr_runs(runs: usize, pods: usize) -> anyhow::Result<CtrFigures> {
    let templates = tempfile::tempdir()?;
    let launch = |start: &str| {
        Containerd::launch(&Options {
            hypervisor: Some("hull-vmm".into()),
            extra_config: format!(
                "start = \"{start}\"\ntemplate_dir = \"{}\"\n",
                templates.path().join("t").display()
            ),
            log_level: Some("info".into()),
            ..Options::default()
        })
        .map_err(|e| anyhow::anyhow!("containerd ({start}): {e}"))
    };
    let sides = [launch("boot")?, launch("snapshot")?];
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..=runs {
        for (side, c) in sides.iter().enumerate() {
            let id = format!("start-{side}-{i}");
            let t = Instant::now();
            let out = c.run_rm(&id, &["true"]);
            let took = ms(t.elapsed());
            anyhow::ensure!(out.status.success(), "{id}: {}", c.explain(&out));
            if i > 0 {
                times[side].push(took);
            }
        }
    }
    let [boot, snapshot] = times;
    let mut memory = Vec::new();
    if pods > 0 {
        for (c, start) in sides.iter().zip(["boot", "snapshot"]) {
            memory.push(start_pods::measure(c, start, pods)?);
        }
    }
    Ok((boot, snapshot, memory))
}

fn ratio(a: Option<&Summary>, b: Option<&Summary>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}x", a.median / b.median),
        _ => "-".into(),
    }
}

/// The Markdown report.
pub fn report(r: &StartResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Snapshot start ({} vCPU, {} MiB, {} runs each, interleaved)\n",
        r.vcpus, r.memory_mib, r.runs
    );
    let _ = writeln!(s, "Template made once in {:.0} ms.\n", r.template_ms);
    let _ = writeln!(
        s,
        "| what | boot median (p95) | snapshot median (p95) | boot / snapshot |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    let cell = |x: Option<&Summary>| {
        x.map_or_else(
            || "-".into(),
            |x| format!("{:.0} ms ({:.0})", x.median, x.p95),
        )
    };
    let _ = writeln!(
        s,
        "| pod VM start → agent answers | {} | {} | {} |",
        cell(r.vm_boot_ms.as_ref()),
        cell(r.vm_restore_ms.as_ref()),
        ratio(r.vm_boot_ms.as_ref(), r.vm_restore_ms.as_ref())
    );
    let _ = writeln!(
        s,
        "| `ctr run --rm busybox true` | {} | {} | {} |",
        cell(r.ctr_boot_ms.as_ref()),
        cell(r.ctr_snapshot_ms.as_ref()),
        ratio(r.ctr_boot_ms.as_ref(), r.ctr_snapshot_ms.as_ref())
    );
    if !r.pods.is_empty() {
        let _ = writeln!(
            s,
            "\n### Idle pods held at once (`sleep`), host memory per pod\n\n\
             | start | pods | PSS per pod | of it guest RAM | MemAvailable taken per pod |\n\
             |---|---|---|---|---|"
        );
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        for p in &r.pods {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                p.start,
                p.pods,
                mib(p.pss_per_pod_kib),
                mib(p.guest_ram_pss_per_pod_kib),
                mib(p.mem_available_taken_per_pod_kib)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_has_a_row_per_start_mode_of_held_pods() {
        let mut r = StartResults {
            suite: "start",
            runs: 3,
            vcpus: 1,
            memory_mib: 256,
            template_ms: 25000.0,
            vm_boot_ms: None,
            vm_restore_ms: None,
            ctr_boot_ms: None,
            ctr_snapshot_ms: None,
            pods: Vec::new(),
        };
        assert!(!report(&r).contains("Idle pods"));
        for (start, kib) in [("boot", 102_400), ("snapshot", 51_200)] {
            r.pods.push(PodsMemory {
                start: start.into(),
                pods: 10,
                pss_per_pod_kib: kib,
                guest_ram_pss_per_pod_kib: kib / 2,
                mem_available_taken_per_pod_kib: kib + 1024,
            });
        }
        let text = report(&r);
        assert!(
            text.contains("| boot | 10 | 100.0 MiB | 50.0 MiB | 101.0 MiB |"),
            "{text}"
        );
        assert!(
            text.contains("| snapshot | 10 | 50.0 MiB | 25.0 MiB | 51.0 MiB |"),
            "{text}"
        );
    }
}
