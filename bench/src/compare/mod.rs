//! `hull bench`: hull against runc (and crun where it works) through a real containerd that the
//! benchmark starts with its own root, state and socket — the same private containerd the
//! end-to-end tests use (`hull_tests::containerd`) — for each hull backend the host offers.
//! Writes `results.json` (every sample, the environment) and `report.md` with SVG plots.
//!
//! Everything it starts (containerd, shims, VMs, virtiofsd, mounts, containers) is stopped and
//! removed when it returns, also after a failure or Ctrl-C (SIGINT/SIGTERM set a flag that every
//! step checks; containerd runs in its own process group so the terminal's signal reaches only
//! this process and its direct children).

pub mod bootsplit;
pub mod breakdown;
pub mod cpu;
pub mod env;
pub mod memory;
pub mod overhead;
pub mod procs;
pub mod schema;
pub mod start;
pub mod suites;
pub mod target;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_runtime::images::GuestImages;
use hull_tests::containerd::{build_busybox_image_with, Containerd, Options as CtrdOptions};
use indicatif::{ProgressBar, ProgressStyle};

use schema::{Results, Unavailable, SCHEMA};
use target::Target;

/// The steps, in the order they run.
pub const PHASES: &[&str] = &[
    "start", "memory", "cpu", "stdio", "density", "boot", "fs", "agent", "engines",
];

/// Sizes and counts of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Smaller everything (the < 5 min run).
    pub quick: bool,
    /// Start-latency runs per target.
    pub runs: usize,
    /// Runs with the shim's per-call log, per hull backend.
    pub breakdown_runs: usize,
    /// Boots for the boot split (each quiet and verbose).
    pub boots: usize,
    /// Most containers in the density series.
    pub max_pods: usize,
    /// Repetitions of each CPU and stdio sample.
    pub repeats: usize,
    /// MiB through stdout per stdio sample.
    pub stdio_mib: usize,
    /// MiB of the virtio-fs sequential file.
    pub fs_mib: usize,
    /// Small files of the virtio-fs metadata workload.
    pub fs_files: usize,
    /// Agent `Check` round trips.
    pub rpcs: usize,
    /// Guest vCPUs per pod.
    pub guest_vcpus: u32,
    /// Guest RAM per pod, MiB.
    pub guest_memory_mib: u32,
    /// Steps to run (a subset of [`PHASES`]).
    pub phases: Vec<String>,
    /// Where `results.json`, `report.md` and the plots go.
    pub out: PathBuf,
}

impl Options {
    /// The defaults of a full (`quick = false`) or quick run.
    pub fn new(quick: bool, out: PathBuf) -> Self {
        Self {
            quick,
            runs: if quick { 10 } else { 30 },
            breakdown_runs: if quick { 3 } else { 5 },
            boots: if quick { 3 } else { 10 },
            max_pods: if quick { 10 } else { 30 },
            repeats: if quick { 1 } else { 3 },
            stdio_mib: if quick { 16 } else { 128 },
            fs_mib: if quick { 64 } else { 512 },
            fs_files: if quick { 1000 } else { 10_000 },
            rpcs: if quick { 200 } else { 1000 },
            guest_vcpus: 1,
            guest_memory_mib: 128,
            phases: PHASES.iter().map(|p| (*p).to_owned()).collect(),
            out,
        }
    }

    fn wants(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Catches SIGINT and SIGTERM into a flag (tokio's handler, on a thread of its own).
fn catch_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                INTERRUPTED.store(true, Ordering::SeqCst);
                eprintln!("hull-bench: interrupted; cleaning up");
            }
        });
    });
}

/// What every step gets: the options and the progress bar.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The options.
    pub opts: &'a Options,
    pb: ProgressBar,
}

impl Progress<'_> {
    /// Fails once the user asked to stop.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted");
        Ok(())
    }

    /// Shows what runs now.
    pub fn message(&self, msg: &str) {
        self.pb.set_message(msg.to_owned());
    }

    /// One unit of work done.
    pub fn inc(&self) {
        self.pb.inc(1);
    }
}

/// What the containerd steps get: [`Progress`] and the private containerd.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The private containerd.
    pub c: &'a Containerd,
    p: &'a Progress<'a>,
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Progress<'a>;
    fn deref(&self) -> &Progress<'a> {
        self.p
    }
}

fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} (eta {eta}) {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

fn units(opts: &Options, targets: usize, pods: usize) -> u64 {
    let w = |p: &str, n: usize| if opts.wants(p) { n } else { 0 };
    let n = w("start", opts.runs * targets + opts.breakdown_runs)
        + w("cpu", 3 * opts.repeats * (targets + 1))
        + w(
            "stdio",
            opts.repeats * targets * cpu::STDIO_WRITE_SIZES.len(),
        )
        + w("density", pods * targets)
        + w("boot", opts.boots * 2)
        + w("fs", 1)
        + w("agent", 1)
        + w("engines", 1);
    n as u64
}

/// The shim beside this binary, if there is one (an installed or `target/hull/bin` layout).
fn shim_beside() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let shim = exe.parent()?.join("containerd-shim-hull-v2");
    (std::env::var_os("HULL_SHIM").is_none() && shim.is_file()).then_some(shim)
}

