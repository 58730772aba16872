//! The state one shim keeps: its pod's VM (booted by the first `Create`, stopped after the last
//! `Delete`), the containers in it and their processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_shim::ExitSignal;
use oci_spec::runtime::Spec;
use tokio::task::JoinHandle;

use crate::agent::AgentClient;
use crate::host_cgroup::PodCgroup;
use crate::sandbox::{PartExit, SandboxError, SandboxVm, SandboxVmConfig};

use super::boot_log;
use super::config::HullConfig;
use super::events::EventSink;
use super::fault::{self, FaultSignal};
use super::rootfs::RootfsSource;
use super::sizing::{vm_size, VmSize};
use super::ShimError;

mod backend;
mod oom;
mod placement;
mod process;

pub use backend::hypervisor;
pub use oom::{publish_oom, OomLedger};
pub use process::{Container, Exit, Process, ProcessState};

/// How long a stopping VM gets before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long the VMM of a pod that went down gets to exit on SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// How long a finished process's output may take to drain before its exit is reported anyway.
pub const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// The pod one shim serves.
pub struct Pod {
    /// The sandbox id (the first container's id).
    pub id: String,
    /// The configuration.
    pub config: HullConfig,
    /// `<run_dir>/<id>`: the pod's private files.
    pub run_dir: PathBuf,
    /// Where task events go.
    pub events: Arc<dyn EventSink>,
    /// Set when the shim may exit.
    pub exit: Arc<ExitSignal>,
    /// OOM kills reported per container.
    pub ooms: Arc<OomLedger>,
    /// Raised when a part of the VM died and the pod went down (see [`fault`]).
    pub fault: Arc<FaultSignal>,
    vm: tokio::sync::Mutex<Option<PodVm>>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    execs_started: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pod")
            .field("id", &self.id)
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

/// A running pod VM.
#[derive(Debug)]
struct PodVm {
    sandbox: SandboxVm,
    handle: VmHandle,
    size: VmSize,
    oom_watch: JoinHandle<()>,
    cgroup: Option<PodCgroup>,
    parts_watch: JoinHandle<()>,
}

/// What Task calls need of the VM.
#[derive(Debug, Clone)]
pub struct VmHandle {
    /// The agent.
    pub agent: AgentClient,
    /// The VM's hybrid vsock socket.
    pub uds: PathBuf,
    /// The VMM's host pid: the pid containerd sees for every process of the pod.
    pub vmm_pid: u32,
}

/// Locks a std mutex, ignoring poisoning (no invariant spans a panic here).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pod {
    /// The pod `id` under `config.run_dir`.
    pub fn new(
        id: &str,
        config: HullConfig,
        events: Arc<dyn EventSink>,
        exit: Arc<ExitSignal>,
    ) -> Self {
        let run_dir = config.run_dir.join(id);
        Self {
            id: id.to_owned(),
            config,
            run_dir,
            events,
            exit,
            ooms: Default::default(),
            fault: Default::default(),
            vm: tokio::sync::Mutex::new(None),
            containers: Mutex::new(HashMap::new()),
            execs_started: Default::default(),
        }
    }

    /// A fresh agent id for an exec.
    pub fn next_agent_exec_id(&self) -> String {
        let n = self
            .execs_started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("x{n}")
    }

    /// Where containers' files come from.
    pub fn rootfs_source(&self) -> RootfsSource {
        self.config
            .guest_rootfs
            .clone()
            .map_or(RootfsSource::Shared, RootfsSource::GuestPath)
    }

    /// The running VM, or an error when there is none (or it went down).
    pub async fn vm(&self) -> Result<VmHandle, ShimError> {
        self.check_up()?;
        self.vm
            .lock()
            .await
            .as_ref()
            .map(|v| v.handle.clone())
            .ok_or_else(|| ShimError::FailedPrecondition(format!("pod {} has no VM", self.id)))
    }

    /// The running VM, booting it for a sandbox with OCI spec `spec` when there is none.
    pub async fn ensure_vm(self: &Arc<Self>, spec: &Spec) -> Result<VmHandle, ShimError> {
        let mut vm = self.vm.lock().await;
        self.check_up()?;
        if let Some(v) = vm.as_ref() {
            return Ok(v.handle.clone());
        }
        let started = self.boot(spec).await?;
        let handle = started.handle.clone();
        *vm = Some(started);
        Ok(handle)
    }

