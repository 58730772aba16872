//! The agent's guest cgroup v2 statistics as containerd's cgroup **v1** `Metrics`
//! (`io.containerd.cgroups.v1.Metrics`), for CRI-O.
//!
//! CRI-O 1.26's VM runtime decodes only v1 `Metrics` (later releases try v1, then v2), and fails
//! `ContainerStats` with "type with url io.containerd.cgroups.v2.Metrics: not found" otherwise; so
//! a CRI-O container's stats go out as v1 ([`super::task::stats`]), containerd's as v2
//! ([`super::metrics`]). v2 has no per-type page-cache split: v1's `cache` is v2's `file`, `rss`
//! its `anon`, and the CPU times are nanoseconds where v2 counts microseconds.

use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use hull_protocol::agent::StatsContainerResponse;

const NS_PER_US: u64 = 1000;

/// Converts the agent's answer.
pub fn to_metrics_v1(stats: &StatsContainerResponse) -> Metrics {
    let mut m = Metrics::new();
    if let Some(p) = stats.pids.as_ref() {
        m.pids = Some(PidsStat {
            current: p.current,
            limit: p.limit,
            ..Default::default()
        })
        .into();
    }
    if let Some(c) = stats.cpu.as_ref() {
        m.cpu = Some(CPUStat {
            usage: Some(CPUUsage {
                total: c.usage_usec.saturating_mul(NS_PER_US),
                kernel: c.system_usec.saturating_mul(NS_PER_US),
                user: c.user_usec.saturating_mul(NS_PER_US),
                ..Default::default()
            })
            .into(),
            throttling: Some(Throttle {
                periods: c.nr_periods,
                throttled_periods: c.nr_throttled,
                throttled_time: c.throttled_usec.saturating_mul(NS_PER_US),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into();
    }
    if let Some(mem) = stats.memory.as_ref() {
        let limit = if mem.limit == 0 { u64::MAX } else { mem.limit };
        m.memory = Some(MemoryStat {
            cache: mem.file,
            rss: mem.anon,
            total_cache: mem.file,
            total_rss: mem.anon,
            pg_fault: mem.pgfault,
            pg_maj_fault: mem.pgmajfault,
            total_pg_fault: mem.pgfault,
            total_pg_maj_fault: mem.pgmajfault,
            hierarchical_memory_limit: limit,
            usage: Some(MemoryEntry {
                usage: mem.current,
                limit,
                failcnt: mem.events_max,
                ..Default::default()
            })
            .into(),
            swap: Some(MemoryEntry {
                usage: mem.swap_current,
                ..Default::default()
            })
            .into(),
            kernel: Some(MemoryEntry {
                usage: mem.kernel_stack,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into();
    }
    m
}

/// `metrics` packed the way typeurl finds it.
pub fn to_any_v1(metrics: Metrics) -> Result<Any, containerd_shim::Error> {
    containerd_shim::util::convert_to_any(Box::new(metrics))
}

#[cfg(test)]
mod tests {
    use hull_protocol::agent::{CpuStats, MemoryStats, PidsStats};

    use super::*;

    #[test]
    fn stats_become_v1_metrics() {
        let stats = StatsContainerResponse {
            cpu: Some(CpuStats {
                usage_usec: 1500,
                user_usec: 1000,
                system_usec: 500,
                nr_periods: 7,
                ..Default::default()
            })
            .into(),
            memory: Some(MemoryStats {
                current: 4096,
                limit: 0,
                anon: 2048,
                file: 1024,
                ..Default::default()
            })
            .into(),
            pids: Some(PidsStats {
                current: 3,
                limit: 100,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let m = to_metrics_v1(&stats);
        assert_eq!(m.cpu.usage.total, 1_500_000);
        assert_eq!(m.cpu.usage.kernel, 500_000);
        assert_eq!(m.cpu.throttling.periods, 7);
        assert_eq!(
            (m.memory.usage.usage, m.memory.usage.limit),
            (4096, u64::MAX)
        );
        assert_eq!((m.memory.rss, m.memory.cache), (2048, 1024));
        assert_eq!((m.pids.current, m.pids.limit), (3, 100));
        let any = to_any_v1(m).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    }
}
