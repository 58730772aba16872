//! What a benchmark ran on, recorded with its figures.

use std::process::Command;

use serde::Serialize;

/// The host, as far as the figures depend on it.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// CPU model name.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu_version: String,
    /// When the run started (UTC, RFC 3339).
    pub date: String,
}

impl HostInfo {
    /// Reads the host.
    pub fn read(qemu_binary: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned());
        Self {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: first_line("uname", &["-r"]),
            qemu_version: first_line(qemu_binary, &["--version"]),
            date: first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        }
    }
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
