//! Container statistics on the wire: the container library's [`CgroupStats`] as protobuf.

use hull_protocol::agent as pb;
use hull_protocol::limits::MAX_IO_DEVICES;

use crate::container::CgroupStats;

/// Converts; absent controllers read as zero, unlimited limits as 0.
pub fn to_wire(stats: &CgroupStats) -> pb::StatsContainerResponse {
    let mut out = pb::StatsContainerResponse::new();
    if let Some(c) = &stats.cpu {
        out.cpu = Some(pb::CpuStats {
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
    if let Some(m) = &stats.memory {
        out.memory = Some(pb::MemoryStats {
            current: m.current,
            limit: m.limit.unwrap_or(0),
            swap_current: m.swap_current.unwrap_or(0),
            events_oom: m.events.oom,
            events_oom_kill: m.events.oom_kill,
            events_max: m.events.max,
            events_high: m.events.high,
            anon: m.anon,
            file: m.file,
            kernel_stack: m.kernel_stack,
            pgfault: m.pgfault,
            pgmajfault: m.pgmajfault,
            ..Default::default()
        })
        .into();
    }
    if let Some(p) = &stats.pids {
        out.pids = Some(pb::PidsStats {
            current: p.current,
            limit: p.limit.unwrap_or(0),
            ..Default::default()
        })
        .into();
    }
    out.io = stats
        .io
        .iter()
        .take(MAX_IO_DEVICES)
        .map(|d| pb::IoDeviceStats {
            major: u32::try_from(d.major).unwrap_or(u32::MAX),
            minor: u32::try_from(d.minor).unwrap_or(u32::MAX),
            rbytes: d.rbytes,
            wbytes: d.wbytes,
            rios: d.rios,
            wios: d.wios,
            ..Default::default()
        })
        .collect();
    out
}
