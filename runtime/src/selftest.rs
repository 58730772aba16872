//! Booting a guest in self-test mode (`hull.selftest=1`) and reading its ready line: the smoke
//! test of an installed image, the VM tests' probe, and the boot benchmark's unit of work.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::images::GuestImages;
use crate::vm::{console, Hypervisor, VmConfig, VmError};

/// What the agent's ready line starts with (hull-agent's `READY_PREFIX`).
pub const READY_PREFIX: &str = "hull-agent ready:";
/// The kernel command-line word that selects the self-test.
pub const SELFTEST_ARG: &str = "hull.selftest=1";

/// The guest's report, parsed from its ready line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal`, KiB.
    pub mem_total_kib: u64,
    /// cgroup v2 controllers at the root.
    pub cgroup2: Vec<String>,
}

impl ReadyFacts {
    /// Parses `hull-agent ready: cpus=2 mem_total_kib=123 cgroup2=cpu,memory`.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(READY_PREFIX)?;
        let (mut cpus, mut mem, mut cgroup2) = (None, None, None);
        for field in rest.split_ascii_whitespace() {
            match field.split_once('=')? {
                ("cpus", v) => cpus = v.parse().ok(),
                ("mem_total_kib", v) => mem = v.parse().ok(),
                ("cgroup2", v) => {
                    cgroup2 = Some(
                        v.split(',')
                            .filter(|c| !c.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                _ => {}
            }
        }
        Some(Self {
            cpus: cpus?,
            mem_total_kib: mem?,
            cgroup2: cgroup2?,
        })
    }
}

/// One self-test boot, timed from the moment the VMM is spawned.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// The ready line as printed.
    pub ready_line: String,
    /// The ready line, parsed.
    pub facts: ReadyFacts,
    /// Spawn → ready line on the console.
    pub to_ready: Duration,
    /// Spawn → VMM exited.
    pub to_exit: Duration,
    /// How the VMM exited.
    pub status: ExitStatus,
    /// The whole console log.
    pub console: String,
}

/// Why a self-test boot failed.
#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    /// The VM could not be started or did not reach the ready line.
    #[error("the guest did not boot")]
    Vm(#[from] VmError),
    /// The ready line did not parse.
    #[error("malformed ready line {0:?}")]
    BadReadyLine(String),
    /// The guest did not stop by itself after the ready line.
    #[error("the guest did not stop within {0:?} after its ready line")]
    NoExit(Duration),
}

/// Sizing and limits of a self-test boot.
#[derive(Debug, Clone)]
pub struct SelftestSpec {
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// Limit for spawn → ready and for ready → exit.
    pub timeout: Duration,
}

/// Boots `images` on `hypervisor` with `hull.selftest=1` in `run_dir`, waits for the ready line
/// and for the guest to stop the VM. The VMM is killed if anything fails on the way.
pub fn boot_selftest(
    hypervisor: &dyn Hypervisor,
    images: &GuestImages,
    spec: &SelftestSpec,
    run_dir: &Path,
) -> Result<BootReport, SelftestError> {
    let config = VmConfig {
        images: images.clone(),
        cmdline: vec![SELFTEST_ARG.to_owned()],
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        devices: Vec::new(),
        run_dir: run_dir.to_owned(),
    };
    let started = Instant::now();
    let mut vm = hypervisor.start(&config)?;
    let ready_line = console::wait_for_line(vm.as_mut(), READY_PREFIX, spec.timeout)?;
    let to_ready = started.elapsed();
    let facts = ReadyFacts::parse(&ready_line)
        .ok_or_else(|| SelftestError::BadReadyLine(ready_line.clone()))?;
    let status = vm
        .wait_timeout(spec.timeout)?
        .ok_or(SelftestError::NoExit(spec.timeout))?;
    let to_exit = started.elapsed();
    let console = std::fs::read(vm.console_path())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| VmError::Console(vm.console_path().to_owned(), e))?;
    Ok(BootReport {
        ready_line,
        facts,
        to_ready,
        to_exit,
        status,
        console,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_parses() {
        let f = ReadyFacts::parse(
            "hull-agent ready: cpus=2 mem_total_kib=492132 cgroup2=cpu,io,memory",
        )
        .unwrap();
        assert_eq!(f.cpus, 2);
        assert_eq!(f.mem_total_kib, 492_132);
        assert_eq!(f.cgroup2, ["cpu", "io", "memory"]);
    }

    #[test]
    fn malformed_ready_lines_are_refused() {
        assert!(ReadyFacts::parse("hull-agent ready: cpus=x mem_total_kib=1 cgroup2=").is_none());
        assert!(ReadyFacts::parse("hull-agent ready: cpus=1").is_none());
        assert!(ReadyFacts::parse("ready: cpus=1 mem_total_kib=1 cgroup2=").is_none());
        assert!(ReadyFacts::parse("hull-agent ready: garbage").is_none());
        let empty = ReadyFacts::parse("hull-agent ready: cpus=1 mem_total_kib=1 cgroup2=").unwrap();
        assert!(empty.cgroup2.is_empty());
    }
}
