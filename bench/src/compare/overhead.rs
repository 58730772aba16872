//! The pod overhead for the RuntimeClass: what an idle hull pod costs the host beyond its
//! containers (the memory step's PSS of every host process, guest RAM the VM touched included:
//! the guest's kernel and agent), its idle CPU, and the `overhead.podFixed` derived from them
//! with a margin, per backend. The record goes where `hull check` reads it
//! ([`hull_runtime::overhead::Measured::path`]).
//!
//! The idle container (`sleep`) holds a few hundred KiB of guest memory itself, which is left
//! in: the figure errs high by that much.

use std::time::Duration;

use hull_runtime::overhead::BackendOverhead;

use super::procs::PodProcess;
use super::schema::PodMemory;

const MIB: u64 = 1024;
/// The smallest memory margin, MiB.
const MIN_MARGIN_MIB: u64 = 16;
/// Under TCG the margin is at least this, MiB: the idle figure already holds a full translation
/// cache (QEMU's `tb-size`), but a busy pod's QEMU grows in its buffers and TCG's own heap.
const TCG_MARGIN_MIB: u64 = 32;
/// podFixed memory is rounded up to this, MiB.
const ROUND_MIB: u64 = 8;
/// The smallest podFixed CPU, millicores.
const MIN_CPU_MILLICORES: u64 = 50;

/// CPU time (user + system) of `pids` over `window`, in millicores. Processes that exit in the
/// window count what they used until then.
pub fn idle_cpu_millicores(pids: &[u32], window: Duration) -> u64 {
    let ticks = |pid: u32| cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?);
    let before: Vec<(u32, u64)> = pids.iter().filter_map(|&p| Some((p, ticks(p)?))).collect();
    std::thread::sleep(window);
    let used: u64 = before
        .iter()
        .map(|&(p, t0)| ticks(p).unwrap_or(t0).saturating_sub(t0))
        .sum();
    // SAFETY: sysconf has no preconditions; a failure (-1) falls back to the usual 100 Hz.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    used * 1000 * 1000 / hz / window_ms
}

/// utime + stime of a `/proc/<pid>/stat` line, clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    // After the comm: state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt, majflt,
    // cmajflt, utime, stime.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The pids of a pod's processes.
pub fn pids(procs: &[PodProcess]) -> Vec<u32> {
    procs.iter().map(|p| p.pid).collect()
}

/// The overhead of one backend from its idle pod's memory and idle CPU.
pub fn derive(memory: &PodMemory, idle_cpu_millicores: u64) -> BackendOverhead {
    let measured_kib: u64 = memory.processes.iter().map(|p| p.pss_kib).sum();
    let guest_ram_kib = memory.processes.iter().map(|p| p.guest_ram_pss_kib).sum();
    let tcg = memory.runtime.contains("tcg");
    let floor = if tcg { TCG_MARGIN_MIB } else { MIN_MARGIN_MIB };
    let margin_kib = (measured_kib / 4).max(floor * MIB);
    let pod_fixed_memory_mib = (measured_kib + margin_kib).div_ceil(ROUND_MIB * MIB) * ROUND_MIB;
    let margin_why = format!(
        "25% of the idle figure, at least {floor} MiB{}, rounded up to {ROUND_MIB} MiB: idle PSS is \
         a floor, and a pod whose host usage outgrows requests + overhead is the first the kubelet \
         evicts; a busy pod's VMM grows (virtio queues, vsock and virtio-fs buffers, virtiofsd's \
         threads{})",
        if tcg { " (TCG's translation cache)" } else { "" },
        if tcg {
            format!(
                ", the translation cache refilled after flushes of its {} MiB",
                hull_runtime::vm::qemu::cmdline::TCG_CACHE_MIB
            )
        } else {
            String::new()
        }
    );
    let pod_fixed_cpu_millicores = (idle_cpu_millicores * 2).div_ceil(10) * 10;
    BackendOverhead {
        backend: memory.runtime.clone(),
        measured_kib,
        guest_ram_kib,
        margin_kib,
        margin_why,
        pod_fixed_memory_mib,
        idle_cpu_millicores,
        pod_fixed_cpu_millicores: pod_fixed_cpu_millicores.max(MIN_CPU_MILLICORES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::schema::ProcMemory;

    fn proc(role: &str, pss_mib: u64, guest_mib: u64) -> ProcMemory {
        ProcMemory {
            role: role.into(),
            comm: role.into(),
            rss_kib: pss_mib * MIB,
            pss_kib: pss_mib * MIB,
            guest_ram_pss_kib: guest_mib * MIB,
            top_mappings: Vec::new(),
        }
    }

    #[test]
    fn pod_fixed_is_the_idle_figure_plus_a_margin_rounded_up() {
        let m = PodMemory {
            runtime: "hull/qemu-tcg".into(),
            processes: vec![
                proc("shim", 10, 0),
                proc("vmm", 80, 40),
                proc("vsock", 2, 1),
            ],
        };
        let o = derive(&m, 12);
        assert_eq!(o.measured_kib, 92 * MIB);
        assert_eq!(o.guest_ram_kib, 41 * MIB);
        // 25% of 92 is 23 MiB, below TCG's 32 MiB floor: 92 + 32 = 124 → 128.
        assert_eq!(o.margin_kib, 32 * MIB);
        assert_eq!(o.pod_fixed_memory_mib, 128);
        assert_eq!(o.pod_fixed_cpu_millicores, 50, "2 × 12m is below the floor");
        assert!(o.margin_why.contains("translation cache"));

        let m = PodMemory {
            runtime: "hull/hull-vmm".into(),
            processes: vec![proc("shim", 10, 0), proc("vmm", 190, 150)],
        };
        let o = derive(&m, 61);
        assert_eq!(o.margin_kib, 50 * MIB, "25% of 200");
        assert_eq!(o.pod_fixed_memory_mib, 256);
        assert_eq!(o.pod_fixed_cpu_millicores, 130);
    }

    #[test]
    fn cpu_ticks_come_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(12));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn an_idle_process_uses_little_cpu() {
        let me = std::process::id();
        let m = idle_cpu_millicores(&[me, u32::MAX], Duration::from_millis(200));
        assert!(m <= 1000, "{m}");
    }
}
