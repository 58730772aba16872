//! `update`: new resource limits for a running container, applied to its cgroup in the guest
//! (the shim's `Update`, through the monitor; a memory limit must still fit the VM). The limits
//! come from `-r FILE` (OCI `linux.resources` JSON, `-` for stdin, as Podman passes them) and/or
//! runc's flags, the flags winning.

use std::io::Read;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::Globals;
use crate::oci::control::{call, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::OciError;

/// runc's `update` flags (each `None` when not given).
#[derive(Debug, Clone, Default)]
pub struct UpdateFlags {
    /// `linux.resources` JSON file, `-` for stdin.
    pub resources: Option<String>,
    /// `--memory` (bytes, or with a k/m/g suffix; -1 unlimited).
    pub memory: Option<String>,
    /// `--memory-reservation`.
    pub memory_reservation: Option<String>,
    /// `--memory-swap`.
    pub memory_swap: Option<String>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpu-quota`.
    pub cpu_quota: Option<i64>,
    /// `--cpu-period`.
    pub cpu_period: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--blkio-weight`.
    pub blkio_weight: Option<u16>,
}

/// Applies `flags` to container `id`.
pub fn run(globals: &Globals, id: &str, flags: &UpdateFlags) -> Result<i32, OciError> {
    let resources = resources(flags, &mut std::io::stdin())?;
    let dir = StateDir::new(&globals.root, id)?;
    let record = dir.current()?;
    if record.status == Status::Stopped {
        return Err(OciError::State("container not running".into()));
    }
    call(&dir.socket(), &Request::Update { resources })?;
    Ok(0)
}

/// The `linux.resources` object `flags` stand for (`stdin` read for `-r -`).
pub fn resources(flags: &UpdateFlags, stdin: &mut dyn Read) -> Result<Value, OciError> {
    let mut base = match flags.resources.as_deref() {
        None => Value::Object(Map::new()),
        Some(src) => {
            let mut text = Vec::new();
            if src == "-" {
                stdin
                    .read_to_end(&mut text)
                    .map_err(OciError::io("cannot read the resources from stdin"))?;
            } else {
                text = std::fs::read(Path::new(src)).map_err(OciError::io(format!(
                    "cannot read the resources file {src}"
                )))?;
            }
            serde_json::from_slice(&text).map_err(|e| {
                OciError::InvalidArgument(format!("resources are not JSON linux.resources: {e}"))
            })?
        }
    };
    let Some(obj) = base.as_object_mut() else {
        return Err(OciError::InvalidArgument(
            "resources are not a JSON object".into(),
        ));
    };
    let mut set = |section: &str, key: &str, value: Value| {
        let s = obj
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(s) = s.as_object_mut() {
            s.insert(key.into(), value);
        }
    };
    for (flag, key, value) in [
        ("--memory", "limit", &flags.memory),
        (
            "--memory-reservation",
            "reservation",
            &flags.memory_reservation,
        ),
        ("--memory-swap", "swap", &flags.memory_swap),
    ] {
        if let Some(v) = value {
            set("memory", key, json!(bytes(flag, v)?));
        }
    }
    if let Some(v) = flags.cpu_shares {
        set("cpu", "shares", json!(v));
    }
    if let Some(v) = flags.cpu_quota {
        set("cpu", "quota", json!(v));
    }
    if let Some(v) = flags.cpu_period {
        set("cpu", "period", json!(v));
    }
    if let Some(v) = &flags.cpuset_cpus {
        set("cpu", "cpus", json!(v));
    }
    if let Some(v) = &flags.cpuset_mems {
        set("cpu", "mems", json!(v));
    }
    if let Some(v) = flags.pids_limit {
        set("pids", "limit", json!(v));
    }
    if let Some(v) = flags.blkio_weight {
        set("blockIO", "weight", json!(v));
    }
    // Checked here, so a bad object is refused before it reaches the monitor.
    serde_json::from_value::<oci_spec::runtime::LinuxResources>(base.clone()).map_err(|e| {
        OciError::InvalidArgument(format!("resources are not OCI linux.resources: {e}"))
    })?;
    Ok(base)
}

/// A size as runc's flags take it: bytes, or a number with a k/m/g/t suffix (binary units,
/// an optional `b`/`ib`); `-1` is unlimited.
pub fn bytes(flag: &str, value: &str) -> Result<i64, OciError> {
    let bad = || OciError::InvalidArgument(format!("{flag} {value:?}: not a size"));
    let v = value.trim().to_ascii_lowercase();
    if v == "-1" {
        return Ok(-1);
    }
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &v[digits.len()..];
    let shift = match suffix.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(bytes("--memory", "100").unwrap(), 100);
        assert_eq!(bytes("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(bytes("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(bytes("--memory", "2kb").unwrap(), 2048);
        assert_eq!(bytes("--memory", "-1").unwrap(), -1);
        assert!(bytes("--memory", "lots").is_err());
        assert!(bytes("--memory", "5q").is_err());
    }

    #[test]
    fn flags_override_the_resources_file() {
        let flags = UpdateFlags {
            resources: Some("-".into()),
            memory: Some("32m".into()),
            pids_limit: Some(20),
            ..Default::default()
        };
        let mut stdin: &[u8] = br#"{"memory":{"limit":1},"cpu":{"shares":512}}"#;
        let r = resources(&flags, &mut stdin).unwrap();
        assert_eq!(r["memory"]["limit"], 32 << 20);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["pids"]["limit"], 20);
        let mut bad: &[u8] = b"[1]";
        assert!(resources(&flags, &mut bad).is_err());
    }
}
