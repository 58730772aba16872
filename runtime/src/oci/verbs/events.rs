//! `events`: the container's statistics, as runc prints them. The cgroup they come from is the
//! container's in the guest (the agent's `StatsContainer`, through the monitor), so memory and
//! CPU are what the container's processes use inside their VM. `--stats` prints one
//! `{"type":"stats","id":…,"data":…}` line; without it a line every `--interval` until the
//! container stops.

use std::time::Duration;

use hull_protocol::agent::StatsContainerResponse;
use serde_json::{json, Value};

use super::Globals;
use crate::oci::control::{call, Reply, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::OciError;

/// Prints container `id`'s statistics once (`stats`) or every `interval`.
pub fn run(globals: &Globals, id: &str, stats: bool, interval: Duration) -> Result<i32, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    loop {
        let record = dir.current()?;
        if record.status == Status::Stopped {
            if stats {
                return Err(OciError::State("container not running".into()));
            }
            return Ok(0);
        }
        let data = match call(&dir.socket(), &Request::Stats)? {
            Reply::Stats { stats } => stats,
            other => return Err(OciError::Monitor(format!("unexpected reply {other:?}"))),
        };
        println!("{}", json!({"type": "stats", "id": id, "data": data}));
        if stats {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

/// The agent's statistics as runc's `types.Stats` (nanoseconds for CPU times, bytes for memory;
/// a limit the guest reports as none is the largest value, as runc reports "max").
pub fn runc_stats(s: &StatsContainerResponse) -> Value {
    let mut data = serde_json::Map::new();
    if let Some(c) = s.cpu.as_ref() {
        data.insert(
            "cpu".into(),
            json!({
                "usage": {
                    "total": c.usage_usec.saturating_mul(1000),
                    "kernel": c.system_usec.saturating_mul(1000),
                    "user": c.user_usec.saturating_mul(1000),
                },
                "throttling": {
                    "periods": c.nr_periods,
                    "throttledPeriods": c.nr_throttled,
                    "throttledTime": c.throttled_usec.saturating_mul(1000),
                },
            }),
        );
    }
    if let Some(m) = s.memory.as_ref() {
        let limit = if m.limit == 0 { u64::MAX } else { m.limit };
        data.insert(
            "memory".into(),
            json!({
                "cache": m.file,
                "usage": {"usage": m.current, "limit": limit, "failcnt": m.events_max},
                "swap": {"usage": m.swap_current},
                "raw": {
                    "anon": m.anon,
                    "file": m.file,
                    "kernel_stack": m.kernel_stack,
                    "pgfault": m.pgfault,
                    "pgmajfault": m.pgmajfault,
                    "oom": m.events_oom,
                    "oom_kill": m.events_oom_kill,
                },
            }),
        );
    }
    if let Some(p) = s.pids.as_ref() {
        data.insert(
            "pids".into(),
            json!({"current": p.current, "limit": p.limit}),
        );
    }
    if !s.io.is_empty() {
        let entry = |major: u32, minor: u32, op: &str, value: u64| json!({"major": major, "minor": minor, "op": op, "value": value});
        let bytes: Vec<Value> =
            s.io.iter()
                .flat_map(|d| {
                    [
                        entry(d.major, d.minor, "Read", d.rbytes),
                        entry(d.major, d.minor, "Write", d.wbytes),
                    ]
                })
                .collect();
        let ios: Vec<Value> =
            s.io.iter()
                .flat_map(|d| {
                    [
                        entry(d.major, d.minor, "Read", d.rios),
                        entry(d.major, d.minor, "Write", d.wios),
                    ]
                })
                .collect();
        data.insert(
            "blkio".into(),
            json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios}),
        );
    }
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use hull_protocol::agent::{CpuStats, MemoryStats, PidsStats};

    use super::*;

    #[test]
    fn agent_stats_become_runc_stats() {
        let mut s = StatsContainerResponse::new();
        s.cpu = Some(CpuStats {
            usage_usec: 7,
            user_usec: 5,
            system_usec: 2,
            ..Default::default()
        })
        .into();
        s.memory = Some(MemoryStats {
            current: 4096,
            limit: 0,
            ..Default::default()
        })
        .into();
        s.pids = Some(PidsStats {
            current: 3,
            limit: 10,
            ..Default::default()
        })
        .into();
        let v = runc_stats(&s);
        assert_eq!(v["cpu"]["usage"]["total"], 7000);
        assert_eq!(v["cpu"]["usage"]["kernel"], 2000);
        assert_eq!(v["memory"]["usage"]["usage"], 4096);
        assert_eq!(v["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(v["pids"]["current"], 3);
        assert!(v.get("blkio").is_none());
    }
}
