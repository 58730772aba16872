//! The hull-vmm suite: what hull's own VMM costs and how fast it is, on this host.
//!
//! - always (any `/dev/kvm`, PVM included): spawn → exit of a small test guest (the same
//!   hand-assembled guests hull-vmm's tests use), the same for a guest that sets up virtio-fs and
//!   gets one FUSE_INIT answered by a real virtiofsd, hull-vmm's own RSS/PSS without guest RAM
//!   while a guest runs, and the vCPU exit counts of one run of each;
//! - with `--test-kernel`: one boot of the test-only kernel variant to "Run /init", with its
//!   exit counts (about a minute on PVM);
//! - with hardware KVM only: boot → ready and → exit of the production kernel + initramfs, for
//!   hull-vmm and QEMU microvm with the same accelerator, each run by `hull-jailer` as pods run
//!   them (the jail's set-up is part of what a pod pays). Elsewhere the JSON says why not.
//!
//! The test-guest figures run the `hull-vmm` binary bare: they measure the VMM itself, without
//! the jail around it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_runtime::images::GuestImages;
use hull_runtime::selftest::{boot_selftest, SelftestSpec};
use hull_runtime::share::{CacheMode, Virtiofsd};
use hull_runtime::vm::hull_vmm::HullVmm;
use hull_runtime::vm::qemu::Qemu;
use hull_runtime::vm::{Accel, Hypervisor, Jailable};
use hull_vmm::host::{self, KvmKind};
use hull_vmm::testing::{guest, guest_elf, tiny_initramfs, virtio, Cmd, SCRATCH};
use serde::Serialize;

use crate::host::HostInfo;
use crate::kvm_exits::ExitWatch;
use crate::stats::Summary;

/// Options of the suite.
#[derive(Debug, Clone)]
pub struct VmmOptions {
    /// Runs per measured series.
    pub runs: usize,
    /// Guest RAM for the memory measurement, MiB.
    pub memory_mib: u32,
    /// The test-only kernel variant to boot once, if given.
    pub test_kernel: Option<PathBuf>,
}

/// hull-vmm's own memory while a guest runs.
#[derive(Debug, Serialize)]
pub struct VmmMemory {
    /// Guest RAM configured, MiB.
    pub guest_mib: u32,
    /// Whole process RSS, KiB.
    pub rss_kib: u64,
    /// Whole process PSS, KiB.
    pub pss_kib: u64,
    /// Guest RAM pages resident (touched by the guest or the loader), KiB.
    pub guest_ram_rss_kib: u64,
    /// RSS without the guest RAM mapping, KiB (target ≤ 8 MiB).
    pub rss_without_guest_ram_kib: u64,
    /// PSS without the guest RAM mapping, KiB.
    pub pss_without_guest_ram_kib: u64,
}

impl std::fmt::Display for VmmMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} MiB guest: RSS {} KiB, PSS {} KiB; without guest RAM: RSS {} KiB, PSS {} KiB \
             ({} KiB of guest RAM resident)",
            self.guest_mib,
            self.rss_kib,
            self.pss_kib,
            self.rss_without_guest_ram_kib,
            self.pss_without_guest_ram_kib,
            self.guest_ram_rss_kib
        )
    }
}

/// Boot figures of one backend (hardware KVM only).
#[derive(Debug, Serialize)]
pub struct LinuxBoot {
    /// Backend.
    pub backend: String,
    /// Spawn → ready line, ms.
    pub to_ready_ms: Summary,
    /// Spawn → VMM exit, ms.
    pub to_exit_ms: Summary,
    /// KVM exits of one boot by reason (medians over the runs, zeros left out), from the host
    /// kernel's per-VM debugfs counters (`/sys/kernel/debug/kvm/<pid>-<fd>/`, see
    /// [`crate::kvm_exits`]), the same way for every backend. Empty where debugfs is not mounted.
    pub kvm_exits: BTreeMap<String, f64>,
}

