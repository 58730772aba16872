//! Reading a cgroup's statistics: cpu, memory, pids and io, from the cgroup v2 interface files.
//!
//! A controller whose files are absent (not enabled for the cgroup) reads as `None`, so the
//! caller can tell "zero" from "not measured".

use std::collections::BTreeMap;
use std::path::Path;

/// CPU figures (`cpu.stat`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Total CPU time, µs.
    pub usage_usec: u64,
    /// User CPU time, µs.
    pub user_usec: u64,
    /// System CPU time, µs.
    pub system_usec: u64,
    /// Enforcement periods elapsed (0 without a cpu controller).
    pub nr_periods: u64,
    /// Periods throttled.
    pub nr_throttled: u64,
    /// Time throttled, µs.
    pub throttled_usec: u64,
}

/// `memory.events` counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times below `memory.low` reclaim happened.
    pub low: u64,
    /// Times over `memory.high`.
    pub high: u64,
    /// Times at `memory.max`.
    pub max: u64,
    /// OOM situations.
    pub oom: u64,
    /// Processes killed by the OOM killer.
    pub oom_kill: u64,
}

/// Memory figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// `memory.current`, bytes.
    pub current: u64,
    /// `memory.max`, bytes (`None` when "max").
    pub limit: Option<u64>,
    /// `memory.swap.current`, bytes.
    pub swap_current: Option<u64>,
    /// `memory.swap.max`, bytes (`None` when "max" or absent).
    pub swap_limit: Option<u64>,
    /// `memory.events`.
    pub events: MemoryEvents,
    /// `memory.stat` anon.
    pub anon: u64,
    /// `memory.stat` file.
    pub file: u64,
    /// `memory.stat` kernel_stack.
    pub kernel_stack: u64,
    /// `memory.stat` pgfault.
    pub pgfault: u64,
    /// `memory.stat` pgmajfault.
    pub pgmajfault: u64,
}

/// Pids figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    /// `pids.current`.
    pub current: u64,
    /// `pids.max` (`None` when "max").
    pub limit: Option<u64>,
}

/// One device's `io.stat` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoDeviceStats {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
}

/// Everything `stats()` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// `None` when `cpu.stat` cannot be read.
    pub cpu: Option<CpuStats>,
    /// `None` without the memory controller.
    pub memory: Option<MemoryStats>,
    /// `None` without the pids controller.
    pub pids: Option<PidsStats>,
    /// Empty without the io controller or without I/O.
    pub io: Vec<IoDeviceStats>,
}

/// `key value` lines as a map (unparsable values are skipped).
pub fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn single(dir: &Path, file: &str) -> Option<Option<u64>> {
    let t = read(dir, file)?;
    let t = t.trim();
    Some(if t == "max" { None } else { t.parse().ok() })
}

/// Parses `io.stat`.
pub fn parse_io_stat(text: &str) -> Vec<IoDeviceStats> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (maj, min) = it.next()?.split_once(':')?;
            let mut d = IoDeviceStats {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                ..Default::default()
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => d.rbytes = v,
                    "wbytes" => d.wbytes = v,
                    "rios" => d.rios = v,
                    "wios" => d.wios = v,
                    _ => {}
                }
            }
            Some(d)
        })
        .collect()
}

/// Reads the stats of the cgroup at `dir`.
pub fn read_stats(dir: &Path) -> CgroupStats {
    let cpu = read(dir, "cpu.stat").map(|t| {
        let m = flat_keyed(&t);
        let g = |k: &str| m.get(k).copied().unwrap_or(0);
        CpuStats {
            usage_usec: g("usage_usec"),
            user_usec: g("user_usec"),
            system_usec: g("system_usec"),
            nr_periods: g("nr_periods"),
            nr_throttled: g("nr_throttled"),
            throttled_usec: g("throttled_usec"),
        }
    });
    let memory = single(dir, "memory.current").map(|current| {
        let ev = flat_keyed(&read(dir, "memory.events").unwrap_or_default());
        let st = flat_keyed(&read(dir, "memory.stat").unwrap_or_default());
        let e = |k: &str| ev.get(k).copied().unwrap_or(0);
        let s = |k: &str| st.get(k).copied().unwrap_or(0);
        MemoryStats {
            current: current.unwrap_or(0),
            limit: single(dir, "memory.max").flatten(),
            swap_current: single(dir, "memory.swap.current").flatten(),
            swap_limit: single(dir, "memory.swap.max").flatten(),
            events: MemoryEvents {
                low: e("low"),
                high: e("high"),
                max: e("max"),
                oom: e("oom"),
                oom_kill: e("oom_kill"),
            },
            anon: s("anon"),
            file: s("file"),
            kernel_stack: s("kernel_stack"),
            pgfault: s("pgfault"),
            pgmajfault: s("pgmajfault"),
        }
    });
    let pids = single(dir, "pids.current").map(|current| PidsStats {
        current: current.unwrap_or(0),
        limit: single(dir, "pids.max").flatten(),
    });
    let io = read(dir, "io.stat")
        .map(|t| parse_io_stat(&t))
        .unwrap_or_default();
    CgroupStats {
        cpu,
        memory,
        pids,
        io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_a_fake_cgroup() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, t: &str| fs::write(d.path().join(f), t).unwrap();
        w("cpu.stat", "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 10\nnr_throttled 2\nthrottled_usec 50\n");
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("memory.swap.current", "0\n");
        w("memory.swap.max", "1048576\n");
        w(
            "memory.events",
            "low 0\nhigh 1\nmax 2\noom 3\noom_kill 4\noom_group_kill 0\n",
        );
        w(
            "memory.stat",
            "anon 100\nfile 200\nkernel_stack 300\npgfault 400\npgmajfault 5\nslab 9\n",
        );
        w("pids.current", "3\n");
        w("pids.max", "64\n");
        w("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=5 wbytes=0 rios=1 wios=0\n");
        let s = read_stats(d.path());
        let cpu = s.cpu.unwrap();
        assert_eq!(
            (cpu.usage_usec, cpu.user_usec, cpu.system_usec),
            (1000, 600, 400)
        );
        assert_eq!(
            (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec),
            (10, 2, 50)
        );
        let m = s.memory.unwrap();
        assert_eq!(m.current, 4096);
        assert_eq!(m.limit, None);
        assert_eq!(m.swap_limit, Some(1_048_576));
        assert_eq!(
            m.events,
            MemoryEvents {
                low: 0,
                high: 1,
                max: 2,
                oom: 3,
                oom_kill: 4
            }
        );
        assert_eq!(
            (m.anon, m.file, m.kernel_stack, m.pgfault, m.pgmajfault),
            (100, 200, 300, 400, 5)
        );
        assert_eq!(
            s.pids,
            Some(PidsStats {
                current: 3,
                limit: Some(64)
            })
        );
        assert_eq!(s.io.len(), 2);
        assert_eq!(
            s.io[0],
            IoDeviceStats {
                major: 8,
                minor: 0,
                rbytes: 10,
                wbytes: 20,
                rios: 1,
                wios: 2
            }
        );
        assert_eq!(s.io[1].major, 253);
    }

    #[test]
    fn absent_controllers_are_none() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("cpu.stat"),
            "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
        )
        .unwrap();
        let s = read_stats(d.path());
        assert_eq!(s.cpu.unwrap().nr_periods, 0);
        assert!(s.memory.is_none() && s.pids.is_none() && s.io.is_empty());
    }
}
