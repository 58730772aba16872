//! Container-level operations: create, start, pause, resume, update, stats, list, remove.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hull_protocol::agent::{
    CreateContainerRequest, CreateSandboxRequest, StdioConfig, WriteVolumeRequest,
};
use hull_protocol::limits;
use hull_protocol::volume::Payload;

use super::{lock, AgentError, ContainerEntry, ContainerState, ProcessEntry, Sandbox, CGROUP_ROOT};
use crate::container::{self, CgroupStats, Container, ContainerConfig};
use crate::stdio::ProcessStdio;
use crate::volumes;

/// Runs blocking container work off the async runtime.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, AgentError>
where
    F: FnOnce() -> Result<T, AgentError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Io("blocking task failed".into(), std::io::Error::other(e)))?
}

impl ContainerEntry {
    /// Runs `f` on the live container (not yet removed).
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Container) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let mut guard = lock(&self.container);
        let c = guard
            .as_mut()
            .ok_or_else(|| AgentError::NotFound(format!("container {}", self.id)))?;
        f(c)
    }
}

impl Sandbox {
    /// `CreateSandbox`: hostname and DNS of the pod.
    pub fn create_sandbox(&self, req: &CreateSandboxRequest) -> Result<(), AgentError> {
        limits::check_sandbox(req)?;
        let mut id = lock(&self.sandbox_id);
        if let Some(existing) = id.as_ref() {
            return Err(AgentError::AlreadyExists(format!("sandbox {existing}")));
        }
        if !req.hostname.is_empty() {
            nix::unistd::sethostname(&req.hostname)
                .map_err(|e| AgentError::Io("cannot set the hostname".into(), e.into()))?;
        }
        let mut resolv = String::new();
        for server in &req.dns_servers {
            resolv.push_str(&format!("nameserver {server}\n"));
        }
        if !req.dns_search.is_empty() {
            resolv.push_str(&format!("search {}\n", req.dns_search.join(" ")));
        }
        std::fs::create_dir_all("/run/hull")
            .and_then(|()| std::fs::write("/run/hull/resolv.conf", resolv))
            .map_err(|e| AgentError::Io("cannot write /run/hull/resolv.conf".into(), e))?;
        *id = Some(req.sandbox_id.clone());
        Ok(())
    }

    /// `CreateContainer`: builds the container and holds its process at the start barrier.
    pub async fn create_container(
        self: &Arc<Self>,
        req: CreateContainerRequest,
    ) -> Result<u32, AgentError> {
        limits::check_id("container id", &req.container_id)?;
        limits::check_len("OCI spec", req.oci_spec_json.len(), limits::MAX_SPEC_LEN)?;
        limits::check_abs_path("rootfs", &req.rootfs)?;
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(&req.oci_spec_json)
            .map_err(|e| AgentError::InvalidArgument(format!("OCI spec: {e}")))?;
        if lock(&self.containers).contains_key(&req.container_id) {
            return Err(AgentError::AlreadyExists(format!(
                "container {}",
                req.container_id
            )));
        }
        let stdio_config = req.stdio.clone().unwrap_or_default();
        check_terminal(
            &stdio_config,
            spec.process()
                .as_ref()
                .is_some_and(|p| p.terminal().unwrap_or(false)),
        )?;
        let (io, stdio) = ProcessStdio::prepare(&stdio_config)
            .map_err(|e| AgentError::Io("cannot make stdio pipes".into(), e))?;
        let id = req.container_id.clone();
        let rootfs = req.rootfs.clone();
        let mut container = blocking(move || {
            let config = ContainerConfig {
                id: &id,
                spec: &spec,
                rootfs: Path::new(&rootfs),
                cgroup_root: Path::new(CGROUP_ROOT),
            };
            Ok(container::create(&config, io)?)
        })
        .await?;
        if let Some(master) = container.take_pty_master() {
            stdio.set_pty_master(master);
        }
        let pid = container.init_pid().as_raw();
        let entry = Arc::new(ContainerEntry {
            id: req.container_id.clone(),
            container: Mutex::new(Some(container)),
            init: Arc::new(ProcessEntry {
                pid,
                exit: self.reaper.register(pid),
                stdio: Arc::new(stdio),
            }),
            execs: Mutex::new(HashMap::new()),
            state: Mutex::new(ContainerState::Created),
        });
        let duplicate = {
            let mut containers = lock(&self.containers);
            let duplicate = containers.contains_key(&req.container_id);
            if !duplicate {
                containers.insert(req.container_id.clone(), entry.clone());
            }
            duplicate
        };
        if duplicate {
            // Lost a race with an identical request: undo ours.
            let _ = blocking(move || destroy(&entry)).await;
            return Err(AgentError::AlreadyExists(format!(
                "container {}",
                req.container_id
            )));
        }
        u32::try_from(pid).map_err(|_| AgentError::InvalidArgument("negative pid".into()))
    }

