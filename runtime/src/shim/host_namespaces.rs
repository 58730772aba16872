//! What a Kubernetes pod may ask of the node that a VM runtime cannot give, found in the pod's
//! container specs before anything is started.
//!
//! A hull pod runs in its own VM with its own kernel: there is no way for it to share the node's
//! network, IPC or PID namespace, and mounts the node makes under a volume after the pod started
//! do not reach the guest (the volume crosses into the VM through virtio-fs, which has no mount
//! propagation), nor do the pod's mounts reach the node. CRI says a pod wants these things by
//! what the spec lacks or carries:
//! - `hostNetwork` / `hostIPC` / `hostPID`: the sandbox's (and its containers') `linux.namespaces`
//!   have no `network` / `ipc` / `pid` entry (CRI's `NamespaceMode::NODE`);
//! - `mountPropagation: HostToContainer` / `Bidirectional`: a mount carries `rslave` / `rshared`
//!   (or `slave` / `shared`).
//!
//! Started anyway, such a pod silently gets the VM's own namespaces and never sees the node's
//! mounts, which breaks node agents (CNI daemons, log shippers, CSI node plugins) in ways that are
//! hard to trace. So by default ([`HostNamespaces::Refuse`]) `Create` refuses the container, and
//! with it `RunPodSandbox`/`CreateContainer`, naming what was asked and what to use instead: a
//! runc RuntimeClass. [`HostNamespaces::Ignore`] keeps the old behaviour, with a warning.
//!
//! Only Kubernetes containers (those carrying CRI's `io.kubernetes.cri.container-type`
//! annotation) are checked: a plain `ctr run` spec without a network namespace is not a request
//! for the node's namespace in any sense a user of hull would expect refused.

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::Deserialize;

/// CRI's annotation naming a container's kind (`sandbox` or `container`).
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// The `host_namespaces` key of `/etc/hull/config.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostNamespaces {
    /// Refuse a pod asking for the node's namespaces or host mount propagation.
    #[default]
    Refuse,
    /// Run it in the VM's own namespaces, with a warning in the shim's log.
    Ignore,
}

/// A pod asked for something of the node that a VM cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what}, which hull cannot give: {why}; run this pod with a runc RuntimeClass (or drop the \
     request), or set host_namespaces = \"ignore\" in /etc/hull/config.toml to run it in the \
     VM's own namespaces instead"
)]
pub struct HostNamespaceError {
    /// What was asked, e.g. `the pod asks for the node's network namespace (hostNetwork)`.
    pub what: String,
    /// Why a VM cannot do it.
    pub why: &'static str,
}

/// The node namespaces a pod can ask for: (namespace type, the pod field, the word used).
const NODE_NAMESPACES: [(LinuxNamespaceType, &str, &str); 3] = [
    (LinuxNamespaceType::Network, "hostNetwork", "network"),
    (LinuxNamespaceType::Ipc, "hostIPC", "IPC"),
    (LinuxNamespaceType::Pid, "hostPID", "PID"),
];

const NAMESPACE_WHY: &str = "every hull pod runs in a VM with its own kernel, whose namespaces \
                             are not the node's";
const PROPAGATION_WHY: &str = "volumes reach the pod VM through virtio-fs, which carries no \
                               mount events: mounts made under the volume on either side after \
                               the pod started are not seen on the other";

/// Checks `spec` against `policy`: `Err` when the policy refuses what it asks; `Ok` (after a
/// warning in the log) when the policy ignores it, or when it asks nothing of the sort.
pub fn check(spec: &Spec, policy: HostNamespaces) -> Result<(), HostNamespaceError> {
    let Some(found) = find(spec) else {
        return Ok(());
    };
    match policy {
        HostNamespaces::Refuse => Err(found),
        HostNamespaces::Ignore => {
            tracing::warn!(
                "{}; running it in the VM's own namespaces (host_namespaces = \"ignore\")",
                found.what
            );
            Ok(())
        }
    }
}

/// Whether `spec`'s hostname must be dropped to run it under [`HostNamespaces::Ignore`]: a
/// Kubernetes container of a `hostNetwork` pod shares the node's UTS namespace too, so CRI gives
/// it no `uts` namespace but the node's name as `hostname`, which needs a UTS namespace of its
/// own. In the VM it joins the guest's, which already has the node's name (the shim passes it at
/// boot, `crate::sandbox::hostname_arg`).
pub fn drops_hostname(spec: &Spec) -> bool {
    let kubernetes = spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(CONTAINER_TYPE_ANNOTATION));
    let has_uts = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|l| l.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
    kubernetes && !has_uts && spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
}

