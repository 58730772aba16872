//! The environment recorded with the figures: host, KVM kind, accelerator, tool versions, load.

use std::process::Command;

use hull_runtime::vm::accel::{self, HostProbe, ProbePaths};

use super::schema::Environment;
use crate::host::HostInfo;

/// The first line of `cmd args…`'s stdout (or stderr), or `unknown`.
pub fn first_line(cmd: &str, args: &[&str]) -> String {
    let Ok(out) = Command::new(cmd).args(args).output() else {
        return format!("{cmd}: not installed");
    };
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| "unknown".to_owned(), |l| l.trim().to_owned())
}

/// The 1, 5 and 15-minute load averages.
pub fn load() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text
        .split_ascii_whitespace()
        .map(|w| w.parse::<f64>().unwrap_or(0.0));
    [
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
    ]
}

/// What `/dev/kvm` is on this host.
pub fn kvm_kind(probe: &HostProbe) -> String {
    if !probe.kvm_device {
        return "none (/dev/kvm missing or not accessible)".to_owned();
    }
    let has = |m: &str| probe.kvm_modules.iter().any(|x| x == m);
    if let Some(m) = ["kvm_intel", "kvm_amd"].into_iter().find(|m| has(m)) {
        format!("hardware ({m})")
    } else if has("kvm_pvm") {
        "pvm (kvm_pvm)".to_owned()
    } else {
        format!("unknown (modules: {:?})", probe.kvm_modules)
    }
}

fn hull_version() -> String {
    let commit = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match commit {
        Some(c) => format!("{} ({c})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Reads the host; the guest fields are filled in once a guest ran.
pub fn read(
    command: String,
    guest_vcpus: u32,
    guest_memory_mib: u32,
) -> anyhow::Result<Environment> {
    let host = HostInfo::read(hull_runtime::vm::qemu::DEFAULT_BINARY);
    let choice = accel::detect()?;
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_ascii_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024;
    Ok(Environment {
        date: host.date,
        command,
        cpu_model: host.cpu_model,
        cpus: host.cpus,
        memory_mib,
        host_kernel: host.kernel,
        kvm: kvm_kind(&HostProbe::read(&ProbePaths::default())),
        accel: choice.accel.to_string(),
        accel_reason: choice.reason,
        containerd: first_line("containerd", &["--version"]),
        runc: first_line("runc", &["--version"]),
        crun: first_line("crun", &["--version"]),
        hull: hull_version(),
        qemu: host.qemu_version,
        virtiofsd: first_line("virtiofsd", &["--version"]),
        guest_kernel: "unknown".to_owned(),
        guest_vcpus,
        guest_memory_mib,
        guest_mem_total_kib: 0,
        load_before: load(),
        load_after: [0.0; 3],
    })
}
