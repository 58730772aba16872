//! Checks on the spec as a whole: the container id, the parts of the spec this runtime does not
//! implement (refused, never ignored), hostname/domainname and sysctls against the namespaces.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::namespaces::NamespacePlan;

/// A spec-level problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The id does not match `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
    #[error("invalid container id {0:?}")]
    Id(String),
    /// A field this runtime does not implement.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// `process` is missing.
    #[error("the spec has no process")]
    NoProcess,
    /// hostname or domainname without a new UTS namespace.
    #[error("{0} needs a UTS namespace of the container")]
    NeedsUts(&'static str),
    /// A sysctl name that is malformed or not namespaced by the container's namespaces.
    #[error("sysctl {0:?} is not allowed: {1}")]
    Sysctl(String, &'static str),
}

/// Checks a container id.
pub fn validate_id(id: &str) -> Result<(), ConfigError> {
    let b = id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Id(id.to_string()))
    }
}

/// Refuses the parts of a spec we do not implement.
pub fn check_supported(spec: &Spec) -> Result<(), ConfigError> {
    if spec.process().is_none() {
        return Err(ConfigError::NoProcess);
    }
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|v| !v.is_empty()));
        if any {
            return Err(ConfigError::Unsupported("hooks"));
        }
    }
    if spec.solaris().is_some() || spec.windows().is_some() || spec.zos().is_some() {
        return Err(ConfigError::Unsupported("a non-Linux platform section"));
    }
    if spec.vm().is_some() {
        return Err(ConfigError::Unsupported("the vm section"));
    }
    if let Some(l) = spec.linux() {
        if l.intel_rdt().is_some() {
            return Err(ConfigError::Unsupported("linux.intelRdt"));
        }
        if l.personality().is_some() {
            return Err(ConfigError::Unsupported("linux.personality"));
        }
        if l.memory_policy().is_some() {
            return Err(ConfigError::Unsupported("linux.memoryPolicy"));
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(ConfigError::Unsupported("linux.netDevices"));
        }
        if l.mount_label().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(ConfigError::Unsupported("linux.mountLabel (SELinux)"));
        }
    }
    for m in spec.mounts().iter().flatten() {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(ConfigError::Unsupported("id-mapped mounts"));
        }
    }
    Ok(())
}

/// Hostname/domainname need a UTS namespace of the container's own (new, or joined by path).
pub fn check_uts(spec: &Spec, ns: &NamespacePlan) -> Result<(), ConfigError> {
    // Listed is enough (new or joined, as runc allows): containers of a pod join the sandbox's
    // UTS namespace and still carry the pod's hostname.
    let uts = ns.contains(LinuxNamespaceType::Uts);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !uts {
        return Err(ConfigError::NeedsUts("hostname"));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !uts {
        return Err(ConfigError::NeedsUts("domainname"));
    }
    Ok(())
}

/// Validates the sysctls (only namespaced ones, and only when the container lists that namespace,
/// new or joined) and returns `(file, value)` pairs, file as seen inside the container.
pub fn sysctls(spec: &Spec, ns: &NamespacePlan) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let mut list: Vec<_> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
        .collect();
    list.sort();
    let mut out = Vec::new();
    for (key, value) in list {
        let bad = |why| ConfigError::Sysctl(key.clone(), why);
        if key.is_empty()
            || key.starts_with(['.', '/'])
            || key.contains("..")
            || !key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'))
        {
            return Err(bad("malformed name"));
        }
        let dotted = key.replace('/', ".");
        let ipc_keys = [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ];
        let needed = if ipc_keys.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            LinuxNamespaceType::Ipc
        } else if dotted.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else {
            return Err(bad("not namespaced"));
        };
        if !ns.contains(needed) {
            return Err(bad("the container does not have its own namespace for it"));
        }
        let rel = if key.contains('/') {
            key.clone()
        } else {
            key.replace('.', "/")
        };
        out.push((PathBuf::from("/proc/sys").join(rel), value.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(j: &str) -> Spec {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn ids() {
        for ok in ["a", "A1", "abc-def_1.2", &"x".repeat(64)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(65),
            "../x",
        ] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsupported_parts_are_refused() {
        let base = r#""process":{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/"}"#;
        assert!(check_supported(&spec(&format!("{{{base}}}"))).is_ok());
        assert_eq!(check_supported(&spec("{}")), Err(ConfigError::NoProcess));
        let hooks = spec(&format!(
            r#"{{{base},"hooks":{{"prestart":[{{"path":"/bin/true"}}]}}}}"#
        ));
        assert_eq!(
            check_supported(&hooks),
            Err(ConfigError::Unsupported("hooks"))
        );
        let empty_hooks = spec(&format!(r#"{{{base},"hooks":{{"prestart":[]}}}}"#));
        assert!(check_supported(&empty_hooks).is_ok());
        let rdt = spec(&format!(
            r#"{{{base},"linux":{{"intelRdt":{{"closID":"x"}}}}}}"#
        ));
        assert!(check_supported(&rdt).is_err());
        let label = spec(&format!(
            r#"{{{base},"linux":{{"mountLabel":"system_u"}}}}"#
        ));
        assert!(check_supported(&label).is_err());
        let idmap = spec(&format!(
            r#"{{{base},"mounts":[{{"destination":"/x","type":"bind","source":"/y","uidMappings":[{{"containerID":0,"hostID":1,"size":1}}]}}]}}"#
        ));
        assert!(check_supported(&idmap).is_err());
    }

    #[test]
    fn uts_and_sysctls() {
        let s = spec(
            r#"{"hostname":"h","linux":{"namespaces":[{"type":"mount"},{"type":"network"},{"type":"ipc"}],
               "sysctl":{"net.ipv4.ip_forward":"1","kernel.shmmax":"1000","fs.mqueue.msg_max":"20"}}}"#,
        );
        let ns = NamespacePlan::from_spec(&s).unwrap();
        assert_eq!(check_uts(&s, &ns), Err(ConfigError::NeedsUts("hostname")));
        let v = sysctls(&s, &ns).unwrap();
        assert_eq!(
            v[0],
            (
                PathBuf::from("/proc/sys/fs/mqueue/msg_max"),
                "20".to_string()
            )
        );
        assert_eq!(v[2].0, PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
        let host = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"}],"sysctl":{"net.ipv4.ip_forward":"1"}}}"#,
        );
        let ns2 = NamespacePlan::from_spec(&host).unwrap();
        assert!(sysctls(&host, &ns2).is_err());
        let global = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"network"}],"sysctl":{"vm.swappiness":"1"}}}"#,
        );
        assert!(sysctls(&global, &NamespacePlan::from_spec(&global).unwrap()).is_err());
        let dots = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"network"}],"sysctl":{"net/../../x":"1"}}}"#,
        );
        assert!(sysctls(&dots, &NamespacePlan::from_spec(&dots).unwrap()).is_err());
    }
}