    /// `StartContainer`: releases the start barrier.
    pub async fn start_container(&self, id: &str) -> Result<(), AgentError> {
        let entry = self.container(id)?;
        {
            let state = lock(&entry.state);
            if *state != ContainerState::Created {
                return Err(AgentError::FailedPrecondition(format!(
                    "container {id} was already started"
                )));
            }
        }
        let started = entry.clone();
        blocking(move || started.with(|c| Ok(c.start()?))).await?;
        *lock(&entry.state) = ContainerState::Running;
        Ok(())
    }

    /// `PauseContainer`: freezes the container's cgroup.
    pub async fn pause_container(&self, id: &str) -> Result<(), AgentError> {
        let entry = self.container(id)?;
        blocking(move || entry.with(|c| Ok(c.pause()?))).await
    }

    /// `ResumeContainer`: thaws it.
    pub async fn resume_container(&self, id: &str) -> Result<(), AgentError> {
        let entry = self.container(id)?;
        blocking(move || entry.with(|c| Ok(c.resume()?))).await
    }

    /// `UpdateContainer`: new `linux.resources`.
    pub async fn update_container(
        &self,
        id: &str,
        resources_json: &[u8],
    ) -> Result<(), AgentError> {
        limits::check_len(
            "resources",
            resources_json.len(),
            limits::MAX_PROCESS_JSON_LEN,
        )?;
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(resources_json)
                .map_err(|e| AgentError::InvalidArgument(format!("resources: {e}")))?;
        let entry = self.container(id)?;
        blocking(move || entry.with(|c| Ok(c.update(&resources)?))).await
    }

    /// `StatsContainer`.
    pub async fn stats_container(&self, id: &str) -> Result<CgroupStats, AgentError> {
        let entry = self.container(id)?;
        blocking(move || entry.with(|c| Ok(c.stats()?))).await
    }

    /// `ListProcesses`.
    pub async fn list_processes(&self, id: &str) -> Result<Vec<u32>, AgentError> {
        let entry = self.container(id)?;
        let pids = blocking(move || entry.with(|c| Ok(c.pids()?))).await?;
        Ok(pids
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect())
    }

    /// `RemoveContainer`: kills whatever still runs and removes every trace of the container,
    /// its copied volumes included.
    pub async fn remove_container(&self, id: &str) -> Result<(), AgentError> {
        let entry = lock(&self.containers)
            .remove(id)
            .ok_or_else(|| AgentError::NotFound(format!("container {id}")))?;
        let destroyed = blocking(move || destroy(&entry)).await;
        let removed = self.remove_volumes(id).await;
        destroyed.and(removed)
    }

    /// `WriteVolume`: makes or updates a copied volume (see [`crate::volumes`]).
    pub async fn write_volume(&self, req: &WriteVolumeRequest) -> Result<(), AgentError> {
        let payload = Payload::from_request(req)?;
        let (id, volume) = (req.container_id.clone(), req.volume);
        blocking(move || {
            let base = Path::new(hull_protocol::volume::GUEST_VOLUMES);
            Ok(volumes::write(base, &id, volume, &payload, true)?)
        })
        .await
    }

    /// `RemoveVolumes`: unmounts and removes container `id`'s copied volumes.
    pub async fn remove_volumes(&self, id: &str) -> Result<(), AgentError> {
        limits::check_id("container id", id)?;
        let id = id.to_owned();
        blocking(move || {
            let base = Path::new(hull_protocol::volume::GUEST_VOLUMES);
            Ok(volumes::remove_all(base, &id)?)
        })
        .await
    }

    /// `DestroySandbox`: removes every container.
    pub async fn destroy_sandbox(&self) -> Result<(), AgentError> {
        let ids: Vec<String> = lock(&self.containers).keys().cloned().collect();
        let mut first_error = None;
        for id in ids {
            if let Err(e) = self.remove_container(&id).await {
                first_error.get_or_insert(e);
            }
        }
        lock(&self.sandbox_id).take();
        first_error.map_or(Ok(()), Err)
    }
}

/// Destroys the container of `entry` (once).
fn destroy(entry: &ContainerEntry) -> Result<(), AgentError> {
    let container = lock(&entry.container).take();
    match container {
        Some(c) => Ok(c.destroy()?),
        None => Ok(()),
    }
}

/// `terminal` in the stdio config and in the OCI process must agree.
pub(super) fn check_terminal(stdio: &StdioConfig, spec_terminal: bool) -> Result<(), AgentError> {
    if stdio.terminal != spec_terminal {
        return Err(AgentError::InvalidArgument(format!(
            "stdio.terminal is {} but process.terminal is {spec_terminal}",
            stdio.terminal
        )));
    }
    Ok(())
}
