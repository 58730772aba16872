//! The readable report of a comparison: `report.md` with ratio tables (hull / runc, guest /
//! host) next to docs/design.md's targets, and SVG plots beside it. Rendered only from
//! [`Results`], so `hull bench report results.json` gives the same report again.

mod density;
pub mod figures;
#[cfg(test)]
mod layout_tests;
mod legend;
mod overhead;
pub mod plots;
pub mod ticks;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::compare::schema::{BootRun, Results};
use crate::stats::Summary;
use figures::{cpu_ns, fmt, hull_label, median, memory_segments, pod_pss_mib, ratio};

/// Writes `report.md` and the plots into `out`.
pub fn write(r: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    plots::start_latency(r, &out.join("start_latency.svg")).context("start_latency.svg")?;
    plots::boot(r, &out.join("boot.svg")).context("boot.svg")?;
    plots::memory(r, &out.join("memory.svg")).context("memory.svg")?;
    plots::density(r, &out.join("density.svg")).context("density.svg")?;
    let md = out.join("report.md");
    std::fs::write(&md, markdown(r, |f| out.join(f).is_file()))
        .with_context(|| format!("cannot write {}", md.display()))
}

/// Reads a results file (any schema other than the current one is refused).
pub fn read(path: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let r: Results = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a hull bench results file", path.display()))?;
    anyhow::ensure!(
        r.schema == crate::compare::schema::SCHEMA,
        "{} has schema {:?}, this hull-bench reads {:?}",
        path.display(),
        r.schema,
        crate::compare::schema::SCHEMA
    );
    Ok(r)
}

fn pod_pss(r: &Results, runtime: &str) -> Option<f64> {
    r.memory
        .iter()
        .find(|m| m.runtime == runtime)
        .map(pod_pss_mib)
}

fn start_median(r: &Results, runtime: &str) -> Option<f64> {
    r.start
        .iter()
        .find(|l| l.runtime == runtime)
        .map(|l| l.summary.median)
}

fn boot_quiet_median(r: &Results) -> Option<f64> {
    let b = r.boot.as_ref()?;
    let v: Vec<f64> = b
        .runs
        .iter()
        .filter(|x| !x.verbose)
        .map(|x| x.total_ms)
        .collect();
    (!v.is_empty()).then(|| median(&v))
}

fn tick(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "–",
    }
}

/// The headline table: each docs/design.md target with hull's figure, runc's where it has one, and
/// whether the target is met.
pub fn headline(r: &Results) -> String {
    let hull = hull_label(r).unwrap_or_else(|| "hull".to_owned());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| what | {hull} | runc | hull / runc | target (docs/design.md) | |\n|---|---|---|---|---|---|"
    );
    let boot = boot_quiet_median(r);
    let _ = writeln!(
        s,
        "| VMM start → agent answers (median) | {} | – | – | ≤ 100 ms | {} |",
        fmt(boot, "ms", 0),
        tick(boot.map(|b| b <= 100.0))
    );
    let (hs, rs) = (start_median(r, &hull), start_median(r, "runc"));
    let _ = writeln!(
        s,
        "| `ctr run --rm busybox true` (median) | {} | {} | {} | ≤ 2× runc | {} |",
        fmt(hs, "ms", 0),
        fmt(rs, "ms", 0),
        ratio(hs, rs),
        tick(hs.zip(rs).map(|(h, r)| h <= 2.0 * r))
    );
    let (hm, rm) = (pod_pss(r, &hull), pod_pss(r, "runc"));
    let _ = writeln!(
        s,
        "| host PSS per idle pod ({} MiB guest) | {} | {} | {} | ≤ 40 MiB | {} |",
        r.env.guest_memory_mib,
        fmt(hm, "MiB", 1),
        fmt(rm, "MiB", 1),
        ratio(hm, rm),
        tick(hm.map(|m| m <= 40.0))
    );
    let vmm = r
        .memory
        .iter()
        .find(|m| m.runtime == hull)
        .and_then(figures::vmm_own_mib);
    let vmm_is_ours = hull.ends_with("hull-vmm");
    let _ = writeln!(
        s,
        "| VMM alone, without guest RAM | {} | – | – | ≤ 8 MiB (hull-vmm) | {} |",
        fmt(vmm, "MiB", 1),
        if vmm_is_ours {
            tick(vmm.map(|v| v <= 8.0))
        } else {
            "n/a: not hull-vmm"
        }
    );
    fs_rows(&mut s, r);
    let (hg, rg, host) = (
        cpu_ns(&r.cpu, "getppid", &hull),
        cpu_ns(&r.cpu, "getppid", "runc"),
        cpu_ns(&r.cpu, "getppid", "host"),
    );
    let _ = writeln!(
        s,
        "| getppid loop (of host time) | {} | {} | {} | ≤ 1.2× host | {} |",
        ratio(hg, host),
        ratio(rg, host),
        ratio(hg, rg),
        tick(hg.zip(host).map(|(g, h)| g <= 1.2 * h))
    );
    density::row(&mut s, r, &hull);
    s
}