    /// An error once the pod went down: nothing more runs in it.
    fn check_up(&self) -> Result<(), ShimError> {
        match self.fault.get() {
            Some(fault) => Err(ShimError::FailedPrecondition(format!(
                "pod {} is down: {fault}",
                self.id
            ))),
            None => Ok(()),
        }
    }

    /// The VM's host processes that have exited (see [`SandboxVm::exited_parts`]) and the console
    /// log's path; `None` when there is no VM.
    pub async fn exited_parts(&self) -> Option<(Vec<PartExit>, PathBuf)> {
        let mut vm = self.vm.lock().await;
        let sandbox = &mut vm.as_mut()?.sandbox;
        let exits = sandbox.exited_parts();
        Some((exits, sandbox.vm().console_path().to_owned()))
    }

    /// Kills the VMM at once (the pod went down), and stops the OOM watch, which would wait on a
    /// dead agent. The rest goes at the last `Delete`.
    ///
    /// Stopping waits up to [`KILL_GRACE`] for the VMM and then reaps it: on a blocking thread,
    /// not on one of the runtime's workers (the VM is lent to it and put back; the lock keeps
    /// every other caller out meanwhile).
    pub async fn kill_vmm(&self) {
        let mut slot = self.vm.lock().await;
        let Some(mut vm) = slot.take() else {
            return;
        };
        vm.oom_watch.abort();
        let stopped = tokio::task::spawn_blocking(move || {
            let status = vm.sandbox.vm().stop(KILL_GRACE);
            (vm, status)
        })
        .await;
        match stopped {
            Ok((vm, status)) => {
                if let Err(e) = status {
                    tracing::warn!(pod = %self.id, "cannot stop the VMM: {e}");
                }
                *slot = Some(vm);
            }
            // The VM went with the task (its drop kills and reaps the VMM).
            Err(e) => tracing::warn!(pod = %self.id, "stopping the VMM failed: {e}"),
        }
    }

    async fn boot(self: &Arc<Self>, spec: &Spec) -> Result<PodVm, ShimError> {
        let images = self.bootable_images()?;
        let size = vm_size(&self.config, spec)?;
        std::fs::create_dir_all(&self.run_dir)
            .map_err(|e| ShimError::Io(format!("cannot create {}", self.run_dir.display()), e))?;
        let cgroup = placement::host_cgroup(&self.id, spec);
        let vmm_cgroups = cgroup.as_ref().map(PodCgroup::vmm_dirs).unwrap_or_default();
        let hypervisor = match hypervisor(&self.config, vmm_cgroups) {
            Ok(h) => h,
            Err(e) => {
                if let Some(c) = cgroup {
                    c.remove();
                }
                return Err(e);
            }
        };
        let share = match self.rootfs_source() {
            RootfsSource::Shared => Some(self.config.virtio_fs_cache),
            RootfsSource::GuestPath(_) => None,
        };
        let start = crate::shim::start_mode::decide(&self.config);
        let template_root = crate::shim::start_mode::template_root(
            &self.config,
            &start,
            size.vcpus,
            size.memory_mib,
            share.is_some(),
        );
        let config = SandboxVmConfig {
            images,
            vcpus: size.vcpus,
            memory_mib: size.memory_mib,
            run_dir: self.run_dir.clone(),
            cmdline: self.config.kernel_params.clone(),
            boot_timeout: self.config.boot_timeout(),
            share,
            netns: placement::pod_netns(spec),
            confine_host: self.config.seccomp,
            template_root,
        };
        tracing::info!(
            pod = %self.id,
            vcpus = size.vcpus,
            memory_mib = size.memory_mib,
            start = %start.mode,
            "starting the pod VM"
        );
        let sandbox = match start_sandbox(hypervisor, config).await? {
            Ok(s) => s,
            Err(e) => {
                let failed = self.boot_failed(e, size);
                remove_pod_dir(&self.run_dir);
                if let Some(c) = cgroup {
                    c.remove();
                }
                return Err(failed);
            }
        };
        self.record_pids(&sandbox);
        tracing::info!(pod = %self.id, boot_ms = u64::try_from(sandbox.boot_time().as_millis()).unwrap_or(u64::MAX), "pod VM ready");
        let handle = VmHandle {
            agent: sandbox.agent().clone(),
            uds: sandbox.vsock_uds().to_owned(),
            vmm_pid: sandbox.vm_pid(),
        };
        let oom_watch = tokio::spawn(oom::watch_oom(
            handle.agent.clone(),
            self.events.clone(),
            self.ooms.clone(),
        ));
        Ok(PodVm {
            sandbox,
            handle,
            size,
            oom_watch,
            cgroup,
            parts_watch: fault::spawn_watch(Arc::downgrade(self)),
        })
    }