/// One boot of the test kernel variant.
#[derive(Debug, Serialize)]
pub struct TestKernelBoot {
    /// The kernel.
    pub kernel: String,
    /// The initramfs booted (hull's, or a tiny one whose /init only exits).
    pub initramfs: String,
    /// Spawn → "Run /init as init process", ms.
    pub to_init_ms: Option<f64>,
    /// Spawn → the agent's self-test ready line, ms (hull's initramfs only).
    pub to_ready_ms: Option<f64>,
    /// Spawn → hull-vmm exit, ms.
    pub to_exit_ms: f64,
    /// vCPU exits of the boot.
    pub exits: BTreeMap<String, u64>,
}

/// The suite's output.
#[derive(Debug, Serialize)]
pub struct VmmResults {
    /// The suite.
    pub suite: &'static str,
    /// The host.
    pub host: HostInfo,
    /// Whether this host has hardware KVM (VT-x/AMD-V); without it only test-guest figures
    /// (and the optional test-kernel boot) are measured.
    pub hardware_kvm: bool,
    /// One plain sentence on what the figures are.
    pub note: String,
    /// What kind of KVM the host has.
    pub kvm_kind: String,
    /// Why.
    pub kvm_reason: String,
    /// The binary measured.
    pub hull_vmm: String,
    /// Test guest (serial line, then i8042 reset): spawn → exit, ms.
    pub test_guest_spawn_to_exit_ms: Summary,
    /// vCPU exits of one test-guest run.
    pub test_guest_exits: BTreeMap<String, u64>,
    /// virtio-fs test guest (virtio-mmio handshake, vhost-user set-up with a fresh virtiofsd,
    /// one FUSE_INIT answered, reset): spawn → exit, ms; `None` when virtiofsd is missing.
    pub fs_guest_spawn_to_exit_ms: Option<Summary>,
    /// vCPU exits of one virtio-fs test-guest run.
    pub fs_guest_exits: BTreeMap<String, u64>,
    /// Why the virtio-fs series is missing, if it is.
    pub fs_guest_skipped: Option<String>,
    /// hull-vmm's memory.
    pub memory: VmmMemory,
    /// Production Linux boots, hull-vmm vs QEMU on the same accelerator (hardware KVM only).
    pub linux_boot: Vec<LinuxBoot>,
    /// Why `linux_boot` is empty, if it is.
    pub linux_boot_skipped: Option<String>,
    /// The test kernel variant's boot, if asked.
    pub test_kernel_boot: Option<TestKernelBoot>,
    /// Snapshot, restore against boot, and sharing between restored VMs (counting test guest).
    pub snapshot: Option<crate::vmm_snapshot::SnapshotFigures>,
    /// Why `snapshot` is missing, if it is.
    pub snapshot_skipped: Option<String>,
}

fn text(s: &str) -> Vec<Cmd> {
    s.bytes()
        .map(|b| Cmd::Out8 {
            port: 0x3f8,
            value: b,
        })
        .collect()
}

/// Parses hull-vmm's `exits k=v …` line.
pub fn parse_exits(stderr: &str) -> BTreeMap<String, u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("hull-vmm: exits "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Sums `Rss`/`Pss` over `/proc/<pid>/smaps`, all mappings and the guest RAM mapping apart.
pub fn smaps_figures(smaps: &str) -> (u64, u64, u64, u64) {
    let (mut rss, mut pss, mut g_rss, mut g_pss) = (0, 0, 0, 0);
    let mut in_guest = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_guest = line.contains("memfd:hull-guest-ram");
            continue;
        }
        let kib = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(v) = kib("Rss:") {
            rss += v;
            if in_guest {
                g_rss += v;
            }
        } else if let Some(v) = kib("Pss:") {
            pss += v;
            if in_guest {
                g_pss += v;
            }
        }
    }
    (rss, pss, g_rss, g_pss)
}

