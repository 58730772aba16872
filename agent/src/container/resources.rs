//! `linux.resources` → cgroup v2 interface files.
//!
//! A pure translation: the result is a list of `(file, value)` writes, so it can be tested
//! without a cgroup tree. Conversions follow what runc does for cgroup v2:
//! - `memory.swap` is memory+swap in the spec, so `memory.swap.max = swap - limit`;
//! - `cpu.shares` (2..262144) → `cpu.weight` (1..10000) with `1 + (shares - 2) * 9999 / 262142`;
//! - `blockIO.weight` (10..1000) → `io.bfq.weight` as is when the cgroup has that file, otherwise
//!   `io.weight = 1 + (weight - 10) * 9999 / 990`.
//!
//! Fields that only cgroup v1 has (kernel memory, swappiness, disableOOMKiller, realtime CPU,
//! net_cls/net_prio, leaf weights) are refused. `devices` rules are not files: they become an eBPF
//! program (see `devcgroup`), compiled here only to refuse bad rules early.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

/// A resource setting we cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A cgroup v1-only field is set.
    #[error("linux.resources.{0} has no cgroup v2 equivalent")]
    V1Only(&'static str),
    /// A value is out of range or inconsistent.
    #[error("invalid linux.resources.{field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The device rules do not compile to a device cgroup program.
    #[error("invalid linux.resources.devices")]
    Devices(#[source] super::devcgroup::DevCgroupError),
}

/// Converts cpu shares to a cgroup v2 weight.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    let s = shares.clamp(2, 262_144);
    1 + (s - 2) * 9999 / 262_142
}

/// Converts a blkio weight (10..1000) to an `io.weight` (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Translates the resources. `has_file` tells whether the target cgroup has an interface file
/// (used to choose between `io.bfq.weight` and `io.weight`).
pub fn translate(
    r: &LinuxResources,
    has_file: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, ResourceError> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(m) = r.memory() {
        memory(m, &mut out)?;
    }
    if let Some(c) = r.cpu() {
        cpu(c, &mut out)?;
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        out.push(("pids.max".into(), v));
    }
    if let Some(b) = r.block_io() {
        block_io(b, has_file, &mut out)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = h.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ResourceError::Invalid {
                field: "hugepageLimits",
                why: format!("page size {size:?}"),
            });
        }
        out.push((format!("hugetlb.{size}.max"), max_or(h.limit())));
    }
    if r.network().is_some() {
        return Err(ResourceError::V1Only("network"));
    }
    for (dev, rdma) in r.rdma().iter().flatten() {
        if dev.is_empty() || dev.contains(['/', ' ', '\n']) {
            return Err(ResourceError::Invalid {
                field: "rdma",
                why: format!("device {dev:?}"),
            });
        }
        let mut v = dev.clone();
        if let Some(h) = rdma.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = rdma.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        out.push(("rdma.max".into(), v));
    }
    if let Some(rules) = r.devices() {
        super::devcgroup::compile(rules).map_err(ResourceError::Devices)?;
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
            return Err(ResourceError::Invalid {
                field: "unified",
                why: format!("key {k:?}"),
            });
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

fn memory(m: &LinuxMemory, out: &mut Vec<(String, String)>) -> Result<(), ResourceError> {
    if m.kernel().is_some() {
        return Err(ResourceError::V1Only("memory.kernel"));
    }
    if m.kernel_tcp().is_some() {
        return Err(ResourceError::V1Only("memory.kernelTCP"));
    }
    if m.swappiness().is_some() {
        return Err(ResourceError::V1Only("memory.swappiness"));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(ResourceError::V1Only("memory.disableOOMKiller"));
    }
    if let Some(res) = m.reservation() {
        out.push(("memory.low".into(), max_or(res)));
    }
    if let Some(limit) = m.limit() {
        if limit == 0 {
            return Err(ResourceError::Invalid {
                field: "memory.limit",
                why: "0".into(),
            });
        }
        out.push(("memory.max".into(), max_or(limit)));
    }
    match (m.swap(), m.limit()) {
        (None, _) | (Some(0), _) => {}
        (Some(s), _) if s < 0 => out.push(("memory.swap.max".into(), "max".into())),
        (Some(s), Some(l)) if l > 0 => {
            if s < l {
                return Err(ResourceError::Invalid {
                    field: "memory.swap",
                    why: format!("memory+swap {s} is below the memory limit {l}"),
                });
            }
            out.push(("memory.swap.max".into(), (s - l).to_string()));
        }
        (Some(_), _) => {
            return Err(ResourceError::Invalid {
                field: "memory.swap",
                why: "a swap limit needs a memory limit".into(),
            })
        }
    }
    Ok(())
}

fn cpu(c: &LinuxCpu, out: &mut Vec<(String, String)>) -> Result<(), ResourceError> {
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        return Err(ResourceError::V1Only("cpu.realtimeRuntime/realtimePeriod"));
    }
    if let Some(s) = c.shares() {
        if s != 0 {
            out.push(("cpu.weight".into(), shares_to_weight(s).to_string()));
        }
    }
    match (c.quota(), c.period()) {
        (None, None) => {}
        (q, p) => {
            let period = p.filter(|p| *p != 0).unwrap_or(100_000);
            if !(1000..=1_000_000).contains(&period) {
                return Err(ResourceError::Invalid {
                    field: "cpu.period",
                    why: period.to_string(),
                });
            }
            let quota = match q {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            out.push(("cpu.max".into(), format!("{quota} {period}")));
        }
    }
    if let Some(b) = c.burst() {
        out.push(("cpu.max.burst".into(), b.to_string()));
    }
    if let Some(i) = c.idle() {
        out.push(("cpu.idle".into(), i.to_string()));
    }
    if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
        out.push(("cpuset.cpus".into(), cpus.clone()));
    }
    if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
        out.push(("cpuset.mems".into(), mems.clone()));
    }
    Ok(())
}