/// The headline's virtio-fs rows (when the run measured virtio-fs): guest figures as a share of
/// the host's.
fn fs_rows(s: &mut String, r: &Results) {
    let Some(f) = &r.fs else {
        return;
    };
    let rd = f.host.seq_read_s / f.guest.seq_read_s;
    let wr = f.host.seq_write_s / f.guest.seq_write_s;
    let _ = writeln!(
        s,
        "| virtio-fs sequential read / write, {} MiB (of host) | {:.0}% / {:.0}% | – | – | ≥ 70% | {} |",
        f.file_mib,
        rd * 100.0,
        wr * 100.0,
        tick(Some(rd >= 0.7 && wr >= 0.7))
    );
    let c = f.host.create_s / f.guest.create_s;
    let st = f.host.stat_s / f.guest.stat_s;
    let u = f.host.unlink_s / f.guest.unlink_s;
    let _ = writeln!(
        s,
        "| small files create / stat / unlink, {} (of host) | {:.0}% / {:.0}% / {:.0}% | – | – | ≥ 30% | {} |",
        f.files,
        c * 100.0,
        st * 100.0,
        u * 100.0,
        tick(Some(c >= 0.3 && st >= 0.3 && u >= 0.3))
    );
}

fn summary_row(s: &mut String, name: &str, x: &Summary, unit: &str, base: Option<&Summary>) {
    let r = |a: f64, b: Option<f64>| ratio(Some(a), b);
    let _ = writeln!(
        s,
        "| {name} | {} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {} | {} |",
        x.n,
        x.median,
        x.p95,
        x.p99,
        x.min,
        x.max,
        r(x.median, base.map(|b| b.median)),
        r(x.p95, base.map(|b| b.p95)),
    );
}

