//! `Create`: boot the pod VM if this is its first container, make the root filesystem visible to
//! the guest, create the container in the guest (held at the start barrier) and attach its stdio.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim_protos::api::Mount;
use containerd_shim_protos::events::task::{TaskCreate, TaskIO};
use containerd_shim_protos::topics::TASK_CREATE_EVENT_TOPIC;
use hull_protocol::limits;
use std::sync::atomic::Ordering;

use crate::shim::pod::{lock, Container, Pod, Process};
use crate::shim::rootfs;
use crate::shim::spec::BundleSpec;
use crate::shim::stdio::{attach_process, StdioPaths};
use crate::shim::ShimError;
use crate::shim::{
    cri_o, host_namespaces, namespaces, pod_shm, sizing, volumes, SANDBOX_ID_ANNOTATION,
};

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
    /// Set by hull's OCI runtime (`crate::oci`), whose monitor ran the spec's host hooks itself
    /// (`crate::oci::hooks`); `None` through the shim v2 API, which refuses hooks.
    pub oci: Option<OciHost>,
}

/// What hull's OCI runtime did on the host before the container is created in its VM.
#[derive(Debug, Clone, Default)]
pub struct OciHost {
    /// The network namespace the monitor made for a spec whose `network` namespace names no
    /// path (Docker's: its `libnetwork-setkey` prestart hook configured it through the
    /// monitor's pid), as a path the VM's network code can enter.
    pub netns: Option<PathBuf>,
}

/// Creates the container; returns the pid containerd sees (the VMM's).
pub async fn create(pod: &Arc<Pod>, args: CreateArgs) -> Result<u32, ShimError> {
    limits::check_id("container id", &args.id)?;
    if pod.is_taken(&args.id) {
        return Err(ShimError::AlreadyExists(format!("container {}", args.id)));
    }
    let mut spec = read_spec(&args.bundle)?;
    cri_o::normalise(spec.spec_mut());
    host_side(&args, &mut spec)?;
    // Before any VM is booted: a pod asking for what a VM cannot give is refused at once.
    host_namespaces::check(spec.spec(), pod.config.host_namespaces)?;
    if host_namespaces::drops_hostname(spec.spec()) {
        spec.spec_mut().set_hostname(None);
    }
    let vm = pod.ensure_vm(spec.spec()).await?;
    let result = create_in_vm(pod, &args, spec, &vm).await;
    if result.is_err() && pod.is_empty() {
        pod.stop_vm().await;
    }
    result
}

/// Hooks never reach the guest (where the host's binaries do not exist): the OCI runtime ran
/// them on the host, and the shim v2 API refuses them (containerd's own runc shim would run them
/// through runc; hull's shim has no host-side hook runner). A network namespace the OCI monitor
/// made becomes the spec's, so the VM takes over what the engine configured in it.
fn host_side(args: &CreateArgs, spec: &mut BundleSpec) -> Result<(), ShimError> {
    let Some(oci) = &args.oci else {
        if crate::oci::hooks::any(spec.spec()) {
            return Err(ShimError::InvalidArgument(
                "OCI hooks are not supported through the shim v2 API (hull's OCI runtime runs \
                 prestart, createRuntime, poststart and poststop hooks on the host)"
                    .into(),
            ));
        }
        return Ok(());
    };
    spec.spec_mut().set_hooks(None);
    if let Some(netns) = &oci.netns {
        let unnamed = spec
            .spec_mut()
            .linux_mut()
            .as_mut()
            .and_then(|l| l.namespaces_mut().as_mut())
            .and_then(|list| {
                list.iter_mut().find(|ns| {
                    ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network
                        && ns.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
                })
            });
        if let Some(ns) = unnamed {
            ns.set_path(Some(netns.clone()));
        }
    }
    Ok(())
}

async fn create_in_vm(
    pod: &Pod,
    args: &CreateArgs,
    mut spec: BundleSpec,
    vm: &crate::shim::pod::VmHandle,
) -> Result<u32, ShimError> {
    let memory_limit_mib = fit_into_pod(pod, args, &mut spec, vm).await?;
    let (prepared, spec) = prepare_rootfs(pod, args, spec).await?;
    let undo = prepared.undo;
    let copies = prepared.copies;
    let spec_json = match spec.to_json() {
        Ok(json) => json,
        Err(e) => {
            release(undo);
            return Err(ShimError::InvalidArgument(format!("OCI spec: {e}")));
        }
    };
    if let Err(e) = volumes::copy_in(&vm.agent, &args.id, &copies).await {
        remove_volumes(vm, &args.id).await;
        release(undo);
        return Err(e.into());
    }
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
            if !copies.is_empty() {
                remove_volumes(vm, &args.id).await;
            }
            release(undo);
            return Err(e.into());
        }
    };
    let name = format!("container {}", args.id);
    let io = match attach_process(&vm.uds, (&args.id, ""), &name, &args.stdio).await {
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
        volume_watch: std::sync::Mutex::new(None),
    });
    if let Err(e) = pod.insert(container.clone()) {
        let _ = vm.agent.remove_container(&args.id).await;
        if let Some(undo) = lock(&container.rootfs_undo).take() {
            release(undo);
        }
        return Err(e);
    }
    if !copies.is_empty() {
        *lock(&container.volume_watch) = Some(volumes::watch(&vm.agent, &args.id, copies));
    }
    publish_created(pod, args, vm.vmm_pid).await;
    Ok(vm.vmm_pid)
}

