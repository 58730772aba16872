//! `hull.selftest=1`: prove the guest is whole and report what it sees.
//!
//! The host boots the guest, waits for the ready line on the serial console, and checks the vCPU
//! count and memory it asked for against what the guest reports. With `hull.share=<tag>` too,
//! the self-test first mounts the virtio-fs share and prints the start of the file the host put
//! there ([`SHARE_PROBE`]), proving the share end to end.

use std::fmt;

use std::io::Read;

use crate::boot::{self, BootError, SHARE_MOUNT};
use crate::READY_PREFIX;

/// The file the self-test reads from the share, relative to its root.
pub const SHARE_PROBE: &str = "hull-selftest.txt";
/// Most bytes of it printed.
pub const SHARE_PROBE_MAX: u64 = 128;

/// What the guest sees of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal` from `/proc/meminfo`, in KiB.
    pub mem_total_kib: u64,
    /// Controllers offered by the cgroup v2 root.
    pub cgroup_controllers: Vec<String>,
}

/// Reading the guest's facts failed.
#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    /// A file under /proc or /sys could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file had an unexpected shape.
    #[error("cannot parse {path}")]
    Parse {
        /// The file.
        path: &'static str,
    },
    /// The share could not be mounted.
    #[error("share")]
    Share(#[from] BootError),
    /// The probe file on the share could not be read.
    #[error("cannot read {SHARE_PROBE} on the share")]
    Probe(#[source] std::io::Error),
}

/// Mounts the share `tag` and returns the line that proves it: `hull-agent share <tag>: <the
/// probe file's first line>`.
pub fn read_share(tag: &str) -> Result<String, SelftestError> {
    boot::mount_share(tag)?;
    let path = std::path::Path::new(SHARE_MOUNT).join(SHARE_PROBE);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SHARE_PROBE_MAX).read_to_end(&mut bytes))
        .map_err(SelftestError::Probe)?;
    Ok(share_line(tag, &bytes))
}

/// The share line for `tag` and the probe's bytes: its first line, printable ASCII only.
pub fn share_line(tag: &str, probe: &[u8]) -> String {
    let first = probe.split(|&b| b == b'\n').next().unwrap_or_default();
    let text: String = first
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    format!("hull-agent share {tag}: {text}")
}

impl GuestFacts {
    /// Reads the facts from the mounted `/proc` and `/sys`.
    pub fn read() -> Result<Self, SelftestError> {
        let read = |path: &'static str| {
            std::fs::read_to_string(path).map_err(|source| SelftestError::Read { path, source })
        };
        let online = "/sys/devices/system/cpu/online";
        let meminfo = "/proc/meminfo";
        let controllers = "/sys/fs/cgroup/cgroup.controllers";
        Ok(Self {
            cpus: parse_cpu_list(&read(online)?).ok_or(SelftestError::Parse { path: online })?,
            mem_total_kib: parse_mem_total(&read(meminfo)?)
                .ok_or(SelftestError::Parse { path: meminfo })?,
            cgroup_controllers: read(controllers)?
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

impl fmt::Display for GuestFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{READY_PREFIX} cpus={} mem_total_kib={} cgroup2={}",
            self.cpus,
            self.mem_total_kib,
            self.cgroup_controllers.join(",")
        )
    }
}

/// Counts the CPUs in a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(list: &str) -> Option<u32> {
    let mut count = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?),
            None => {
                let one = part.parse::<u32>().ok()?;
                (one, one)
            }
        };
        count = count.checked_add(hi.checked_sub(lo)?.checked_add(1)?)?;
    }
    (count > 0).then_some(count)
}

/// Finds `MemTotal` (KiB) in the text of `/proc/meminfo`.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn mem_total_is_found() {
        let text = "MemTotal:         492132 kB\nMemFree:          470000 kB\n";
        assert_eq!(parse_mem_total(text), Some(492_132));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn share_line_is_the_first_printable_line() {
        assert_eq!(
            share_line("hull", b"written by the host 42\nmore"),
            "hull-agent share hull: written by the host 42"
        );
        assert_eq!(share_line("t", b"a\x1b[2Jb"), "hull-agent share t: a?[2Jb");
        assert_eq!(share_line("t", b""), "hull-agent share t: ");
    }

    #[test]
    fn ready_line_has_the_documented_shape() {
        let facts = GuestFacts {
            cpus: 2,
            mem_total_kib: 492_132,
            cgroup_controllers: vec!["cpu".into(), "memory".into()],
        };
        assert_eq!(
            facts.to_string(),
            "hull-agent ready: cpus=2 mem_total_kib=492132 cgroup2=cpu,memory"
        );
    }
}