fn environment(s: &mut String, r: &Results) {
    let e = &r.env;
    let _ = writeln!(
        s,
        "Run {} ({}), `{}`, {:.0} s wall.\n",
        e.date,
        if r.quick { "quick" } else { "full" },
        e.command,
        r.wall_s
    );
    let _ = writeln!(s, "| environment | |\n|---|---|");
    let rows = [
        ("CPU", format!("{} ({} CPUs)", e.cpu_model, e.cpus)),
        ("memory", format!("{} MiB", e.memory_mib)),
        ("host kernel", e.host_kernel.clone()),
        ("/dev/kvm", e.kvm.clone()),
        (
            "hull's accelerator",
            format!("{} — {}", e.accel, e.accel_reason),
        ),
        ("containerd", e.containerd.clone()),
        ("runc", e.runc.clone()),
        ("crun", e.crun.clone()),
        ("hull", e.hull.clone()),
        ("QEMU", e.qemu.clone()),
        ("virtiofsd", e.virtiofsd.clone()),
        ("guest kernel", e.guest_kernel.clone()),
        (
            "guest",
            format!(
                "{} vCPU, {} MiB (MemTotal in the guest: {} KiB)",
                e.guest_vcpus, e.guest_memory_mib, e.guest_mem_total_kib
            ),
        ),
        (
            "load average (1/5/15 min)",
            format!(
                "{:.2} / {:.2} / {:.2} at the start, {:.2} / {:.2} / {:.2} at the end",
                e.load_before[0],
                e.load_before[1],
                e.load_before[2],
                e.load_after[0],
                e.load_after[1],
                e.load_after[2]
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(s);
}

/// The whole Markdown report; `has_plot(file)` says whether a plot was written.
pub fn markdown(r: &Results, has_plot: impl Fn(&str) -> bool) -> String {
    let mut s = String::new();
    let plot = |s: &mut String, file: &str, alt: &str| {
        if has_plot(file) {
            let _ = writeln!(s, "\n![{alt}]({file})\n");
        }
    };
    let _ = writeln!(s, "# hull bench: VM isolation against runc\n");
    environment(&mut s, r);
    let _ = writeln!(s, "## Headline\n");
    s.push_str(&headline(r));
    let _ = writeln!(
        s,
        "\ndocs/design.md's targets are for hull-vmm on hardware KVM; under TCG (software emulation of \
         every guest instruction) they are reported, not expected.\n"
    );
    if !r.unavailable.is_empty() {
        let _ = writeln!(s, "## Not measured on this host\n");
        for u in &r.unavailable {
            let _ = writeln!(s, "- **{}**: unavailable: {}", u.what, u.reason);
        }
        let _ = writeln!(s);
    }
    if !r.errors.is_empty() {
        let _ = writeln!(s, "## Steps that failed\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {}", e.replace('\n', " "));
        }
        let _ = writeln!(s);
    }
    let base = r.start.iter().find(|l| l.runtime == "runc");
    if !r.start.is_empty() {
        let _ = writeln!(
            s,
            "## Start latency\n\n`ctr run --rm <busybox> <id> true`, runtimes interleaved round by round.\n"
        );
        let _ = writeln!(
            s,
            "| runtime | n | median | p95 | p99 | min | max | median / runc | p95 / runc |\n|---|---|---|---|---|---|---|---|---|"
        );
        for l in &r.start {
            summary_row(
                &mut s,
                &l.runtime,
                &l.summary,
                "ms",
                base.map(|b| &b.summary),
            );
        }
        plot(&mut s, "start_latency.svg", "start latency distributions");
    }
    breakdown_section(&mut s, r);
    boot_section(&mut s, r);
    plot(&mut s, "boot.svg", "boot split");
    memory_section(&mut s, r);
    plot(&mut s, "memory.svg", "memory stacks");
    vmm_mappings(&mut s, r);
    overhead::section(&mut s, r);
    density::section(&mut s, r);
    plot(&mut s, "density.svg", "density curves");
    cpu_section(&mut s, r);
    io_section(&mut s, r);
    overhead::engines_section(&mut s, r);
    s
}

/// The calls the breakdown table shows, with what each covers.
const CALLS: &[(&str, &str)] = &[
    (
        "create",
        "`Create`: pod VM boot, rootfs share, `CreateContainer`, stdio",
    ),
    ("start", "`Start` (inside `Wait`)"),
    (
        "wait",
        "`Wait`: from before `Start` until `true` exited and its output drained",
    ),
    ("delete", "`Delete`: container removed, VM stopped"),
    ("shutdown", "`Shutdown`: the shim exits"),
];

fn breakdown_section(s: &mut String, r: &Results) {
    for b in &r.start_breakdown {
        if b.runs.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n### Where {}'s start goes\n\n{} more runs with the shim's per-call log \
             (`log_level = \"hull_runtime=debug,info\"`); medians.\n",
            b.runtime,
            b.runs.len()
        );
        let _ = writeln!(s, "| part | median | share of the whole |\n|---|---|---|");
        let per_call = |name: &str| -> Vec<f64> {
            b.runs
                .iter()
                .map(|run| {
                    run.calls
                        .iter()
                        .filter(|c| c.call == name)
                        .map(|c| c.ms)
                        .sum()
                })
                .collect()
        };
        let totals: Vec<f64> = b.runs.iter().map(|x| x.total_ms).collect();
        let whole = median(&totals);
        let share = |v: f64| if whole > 0.0 { v / whole * 100.0 } else { 0.0 };
        let _ = writeln!(s, "| whole `ctr run --rm … true` | {whole:.0} ms | 100% |");
        for (call, what) in CALLS {
            let m = median(&per_call(call));
            let _ = writeln!(s, "| {what} | {m:.0} ms | {:.0}% |", share(m));
        }
        let rest: Vec<f64> = b
            .runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let covered: f64 = ["create", "wait", "delete", "shutdown"]
                    .iter()
                    .map(|c| per_call(c)[i])
                    .sum();
                run.total_ms - covered
            })
            .collect();
        let m = median(&rest);
        let _ = writeln!(
            s,
            "| outside the shim's calls: ctr, containerd, shim start and exit | {m:.0} ms | {:.0}% |",
            share(m)
        );
    }
}

