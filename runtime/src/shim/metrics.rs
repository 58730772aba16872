//! The agent's guest cgroup v2 statistics as containerd's cgroup v2 `Metrics`
//! (`io.containerd.cgroups.v2.Metrics`, what `ctr task metrics` and CRI stats decode).

use containerd_shim_protos::cgroups_v2::metrics::{
    CPUStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use hull_protocol::agent::StatsContainerResponse;

/// Converts the agent's answer.
pub fn to_metrics(stats: &StatsContainerResponse) -> Metrics {
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
            usage_usec: c.usage_usec,
            user_usec: c.user_usec,
            system_usec: c.system_usec,
            nr_periods: c.nr_periods,
            nr_throttled: c.nr_throttled,
            throttled_usec: c.throttled_usec,
            ..Default::default()
        })
        .into();
    }
    if let Some(mem) = stats.memory.as_ref() {
        m.memory = Some(MemoryStat {
            usage: mem.current,
            // containerd reports "no limit" as the largest value, as runc's shim does.
            usage_limit: if mem.limit == 0 { u64::MAX } else { mem.limit },
            swap_usage: mem.swap_current,
            anon: mem.anon,
            file: mem.file,
            kernel_stack: mem.kernel_stack,
            pgfault: mem.pgfault,
            pgmajfault: mem.pgmajfault,
            ..Default::default()
        })
        .into();
        m.memory_events = Some(MemoryEvents {
            high: mem.events_high,
            max: mem.events_max,
            oom: mem.events_oom,
            oom_kill: mem.events_oom_kill,
            ..Default::default()
        })
        .into();
    }
    if !stats.io.is_empty() {
        m.io = Some(IOStat {
            usage: stats
                .io
                .iter()
                .map(|d| IOEntry {
                    major: u64::from(d.major),
                    minor: u64::from(d.minor),
                    rbytes: d.rbytes,
                    wbytes: d.wbytes,
                    rios: d.rios,
                    wios: d.wios,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .into();
    }
    m
}

/// `metrics` packed the way containerd's typeurl finds it.
pub fn to_any(metrics: Metrics) -> Result<Any, containerd_shim::Error> {
    containerd_shim::util::convert_to_any(Box::new(metrics))
}

#[cfg(test)]
mod tests {
    use hull_protocol::agent::{CpuStats, IoDeviceStats, MemoryStats, PidsStats};

    use super::*;

    #[test]
    fn stats_become_v2_metrics() {
        let stats = StatsContainerResponse {
            cpu: Some(CpuStats {
                usage_usec: 1500,
                user_usec: 1000,
                system_usec: 500,
                ..Default::default()
            })
            .into(),
            memory: Some(MemoryStats {
                current: 4096,
                limit: 0,
                events_oom_kill: 1,
                anon: 2048,
                ..Default::default()
            })
            .into(),
            pids: Some(PidsStats {
                current: 3,
                limit: 100,
                ..Default::default()
            })
            .into(),
            io: vec![IoDeviceStats {
                major: 254,
                minor: 1,
                rbytes: 10,
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = to_metrics(&stats);
        assert_eq!(m.cpu.usage_usec, 1500);
        assert_eq!(m.cpu.system_usec, 500);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.memory.anon, 2048);
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!((m.pids.current, m.pids.limit), (3, 100));
        assert_eq!(m.io.usage[0].major, 254);
        let any = to_any(m).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
    }
}
