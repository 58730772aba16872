//! Caps on everything that crosses the VM boundary, checked on both sides: the host never trusts
//! the guest, and the agent never trusts a host request either.
//!
//! ttrpc itself refuses frames over 4 MiB; these caps are tighter and per field.

/// Longest container or exec id.
pub const MAX_ID_LEN: usize = 64;
/// Largest OCI spec (config.json) accepted in `CreateContainer`.
pub const MAX_SPEC_LEN: usize = 1 << 20;
/// Largest OCI process or resources JSON (`ExecProcess`, `UpdateContainer`).
pub const MAX_PROCESS_JSON_LEN: usize = 256 << 10;
/// Longest guest path (rootfs).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest hostname (HOST_NAME_MAX).
pub const MAX_HOSTNAME_LEN: usize = 64;
/// Most DNS servers or search domains.
pub const MAX_DNS_ENTRIES: usize = 16;
/// Longest DNS server or search-domain entry.
pub const MAX_DNS_ENTRY_LEN: usize = 253;
/// Most pids returned by `ListProcesses`.
pub const MAX_PIDS: usize = 65_536;
/// Most per-device io entries in `StatsContainer`.
pub const MAX_IO_DEVICES: usize = 256;
/// Fewest bytes of host entropy `Personalize` carries (a full 256-bit reseed).
pub const MIN_ENTROPY_LEN: usize = 32;
/// Most bytes of host entropy `Personalize` carries.
pub const MAX_ENTROPY_LEN: usize = 256;

/// A field that breaks a cap or a format rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// An id is empty, too long, or uses characters outside `[A-Za-z0-9_.-]`.
    #[error(
        "invalid {what} {value:?}: 1-64 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    BadId {
        /// Which id.
        what: &'static str,
        /// The value (truncated).
        value: String,
    },
    /// A field is longer than its cap.
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A path is not absolute or holds `..` or NUL.
    #[error("invalid {what} {value:?}: must be absolute, without '..' or NUL")]
    BadPath {
        /// Which path.
        what: &'static str,
        /// The value (truncated).
        value: String,
    },
    /// A list has too many entries.
    #[error("{what} has {len} entries, more than the {max} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

/// Checks a container id (`what` = "container id") or a non-empty exec id.
pub fn check_id(what: &'static str, value: &str) -> Result<(), LimitError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && !value.starts_with(['.', '-'])
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LimitError::BadId {
            what,
            value: shown(value),
        })
    }
}

/// Checks an exec id, where empty means the container's init process.
pub fn check_exec_id(value: &str) -> Result<(), LimitError> {
    if value.is_empty() {
        Ok(())
    } else {
        check_id("exec id", value)
    }
}

/// Checks a byte field's length.
pub fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError::TooLong { what, len, max })
    } else {
        Ok(())
    }
}

/// Checks a list's length.
pub fn check_count(what: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError::TooMany { what, len, max })
    } else {
        Ok(())
    }
}

/// Checks an absolute guest path.
pub fn check_abs_path(what: &'static str, value: &str) -> Result<(), LimitError> {
    check_len(what, value.len(), MAX_PATH_LEN)?;
    let ok = value.starts_with('/')
        && !value.contains('\0')
        && !value.split('/').any(|part| part == "..");
    if ok {
        Ok(())
    } else {
        Err(LimitError::BadPath {
            what,
            value: shown(value),
        })
    }
}

/// Checks a hostname (RFC 1123 label characters and dots).
pub fn check_hostname(value: &str) -> Result<(), LimitError> {
    check_len("hostname", value.len(), MAX_HOSTNAME_LEN)?;
    let ok = value.is_empty()
        || value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(LimitError::BadId {
            what: "hostname",
            value: shown(value),
        })
    }
}

/// Checks a whole `CreateSandboxRequest`: ids, hostname, DNS lists and their entries (host names
/// and IP addresses: letters, digits, `.`, `:` and `-`).
pub fn check_sandbox(req: &crate::agent::CreateSandboxRequest) -> Result<(), LimitError> {
    check_id("sandbox id", &req.sandbox_id)?;
    check_hostname(&req.hostname)?;
    check_count("dns servers", req.dns_servers.len(), MAX_DNS_ENTRIES)?;
    check_count("dns search", req.dns_search.len(), MAX_DNS_ENTRIES)?;
    for entry in req.dns_servers.iter().chain(&req.dns_search) {
        check_len("dns entry", entry.len(), MAX_DNS_ENTRY_LEN)?;
        let ok = !entry.is_empty()
            && entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-".contains(&b));
        if !ok {
            return Err(LimitError::BadId {
                what: "dns entry",
                value: shown(entry),
            });
        }
    }
    Ok(())
}