fn spawn(bin: &Path, dir: &Path, image: &[u8], args: &[&str]) -> anyhow::Result<Child> {
    let kernel = dir.join("guest.elf");
    std::fs::write(&kernel, guest_elf(image))?;
    Command::new(bin)
        .arg("--kernel")
        .arg(&kernel)
        .arg("--console")
        .arg(dir.join("console.log"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

fn finish(child: Child) -> anyhow::Result<String> {
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(out.status.success(), "hull-vmm failed: {stderr}");
    Ok(stderr)
}

/// Waits for `needle` on the console; `None` after `timeout` or once `child` exited without it.
fn wait_console(
    dir: &Path,
    needle: &str,
    timeout: Duration,
    child: &mut Child,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        let c = std::fs::read(dir.join("console.log")).unwrap_or_default();
        if String::from_utf8_lossy(&c).contains(needle) {
            return Some(start.elapsed());
        }
        if exited {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The samples of one backend's Linux boots.
#[derive(Debug, Default)]
struct BootSamples {
    ready: Vec<f64>,
    exit: Vec<f64>,
    exits: BTreeMap<String, Vec<f64>>,
}

fn memory(bin: &Path, mib: u32) -> anyhow::Result<VmmMemory> {
    let dir = tempfile::tempdir()?;
    let mut cmds = text("up\n");
    cmds.push(Cmd::Poll32 {
        addr: SCRATCH,
        mask: 1,
        value: 1,
    });
    let mem = mib.to_string();
    let mut child = spawn(bin, dir.path(), &guest(&cmds), &["--mem-mib", &mem])?;
    let up = wait_console(dir.path(), "up", Duration::from_secs(30), &mut child);
    std::thread::sleep(Duration::from_millis(300));
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", child.id()));
    // SIGTERM (through kill(1)): hull-vmm turns it into a clean exit.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = finish(child);
    anyhow::ensure!(up.is_some(), "the memory test guest did not start");
    let (rss, pss, g_rss, g_pss) = smaps_figures(&smaps?);
    Ok(VmmMemory {
        guest_mib: mib,
        rss_kib: rss,
        pss_kib: pss,
        guest_ram_rss_kib: g_rss,
        rss_without_guest_ram_kib: rss - g_rss,
        pss_without_guest_ram_kib: pss - g_pss,
    })
}

/// `runs` boots of the virtio-fs test guest, each against its own virtiofsd (it exits when
/// hull-vmm disconnects); the clock runs from hull-vmm's spawn to its exit.
fn fs_guest_series(bin: &Path, runs: usize) -> anyhow::Result<(Vec<f64>, BTreeMap<String, u64>)> {
    let image = virtio::fs_guest();
    let mut samples = Vec::new();
    let mut exits = BTreeMap::new();
    for i in 0..runs {
        let dir = tempfile::tempdir()?;
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared)?;
        let daemon = Virtiofsd::start(
            dir.path(),
            &shared,
            CacheMode::default(),
            Duration::from_secs(10),
        )
        .context("virtiofsd (scripts/install-tools.sh installs it)")?;
        let socket = daemon.socket().to_str().context("socket path")?.to_owned();
        let start = Instant::now();
        let child = spawn(
            bin,
            dir.path(),
            &image,
            &["--exit-stats", "--fs-socket", &socket],
        )?;
        let stderr = finish(child)?;
        samples.push(ms(start.elapsed()));
        let console = std::fs::read(dir.path().join("console.log"))?;
        anyhow::ensure!(
            console == virtio::FS_GUEST_CONSOLE,
            "the virtio-fs test guest got no FUSE_INIT answer: {console:?}"
        );
        if i == 0 {
            exits = parse_exits(&stderr);
        }
    }
    eprintln!("hull-bench: vmm virtio-fs test guest: {runs} runs");
    Ok((samples, exits))
}

fn test_kernel_boot(bin: &Path, kernel: &Path) -> anyhow::Result<TestKernelBoot> {
    let dir = tempfile::tempdir()?;
    let real = GuestImages::from_env().initramfs;
    let initrd = if real.is_file() {
        real
    } else {
        let tiny = dir.path().join("initramfs.cpio");
        std::fs::write(&tiny, tiny_initramfs())?;
        tiny
    };
    let start = Instant::now();
    let mut child = Command::new(bin)
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(&initrd)
        .arg("--console")
        .arg(dir.path().join("console.log"))
        .args([
            "--mem-mib",
            "128",
            "--cpuid-clear",
            "cx16",
            "--exit-stats",
            "--cmdline",
        ])
        .arg(
            "console=ttyS0 reboot=k panic=-1 noxsave nopti clearcpuid=smap,smep,popcnt,pku,rdpid,\
             serialize,umip,erms,fsrm pty.legacy_count=0 8250.nr_uarts=1 rcupdate.rcu_cpu_stall_suppress=1 hull.selftest=1",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let to_init = wait_console(
        dir.path(),
        "Run /init as init process",
        Duration::from_secs(300),
        &mut child,
    );
    let to_ready = wait_console(
        dir.path(),
        "hull-agent ready:",
        Duration::from_secs(300),
        &mut child,
    )
    .map(|d| d + to_init.unwrap_or_default());
    let stderr = finish(child)?;
    Ok(TestKernelBoot {
        kernel: kernel.display().to_string(),
        initramfs: initrd.display().to_string(),
        to_init_ms: to_init.map(ms),
        to_ready_ms: to_ready.map(ms),
        to_exit_ms: ms(start.elapsed()),
        exits: parse_exits(&stderr),
    })
}

/// Runs the suite and writes `vmm.json` and `vmm.md` into `out`.
pub fn run(options: &VmmOptions, out: &Path) -> anyhow::Result<VmmResults> {
    let bin = HullVmm::for_host()
        .resolve_binary()
        .context("hull-vmm not found (cargo build --release -p hull-vmm, or set HULL_VMM)")?;
    let kvm = host::check();
    anyhow::ensure!(
        kvm.kind != KvmKind::None,
        "hull-vmm needs /dev/kvm: {}",
        kvm.reason
    );

    let (samples, exits) = test_guest_series(&bin, options.runs)?;
    let (fs_samples, fs_exits, fs_guest_skipped) = match fs_guest_series(&bin, options.runs) {
        Ok((s, e)) => (Some(s), e, None),
        Err(e) => (None, BTreeMap::new(), Some(format!("{e:#}"))),
    };
    let memory = memory(&bin, options.memory_mib)?;
    eprintln!("hull-bench: vmm memory: {memory}");
    let (snapshot, snapshot_skipped) =
        match crate::vmm_snapshot::measure(&bin, options.runs, options.memory_mib) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };

    let hardware_kvm = kvm.kind == KvmKind::Hardware;
    let (linux_boot, linux_boot_skipped) = if hardware_kvm {
        (linux_boots(&bin, options.runs)?, None)
    } else {
        let why = format!(
            "no hardware KVM ({}); only test-guest figures are reported",
            kvm.reason
        );
        (Vec::new(), Some(why))
    };
    let test_kernel_boot = match &options.test_kernel {
        Some(k) => Some(test_kernel_boot(&bin, k)?),
        None => None,
    };

    let results = VmmResults {
        suite: "vmm",
        hardware_kvm,
        note: note(&kvm, options.runs),
        host: HostInfo::read(hull_runtime::vm::qemu::DEFAULT_BINARY),
        kvm_kind: format!("{:?}", kvm.kind),
        kvm_reason: kvm.reason,
        hull_vmm: bin.display().to_string(),
        test_guest_spawn_to_exit_ms: Summary::of(&samples).context("no samples")?,
        test_guest_exits: exits,
        fs_guest_spawn_to_exit_ms: fs_samples.as_deref().and_then(Summary::of),
        fs_guest_exits: fs_exits,
        fs_guest_skipped,
        memory,
        linux_boot,
        linux_boot_skipped,
        test_kernel_boot,
        snapshot,
        snapshot_skipped,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(
        out.join("vmm.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out.join("vmm.md"), report(&results))?;
    Ok(results)
}

/// `runs` spawns of the bare test guest, spawn → exit in ms, and the vCPU exits of the first.
fn test_guest_series(bin: &Path, runs: usize) -> anyhow::Result<(Vec<f64>, BTreeMap<String, u64>)> {
    let image = guest(&text("hull-vmm test guest\n"));
    let mut samples = Vec::new();
    let mut exits = BTreeMap::new();
    for i in 0..runs {
        let dir = tempfile::tempdir()?;
        let start = Instant::now();
        let child = spawn(bin, dir.path(), &image, &["--exit-stats"])?;
        let stderr = finish(child)?;
        samples.push(ms(start.elapsed()));
        if i == 0 {
            exits = parse_exits(&stderr);
        }
    }
    eprintln!("hull-bench: vmm test guest: {} runs", samples.len());
    Ok((samples, exits))
}

/// `runs` production Linux boots each of hull-vmm and QEMU (hardware KVM only), jailed as the
/// shim runs them (`jail = true` is the default).
fn linux_boots(bin: &Path, runs: usize) -> anyhow::Result<Vec<LinuxBoot>> {
    let images = GuestImages::from_env();
    let spec = SelftestSpec {
        vcpus: 1,
        memory_mib: 128,
        timeout: Duration::from_secs(60),
    };
    let jailer = hull_runtime::jail::default_jailer();
    anyhow::ensure!(
        jailer.is_file(),
        "the VMM jailer {} is missing (scripts/build.sh builds it, or set HULL_JAILER)",
        jailer.display()
    );
    let backends: Vec<Box<dyn Hypervisor>> = vec![
        Box::new(HullVmm::new(bin).jailed(&jailer)),
        Box::new(Qemu::for_host(Accel::Kvm).jailed(&jailer)),
    ];
    // Interleaved, the order swapped every round: a drift of the host's load (or, nested,
    // of the emulator's) falls on both backends alike.
    let mut samples: Vec<BootSamples> = backends.iter().map(|_| BootSamples::default()).collect();
    for i in 0..runs {
        let mut order: Vec<usize> = (0..backends.len()).collect();
        if i % 2 == 1 {
            order.reverse();
        }
        for b in order {
            let hv = &backends[b];
            let dir = tempfile::tempdir()?;
            let watch = ExitWatch::start();
            let r = boot_selftest(&**hv, &images, &spec, dir.path())
                .with_context(|| format!("{} boot {} failed", hv.name(), i + 1));
            let exits = watch.finish();
            let r = r?;
            let s = &mut samples[b];
            s.ready.push(ms(r.to_ready));
            s.exit.push(ms(r.to_exit));
            for (reason, n) in exits {
                #[allow(clippy::cast_precision_loss)]
                s.exits.entry(reason).or_default().push(n as f64);
            }
        }
    }
    let mut linux_boot = Vec::new();
    for (hv, s) in backends.iter().zip(samples) {
        linux_boot.push(LinuxBoot {
            backend: hv.name(),
            to_ready_ms: Summary::of(&s.ready).context("no samples")?,
            to_exit_ms: Summary::of(&s.exit).context("no samples")?,
            kvm_exits: s
                .exits
                .into_iter()
                .filter_map(|(k, v)| Some((k, Summary::of(&v)?.median)))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
        });
    }
    Ok(linux_boot)
}

/// What the figures are, in one line: Linux boots, or (no hardware KVM) test guests only.
fn note(kvm: &host::HostKvm, runs: usize) -> String {
    if kvm.kind == KvmKind::Hardware {
        format!(
            "hardware KVM: production Linux boots measured for hull-vmm and QEMU, both jailed \
             ({runs} runs each), plus test-guest figures"
        )
    } else {
        format!(
            "hardware KVM is ABSENT on this host ({:?}: {}); the figures are hull-vmm's test \
             guests only (spawn → exit over {runs} runs, RSS/PSS without guest RAM, vCPU exits of one \
             run), not Linux boots",
            kvm.kind, kvm.reason
        )
    }
}

/// The readable report.
pub fn report(r: &VmmResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# hull-vmm benchmark\n");
    let _ = writeln!(s, "**{}**\n", r.note);
    let _ = writeln!(
        s,
        "Host: {} ({} CPUs), kernel {}; /dev/kvm: {} ({}); run {}.\n",
        r.host.cpu_model, r.host.cpus, r.host.kernel, r.kvm_kind, r.kvm_reason, r.host.date
    );
    let t = &r.test_guest_spawn_to_exit_ms;
    let _ = writeln!(
        s,
        "- test guest spawn → exit: median {:.1} ms, p95 {:.1} ms (n={})",
        t.median, t.p95, t.n
    );
    let _ = writeln!(s, "- test guest vCPU exits: {:?}", r.test_guest_exits);
    match (&r.fs_guest_spawn_to_exit_ms, &r.fs_guest_skipped) {
        (Some(f), _) => {
            let _ = writeln!(
                s,
                "- virtio-fs test guest (vhost-user set-up + one FUSE_INIT through virtiofsd): spawn → exit median {:.1} ms, p95 {:.1} ms (n={}); exits {:?}",
                f.median, f.p95, f.n, r.fs_guest_exits
            );
        }
        (None, why) => {
            let _ = writeln!(
                s,
                "- virtio-fs test guest: not measured: {}",
                why.as_deref().unwrap_or("?")
            );
        }
    }
    let m = &r.memory;
    let _ = writeln!(
        s,
        "- hull-vmm memory with a {} MiB guest: RSS {} KiB, PSS {} KiB; without guest RAM: RSS {} KiB, PSS {} KiB (target ≤ 8192 KiB)",
        m.guest_mib, m.rss_kib, m.pss_kib, m.rss_without_guest_ram_kib, m.pss_without_guest_ram_kib
    );
    match (&r.snapshot, &r.snapshot_skipped) {
        (Some(f), _) => {
            let (b, rs) = (&f.boot_to_first_byte_ms, &f.restore_to_first_byte_ms);
            let _ = writeln!(
                s,
                "- snapshot ({} MiB counting guest): written in {:.0} ms; spawn → first console byte: boot median {:.1} ms p95 {:.1} ms, restore median {:.1} ms p95 {:.1} ms (n={}, interleaved; restore/boot {:.2})",
                f.guest_mib, f.snapshot_ms, b.median, b.p95, rs.median, rs.p95, rs.n, rs.median / b.median
            );
            let pair: Vec<String> = f
                .restored_pair
                .iter()
                .map(|m| {
                    format!(
                        "RSS {} KiB, PSS {} KiB, written {} KiB",
                        m.rss_kib, m.pss_kib, m.private_dirty_kib
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  - two VMs restored from it, the snapshot's memory file: {}",
                pair.join("; ")
            );
        }
        (None, why) => {
            let _ = writeln!(
                s,
                "- snapshot: not measured: {}",
                why.as_deref().unwrap_or("?")
            );
        }
    }
    for b in &r.linux_boot {
        let _ = writeln!(
            s,
            "- {} Linux boot: ready median {:.0} ms p95 {:.0} ms; exit median {:.0} ms p95 {:.0} ms",
            b.backend, b.to_ready_ms.median, b.to_ready_ms.p95, b.to_exit_ms.median, b.to_exit_ms.p95
        );
        if !b.kvm_exits.is_empty() {
            let exits: Vec<String> = b
                .kvm_exits
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect();
            let _ = writeln!(s, "  - KVM exits per boot (medians): {}", exits.join(", "));
        }
    }
    if let Some(why) = &r.linux_boot_skipped {
        let _ = writeln!(s, "- Linux boot figures: not measured: {why}");
    }
    if let Some(k) = &r.test_kernel_boot {
        let _ = writeln!(
            s,
            "- test kernel variant (1 vCPU, {}): /init after {:?} ms, ready after {:?} ms, exit after {:.0} ms, exits {:?}",
            k.initramfs,
            k.to_init_ms.map(|v| v.round()),
            k.to_ready_ms.map(|v| v.round()),
            k.to_exit_ms,
            k.exits
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_line_parses() {
        let e = parse_exits("x\nhull-vmm: exits io_in=3 io_out=4 total=7\nhull-vmm: guest stopped");
        assert_eq!(e.get("io_out"), Some(&4));
        assert_eq!(e.get("total"), Some(&7));
        assert!(parse_exits("nothing").is_empty());
    }

    #[test]
    fn smaps_separates_guest_ram() {
        let smaps = "\
55d0-55e0 r-xp 00000000 08:01 123 /usr/bin/hull-vmm
Rss:                 100 kB
Pss:                  80 kB
7f00-7f10 rw-s 00000000 00:01 9 /memfd:hull-guest-ram (deleted)
Rss:                 400 kB
Pss:                 400 kB
7f20-7f30 rw-p 00000000 00:00 0
Rss:                  20 kB
Pss:                  20 kB
";
        assert_eq!(smaps_figures(smaps), (520, 500, 400, 400));
    }
}