/// Points the container's namespaces at its pod's (the sandbox's, or the VM's for the sandbox
/// itself) and its `/dev/shm` at the pod's, and checks that its memory limit fits the running VM:
/// there is no hot-add (sizing.rs). Returns that limit.
async fn fit_into_pod(
    pod: &Pod,
    args: &CreateArgs,
    spec: &mut BundleSpec,
    vm: &crate::shim::pod::VmHandle,
) -> Result<Option<u64>, ShimError> {
    // A pod container joins its sandbox's namespaces in the guest.
    let sandbox = spec
        .annotation(SANDBOX_ID_ANNOTATION)
        .filter(|s| *s != args.id)
        .and_then(|s| pod.container(s).ok());
    let sandbox_pid = sandbox
        .as_ref()
        .map(|c| c.init.guest_pid.load(Ordering::SeqCst))
        .filter(|pid| *pid != 0);
    if let Some(sandbox) = sandbox.filter(|_| cri_o::is_cri_o(spec.spec())) {
        let sandbox_spec = read_spec(&sandbox.bundle)?;
        cri_o::join_pod_namespaces(spec.spec_mut(), sandbox_spec.spec(), vm.vmm_pid);
    }
    namespaces::rewrite(spec.spec_mut(), vm.vmm_pid, sandbox_pid);
    pod_shm::rewrite(spec.spec_mut());
    let memory_limit_mib = sizing::memory_limit_mib(spec.spec());
    if let Some(size) = pod.vm_size().await {
        let committed = pod.committed_memory_mib(&args.id);
        sizing::check_fits(&pod.config, size.memory_mib, committed, memory_limit_mib)
            .map_err(ShimError::FailedPrecondition)?;
    }
    Ok(memory_limit_mib)
}

/// Makes the container's root filesystem visible to the guest (mounts and copies: on a blocking
/// thread) and points the spec's root at it.
async fn prepare_rootfs(
    pod: &Pod,
    args: &CreateArgs,
    mut spec: BundleSpec,
) -> Result<(rootfs::Prepared, BundleSpec), ShimError> {
    let source = pod.rootfs_source();
    let (dir, id, mounts) = (pod.run_dir.clone(), args.id.clone(), args.rootfs.clone());
    let bundle = args.bundle.clone();
    let (prepared, spec) = tokio::task::spawn_blocking(move || {
        let prepared = rootfs::prepare(&source, &dir, &bundle, &id, &mounts, spec.spec_mut());
        (prepared, spec)
    })
    .await
    .map_err(|e| ShimError::Io("rootfs task".into(), std::io::Error::other(e)))?;
    Ok((prepared?, spec))
}

/// Tells containerd the task exists (`TaskCreate`), with `pid` the one it sees (the VMM's).
async fn publish_created(pod: &Pod, args: &CreateArgs, pid: u32) {
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
        pid,
        ..Default::default()
    };
    pod.events
        .publish(TASK_CREATE_EVENT_TOPIC, Box::new(event))
        .await;
}

/// Removes container `id`'s copied volumes from the guest after a failed create.
async fn remove_volumes(vm: &crate::shim::pod::VmHandle, id: &str) {
    if let Err(e) = vm.agent.remove_volumes(id).await {
        tracing::warn!(
            "removing the copied volumes of {id}: {}",
            crate::agent::client::error_chain(&e)
        );
    }
}

fn release(undo: rootfs::Undo) {
    if let Err(e) = rootfs::release(undo) {
        tracing::warn!("undoing the rootfs: {e}");
    }
}

/// Reads `<bundle>/config.json`.
pub fn read_spec(bundle: &std::path::Path) -> Result<BundleSpec, ShimError> {
    BundleSpec::read(bundle).map_err(|(path, source)| ShimError::Spec { path, source })
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
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process":{"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap();
        read_spec(dir.path()).unwrap();
    }

    #[test]
    fn hooks_never_reach_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process":{"cwd":"/","user":{"uid":0,"gid":0}},
                "hooks":{"prestart":[{"path":"/bin/true"}]},
                "linux":{"namespaces":[{"type":"pid"},{"type":"network"}]}}"#,
        )
        .unwrap();
        let args = |oci| CreateArgs {
            id: "c1".into(),
            bundle: dir.path().into(),
            rootfs: vec![],
            stdio: Default::default(),
            oci,
        };
        // Through the shim v2 API: refused, before any VM.
        let mut spec = read_spec(dir.path()).unwrap();
        let e = host_side(&args(None), &mut spec).unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("OCI hooks"), "{e}");
        // Through the OCI runtime: stripped, and the monitor's namespace named.
        let mut spec = read_spec(dir.path()).unwrap();
        let oci = OciHost {
            netns: Some(PathBuf::from("/proc/77/ns/net")),
        };
        host_side(&args(Some(oci)), &mut spec).unwrap();
        assert!(spec.spec().hooks().is_none());
        let json = serde_json::to_value(spec.spec()).unwrap();
        assert_eq!(
            json["linux"]["namespaces"][1],
            serde_json::json!({"type": "network", "path": "/proc/77/ns/net"})
        );
    }
}