fn boot_section(s: &mut String, r: &Results) {
    let Some(b) = &r.boot else { return };
    type Part = fn(&BootRun) -> Option<f64>;
    let col = |verbose: bool, f: Part| {
        let v: Vec<f64> = b
            .runs
            .iter()
            .filter(|x| x.verbose == verbose)
            .filter_map(f)
            .collect();
        Summary::of(&v)
    };
    let _ = writeln!(
        s,
        "\n## Boot\n\nA pod VM as the shim starts one ({}, vsock backend + virtiofsd, production \
         initramfs): spawn → the agent answers `Check`. Quiet boots use the shim's kernel command \
         line; the split comes from boots with `loglevel=7 printk.time=1` interleaved with them \
         (the console lines' host arrival times against the kernel's own timestamps).\n",
        b.backend
    );
    let _ = writeln!(s, "| part | n | median | p95 |\n|---|---|---|---|");
    let rows: [(&str, bool, Part); 6] = [
        ("total, quiet boots", false, |x| Some(x.total_ms)),
        ("total, timestamped boots", true, |x| Some(x.total_ms)),
        ("VMM set-up + kernel load/decompress", true, |x| x.vmm_ms),
        ("kernel → `Run /init`", true, |x| x.kernel_ms),
        ("`/init` → agent serving", true, |x| x.userspace_ms),
        ("vsock connect + first RPC", true, |x| x.connect_ms),
    ];
    for (name, verbose, f) in rows {
        if let Some(x) = col(verbose, f) {
            let _ = writeln!(
                s,
                "| {name} | {} | {:.0} ms | {:.0} ms |",
                x.n, x.median, x.p95
            );
        }
    }
    kernel_gaps(s, b);
}

/// The kernel's longest silent stretches, averaged over the timestamped boots.
fn kernel_gaps(s: &mut String, b: &crate::compare::schema::BootSplit) {
    let verbose: Vec<&BootRun> = b.runs.iter().filter(|x| x.verbose).collect();
    if verbose.iter().all(|x| x.kernel_gaps.is_empty()) {
        return;
    }
    let mut by_line: Vec<(String, f64)> = Vec::new();
    for run in &verbose {
        for g in &run.kernel_gaps {
            match by_line.iter_mut().find(|(l, _)| *l == g.line) {
                Some(entry) => entry.1 += g.ms,
                None => by_line.push((g.line.clone(), g.ms)),
            }
        }
    }
    let n = verbose.len() as f64;
    by_line.sort_by(|a, b| b.1.total_cmp(&a.1));
    let _ = writeln!(
        s,
        "\nWhere the kernel's time goes: its longest stretches without console output before \
         `Run /init`, named by the line that ends them (mean over {} timestamped boots; a \
         stretch outside a boot's 8 longest counts as 0).\n",
        verbose.len()
    );
    let _ = writeln!(s, "| ms | ended by |\n|---|---|");
    for (line, total) in by_line.iter().take(8) {
        let _ = writeln!(s, "| {:.0} | `{}` |", total / n, line.replace('|', "/"));
    }
}

fn memory_section(s: &mut String, r: &Results) {
    if r.memory.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Memory of one idle container\n\n`sleep` in a container, after it settled. PSS \
         (proportional set: shared pages divided among their users) and RSS per host process; \
         guest RAM is the shared memfd, its PSS summed over every process that maps it.\n"
    );
    let _ = writeln!(
        s,
        "| runtime | process | role | RSS | PSS | of which guest RAM |\n|---|---|---|---|---|---|"
    );
    for m in &r.memory {
        for p in &m.processes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                m.runtime,
                p.comm,
                p.role,
                p.rss_kib as f64 / 1024.0,
                p.pss_kib as f64 / 1024.0,
                p.guest_ram_pss_kib as f64 / 1024.0
            );
        }
    }
    let _ = writeln!(
        s,
        "\n| runtime | split (PSS) | total PSS | / runc |\n|---|---|---|---|"
    );
    let runc = pod_pss(r, "runc");
    for m in &r.memory {
        let split: Vec<String> = memory_segments(m)
            .iter()
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect();
        let total = pod_pss_mib(m);
        let _ = writeln!(
            s,
            "| {} | {} | {total:.1} MiB | {} |",
            m.runtime,
            split.join(" + "),
            ratio(Some(total), runc)
        );
    }
}

