//! `hull-bench hardening`: what the hardening costs — the VMM's jail (its namespaces, pivot_root,
//! unprivileged uid and cgroup) and the shim's seccomp filter, toggled together (`jail` and
//! `seccomp` in the shim's configuration); QEMU's own seccomp filter (`-sandbox on…`) is on in
//! both settings, as is virtiofsd's. On and off interleaved in one run through one private
//! containerd (the shim reads its configuration file at each pod start):
//!
//! - start latency: `ctr run --rm … true`;
//! - vsock throughput: a container's stdout (`dd` of zeros) through the agent's stdio stream, the
//!   shim and `ctr`;
//! - virtio-fs throughput: `dd` writing a file with `fsync` onto the container's root on the share,
//!   and reading one the host wrote there (so no guest cache holds it), timed inside the guest by
//!   the benchmark probe.
//!
//! The stdout throughput takes out the cost of an empty `ctr task exec` (the median of `true`)
//! measured in the same container. Figures go to `hardening.json` and `hardening.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hull_tests::containerd::Containerd;
use serde::Serialize;

use crate::compare::target::{self, Target};
use crate::stats::Summary;

/// What to run.
#[derive(Debug, Clone)]
pub struct HardeningOptions {
    /// Rounds; each measures everything once with the jail on and once off, in alternating order.
    pub runs: usize,
    /// MiB through stdout and through the share per measurement.
    pub mib: usize,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
}

/// One setting's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Setting {
    /// `ctr run --rm … true`, ms.
    pub start_ms: Vec<f64>,
    /// An empty `ctr task exec` (`true`), ms.
    pub exec_ms: Vec<f64>,
    /// stdout through vsock, MiB/s.
    pub stdio_mib_s: Vec<f64>,
    /// virtio-fs write + fsync, MiB/s.
    pub fs_write_mib_s: Vec<f64>,
    /// virtio-fs read of a host-written file, MiB/s.
    pub fs_read_mib_s: Vec<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct HardeningResults {
    /// The command line.
    pub command: String,
    /// The host's load average when the run started and ended.
    pub load: [[f64; 3]; 2],
    /// Guest RAM, MiB.
    pub guest_memory_mib: u32,
    /// MiB per throughput sample.
    pub mib: usize,
    /// Jail and the shim's seccomp on (the default).
    pub jail_on: Setting,
    /// Both off (`jail = false`, `seccomp = false`).
    pub jail_off: Setting,
}

/// The hull target of this host (QEMU: the jailed backend).
fn hull() -> Target {
    Target::Hull {
        hypervisor: "qemu",
        backend: "qemu".to_owned(),
    }
}

/// Turns the jail and the shim's seccomp filter on or off for the pods started from now on.
fn set_jail(c: &Containerd, on: bool) -> anyhow::Result<()> {
    let path = c.dir().join("hull.toml");
    let text = std::fs::read_to_string(&path).context("hull.toml")?;
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("jail =") && !l.starts_with("seccomp =")
        })
        .collect();
    let setting = format!("jail = {on}\nseccomp = {on}");
    lines.push(&setting);
    std::fs::write(&path, lines.join("\n") + "\n").context("hull.toml")?;
    Ok(())
}

fn mib_s(mib: usize, total: Duration, empty_ms: f64) -> f64 {
    let secs = (total.as_secs_f64() - empty_ms / 1000.0).max(1e-3);
    mib as f64 / secs
}

/// The container's root as the host sees it: the shim mounts it in the pod's share at
/// `<run_dir>/<pod>/shared/<id>/rootfs` (a lone container is its own pod).
fn rootfs_on_host(c: &Containerd, id: &str) -> PathBuf {
    c.run_dir().join(id).join("shared").join(id).join("rootfs")
}

/// Seconds `args` took inside container `id`, timed there by the benchmark probe (`spawn 1`), so
/// `ctr task exec`'s own cost stays out.
fn timed_in_guest(c: &Containerd, id: &str, exec_id: &str, args: &[&str]) -> anyhow::Result<f64> {
    let mut all = vec![target::PROBE_IN_IMAGE, "spawn", "1"];
    all.extend_from_slice(args);
    let (_, _, out) = target::exec(c, id, exec_id, &all, true)?;
    let ns = crate::compare::cpu::parse_probe(&out)?;
    Ok((ns / 1e9).max(1e-6))
}

fn round(
    c: &Containerd,
    opts: &HardeningOptions,
    r: usize,
    on: bool,
    fig: &mut Setting,
) -> anyhow::Result<()> {
    set_jail(c, on)?;
    let tag = if on { "on" } else { "off" };
    let t = hull();
    let (start, _) = target::run_rm(c, &t, &format!("hard-{tag}-{r}"), &["true"])?;
    fig.start_ms.push(start.as_secs_f64() * 1000.0);

    let id = format!("hard-{tag}-idle-{r}");
    target::run_detached(c, &t, &id, &["sleep", "100000"])?;
    let result = (|| {
        let mut empty = Vec::new();
        for k in 0..3 {
            let (d, _, _) = target::exec(c, &id, &format!("e{k}"), &["true"], false)?;
            empty.push(d.as_secs_f64() * 1000.0);
        }
        let empty_ms = Summary::of(&empty).map_or(0.0, |s| s.median);
        fig.exec_ms.push(empty_ms);

        let count = format!("count={}", opts.mib * 16);
        let (d, bytes, _) = target::exec(
            c,
            &id,
            "stdio",
            &["dd", "if=/dev/zero", "bs=65536", &count],
            false,
        )?;
        anyhow::ensure!(
            bytes == opts.mib as u64 * (1 << 20),
            "stdout carried {bytes} bytes"
        );
        fig.stdio_mib_s.push(mib_s(opts.mib, d, empty_ms));

        let count = format!("count={}", opts.mib);
        let secs = timed_in_guest(
            c,
            &id,
            "fsw",
            &[
                "dd",
                "if=/dev/zero",
                "of=/bench-write.dat",
                "bs=1M",
                &count,
                "conv=fsync",
            ],
        )?;
        fig.fs_write_mib_s.push(opts.mib as f64 / secs);

        let host_file = rootfs_on_host(c, &id).join("bench-read.dat");
        std::fs::write(&host_file, vec![7u8; opts.mib << 20])
            .with_context(|| format!("cannot write {}", host_file.display()))?;
        let secs = timed_in_guest(
            c,
            &id,
            "fsr",
            &["dd", "if=/bench-read.dat", "of=/dev/null", "bs=1M"],
        )?;
        fig.fs_read_mib_s.push(opts.mib as f64 / secs);
        Ok(())
    })();
    target::remove(c, &id);
    result
}

