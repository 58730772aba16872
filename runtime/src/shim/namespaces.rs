//! Namespace paths in a pod container's spec, made to mean something in the guest.
//!
//! CRI gives a pod's sandbox container a network namespace file of the host
//! (`/var/run/netns/cni-…`) and its other containers the sandbox's namespaces as
//! `/proc/<pid>/ns/<type>`, where `<pid>` is the pid the shim reported for the sandbox — the
//! VMM's. In the guest the sandbox container's init is the pod's namespace holder, so
//! `/proc/<vmm pid>/ns/x` becomes `/proc/<sandbox init's guest pid>/ns/x`, and other host paths
//! are dropped: the namespace is created fresh in the guest (the VM is the pod's boundary).
//!
//! The network is the exception: a `network` entry with a path (CRI's pod netns file for the
//! sandbox, `/proc/<vmm pid>/ns/net` for the others) means "the pod's network", which in the guest
//! is the guest's own network namespace — the agent's (PID 1's), where the agent gave the NIC the
//! pod's addresses (see `crate::network`). So that path becomes [`POD_NETNS`]: the container joins the guest's root network
//! namespace (joined by path rather than left out, so the pod's `net.*` sysctls still pass the
//! agent's "namespaced sysctl needs its namespace" check). A `network` entry without a path
//! (plain `ctr run`) stays: a fresh, empty namespace, as runc would give.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The pod's network namespace in the guest: the agent's.
pub const POD_NETNS: &str = "/proc/1/ns/net";

/// Rewrites `spec`'s `linux.namespaces[].path`: `network` with a path → [`POD_NETNS`],
/// `/proc/<host_pid>/ns/<t>` → the sandbox's guest pid (when known), anything else → no path.
pub fn rewrite(spec: &mut Spec, host_pid: u32, sandbox_guest_pid: Option<u32>) {
    let Some(list) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
    else {
        return;
    };
    for ns in list.iter_mut() {
        let Some(path) = ns.path().clone() else {
            continue;
        };
        if ns.typ() == LinuxNamespaceType::Network {
            ns.set_path(Some(PathBuf::from(POD_NETNS)));
            continue;
        }
        let joined = parse_proc_ns(&path)
            .filter(|(pid, _)| *pid == host_pid)
            .and_then(|(_, kind)| Some(format!("/proc/{}/ns/{kind}", sandbox_guest_pid?)));
        if joined.is_none() {
            tracing::debug!(
                "namespace path {} has no meaning in the guest: dropped",
                path.display()
            );
        }
        ns.set_path(joined.map(PathBuf::from));
    }
}

fn parse_proc_ns(path: &Path) -> Option<(u32, &str)> {
    let rest = path.to_str()?.strip_prefix("/proc/")?;
    let (pid, rest) = rest.split_once('/')?;
    let kind = rest.strip_prefix("ns/")?;
    if kind.is_empty() || kind.contains('/') {
        return None;
    }
    Some((pid.parse().ok()?, kind))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// `rewrite` on a JSON spec, through the typed value.
    fn rewritten(spec: Value, host_pid: u32, sandbox_guest_pid: Option<u32>) -> Value {
        let mut typed: Spec = serde_json::from_value(spec).unwrap();
        rewrite(&mut typed, host_pid, sandbox_guest_pid);
        serde_json::to_value(&typed).unwrap()
    }

    #[test]
    fn pod_paths_map_to_the_sandbox_in_the_guest() {
        let spec = json!({"linux": {"namespaces": [
            {"type": "pid"},
            {"type": "ipc", "path": "/proc/4242/ns/ipc"},
            {"type": "uts", "path": "/proc/4242/ns/uts"},
            {"type": "network", "path": "/var/run/netns/cni-1234"},
            {"type": "mount"},
            {"type": "cgroup", "path": "/proc/99/ns/cgroup"}
        ]}});
        let spec = rewritten(spec, 4242, Some(7));
        let ns = &spec["linux"]["namespaces"];
        assert_eq!(ns[0], json!({"type": "pid"}));
        assert_eq!(ns[1]["path"], "/proc/7/ns/ipc");
        assert_eq!(ns[2]["path"], "/proc/7/ns/uts");
        // The pod's network is the guest's root network namespace.
        assert_eq!(ns[3], json!({"type": "network", "path": "/proc/1/ns/net"}));
        assert_eq!(ns[4], json!({"type": "mount"}));
        assert_eq!(ns[5], json!({"type": "cgroup"}));
        let app = json!({"linux": {"namespaces": [
            {"type": "network", "path": "/proc/4242/ns/net"},
            {"type": "ipc", "path": "/proc/4242/ns/ipc"}
        ]}});
        let app = rewritten(app, 4242, Some(7));
        assert_eq!(
            app["linux"]["namespaces"],
            json!([
                {"type": "network", "path": "/proc/1/ns/net"},
                {"type": "ipc", "path": "/proc/7/ns/ipc"}
            ])
        );
    }

    #[test]
    fn a_network_namespace_without_a_path_stays_fresh() {
        let spec = json!({"linux": {"namespaces": [{"type": "network"}]}});
        let spec = rewritten(spec, 1, None);
        assert_eq!(spec["linux"]["namespaces"], json!([{"type": "network"}]));
    }

    #[test]
    fn without_a_sandbox_every_path_goes() {
        let spec = json!({"linux": {"namespaces": [
            {"type": "ipc", "path": "/proc/4242/ns/ipc"}
        ]}});
        let spec = rewritten(spec, 4242, None);
        assert_eq!(spec["linux"]["namespaces"][0], json!({"type": "ipc"}));
        let spec = json!({"ociVersion": "1", "root": {"path": "r"}});
        assert_eq!(rewritten(spec.clone(), 1, Some(2)), spec);
        let parse = |p: &str| parse_proc_ns(Path::new(p)).map(|(pid, k)| (pid, k.to_owned()));
        assert_eq!(parse("/proc/12/ns/net"), Some((12, "net".into())));
        assert_eq!(parse("/proc/x/ns/net"), None);
        assert_eq!(parse("/proc/12/ns/a/b"), None);
    }
}
