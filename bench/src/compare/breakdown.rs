//! Where a hull `ctr run --rm … true` spends its time: a few extra runs with the shim at debug
//! level, whose log (merged into containerd's) names every Task call and its duration
//! ("task call done", `call`, `id`, `ms`). ctr calls `Wait` before `Start`, so `Wait` covers
//! `Start`, the process's run and the output drain; what no call covers is ctr, containerd and
//! the shim's own start and exit.

use super::schema::{BreakdownRun, ShimCall, StartBreakdown};
use super::target::{self, Target};
use super::Ctx;

/// The `log_level` the runs use.
const DEBUG: &str = "hull_runtime=debug,info";

fn set_log_level(ctx: &Ctx<'_>, level: &str) -> anyhow::Result<()> {
    let path = ctx.c.dir().join("hull.toml");
    let text = std::fs::read_to_string(&path)?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("log_level =") {
                format!("log_level = \"{level}\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(())
}

/// The value of `key=` in a log line, without quotes.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// The Task calls of container `id` in a shim log, in log order.
pub fn calls_of(log: &str, id: &str) -> Vec<ShimCall> {
    log.lines()
        .filter(|l| l.contains("task call done") && field(l, "id") == Some(id))
        .filter_map(|l| {
            Some(ShimCall {
                call: field(l, "call")?.to_owned(),
                ms: field(l, "ms")?.parse().ok()?,
            })
        })
        .collect()
}

/// `runs` timed runs of `t` with the shim's call log.
pub fn run(ctx: &Ctx<'_>, t: &Target, index: usize, runs: usize) -> anyhow::Result<StartBreakdown> {
    set_log_level(ctx, DEBUG)?;
    let mut totals = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for i in 0..runs {
            ctx.check()?;
            ctx.message(&format!("start breakdown: {} {}/{runs}", t.label(), i + 1));
            let id = format!("hb-why-{index}-{i}");
            let (took, _) = target::run_rm(ctx.c, t, &id, &["true"])?;
            totals.push((id, took.as_secs_f64() * 1e3));
            ctx.inc();
        }
        Ok(())
    })();
    set_log_level(ctx, "info")?;
    result?;
    let log = ctx.c.log();
    Ok(StartBreakdown {
        runtime: t.label(),
        runs: totals
            .into_iter()
            .map(|(id, total_ms)| BreakdownRun {
                total_ms,
                calls: calls_of(&log, &id),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_read_from_the_shim_log() {
        let log = "\
2026-11-27T18:00:00.1Z DEBUG hull_runtime::shim::service: task call done call=\"create\" id=\"a\" ms=1110.5
2026-11-27T18:00:00.2Z DEBUG hull_runtime::shim::service: task call done call=\"create\" id=\"ab\" ms=9
2026-11-27T18:00:00.3Z  INFO something else id=\"a\"
2026-11-27T18:00:00.4Z DEBUG hull_runtime::shim::service: task call done call=\"wait\" id=\"a\" ms=63.25
";
        let calls = calls_of(log, "a");
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].call.as_str(), calls[0].ms), ("create", 1110.5));
        assert_eq!((calls[1].call.as_str(), calls[1].ms), ("wait", 63.25));
    }
}