/// Runs the suite and writes its files into `out`.
pub fn run(opts: &HardeningOptions, out: &Path) -> anyhow::Result<HardeningResults> {
    std::fs::create_dir_all(out)?;
    let load_before = crate::compare::env::load();
    let c = crate::compare::launch_sized(1, opts.memory_mib)?;
    let mut results = HardeningResults {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        load: [load_before, [0.0; 3]],
        guest_memory_mib: opts.memory_mib,
        mib: opts.mib,
        jail_on: Setting::default(),
        jail_off: Setting::default(),
    };
    for r in 0..opts.runs {
        // Alternate which setting goes first, so drift in the host's load hits both alike.
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for on in order {
            eprintln!(
                "hull-bench hardening: round {}/{}, jail {}",
                r + 1,
                opts.runs,
                if on { "on" } else { "off" }
            );
            let fig = if on {
                &mut results.jail_on
            } else {
                &mut results.jail_off
            };
            round(&c, opts, r, on, fig)?;
        }
    }
    results.load[1] = crate::compare::env::load();
    std::fs::write(
        out.join("hardening.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out.join("hardening.md"), report(&results))?;
    Ok(results)
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median)
}

/// The Markdown report: medians on and off, and the difference.
pub fn report(r: &HardeningResults) -> String {
    let mut md =
        String::from("# The cost of the jail and the shim's seccomp (hull-bench hardening)\n\n");
    md.push_str(&format!(
        "{} rounds, hardening (VMM jail + shim seccomp) on and off interleaved, QEMU backend, {} MiB guests, {} MiB per \
         throughput sample; load {:.1} → {:.1}.\n\n",
        r.jail_on.start_ms.len(),
        r.guest_memory_mib,
        r.mib,
        r.load[0][0],
        r.load[1][0]
    ));
    md.push_str("| figure (median) | on | off | on − off | change |\n|---|---|---|---|---|\n");
    let rows: [(&str, &str, &[f64], &[f64]); 5] = [
        (
            "start, `ctr run --rm true`",
            "ms",
            &r.jail_on.start_ms,
            &r.jail_off.start_ms,
        ),
        (
            "empty `ctr task exec`",
            "ms",
            &r.jail_on.exec_ms,
            &r.jail_off.exec_ms,
        ),
        (
            "stdout through vsock",
            "MiB/s",
            &r.jail_on.stdio_mib_s,
            &r.jail_off.stdio_mib_s,
        ),
        (
            "virtio-fs write + fsync",
            "MiB/s",
            &r.jail_on.fs_write_mib_s,
            &r.jail_off.fs_write_mib_s,
        ),
        (
            "virtio-fs read (host-written file)",
            "MiB/s",
            &r.jail_on.fs_read_mib_s,
            &r.jail_off.fs_read_mib_s,
        ),
    ];
    for (name, unit, on, off) in rows {
        let (a, b) = (median(on), median(off));
        md.push_str(&format!(
            "| {name} | {a:.1} {unit} | {b:.1} {unit} | {:+.1} {unit} | {:+.1}% |\n",
            a - b,
            (a - b) / b * 100.0
        ));
    }
    md.push_str(
        "\nTargets (issue #10): under 5 ms on start and under 3% on throughput. Differences \
         smaller than the spread between rounds (see `hardening.json`) are noise.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_medians_and_changes() {
        let fig = |start: f64, mib: f64| Setting {
            start_ms: vec![start, start + 10.0, start - 10.0],
            exec_ms: vec![50.0],
            stdio_mib_s: vec![mib],
            fs_write_mib_s: vec![mib],
            fs_read_mib_s: vec![mib],
        };
        let r = HardeningResults {
            command: "hull-bench hardening".into(),
            load: [[1.0; 3], [2.0; 3]],
            guest_memory_mib: 128,
            mib: 64,
            jail_on: fig(1004.0, 99.0),
            jail_off: fig(1000.0, 100.0),
        };
        let md = report(&r);
        assert!(
            md.contains("| start, `ctr run --rm true` | 1004.0 ms | 1000.0 ms | +4.0 ms | +0.4% |"),
            "{md}"
        );
        assert!(
            md.contains("| stdout through vsock | 99.0 MiB/s | 100.0 MiB/s | -1.0 MiB/s | -1.0% |"),
            "{md}"
        );
    }

    #[test]
    fn throughput_takes_out_the_empty_exec() {
        assert!((mib_s(64, Duration::from_millis(1100), 100.0) - 64.0).abs() < 1e-9);
    }
}
