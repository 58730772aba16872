//! CPU and stdio inside a running idle container of each target, through `ctr task exec` (no
//! boot in the figures): the static probe's getppid, compute and fork/exec loops — the same
//! binary also runs on the host — and stdout throughput through the shim (`dd` of zeros to
//! stdout in 4 KiB and in 64 KiB writes, minus an empty exec).

use std::process::Command;

use anyhow::Context;

use super::schema::{CpuFigure, Stdio};
use super::target::{self, Target, PROBE_IN_IMAGE};
use super::Ctx;

/// The workloads: name, operations, extra arguments.
pub fn workloads(quick: bool) -> [(&'static str, u64, &'static [&'static str]); 3] {
    let scale = if quick { 1 } else { 10 };
    [
        ("getppid", 200_000 * scale, &[]),
        ("compute", 20_000_000 * scale, &[]),
        ("spawn", 20 * scale, &["/bin/busybox", "true"]),
    ]
}

/// ns per operation from the probe's JSON line.
pub fn parse_probe(out: &str) -> anyhow::Result<f64> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the probe printed no result")?;
    let v: serde_json::Value = serde_json::from_str(line).context("probe output")?;
    v["ns_per_op"]
        .as_f64()
        .context("no ns_per_op in the probe output")
}

/// The workloads on the host.
pub fn host(ctx: &Ctx<'_>) -> anyhow::Result<Vec<CpuFigure>> {
    let probe = target::probe_binary();
    let mut out = Vec::new();
    for (name, ops, extra) in workloads(ctx.opts.quick) {
        let (mut samples, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..ctx.opts.repeats {
            ctx.check()?;
            ctx.message(&format!("cpu: {name} on the host"));
            let started = std::time::Instant::now();
            let o = Command::new(&probe)
                .arg(name)
                .arg(ops.to_string())
                .args(extra)
                .output()
                .with_context(|| format!("{}", probe.display()))?;
            anyhow::ensure!(
                o.status.success(),
                "probe {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            wall.push(started.elapsed().as_secs_f64());
            samples.push(parse_probe(&String::from_utf8_lossy(&o.stdout))?);
            ctx.inc();
        }
        out.push(CpuFigure {
            workload: name.to_owned(),
            runtime: "host".to_owned(),
            ops,
            ns_per_op: samples,
            wall_s: wall,
        });
    }
    Ok(out)
}

/// The workloads in container `id` of `t`.
pub fn in_container(ctx: &Ctx<'_>, t: &Target, id: &str) -> anyhow::Result<Vec<CpuFigure>> {
    let mut out = Vec::new();
    for (name, ops, extra) in workloads(ctx.opts.quick) {
        let (mut samples, mut wall) = (Vec::new(), Vec::new());
        for r in 0..ctx.opts.repeats {
            ctx.check()?;
            ctx.message(&format!("cpu: {name} in {}", t.label()));
            let ops_arg = ops.to_string();
            let mut args = vec![PROBE_IN_IMAGE, name, ops_arg.as_str()];
            args.extend_from_slice(extra);
            let (took, _, text) = target::exec(ctx.c, id, &format!("cpu-{name}-{r}"), &args, true)?;
            wall.push(took.as_secs_f64());
            samples.push(parse_probe(&text)?);
            ctx.inc();
        }
        out.push(CpuFigure {
            workload: name.to_owned(),
            runtime: t.label(),
            ops,
            ns_per_op: samples,
            wall_s: wall,
        });
    }
    Ok(out)
}

/// The write sizes of the stdio step: busybox's own (`cat`, `head`: 4 KiB) and a large one.
pub const STDIO_WRITE_SIZES: [u64; 2] = [4096, 65536];

/// stdout throughput in container `id` of `t`, one figure per write size; the sizes alternate
/// within each repetition so that both see the same load.
pub fn stdio(ctx: &Ctx<'_>, t: &Target, id: &str) -> anyhow::Result<Vec<Stdio>> {
    let bytes = ctx.opts.stdio_mib as u64 * 1048576;
    let mut figs: Vec<Stdio> = STDIO_WRITE_SIZES
        .iter()
        .map(|&write_bytes| Stdio {
            runtime: t.label(),
            write_bytes,
            bytes,
            empty_s: Vec::new(),
            full_s: Vec::new(),
        })
        .collect();
    for r in 0..ctx.opts.repeats {
        for fig in &mut figs {
            ctx.check()?;
            ctx.message(&format!(
                "stdio: {} MiB out of {} in {} KiB writes",
                ctx.opts.stdio_mib,
                t.label(),
                fig.write_bytes / 1024
            ));
            let w = fig.write_bytes;
            let (empty, _, _) = target::exec(ctx.c, id, &format!("io-e{w}-{r}"), &["true"], false)?;
            let bs = format!("bs={w}");
            let count = format!("count={}", bytes / w);
            let args = ["dd", "if=/dev/zero", bs.as_str(), count.as_str()];
            let (full, got, _) = target::exec(ctx.c, id, &format!("io-f{w}-{r}"), &args, false)?;
            anyhow::ensure!(
                got == bytes,
                "stdout of {} in {w}-byte writes: {got} bytes, expected {bytes}",
                t.label()
            );
            fig.empty_s.push(empty.as_secs_f64());
            fig.full_s.push(full.as_secs_f64());
            ctx.inc();
        }
    }
    Ok(figs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_lines_parse() {
        let out = "noise\n{\"op\":\"getppid\",\"n\":10,\"seconds\":0.1,\"ns_per_op\":123.5}\n";
        assert_eq!(parse_probe(out).unwrap(), 123.5);
        assert!(parse_probe("nothing").is_err());
    }
}