fn launch(opts: &Options) -> anyhow::Result<Containerd> {
    launch_sized(opts.guest_vcpus, opts.guest_memory_mib)
}

/// The benchmark's private containerd, with hull pods of `vcpus` and `memory_mib` and the image
/// with the probe imported.
pub fn launch_sized(vcpus: u32, memory_mib: u32) -> anyhow::Result<Containerd> {
    let images = GuestImages::from_env();
    let c = Containerd::launch(&CtrdOptions {
        initramfs: Some(images.initramfs),
        shim: shim_beside(),
        log_level: Some("info".to_owned()),
        extra_config: format!("default_vcpus = {vcpus}\ndefault_memory_mib = {memory_mib}\n"),
        ..CtrdOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot start the benchmark's containerd: {e}"))?;
    let probe = target::probe_binary();
    anyhow::ensure!(
        probe.is_file(),
        "{} is missing (scripts/build.sh builds it; or set HULL_BENCH_PROBE)",
        probe.display()
    );
    let archive = c.dir().join("bench-image.tar");
    build_busybox_image_with(
        &archive,
        target::IMAGE,
        &[(probe.as_path(), "bin/hull-bench-probe")],
    )
    .map_err(anyhow::Error::msg)?;
    c.import(&archive).map_err(anyhow::Error::msg)?;
    Ok(c)
}

/// Runs the comparison and writes its files; the results, also when some steps failed (they
/// are listed in `errors`).
pub fn run(opts: &Options, command: String) -> anyhow::Result<Results> {
    catch_signals();
    let started = Instant::now();
    let mut results = Results {
        schema: SCHEMA.to_owned(),
        quick: opts.quick,
        env: env::read(command, opts.guest_vcpus, opts.guest_memory_mib)?,
        unavailable: Vec::new(),
        start: Vec::new(),
        start_breakdown: Vec::new(),
        boot: None,
        memory: Vec::new(),
        density: Vec::new(),
        overhead: Vec::new(),
        cpu: Vec::new(),
        stdio: Vec::new(),
        fs: None,
        agent: None,
        engines: None,
        errors: Vec::new(),
        wall_s: 0.0,
    };
    let (mut targets, missing) = target::hull_targets()?;
    results.unavailable.extend(missing);
    let pods = memory::pods_for_host(opts.guest_memory_mib, opts.max_pods);
    let needs_containerd = ["start", "memory", "cpu", "stdio", "density"]
        .iter()
        .any(|p| opts.wants(p));
    let containerd = if needs_containerd {
        Some(launch(opts)?)
    } else {
        None
    };
    let p = Progress {
        opts,
        pb: progress(units(opts, targets.len() + 2, pods)),
    };
    if let Some(c) = &containerd {
        let ctx = Ctx { c, p: &p };
        targets.push(Target::Runc);
        ctx.message("crun: checking");
        match target::crun_works(c) {
            Ok(()) => targets.push(Target::Crun),
            Err(reason) => results.unavailable.push(Unavailable {
                what: "crun".to_owned(),
                reason,
            }),
        }
        p.pb.set_length(units(opts, targets.len(), pods));
        containerd_phases(&ctx, &targets, pods, &mut results);
    }
    // The VM-level steps need no containerd; stop it first so its pods are gone.
    if let Some(c) = containerd {
        let address = c.socket();
        drop(c);
        target::remove_stale_shim_sockets(&address);
    }
    if let Err(e) = vm_phases(&p, &mut results) {
        results.errors.push(format!("{e:#}"));
    }
    p.pb.finish_and_clear();
    results.env.load_after = env::load();
    results.wall_s = started.elapsed().as_secs_f64();
    if let Err(e) = save_overhead(&results) {
        results.errors.push(format!("overhead record: {e:#}"));
    }
    write(&results, &opts.out)?;
    Ok(results)
}

fn vm_phases(p: &Progress<'_>, results: &mut Results) -> anyhow::Result<()> {
    let opts = p.opts;
    let rt = tokio::runtime::Runtime::new()?;
    if opts.wants("boot") {
        p.check()?;
        match rt.block_on(bootsplit::run(p, opts.boots)) {
            Ok(b) => results.boot = Some(b),
            Err(e) => results.errors.push(format!("boot: {e:#}")),
        }
    }
    if opts.wants("fs") {
        p.check()?;
        p.message(&format!("fs: virtio-fs vs host, {} MiB", opts.fs_mib));
        match rt.block_on(suites::fs(opts.fs_mib, opts.fs_files)) {
            Ok(f) => results.fs = Some(f),
            Err(e) => results.errors.push(format!("fs: {e:#}")),
        }
        p.inc();
    }
    if opts.wants("agent") {
        p.check()?;
        p.message("agent: RPC and vsock");
        let (runs, mib) = if opts.quick { (5, 8) } else { (20, 64) };
        match rt.block_on(suites::agent(opts.rpcs, runs, mib)) {
            Ok(a) => results.agent = Some(a),
            Err(e) => results.errors.push(format!("agent: {e:#}")),
        }
        p.inc();
    }
    if opts.wants("engines") {
        p.check()?;
        p.message("engines: podman and docker run --rm");
        // An engine that is not installed or fails is named in the section's own list.
        results.engines = Some(crate::engines::measure_all(if opts.quick { 5 } else { 10 }));
        p.inc();
    }
    p.check()
}

fn containerd_phases(ctx: &Ctx<'_>, targets: &[Target], pods: usize, results: &mut Results) {
    let opts = ctx.opts;
    if opts.wants("start") {
        match start::run(ctx, targets, opts.runs) {
            Ok(s) => results.start = s,
            Err(e) => results.errors.push(format!("start: {e:#}")),
        }
        for (i, t) in targets.iter().enumerate().filter(|(_, t)| t.is_hull()) {
            if ctx.check().is_err() {
                break;
            }
            match breakdown::run(ctx, t, i, opts.breakdown_runs) {
                Ok(b) => results.start_breakdown.push(b),
                Err(e) => results
                    .errors
                    .push(format!("start breakdown {}: {e:#}", t.label())),
            }
        }
    }
    if ["memory", "cpu", "stdio"].iter().any(|p| opts.wants(p)) {
        if ctx.check().is_ok() && opts.wants("cpu") {
            match cpu::host(ctx) {
                Ok(h) => results.cpu.extend(h),
                Err(e) => results.errors.push(format!("cpu on the host: {e:#}")),
            }
        }
        for (i, t) in targets.iter().enumerate() {
            if ctx.check().is_err() {
                break;
            }
            let id = format!("hb-idle-{i}");
            if let Err(e) = idle_phases(ctx, t, &id, results) {
                results.errors.push(format!("{}: {e:#}", t.label()));
            }
            target::remove(ctx.c, &id);
        }
    }
    if opts.wants("density") {
        for (i, t) in targets.iter().enumerate() {
            if ctx.check().is_err() {
                break;
            }
            match memory::density(ctx, t, i, pods) {
                Ok(d) => results.density.push(d),
                Err(e) => results.errors.push(format!("density {}: {e:#}", t.label())),
            }
        }
    }
    if let Err(e) = ctx.check() {
        results.errors.push(format!("{e:#}"));
    }
}

/// Memory, guest facts, CPU and stdio in one idle container of `t`.
fn idle_phases(ctx: &Ctx<'_>, t: &Target, id: &str, results: &mut Results) -> anyhow::Result<()> {
    let opts = ctx.opts;
    ctx.message(&format!("memory: idle {}", t.label()));
    target::run_detached(ctx.c, t, id, memory::IDLE)?;
    std::thread::sleep(memory::settle(t, opts.quick));
    if opts.wants("memory") {
        let pod = memory::of_pod(ctx, t, id)?;
        if t.is_hull() {
            ctx.message(&format!("overhead: idle CPU of {}", t.label()));
            let window = Duration::from_secs(if opts.quick { 5 } else { 15 });
            let pids = overhead::pids(&target::processes_of(ctx.c, t, id));
            let cpu = overhead::idle_cpu_millicores(&pids, window);
            results.overhead.push(overhead::derive(&pod, cpu));
        }
        results.memory.push(pod);
    }
    if t.is_hull() {
        let (_, _, kernel) = target::exec(ctx.c, id, "uname", &["uname", "-r"], true)?;
        results.env.guest_kernel = kernel.trim().to_owned();
        let (_, _, meminfo) = target::exec(ctx.c, id, "meminfo", &["cat", "/proc/meminfo"], true)?;
        results.env.guest_mem_total_kib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_ascii_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
    }
    if opts.wants("cpu") {
        results.cpu.extend(cpu::in_container(ctx, t, id)?);
    }
    if opts.wants("stdio") {
        results.stdio.extend(cpu::stdio(ctx, t, id)?);
    }
    Ok(())
}

/// Keeps the measured RuntimeClass overhead where `hull check` reads it (when there is one).
fn save_overhead(results: &Results) -> anyhow::Result<()> {
    if results.overhead.is_empty() {
        return Ok(());
    }
    let record = hull_runtime::overhead::Measured {
        date: results.env.date.clone(),
        guest_memory_mib: results.env.guest_memory_mib,
        backends: results.overhead.clone(),
    };
    let path = hull_runtime::overhead::Measured::path();
    record.save(&path)?;
    Ok(())
}

/// Writes `results.json`, `report.md` and the plots into `out`.
pub fn write(results: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    crate::report::write(results, out)
}
