//! The boot suite: how long a guest takes from VMM spawn to the agent's ready line, and to the
//! VMM's exit after the guest stops itself, for every backend and accelerator the host offers.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hull_runtime::images::GuestImages;
use hull_runtime::selftest::{boot_selftest, SelftestSpec};
use hull_runtime::vm::{accel, qemu::Qemu, Accel, Hypervisor};
use serde::Serialize;

use crate::host::HostInfo;
use crate::stats::Summary;

/// Figures of one backend.
#[derive(Debug, Serialize)]
pub struct BackendFigures {
    /// Backend name (`qemu-tcg`, `qemu-kvm`, later `hull-vmm`).
    pub backend: String,
    /// The accelerator that produced these figures.
    pub accel: String,
    /// Why this accelerator is what the host offers.
    pub accel_reason: String,
    /// vCPUs and memory of each boot.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// Spawn → ready line, ms.
    pub to_ready_ms: Summary,
    /// Spawn → VMM exited, ms.
    pub to_exit_ms: Summary,
    /// Every sample, in run order: (to_ready, to_exit) ms.
    pub samples_ms: Vec<(f64, f64)>,
}

/// The whole suite's output.
#[derive(Debug, Serialize)]
pub struct BootResults {
    /// The suite.
    pub suite: &'static str,
    /// The host.
    pub host: HostInfo,
    /// Kernel and initramfs measured.
    pub kernel: String,
    /// The initramfs.
    pub initramfs: String,
    /// One entry per backend.
    pub backends: Vec<BackendFigures>,
}

/// Options of the suite.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Boots per backend.
    pub runs: usize,
    /// vCPUs per boot.
    pub vcpus: u32,
    /// MiB per boot.
    pub memory_mib: u32,
}

/// The backends this host can run: QEMU with KVM where KVM runs Linux guests, QEMU with TCG always.
fn backends() -> anyhow::Result<Vec<(Qemu, String)>> {
    let choice = accel::detect()?;
    let mut list = Vec::new();
    if choice.accel == Accel::Kvm {
        list.push((Qemu::for_host(Accel::Kvm), choice.reason.clone()));
    }
    let tcg_reason = match choice.accel {
        Accel::Tcg => choice.reason,
        Accel::Kvm => "software emulation, measured for comparison".to_owned(),
    };
    list.push((Qemu::for_host(Accel::Tcg), tcg_reason));
    Ok(list)
}

/// Runs the suite and writes `boot.json` and `boot.md` into `out`.
pub fn run(options: &BootOptions, out: &Path) -> anyhow::Result<BootResults> {
    let images = GuestImages::from_env();
    let mut results = BootResults {
        suite: "boot",
        host: HostInfo::read(hull_runtime::vm::qemu::DEFAULT_BINARY),
        kernel: images.kernel.display().to_string(),
        initramfs: images.initramfs.display().to_string(),
        backends: Vec::new(),
    };
    let spec = SelftestSpec {
        vcpus: options.vcpus,
        memory_mib: options.memory_mib,
        timeout: Duration::from_secs(120),
    };
    for (qemu, reason) in backends()? {
        let mut samples = Vec::with_capacity(options.runs);
        for i in 0..options.runs {
            let dir = tempfile::tempdir().context("cannot create a run directory")?;
            let report = boot_selftest(&qemu, &images, &spec, dir.path())
                .with_context(|| format!("{} boot {} failed", qemu.name(), i + 1))?;
            anyhow::ensure!(
                report.status.success(),
                "{} exited with {}",
                qemu.name(),
                report.status
            );
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            samples.push((ms(report.to_ready), ms(report.to_exit)));
            eprintln!(
                "hull-bench: {} boot {}/{}: ready {:.0} ms, exit {:.0} ms",
                qemu.name(),
                i + 1,
                options.runs,
                ms(report.to_ready),
                ms(report.to_exit)
            );
        }
        let ready: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let exit: Vec<f64> = samples.iter().map(|s| s.1).collect();
        results.backends.push(BackendFigures {
            backend: qemu.name(),
            accel: qemu.accel().to_string(),
            accel_reason: reason,
            vcpus: options.vcpus,
            memory_mib: options.memory_mib,
            to_ready_ms: Summary::of(&ready).context("no samples")?,
            to_exit_ms: Summary::of(&exit).context("no samples")?,
            samples_ms: samples,
        });
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = out.join("boot.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let md = out.join("boot.md");
    std::fs::write(&md, report(&results))
        .with_context(|| format!("cannot write {}", md.display()))?;
    Ok(results)
}

/// The readable report.
pub fn report(r: &BootResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# hull boot benchmark\n");
    let _ = writeln!(
        s,
        "Host: {} ({} CPUs), kernel {}, {}; run {}.\n",
        r.host.cpu_model, r.host.cpus, r.host.kernel, r.host.qemu_version, r.host.date
    );
    let _ = writeln!(
        s,
        "Guest: `{}` + `{}`, self-test boot (`hull.selftest=1`).\n",
        r.kernel, r.initramfs
    );
    let _ = writeln!(
        s,
        "| backend | accel | vCPUs | MiB | n | ready median | ready p95 | exit median | exit p95 |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for b in &r.backends {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            b.backend,
            b.accel,
            b.vcpus,
            b.memory_mib,
            b.to_ready_ms.n,
            b.to_ready_ms.median,
            b.to_ready_ms.p95,
            b.to_exit_ms.median,
            b.to_exit_ms.p95
        );
    }
    let _ = writeln!(s);
    for b in &r.backends {
        let _ = writeln!(s, "- {}: {}", b.backend, b.accel_reason);
    }
    s
}
