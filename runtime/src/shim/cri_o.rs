//! CRI-O's ways, made containerd's.
//!
//! CRI-O drives hull as a `runtime_type = "vm"` runtime: it runs the shim's `start` for every
//! container (the sandbox's infra container first) and hands each its spec in its bundle, as
//! containerd does, but it marks a pod's containers its own way. The rest of the shim knows
//! containerd's CRI; this module turns CRI-O's marks into those, in one place:
//! - the pod: CRI-O names a container's sandbox in [`SANDBOX_ID`] (the infra container names its
//!   own id, as containerd's sandbox does) → CRI's [`super::SANDBOX_ID_ANNOTATION`], which groups
//!   the pod's containers into one shim and VM and gives them the pod's `/dev/shm`;
//! - namespaces: CRI-O pins a pod's IPC, UTS and network namespaces as files (`pinns`) and names
//!   those same files in every container of the pod, where containerd names
//!   `/proc/<sandbox pid>/ns/<type>`. A pod container's namespace file that its sandbox's spec
//!   names too means "the pod's", so it becomes `/proc/<vmm pid>/ns/<type>` (the pid the shim
//!   reports for the sandbox), which [`super::namespaces`] maps to the sandbox in the guest.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::spec::annotation;
use super::SANDBOX_ID_ANNOTATION;

/// CRI-O's annotation naming a container's sandbox.
pub const SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";

/// Gives a CRI-O container's spec CRI's sandbox annotation (leaves others alone).
pub fn normalise(spec: &mut Spec) {
    let Some(id) = annotation(spec, SANDBOX_ID).map(str::to_owned) else {
        return;
    };
    if let Some(annotations) = spec
        .annotations_mut()
        .as_mut()
        .filter(|a| !a.contains_key(SANDBOX_ID_ANNOTATION))
    {
        annotations.insert(SANDBOX_ID_ANNOTATION.into(), id);
    }
}

/// Whether `spec` is a CRI-O container's.
pub fn is_cri_o(spec: &Spec) -> bool {
    annotation(spec, SANDBOX_ID).is_some()
}

/// Points a CRI-O pod container's namespace files that its sandbox's spec (`sandbox`) names too at
/// `/proc/<vmm_pid>/ns/<type>`, the form containerd uses for "the sandbox's namespace".
pub fn join_pod_namespaces(spec: &mut Spec, sandbox: &Spec, vmm_pid: u32) {
    let pod_paths: Vec<(LinuxNamespaceType, PathBuf)> = sandbox
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ns| Some((ns.typ(), ns.path().clone()?)))
        .collect();
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
        if pod_paths.contains(&(ns.typ(), path)) {
            if let Some(short) = proc_name(ns.typ()) {
                ns.set_path(Some(PathBuf::from(format!("/proc/{vmm_pid}/ns/{short}"))));
            }
        }
    }
}

/// The `/proc/<pid>/ns/` file name of an OCI namespace type.
fn proc_name(kind: LinuxNamespaceType) -> Option<&'static str> {
    Some(match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Mount => "mnt",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn typed(v: Value) -> Spec {
        serde_json::from_value(v).unwrap()
    }

    fn json_of(s: &Spec) -> Value {
        serde_json::to_value(s).unwrap()
    }

    #[test]
    fn cri_o_sandbox_ids_become_cri_ones() {
        let mut spec = typed(json!({"annotations": {SANDBOX_ID: "pod1", "other": "x"}}));
        assert!(is_cri_o(&spec));
        normalise(&mut spec);
        assert_eq!(annotation(&spec, SANDBOX_ID_ANNOTATION), Some("pod1"));
        assert_eq!(annotation(&spec, "other"), Some("x"));
        // containerd's own annotation wins; specs without CRI-O's are left alone.
        let mut both = typed(json!({"annotations": {SANDBOX_ID: "a", SANDBOX_ID_ANNOTATION: "b"}}));
        normalise(&mut both);
        assert_eq!(annotation(&both, SANDBOX_ID_ANNOTATION), Some("b"));
        let mut plain = typed(json!({"root": {"path": "r"}}));
        let before = json_of(&plain);
        normalise(&mut plain);
        assert_eq!(json_of(&plain), before);
        assert!(!is_cri_o(&plain));
    }

    #[test]
    fn the_pods_pinned_namespaces_become_the_sandboxs() {
        let sandbox = typed(json!({"linux": {"namespaces": [
            {"type": "ipc", "path": "/run/crio/ipcns/a"},
            {"type": "uts", "path": "/run/crio/utsns/b"},
            {"type": "network", "path": "/run/crio/netns/c"},
            {"type": "mount"}
        ]}}));
        let mut spec = typed(json!({"linux": {"namespaces": [
            {"type": "ipc", "path": "/run/crio/ipcns/a"},
            {"type": "uts", "path": "/run/crio/utsns/b"},
            {"type": "network", "path": "/run/crio/netns/c"},
            {"type": "pid", "path": "/proc/77/ns/pid"},
            {"type": "cgroup", "path": "/elsewhere"},
            {"type": "mount"}
        ]}}));
        join_pod_namespaces(&mut spec, &sandbox, 4242);
        assert_eq!(
            json_of(&spec)["linux"]["namespaces"],
            json!([
                {"type": "ipc", "path": "/proc/4242/ns/ipc"},
                {"type": "uts", "path": "/proc/4242/ns/uts"},
                {"type": "network", "path": "/proc/4242/ns/net"},
                {"type": "pid", "path": "/proc/77/ns/pid"},
                {"type": "cgroup", "path": "/elsewhere"},
                {"type": "mount"}
            ])
        );
    }
}