fn block_io(
    b: &LinuxBlockIo,
    has_file: &dyn Fn(&str) -> bool,
    out: &mut Vec<(String, String)>,
) -> Result<(), ResourceError> {
    if b.leaf_weight().is_some() {
        return Err(ResourceError::V1Only("blockIO.leafWeight"));
    }
    let bfq = has_file("io.bfq.weight");
    // 0 means "not set", as runc reads it (Docker 20.10 passes `weight: 0` in every spec).
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            out.push(("io.bfq.weight".into(), w.clamp(1, 1000).to_string()));
        } else {
            out.push(("io.weight".into(), blkio_to_io_weight(w).to_string()));
        }
    }
    for d in b.weight_device().iter().flatten() {
        if d.leaf_weight().is_some() {
            return Err(ResourceError::V1Only("blockIO.weightDevice.leafWeight"));
        }
        if let Some(w) = d.weight() {
            let (file, v) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_to_io_weight(w))
            };
            out.push((file.into(), format!("{}:{} {v}", d.major(), d.minor())));
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for d in list.iter().flatten() {
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            out.push((
                "io.max".into(),
                format!("{}:{} {key}={rate}", d.major(), d.minor()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get<'a>(w: &'a [(String, String)], file: &str) -> Vec<&'a str> {
        w.iter()
            .filter(|(f, _)| f == file)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn memory_with_swap_and_reservation() {
        let r = res(r#"{"memory":{"limit":104857600,"swap":209715200,"reservation":52428800}}"#);
        let w = translate(&r, &|_| false).unwrap();
        assert_eq!(get(&w, "memory.max"), ["104857600"]);
        assert_eq!(get(&w, "memory.swap.max"), ["104857600"]);
        assert_eq!(get(&w, "memory.low"), ["52428800"]);
        let unlimited =
            translate(&res(r#"{"memory":{"limit":-1,"swap":-1}}"#), &|_| false).unwrap();
        assert_eq!(get(&unlimited, "memory.max"), ["max"]);
        assert_eq!(get(&unlimited, "memory.swap.max"), ["max"]);
    }

    #[test]
    fn memory_rejections() {
        let bad = |j: &str| translate(&res(j), &|_| false).unwrap_err();
        assert!(matches!(
            bad(r#"{"memory":{"kernel":1}}"#),
            ResourceError::V1Only("memory.kernel")
        ));
        assert!(matches!(
            bad(r#"{"memory":{"swappiness":10}}"#),
            ResourceError::V1Only("memory.swappiness")
        ));
        assert!(matches!(
            bad(r#"{"memory":{"limit":200,"swap":100}}"#),
            ResourceError::Invalid { .. }
        ));
        assert!(matches!(
            bad(r#"{"memory":{"swap":100}}"#),
            ResourceError::Invalid { .. }
        ));
        assert!(translate(&res(r#"{"memory":{"disableOOMKiller":false}}"#), &|_| false).is_ok());
    }

    #[test]
    fn cpu_conversions() {
        let r = res(
            r#"{"cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-1","mems":"0","idle":0}}"#,
        );
        let w = translate(&r, &|_| false).unwrap();
        assert_eq!(get(&w, "cpu.weight"), ["39"]);
        assert_eq!(get(&w, "cpu.max"), ["50000 100000"]);
        assert_eq!(get(&w, "cpuset.cpus"), ["0-1"]);
        assert_eq!(get(&w, "cpuset.mems"), ["0"]);
        assert_eq!(get(&w, "cpu.idle"), ["0"]);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        let only_period = translate(&res(r#"{"cpu":{"period":50000}}"#), &|_| false).unwrap();
        assert_eq!(get(&only_period, "cpu.max"), ["max 50000"]);
        let no_quota = translate(&res(r#"{"cpu":{"quota":-1}}"#), &|_| false).unwrap();
        assert_eq!(get(&no_quota, "cpu.max"), ["max 100000"]);
        assert!(translate(&res(r#"{"cpu":{"realtimeRuntime":5}}"#), &|_| false).is_err());
    }

    #[test]
    fn pids_hugetlb_unified() {
        let r = res(
            r#"{"pids":{"limit":32},"hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
            "unified":{"memory.high":"1000000","cpu.uclamp.min":"10"}}"#,
        );
        let w = translate(&r, &|_| false).unwrap();
        assert_eq!(get(&w, "pids.max"), ["32"]);
        assert_eq!(get(&w, "hugetlb.2MB.max"), ["4194304"]);
        assert_eq!(get(&w, "memory.high"), ["1000000"]);
        assert_eq!(
            get(
                &translate(&res(r#"{"pids":{"limit":-1}}"#), &|_| false).unwrap(),
                "pids.max"
            ),
            ["max"]
        );
        assert!(translate(&res(r#"{"unified":{"../x":"1"}}"#), &|_| false).is_err());
        assert!(translate(
            &res(r#"{"hugepageLimits":[{"pageSize":"../2MB","limit":1}]}"#),
            &|_| false
        )
        .is_err());
    }

    #[test]
    fn block_io_weights_and_throttles() {
        let j = r#"{"blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":100}],
            "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
            "throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":100}]}}"#;
        let plain = translate(&res(j), &|_| false).unwrap();
        assert_eq!(get(&plain, "io.weight"), ["4950", "8:0 910"]);
        assert_eq!(
            get(&plain, "io.max"),
            ["8:0 rbps=1048576", "8:16 wiops=100"]
        );
        let bfq = translate(&res(j), &|f| f == "io.bfq.weight").unwrap();
        assert_eq!(get(&bfq, "io.bfq.weight"), ["500", "8:0 100"]);
        assert!(translate(&res(r#"{"blockIO":{"leafWeight":10}}"#), &|_| false).is_err());
        // Docker's unset weight: nothing written (the guest kernel may have no io.weight).
        let unset = translate(&res(r#"{"blockIO":{"weight":0}}"#), &|_| false).unwrap();
        assert!(unset.is_empty(), "{unset:?}");
    }

    #[test]
    fn network_is_v1_only_and_devices_are_checked() {
        assert!(translate(&res(r#"{"network":{"classID":1}}"#), &|_| false).is_err());
        let ok = res(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#,
        );
        assert!(translate(&ok, &|_| false).unwrap().is_empty());
        let bad = res(r#"{"devices":[{"allow":true,"access":"rwx"}]}"#);
        assert!(translate(&bad, &|_| false).is_err());
    }
}
