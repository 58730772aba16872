//! A pod's `/dev/shm`, in the guest. CRI gives every container of a pod a bind mount of one
//! host tmpfs (the sandbox's `shm` directory) at `/dev/shm`; over virtio-fs its files would be
//! shared but not mappable (`MAP_SHARED` on the share fails with ENODEV), and `shm_open` users
//! need exactly that. So the bind's source becomes [`GUEST_POD_SHM`], a tmpfs the agent mounts at
//! boot (one per VM, that is per pod): the pod's containers share it in guest memory.

use serde_json::Value;

use super::SANDBOX_ID_ANNOTATION;

/// The pod's shared-memory tmpfs in the guest (mounted by the agent at boot).
pub const GUEST_POD_SHM: &str = hull_protocol::GUEST_POD_SHM;

/// Points a CRI pod container's `/dev/shm` bind mount at [`GUEST_POD_SHM`]; other specs are left
/// alone.
pub fn rewrite(spec: &mut Value) {
    if spec["annotations"][SANDBOX_ID_ANNOTATION]
        .as_str()
        .is_none()
    {
        return;
    }
    let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) else {
        return;
    };
    for m in mounts.iter_mut() {
        let bind = m["type"] == "bind"
            || m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        if m["destination"] == "/dev/shm" && bind {
            m["source"] = Value::String(GUEST_POD_SHM.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pods_dev_shm_bind_becomes_the_guest_tmpfs() {
        let mut spec = json!({
            "annotations": {"io.kubernetes.cri.sandbox-id": "p"},
            "mounts": [
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                {"destination": "/dev/shm", "type": "bind",
                 "source": "/var/lib/cri/sandboxes/p/shm", "options": ["rbind", "ro"]},
                {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}
            ]
        });
        rewrite(&mut spec);
        assert_eq!(spec["mounts"][0]["source"], "shm", "a tmpfs stays");
        assert_eq!(spec["mounts"][1]["source"], GUEST_POD_SHM);
        assert_eq!(spec["mounts"][1]["options"], json!(["rbind", "ro"]));
        assert_eq!(spec["mounts"][2]["source"], "/srv");
        // Not a pod container: untouched.
        let mut plain = json!({"mounts": [{"destination": "/dev/shm", "type": "bind",
            "source": "/host/shm"}]});
        rewrite(&mut plain);
        assert_eq!(plain["mounts"][0]["source"], "/host/shm");
    }
}
