//! Start latency: `ctr run --rm <busybox> <id> true` on every target, interleaved round by round
//! (the order rotates each round) so that load from the rest of the machine falls on all of them
//! alike. One unrecorded warm-up run per target first (page cache, first shim start).

use super::schema::Latency;
use super::target::{self, Target};
use super::Ctx;
use crate::stats::Summary;

/// Measures `runs` starts per target.
pub fn run(ctx: &Ctx<'_>, targets: &[Target], runs: usize) -> anyhow::Result<Vec<Latency>> {
    for (i, t) in targets.iter().enumerate() {
        ctx.check()?;
        ctx.message(&format!("start latency: warm-up {}", t.label()));
        target::run_rm(ctx.c, t, &format!("hb-warm-{i}"), &["true"])?;
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); targets.len()];
    for round in 0..runs {
        for k in 0..targets.len() {
            let which = (round + k) % targets.len();
            let t = &targets[which];
            ctx.check()?;
            ctx.message(&format!(
                "start latency: {} {}/{runs}",
                t.label(),
                round + 1
            ));
            let id = format!("hb-start-{which}-{round}");
            let (took, _) = target::run_rm(ctx.c, t, &id, &["true"])?;
            samples[which].push(took.as_secs_f64() * 1e3);
            ctx.inc();
        }
    }
    Ok(targets
        .iter()
        .zip(samples)
        .filter_map(|(t, s)| {
            Some(Latency {
                runtime: t.label(),
                summary: Summary::of(&s)?,
                samples_ms: s,
            })
        })
        .collect())
}