/// The first thing a Kubernetes container's `spec` asks of the node that a VM cannot give.
pub fn find(spec: &Spec) -> Option<HostNamespaceError> {
    let kind = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(CONTAINER_TYPE_ANNOTATION))?;
    let who = if kind == "sandbox" {
        "the pod"
    } else {
        "the container"
    };
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    let has = |t: LinuxNamespaceType| namespaces.is_some_and(|l| l.iter().any(|n| n.typ() == t));
    let missing: Vec<(&str, &str)> = NODE_NAMESPACES
        .iter()
        .filter(|(t, ..)| !has(*t))
        .map(|(_, field, word)| (*field, *word))
        .collect();
    if !missing.is_empty() {
        let words: Vec<&str> = missing.iter().map(|(_, w)| *w).collect();
        let fields: Vec<&str> = missing.iter().map(|(f, _)| *f).collect();
        let plural = if missing.len() > 1 { "s" } else { "" };
        return Some(HostNamespaceError {
            what: format!(
                "{who} asks for the node's {} namespace{plural} ({})",
                words.join(", "),
                fields.join(", ")
            ),
            why: NAMESPACE_WHY,
        });
    }
    for mount in spec.mounts().iter().flatten() {
        let options = mount.options().iter().flatten();
        let propagation = options
            .map(String::as_str)
            .find(|o| matches!(*o, "rslave" | "slave" | "rshared" | "shared"));
        if let Some(option) = propagation {
            let mode = if option.ends_with("shared") {
                "Bidirectional"
            } else {
                "HostToContainer"
            };
            return Some(HostNamespaceError {
                what: format!(
                    "{who} asks for mount propagation {mode} ({option}) on {}",
                    mount.destination().display()
                ),
                why: PROPAGATION_WHY,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(kind: Option<&str>, namespaces: &[&str], mount_options: &[&str]) -> Spec {
        let mut annotations = serde_json::Map::new();
        if let Some(kind) = kind {
            annotations.insert(CONTAINER_TYPE_ANNOTATION.into(), json!(kind));
        }
        let namespaces: Vec<_> = namespaces.iter().map(|t| json!({ "type": t })).collect();
        serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "process": { "args": ["true"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "annotations": annotations,
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/data", "type": "bind", "source": "/var/lib/data",
                  "options": mount_options }
            ],
            "linux": { "namespaces": namespaces }
        }))
        .unwrap()
    }

    const POD: [&str; 5] = ["pid", "ipc", "uts", "mount", "network"];

    #[test]
    fn a_pod_of_its_own_namespaces_passes() {
        let s = spec(Some("sandbox"), &POD, &["rbind", "rprivate", "rw"]);
        assert_eq!(find(&s), None);
        check(&s, HostNamespaces::Refuse).unwrap();
    }

    #[test]
    fn node_namespaces_are_named_with_their_pod_field() {
        let s = spec(Some("sandbox"), &["pid", "ipc", "uts", "mount"], &[]);
        let e = check(&s, HostNamespaces::Refuse).unwrap_err().to_string();
        assert!(
            e.starts_with("the pod asks for the node's network namespace (hostNetwork), which hull cannot give: every hull pod runs in a VM"),
            "{e}"
        );
        assert!(
            e.contains("runc RuntimeClass") && e.contains("host_namespaces"),
            "{e}"
        );
        let s = spec(Some("sandbox"), &["uts", "mount", "network"], &[]);
        let e = find(&s).unwrap().what;
        assert_eq!(
            e,
            "the pod asks for the node's IPC, PID namespaces (hostIPC, hostPID)"
        );
        let s = spec(Some("container"), &["ipc", "uts", "mount", "network"], &[]);
        assert_eq!(
            find(&s).unwrap().what,
            "the container asks for the node's PID namespace (hostPID)"
        );
    }

    #[test]
    fn host_mount_propagation_is_refused() {
        for (option, mode) in [
            ("rslave", "HostToContainer"),
            ("slave", "HostToContainer"),
            ("rshared", "Bidirectional"),
        ] {
            let s = spec(Some("container"), &POD, &["rbind", option, "rw"]);
            let e = find(&s).unwrap();
            assert_eq!(
                e.what,
                format!("the container asks for mount propagation {mode} ({option}) on /data")
            );
            assert!(e.to_string().contains("virtio-fs"), "{e}");
        }
    }

    #[test]
    fn a_host_network_pods_hostname_is_dropped_only_without_uts() {
        let mut s = spec(Some("sandbox"), &["pid", "ipc", "mount"], &[]);
        s.set_hostname(Some("node-1".into()));
        assert!(drops_hostname(&s));
        let mut s = spec(Some("sandbox"), &POD, &[]);
        s.set_hostname(Some("web".into()));
        assert!(!drops_hostname(&s));
        let mut s = spec(None, &["pid", "mount"], &[]);
        s.set_hostname(Some("h".into()));
        assert!(
            !drops_hostname(&s),
            "plain specs are left to the agent's check"
        );
    }

    #[test]
    fn ignore_lets_it_through_and_plain_specs_are_not_checked() {
        let s = spec(Some("sandbox"), &["uts", "mount"], &["rshared"]);
        check(&s, HostNamespaces::Ignore).unwrap();
        let s = spec(None, &["uts", "mount"], &["rshared"]);
        check(&s, HostNamespaces::Refuse).unwrap();
    }
}