    /// The configured guest images, when both are there, and when this shim may still start a
    /// VM; otherwise the error says what to do.
    fn bootable_images(&self) -> Result<crate::images::GuestImages, ShimError> {
        let images = self.config.images();
        for (what, p) in [("kernel", &images.kernel), ("initramfs", &images.initramfs)] {
            if !p.is_file() {
                return Err(ShimError::FailedPrecondition(format!(
                    "the guest {what} {} is missing (set `{what}` in {} or run hull's set-up)",
                    p.display(),
                    HullConfig::path().display()
                )));
            }
        }
        if crate::seccomp::confined() {
            // A VM of this shim started (and failed) before: its filter forbids starting another.
            return Err(ShimError::FailedPrecondition(
                "this shim already started a pod VM and is confined by seccomp; it cannot start another (containerd starts a new shim per pod)".into(),
            ));
        }
        Ok(images)
    }

    /// Lists the pod's host pids in its run directory, for `shim delete` after a crash.
    fn record_pids(&self, sandbox: &SandboxVm) {
        let pids = [
            Some(sandbox.vm_pid()),
            sandbox.vsock_pid(),
            sandbox.virtiofsd_pid(),
        ];
        let text: String = pids
            .into_iter()
            .flatten()
            .map(|p| format!("{p}\n"))
            .collect();
        if let Err(e) = std::fs::write(self.run_dir.join(PIDS_FILE), text) {
            tracing::warn!("cannot record the pod's pids: {e}");
        }
    }

    /// The error for a VM that did not start, with what it said last; the VM's logs are copied
    /// to `log_dir` (see [`boot_log`]) before its run directory goes.
    fn boot_failed(&self, e: SandboxError, size: VmSize) -> ShimError {
        let tails = boot_log::Tails::read(&self.run_dir);
        let reason = crate::agent::client::error_chain(&e);
        tracing::error!(
            pod = %self.id,
            "pod VM failed to start: {reason}\n--- VMM output ---\n{}\n--- console (last lines) ---\n{}",
            tails.vmm,
            tail_lines(&tails.console, 40)
        );
        let shape = format!("{} vCPUs, {} MiB", size.vcpus, size.memory_mib);
        let kept = boot_log::keep(&self.config.log_dir, &self.id, &reason, &shape, &tails)
            .map_or_else(
                |k| {
                    format!(
                        "its logs could not be kept in {}: {k}",
                        self.config.log_dir.display()
                    )
                },
                |path| format!("its logs are kept in {}", path.display()),
            );
        let said = tails.summary(3);
        let message = if said.is_empty() {
            format!("cannot start the pod VM: {reason}; {kept}")
        } else {
            format!("cannot start the pod VM: {reason}; {said}; {kept}")
        };
        ShimError::BootFailed { message, cause: e }
    }

    /// The running VM's size.
    pub async fn vm_size(&self) -> Option<VmSize> {
        self.vm.lock().await.as_ref().map(|v| v.size)
    }

    /// The memory limits (MiB) of the pod's containers that have not exited, but `except`.
    pub fn committed_memory_mib(&self, except: &str) -> u64 {
        lock(&self.containers)
            .values()
            .filter(|c| c.id != except && !matches!(c.init.state(), ProcessState::Exited(_)))
            .filter_map(|c| *lock(&c.memory_limit_mib))
            .sum()
    }