fn vmm_mappings(s: &mut String, r: &Results) {
    for m in &r.memory {
        for p in m.processes.iter().filter(|p| !p.top_mappings.is_empty()) {
            let _ = writeln!(
                s,
                "\n{}'s largest mappings besides guest RAM ({} of {}; TCG's translation cache is \
                 an anonymous rwx mapping):\n",
                p.comm, m.runtime, p.role
            );
            let _ = writeln!(s, "| mapping | PSS |\n|---|---|");
            for t in &p.top_mappings {
                let _ = writeln!(s, "| `{}` | {:.1} MiB |", t.what, t.pss_kib as f64 / 1024.0);
            }
        }
    }
}

fn cpu_section(s: &mut String, r: &Results) {
    if r.cpu.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## CPU\n\nThe static probe (`bench/probe`) in a running idle container (`ctr task \
         exec`) and on the host: `getppid` system calls, an integer loop, fork + exec + wait of \
         busybox `true`. Medians of the repetitions; ratios against the host.\n"
    );
    let mut runtimes: Vec<&str> = Vec::new();
    for c in &r.cpu {
        if !runtimes.contains(&c.runtime.as_str()) {
            runtimes.push(&c.runtime);
        }
    }
    let _ = write!(s, "| workload |");
    for rt in &runtimes {
        let _ = write!(s, " {rt} |");
    }
    for rt in runtimes.iter().filter(|r| **r != "host") {
        let _ = write!(s, " {rt} / host |");
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(runtimes.len() * 2 - 1));
    for w in ["getppid", "compute", "spawn"] {
        let host = cpu_ns(&r.cpu, w, "host");
        let _ = write!(s, "| {w} (per op) |");
        for rt in &runtimes {
            let v = cpu_ns(&r.cpu, w, rt);
            let _ = write!(
                s,
                " {} |",
                v.map_or("–".to_owned(), |ns| if ns >= 1e5 {
                    format!("{:.2} ms", ns / 1e6)
                } else {
                    format!("{ns:.1} ns")
                })
            );
        }
        for rt in runtimes.iter().filter(|r| **r != "host") {
            let _ = write!(s, " {} |", ratio(cpu_ns(&r.cpu, w, rt), host));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nClock check (the probe times itself with the clock of where it runs, the guest's own in \
         a VM): its time against the host's wall time of the whole exec, medians.\n"
    );
    let _ = writeln!(
        s,
        "| workload | runtime | probe's time | host wall time of the exec |\n|---|---|---|---|"
    );
    for c in &r.cpu {
        let probe_s = median(&c.ns_per_op) * c.ops as f64 / 1e9;
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} s | {:.3} s |",
            c.workload,
            c.runtime,
            probe_s,
            median(&c.wall_s)
        );
    }
}

fn io_section(s: &mut String, r: &Results) {
    if !r.stdio.is_empty() {
        let _ = writeln!(
            s,
            "\n## stdio through the shim\n\n`ctr task exec <id> dd if=/dev/zero bs=<write>` into \
             ctr's stdout, minus an exec of `true`; 4 KiB is what busybox's `cat` and `head` \
             write at a time.\n"
        );
        let _ = writeln!(
            s,
            "| runtime | write | MiB | MiB/s | / runc, same write |\n|---|---|---|---|---|"
        );
        for x in &r.stdio {
            let runc = r
                .stdio
                .iter()
                .find(|y| y.runtime == "runc" && y.write_bytes == x.write_bytes)
                .map(figures::stdio_mib_s);
            let v = figures::stdio_mib_s(x);
            let _ = writeln!(
                s,
                "| {} | {} KiB | {} | {v:.0} | {} |",
                x.runtime,
                x.write_bytes / 1024,
                x.bytes >> 20,
                ratio(Some(v), runc)
            );
        }
    }
    if let Some(f) = &r.fs {
        let _ = writeln!(
            s,
            "\n## virtio-fs\n\nThe fs suite (`hull-bench fs`): the same busybox workloads in the \
             guest over virtio-fs (cache={}, {}) and on the host directory behind it; {} MiB \
             sequential, {} small files.\n",
            f.cache, f.backend, f.file_mib, f.files
        );
        let _ = writeln!(
            s,
            "| where | write MiB/s | read MiB/s | create/s | stat/s | unlink/s |\n|---|---|---|---|---|---|"
        );
        for (name, w) in [("host directory", &f.host), ("guest, virtio-fs", &f.guest)] {
            let mib = f.file_mib as f64;
            let n = f.files as f64;
            let _ = writeln!(
                s,
                "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                mib / w.seq_write_s,
                mib / w.seq_read_s,
                n / w.create_s,
                n / w.stat_s,
                n / w.unlink_s
            );
        }
        let _ = writeln!(
            s,
            "| guest / host | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            f.host.seq_write_s / f.guest.seq_write_s,
            f.host.seq_read_s / f.guest.seq_read_s,
            f.host.create_s / f.guest.create_s,
            f.host.stat_s / f.guest.stat_s,
            f.host.unlink_s / f.guest.unlink_s
        );
    }
    if let Some(a) = &r.agent {
        let _ = writeln!(
            s,
            "\n## vsock and the agent\n\nThe agent suite (`hull-bench agent`, {}).\n",
            a.backend
        );
        if let Some(rpc) = Summary::of(&a.rpc_us) {
            let _ = writeln!(
                s,
                "- agent RPC round trip (`Check`, n={}): median {:.0} µs, p95 {:.0} µs, p99 {:.0} µs",
                rpc.n, rpc.median, rpc.p95, rpc.p99
            );
        }
        if let Some(c) = Summary::of(&a.container_true_ms) {
            let _ = writeln!(
                s,
                "- create + start + wait of `/bin/true` in a running VM (n={}): median {:.1} ms, p95 {:.1} ms",
                c.n, c.median, c.p95
            );
        }
        for t in &a.throughput {
            let _ = writeln!(
                s,
                "- vsock {} × {} stream(s): {:.1} MiB/s",
                t.direction, t.streams, t.mib_per_s
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quick-results.json")
    }

    #[test]
    fn the_committed_quick_results_parse_with_the_current_schema() {
        let r = read(&fixture()).unwrap();
        assert!(r.quick);
        assert!(r.start.iter().any(|l| l.runtime == "runc"));
        assert!(r.start.iter().any(|l| l.runtime.starts_with("hull/")));
        // What was read serialises back to the same document: no field is lost or invented.
        let text = std::fs::read_to_string(fixture()).unwrap();
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), original);
    }

    #[test]
    fn report_re_renders_from_the_fixture() {
        let r = read(&fixture()).unwrap();
        let out = tempfile::tempdir().unwrap();
        write(&r, out.path()).unwrap();
        let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
        for heading in [
            "## Headline",
            "## Start latency",
            "## Memory",
            "## Density",
            "## CPU",
        ] {
            assert!(md.contains(heading), "no {heading} in:\n{md}");
        }
        assert!(md.contains("≤ 2× runc"), "{md}");
        for plot in ["start_latency.svg", "boot.svg", "memory.svg", "density.svg"] {
            let svg = std::fs::read_to_string(out.path().join(plot)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{plot}"
            );
            assert!(md.contains(&format!("]({plot})")), "{plot} not linked");
        }
        // Rendering twice gives the same report.
        assert_eq!(markdown(&r, |f| out.path().join(f).is_file()), md);
    }

    #[test]
    fn other_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let text = std::fs::read_to_string(fixture())
            .unwrap()
            .replace(crate::compare::schema::SCHEMA, "hull-bench/compare/v1");
        std::fs::write(&path, text).unwrap();
        let e = read(&path).unwrap_err();
        assert!(format!("{e:#}").contains("schema"), "{e:#}");
    }
}
