//! `Create`: boot the pod VM if this is its first container, make the root filesystem visible to
//! the guest, create the container in the guest (held at the start barrier) and attach its stdio.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim_protos::api::Mount;
use containerd_shim_protos::events::task::{TaskCreate, TaskIO};
use containerd_shim_protos::topics::TASK_CREATE_EVENT_TOPIC;
use hull_protocol::limits;
use serde_json::Value;

use std::sync::atomic::Ordering;

use crate::shim::pod::{lock, Container, Pod, Process};
use crate::shim::rootfs;
use crate::shim::stdio::{attach_process, StdioPaths};
use crate::shim::ShimError;
use crate::shim::{host_namespaces, namespaces, pod_shm, sizing, SANDBOX_ID_ANNOTATION};

/// What `Create` is asked.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// containerd's bundle (holds `config.json`).
    pub bundle: PathBuf,
    /// containerd's rootfs mounts (the snapshot).
    pub rootfs: Vec<Mount>,
    /// stdio.
    pub stdio: StdioPaths,
}

/// Creates the container; returns the pid containerd sees (the VMM's).
pub async fn create(pod: &Arc<Pod>, args: CreateArgs) -> Result<u32, ShimError> {
    limits::check_id("container id", &args.id)
        .map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
    if pod.is_taken(&args.id) {
        return Err(ShimError::AlreadyExists(format!("container {}", args.id)));
    }
    let mut spec = read_spec(&args.bundle)?;
    // Before any VM is booted: a pod asking for what a VM cannot give is refused at once. (A
    // spec the typed parser refuses is reported, with its reason, when the rootfs is prepared.)
    if let Ok(typed) = serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()) {
        host_namespaces::check(&typed, pod.config.host_namespaces)?;
        if host_namespaces::drops_hostname(&typed) {
            if let Some(obj) = spec.as_object_mut() {
                obj.remove("hostname");
            }
        }
    }
    let vm = pod.ensure_vm(&spec).await?;
    let result = create_in_vm(pod, &args, spec, &vm).await;
    if result.is_err() && pod.is_empty() {
        pod.stop_vm().await;
    }
    result
}

async fn create_in_vm(
    pod: &Pod,
    args: &CreateArgs,
    mut spec: Value,
    vm: &crate::shim::pod::VmHandle,
) -> Result<u32, ShimError> {
    // A pod container joins its sandbox's namespaces in the guest.
    let sandbox_pid = spec["annotations"][SANDBOX_ID_ANNOTATION]
        .as_str()
        .filter(|s| *s != args.id)
        .and_then(|s| pod.container(s).ok())
        .map(|c| c.init.guest_pid.load(Ordering::SeqCst))
        .filter(|pid| *pid != 0);
    namespaces::rewrite(&mut spec, vm.vmm_pid, sandbox_pid);
    pod_shm::rewrite(&mut spec);
    // No hot-add: a container joining a running pod must fit its VM (sizing.rs).
    let memory_limit_mib = sizing::memory_limit_mib(&spec);
    if let Some(size) = pod.vm_size().await {
        let committed = pod.committed_memory_mib(&args.id);
        sizing::check_fits(&pod.config, size.memory_mib, committed, memory_limit_mib)
            .map_err(ShimError::FailedPrecondition)?;
    }
    let source = pod.rootfs_source();
    let (dir, id, mounts) = (pod.run_dir.clone(), args.id.clone(), args.rootfs.clone());
    let bundle = args.bundle.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        rootfs::prepare(&source, &dir, &bundle, &id, &mounts, spec)
    })
    .await
    .map_err(|e| ShimError::Io("rootfs task".into(), std::io::Error::other(e)))??;
    let spec_json = serde_json::to_vec(&prepared.spec)
        .map_err(|e| ShimError::InvalidArgument(format!("OCI spec: {e}")))?;
    let undo = prepared.undo;
    let created = vm
        .agent
        .create_container(
            &args.id,
            spec_json,
            &prepared.guest_rootfs,
            args.stdio.agent_config(),
        )
        .await;
    let guest_pid = match created {
        Ok(pid) => pid,
        Err(e) => {
            release(undo);
            return Err(e.into());
        }
    };
    let io = match attach_process(&vm.uds, &args.id, "", &args.stdio).await {
        Ok(io) => io,
        Err(e) => {
            let _ = vm.agent.remove_container(&args.id).await;
            release(undo);
            return Err(e.into());
        }
    };
    let init = Arc::new(Process::new(
        &args.id,
        ("", ""),
        args.stdio.clone(),
        vm.vmm_pid,
        None,
    ));
    *init.io.lock().await = Some(io);
    init.guest_pid.store(guest_pid, Ordering::SeqCst);
    let container = Arc::new(Container {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        init,
        execs: Default::default(),
        paused: Default::default(),
        rootfs_undo: std::sync::Mutex::new(Some(undo)),
        memory_limit_mib: std::sync::Mutex::new(memory_limit_mib),
    });
    if let Err(e) = pod.insert(container.clone()) {
        let _ = vm.agent.remove_container(&args.id).await;
        if let Some(undo) = lock(&container.rootfs_undo).take() {
            release(undo);
        }
        return Err(e);
    }
    let event = TaskCreate {
        container_id: args.id.clone(),
        bundle: args.bundle.display().to_string(),
        rootfs: args.rootfs.clone(),
        io: Some(TaskIO {
            stdin: args.stdio.stdin.clone(),
            stdout: args.stdio.stdout.clone(),
            stderr: args.stdio.stderr.clone(),
            terminal: args.stdio.terminal,
            ..Default::default()
        })
        .into(),
        pid: vm.vmm_pid,
        ..Default::default()
    };
    pod.events
        .publish(TASK_CREATE_EVENT_TOPIC, Box::new(event))
        .await;
    Ok(vm.vmm_pid)
}

fn release(undo: rootfs::Undo) {
    if let Err(e) = rootfs::release(undo) {
        tracing::warn!("undoing the rootfs: {e}");
    }
}

/// Reads `<bundle>/config.json`.
pub fn read_spec(bundle: &std::path::Path) -> Result<Value, ShimError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| ShimError::Spec {
        path: path.clone(),
        source,
    })?;
    let spec: Value = serde_json::from_slice(&text).map_err(|e| ShimError::Spec {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    if !spec.is_object() || !spec["process"].is_object() {
        return Err(ShimError::Spec {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not an OCI runtime spec (no process object)",
            ),
        });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_spec(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = crate::agent::client::error_chain(&read_spec(dir.path()).unwrap_err());
        assert!(
            e.contains("bad OCI spec") && e.contains("key must be a string"),
            "{e}"
        );
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let e = crate::agent::client::error_chain(&read_spec(dir.path()).unwrap_err());
        assert!(e.contains("no process object"), "{e}");
        std::fs::write(dir.path().join("config.json"), r#"{"process":{}}"#).unwrap();
        read_spec(dir.path()).unwrap();
    }
}