    /// Stops the VM (if any) and removes the pod's run directory.
    pub async fn stop_vm(&self) {
        if let Some(vm) = self.vm.lock().await.take() {
            vm.oom_watch.abort();
            vm.parts_watch.abort();
            if self.fault.get().is_some() {
                // Nothing in the guest to ask: drop what is left (vsock backend, virtiofsd, the
                // share's mounts, the network) off the runtime's workers.
                let sandbox = vm.sandbox;
                let _ = tokio::task::spawn_blocking(move || drop(sandbox)).await;
                tracing::info!(pod = %self.id, "pod VM cleaned up after its fault");
            } else {
                match vm.sandbox.shutdown(STOP_GRACE).await {
                    Ok(status) => tracing::info!(pod = %self.id, "pod VM stopped ({status})"),
                    Err(e) => tracing::warn!(pod = %self.id, "stopping the pod VM: {e}"),
                }
            }
            // Removing the cgroup may wait for a process still tearing down, and the pod
            // directory's unmounts for the kernel: off the runtime's workers too.
            let cgroup = vm.cgroup;
            let _ = tokio::task::spawn_blocking(move || cgroup.map(PodCgroup::remove)).await;
        }
        let dir = self.run_dir.clone();
        let _ = tokio::task::spawn_blocking(move || remove_pod_dir(&dir)).await;
    }

    /// Container `id`.
    pub fn container(&self, id: &str) -> Result<Arc<Container>, ShimError> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("container {id}")))
    }

    /// Process `exec_id` (empty: init) of container `id`.
    pub fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>, ShimError> {
        let c = self.container(id)?;
        if exec_id.is_empty() {
            return Ok(c.init.clone());
        }
        let p = lock(&c.execs).get(exec_id).cloned();
        p.ok_or_else(|| ShimError::NotFound(format!("exec {exec_id} of container {id}")))
    }

    /// Adds a container; fails when the id is taken.
    pub fn insert(&self, c: Arc<Container>) -> Result<(), ShimError> {
        let mut all = lock(&self.containers);
        if all.contains_key(&c.id) {
            return Err(ShimError::AlreadyExists(format!("container {}", c.id)));
        }
        all.insert(c.id.clone(), c);
        Ok(())
    }

    /// Reserves `id` while it is being created (a placeholder is not visible to other calls).
    pub fn is_taken(&self, id: &str) -> bool {
        lock(&self.containers).contains_key(id)
    }

    /// Removes a container.
    pub fn remove(&self, id: &str) -> Option<Arc<Container>> {
        lock(&self.containers).remove(id)
    }

    /// Whether no container is left.
    pub fn is_empty(&self) -> bool {
        lock(&self.containers).is_empty()
    }
}

impl fault::WatchedPod for Pod {
    fn pod_id(&self) -> &str {
        &self.id
    }

    fn jailed(&self) -> bool {
        self.config.jail
    }

    fn fault_signal(&self) -> &FaultSignal {
        &self.fault
    }

    fn exited_parts(
        &self,
    ) -> impl std::future::Future<Output = Option<(Vec<PartExit>, PathBuf)>> + Send {
        Pod::exited_parts(self)
    }

    fn kill_vmm(&self) -> impl std::future::Future<Output = ()> + Send {
        Pod::kill_vmm(self)
    }
}

/// Unmounts whatever is left under a pod's directory (never deleting through a mount) and
/// removes it.
pub fn remove_pod_dir(dir: &Path) {
    if let Err(e) = crate::share::mounts::unmount_all_under(dir) {
        tracing::warn!("cannot clean {}: {e}", dir.display());
    }
}

/// Starts the pod VM on a blocking thread of this runtime: `SandboxVm::start` holds a
/// `&dyn Hypervisor` (not `Sync`) across awaits, so its future is not `Send`.
async fn start_sandbox(
    hypervisor: Box<dyn crate::vm::Hypervisor + Send>,
    config: SandboxVmConfig,
) -> Result<Result<SandboxVm, SandboxError>, ShimError> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || rt.block_on(SandboxVm::start(hypervisor.as_ref(), &config)))
        .await
        .map_err(|e| ShimError::Io("boot task".into(), std::io::Error::other(e)))
}

/// The file in a pod's run directory listing the host pids it started (for `shim delete`).
pub const PIDS_FILE: &str = "pids";

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