/// Checks a `PersonalizeRequest`: 32..=256 bytes of entropy, nanoseconds below a second, a
/// share tag of `[A-Za-z0-9_-]` (at most 36 characters) or none.
pub fn check_personalize(req: &crate::agent::PersonalizeRequest) -> Result<(), LimitError> {
    check_len("entropy", req.entropy.len(), MAX_ENTROPY_LEN)?;
    if req.entropy.len() < MIN_ENTROPY_LEN {
        return Err(LimitError::BadId {
            what: "entropy length",
            value: format!("{} bytes (at least {MIN_ENTROPY_LEN})", req.entropy.len()),
        });
    }
    if req.realtime_nanos >= 1_000_000_000 || req.realtime_secs < 0 {
        return Err(LimitError::BadId {
            what: "realtime clock",
            value: format!("{}.{:09}", req.realtime_secs, req.realtime_nanos),
        });
    }
    let tag = &req.share_tag;
    let ok = tag.len() <= 36
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(LimitError::BadId {
            what: "share tag",
            value: shown(tag),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personalize_requests_are_bounded() {
        let good = crate::agent::PersonalizeRequest {
            entropy: vec![7; 64],
            realtime_secs: 1_800_000_000,
            realtime_nanos: 5,
            share_tag: "hull".into(),
            ..Default::default()
        };
        check_personalize(&good).unwrap();
        let mut r = good.clone();
        r.entropy = vec![1; 31];
        assert!(check_personalize(&r).is_err());
        r.entropy = vec![1; 257];
        assert!(check_personalize(&r).is_err());
        let mut r = good.clone();
        r.realtime_nanos = 1_000_000_000;
        assert!(check_personalize(&r).is_err());
        let mut r = good.clone();
        r.share_tag = "../x".into();
        assert!(check_personalize(&r).is_err());
        let mut r = good;
        r.share_tag = String::new();
        check_personalize(&r).unwrap();
    }

    #[test]
    fn ids() {
        for good in ["a", "abc-123_x.y", &"x".repeat(64)] {
            assert!(check_id("container id", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a/b",
            "a b",
            "a\0",
            "é",
            &"x".repeat(65),
            "..",
        ] {
            assert!(check_id("container id", bad).is_err(), "{bad:?}");
        }
        assert!(check_exec_id("").is_ok());
        assert!(check_exec_id("../x").is_err());
    }

    #[test]
    fn paths() {
        assert!(check_abs_path("rootfs", "/run/hull/c1/rootfs").is_ok());
        for bad in [
            "rel/x",
            "/a/../b",
            "/a\0b",
            "",
            &format!("/{}", "x".repeat(5000)),
        ] {
            assert!(check_abs_path("rootfs", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sandbox_requests() {
        let mut req = crate::agent::CreateSandboxRequest {
            sandbox_id: "pod1".into(),
            hostname: "pod1".into(),
            dns_servers: vec!["10.0.0.10".into(), "fd00::a".into()],
            dns_search: vec!["svc.cluster.local".into()],
            ..Default::default()
        };
        assert!(check_sandbox(&req).is_ok());
        req.dns_servers.push("1.2.3.4\nnameserver 6.6.6.6".into());
        assert!(
            check_sandbox(&req).is_err(),
            "no line injection into resolv.conf"
        );
        req.dns_servers.pop();
        req.dns_search = vec!["x".into(); 17];
        assert!(check_sandbox(&req).is_err());
    }

    #[test]
    fn lengths_and_hostnames() {
        assert!(check_len("spec", MAX_SPEC_LEN, MAX_SPEC_LEN).is_ok());
        let err = check_len("spec", MAX_SPEC_LEN + 1, MAX_SPEC_LEN).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        assert!(check_count("dns", 17, MAX_DNS_ENTRIES).is_err());
        assert!(check_hostname("pod-1.example").is_ok());
        assert!(check_hostname("bad_host").is_err());
        assert!(check_hostname(&"h".repeat(65)).is_err());
    }
}
