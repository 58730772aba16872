//! A pod's `/dev/shm`, in the guest. CRI gives every container of a pod a bind mount of one
//! host tmpfs (the sandbox's `shm` directory) at `/dev/shm`; over virtio-fs its files would be
//! shared but not mappable (`MAP_SHARED` on the share fails with ENODEV), and `shm_open` users
//! need exactly that. So the bind's source becomes [`GUEST_POD_SHM`], a tmpfs the agent mounts at
//! boot (one per VM, that is per pod): the pod's containers share it in guest memory.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use super::spec::annotation;
use super::SANDBOX_ID_ANNOTATION;
use crate::share::spec::is_bind;

/// The pod's shared-memory tmpfs in the guest (mounted by the agent at boot).
pub const GUEST_POD_SHM: &str = hull_protocol::GUEST_POD_SHM;

/// Points a CRI pod container's `/dev/shm` bind mount at [`GUEST_POD_SHM`]; other specs are left
/// alone.
pub fn rewrite(spec: &mut Spec) {
    if annotation(spec, SANDBOX_ID_ANNOTATION).is_none() {
        return;
    }
    for m in spec.mounts_mut().iter_mut().flatten() {
        if m.destination().as_os_str() == "/dev/shm" && is_bind(m) {
            m.set_source(Some(PathBuf::from(GUEST_POD_SHM)));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn rewritten(spec: Value) -> Value {
        let mut typed: Spec = serde_json::from_value(spec).unwrap();
        rewrite(&mut typed);
        serde_json::to_value(&typed).unwrap()
    }

    #[test]
    fn a_pods_dev_shm_bind_becomes_the_guest_tmpfs() {
        let spec = json!({
            "annotations": {"io.kubernetes.cri.sandbox-id": "p"},
            "mounts": [
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                {"destination": "/dev/shm", "type": "bind",
                 "source": "/var/lib/cri/sandboxes/p/shm", "options": ["rbind", "ro"]},
                {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}
            ]
        });
        let spec = rewritten(spec);
        assert_eq!(spec["mounts"][0]["source"], "shm", "a tmpfs stays");
        assert_eq!(spec["mounts"][1]["source"], GUEST_POD_SHM);
        assert_eq!(spec["mounts"][1]["options"], json!(["rbind", "ro"]));
        assert_eq!(spec["mounts"][2]["source"], "/srv");
        // Not a pod container: untouched.
        let plain = json!({"mounts": [{"destination": "/dev/shm", "type": "bind",
            "source": "/host/shm"}]});
        let plain = rewritten(plain);
        assert_eq!(plain["mounts"][0]["source"], "/host/shm");
    }
}
