//! A pod's VM with its agent: its host parts (the vsock backend, unless the VMM serves vsock
//! itself; the virtio-fs share and its virtiofsd), the VM on a [`Hypervisor`], and a connected
//! [`AgentClient`]. Dropping a [`SandboxVm`] stops all of it; nothing is left running.
//!
//! A VM either boots, or, with a template root set, restores a template snapshot ([`restore`]);
//! whichever it was, the result is the same [`SandboxVm`].

mod restore;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::{AgentClient, AgentClientError};
use crate::images::GuestImages;
use crate::network::{self, NetworkError, PodInterface, PodNetwork};
use crate::share::{self, mounts, CacheMode, ShareError, Virtiofsd};
use crate::vm::{console, Device, Hypervisor, Vm, VmConfig, VmError};
use crate::vsock::{VsockBackend, VsockError};

/// Sizing and places of one pod VM.
#[derive(Debug, Clone)]
pub struct SandboxVmConfig {
    /// Kernel and initramfs.
    pub images: GuestImages,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// The pod's private directory (must exist).
    pub run_dir: PathBuf,
    /// Extra kernel command-line words.
    pub cmdline: Vec<String>,
    /// How long the agent may take to answer after the VMM starts.
    pub boot_timeout: Duration,
    /// Share `<run_dir>/shared` with the guest over virtio-fs (mounted at `/run/hull/shared`).
    pub share: Option<CacheMode>,
    /// The pod's network namespace (CNI's, e.g. `/var/run/netns/cni-…`): the VM takes over the
    /// interface CNI made there (see [`crate::network`]). `None`: the guest has no NIC.
    pub netns: Option<PathBuf>,
    /// Confine this whole process with the shim's seccomp filter ([`crate::seccomp`]) once the
    /// VM's host side is up and before anything from the guest is read. Only for a process that
    /// starts nothing afterwards: the shim.
    pub confine_host: bool,
    /// Restore a template snapshot kept under this directory instead of booting (made now if
    /// there is none), when the backend is hull-vmm; boot when it cannot (docs/snapshot.md).
    /// `None`: boot.
    pub template_root: Option<PathBuf>,
}

/// The tap each pod VM gets inside its pod's network namespace (one VM per namespace).
pub const TAP_NAME: &str = "tap0_hull";
/// How long the VMM may take to create its tap.
const TAP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one look for the tap waits before the VMM is checked again.
const TAP_STEP: Duration = Duration::from_millis(250);

/// Starting a pod VM failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The vsock backend failed.
    #[error("vsock backend failed")]
    Vsock(#[from] VsockError),
    /// The virtio-fs share failed.
    #[error("virtio-fs share failed")]
    Share(#[from] ShareError),
    /// The VM failed.
    #[error("VM failed")]
    Vm(#[from] VmError),
    /// The agent did not come up.
    #[error("agent failed")]
    Agent(#[from] AgentClientError),
    /// The pod network could not be extended into the VM.
    #[error("pod network failed")]
    Network(#[from] NetworkError),
    /// The shim's seccomp filter could not be installed.
    #[error("cannot confine the shim")]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The VMM exited while the agent was awaited.
    #[error("the VMM exited ({status}) before the agent answered")]
    VmExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The console log.
        console: PathBuf,
    },
}

/// One of the host processes a pod VM is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxPart {
    /// The VMM (its jailer, when jailed).
    Vmm,
    /// The share's virtiofsd.
    Virtiofsd,
    /// The vsock backend.
    VsockBackend,
}

impl std::fmt::Display for SandboxPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SandboxPart::Vmm => "the VMM",
            SandboxPart::Virtiofsd => "virtiofsd",
            SandboxPart::VsockBackend => "the vsock backend",
        })
    }
}

/// A part of a pod VM that has exited: which, its pid, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartExit {
    /// Which part.
    pub part: SandboxPart,
    /// Its host pid.
    pub pid: u32,
    /// How it ended.
    pub status: std::process::ExitStatus,
}

/// A running pod VM with its agent.
#[derive(Debug)]
pub struct SandboxVm {
    /// Kept for its `Drop`, which stops the forwarding task.
    _port_forward: Option<network::port_forward::Forwarder>,
    agent: AgentClient,
    // Field order is drop order: the VM goes before the host parts it uses.
    vm: Box<dyn Vm>,
    parts: HostParts,
    /// The hybrid vsock socket: the VMM's own, or the vsock backend's.
    uds: PathBuf,
    network: Option<PodNic>,
    boot_time: Duration,
}

/// The host processes and mounts a pod VM uses, made before its VMM starts: the vsock backend
/// (unless the VMM serves vsock itself), and the virtio-fs share with its virtiofsd. Dropping it
/// stops virtiofsd, unmounts everything under the share, then stops the vsock backend.
#[derive(Debug, Default)]
struct HostParts {
    vsock: Option<VsockBackend>,
    virtiofsd: Option<Virtiofsd>,
    shared_dir: Option<PathBuf>,
}

impl HostParts {
    /// Starts what `config` asks for on `hypervisor`, adding the devices (and kernel arguments)
    /// that reach it. On an error, what was started is undone as `self` drops.
    fn start(
        hypervisor: &dyn Hypervisor,
        config: &SandboxVmConfig,
        devices: &mut Vec<Device>,
        cmdline: &mut Vec<String>,
    ) -> Result<Self, SandboxError> {
        let mut parts = Self::default();
        if hypervisor.serves_vsock() {
            devices.push(Device::Vsock);
        } else {
            let vsock = VsockBackend::start(&config.run_dir, Duration::from_secs(5))?;
            devices.push(Device::VhostUserVsock {
                socket: vsock.vhost_socket().to_owned(),
            });
            parts.vsock = Some(vsock);
        }
        if let Some(cache) = config.share {
            let shared = config.run_dir.join("shared");
            mounts::prepare_share(&shared)?;
            parts.shared_dir = Some(shared.clone());
            let daemon = Virtiofsd::start(&config.run_dir, &shared, cache, Duration::from_secs(5))?;
            devices.push(Device::VhostUserFs {
                socket: daemon.socket().to_owned(),
                tag: share::TAG.to_owned(),
            });
            cmdline.push(share::SHARE_ARG.to_owned());
            parts.virtiofsd = Some(daemon);
        }
        Ok(parts)
    }
}

impl Drop for HostParts {
    fn drop(&mut self) {
        drop(self.virtiofsd.take());
        if let Some(shared) = &self.shared_dir {
            if let Err(e) = mounts::unmount_all_under(shared) {
                tracing::warn!(error = %e, "cannot clean the pod share");
            }
        }
    }
}

/// The pod interface a VM took over, to unwire it when the VM goes.
#[derive(Debug)]
struct PodNic {
    netns: PathBuf,
    veth: PodInterface,
}

impl Drop for PodNic {
    fn drop(&mut self) {
        if let Err(e) = network::unwire(&self.netns, self.veth.index) {
            tracing::warn!(error = %e, netns = %self.netns.display(), "cannot unwire the pod network");
        }
        // A jailed VMM's tap is persistent; its jailer deletes it, unless it was killed.
        if let Err(e) = network::delete_link(&self.netns, TAP_NAME) {
            tracing::warn!(error = %e, netns = %self.netns.display(), "cannot delete the pod tap");
        }
    }
}

/// The kernel command-line word giving the guest the host's hostname (`hull.hostname=…`), so a
/// container that sets none shows the host's name, as under runc (where a new UTS namespace
/// starts as a copy of the host's). None when the name is not one word of `[A-Za-z0-9.-]`.
pub fn hostname_arg() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.into_string().ok()?;
    let usable = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    usable.then(|| format!("hull.hostname={name}"))
}

/// The guest reports free blocks of 2^4 pages (64 KiB) and up, not Linux's pageblock order
/// (2 MiB, which its balloon driver sets when it registers; hull-agent writes this order over
/// it). The memory the boot frees (initramfs, init sections) lies in smaller blocks: interleaved
/// in one run (2 rounds, hull's guest, 128 MiB), guest RAM touched at idle 30.3 → 26.6 MiB with
/// order 4 (26.5 with order 0), idle CPU unchanged (docs/balloon.md).
pub const PAGE_REPORTING_ARG: &str = "hull.page_reporting_order=4";

/// The error for a VMM found exited while the VM was being set up: what it said when it stopped
/// the guest, else how it exited.
fn vm_exited(vm: &dyn Vm, status: std::process::ExitStatus) -> SandboxError {
    match vm.fatal() {
        Some(line) => SandboxError::Vm(VmError::Stopped {
            line: line.to_owned(),
        }),
        None => SandboxError::VmExited {
            status,
            console: vm.console_path().to_owned(),
        },
    }
}

/// What hull-agent prints on the console once its vsock listeners are bound.
pub const SERVING_LINE: &str = "hull-agent: serving on vsock";

/// How often the VMM is checked while the agent is awaited.
const AGENT_POLL: Duration = Duration::from_millis(250);

impl SandboxVm {
    /// Starts the VM's host parts and the VM (restored from a template where `config` and the
    /// backend allow, else booted), and waits for the agent's first answer.
    pub async fn start(
        hypervisor: &dyn Hypervisor,
        config: &SandboxVmConfig,
    ) -> Result<Self, SandboxError> {
        let started = Instant::now();
        match restore::plan(hypervisor, config)? {
            restore::Plan::Restore(hv, root) => {
                match restore::start_restored(hv, config, &root, started).await {
                    Ok(vm) => return Ok(vm),
                    Err(restore::Failure::Boot(why)) => {
                        tracing::warn!("cannot start the pod from its template: {why}; booting it");
                    }
                    Err(restore::Failure::Fail(e)) => return Err(e),
                }
            }
            restore::Plan::Boot(why) => tracing::info!("booting the pod VM: {why}"),
        }
        Self::boot(hypervisor, config, started).await
    }

    /// Boots the VM.
    async fn boot(
        hypervisor: &dyn Hypervisor,
        config: &SandboxVmConfig,
        started: Instant,
    ) -> Result<Self, SandboxError> {
        let mut devices = Vec::new();
        let mut cmdline = config.cmdline.clone();
        cmdline.extend(hostname_arg());
        let parts = HostParts::start(hypervisor, config, &mut devices, &mut cmdline)?;
        let discovered = match &config.netns {
            Some(netns) => discover_nic(netns)?,
            None => None,
        };
        pod_devices(discovered.as_ref(), &mut devices);
        // Every pod gives back the memory its guest frees (docs/balloon.md), in blocks from
        // 64 KiB up rather than Linux's 2 MiB.
        cmdline.push(PAGE_REPORTING_ARG.to_owned());
        let mut vm = hypervisor.start(&VmConfig {
            images: config.images.clone(),
            cmdline,
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            devices,
            run_dir: config.run_dir.clone(),
        })?;
        // On any error from here, dropping `wiring` unwires the pod network, dropping `vm` stops
        // the VMM (and with it the tap), and dropping `parts` what the VMM used.
        let wiring = PodWiring::wire(vm.as_mut(), discovered)?;
        if config.confine_host {
            crate::seccomp::confine_shim()?;
        }
        let uds = match (vm.vsock_uds(), &parts.vsock) {
            (Some(own), _) => own.to_owned(),
            (None, Some(backend)) => backend.uds().to_owned(),
            (None, None) => {
                return Err(SandboxError::Vm(VmError::InvalidDevice(
                    "the VMM serves no vsock socket".into(),
                )))
            }
        };
        let agent = wait_for_agent(vm.as_mut(), &uds, config.boot_timeout, started).await?;
        let (network, port_forward) = wiring.finish(&agent, &uds).await?;
        Ok(Self {
            _port_forward: port_forward,
            agent,
            vm,
            parts,
            uds,
            network,
            boot_time: started.elapsed(),
        })
    }

    /// The connected agent.
    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    /// The hybrid vsock socket (for stdio streams and more connections).
    pub fn vsock_uds(&self) -> &Path {
        &self.uds
    }

    /// The VM.
    pub fn vm(&mut self) -> &mut dyn Vm {
        self.vm.as_mut()
    }

    /// The VMM's pid.
    pub fn vm_pid(&self) -> u32 {
        self.vm.pid()
    }

    /// The vsock backend's pid, when there is one (not when the VMM serves vsock itself).
    pub fn vsock_pid(&self) -> Option<u32> {
        self.parts.vsock.as_ref().map(VsockBackend::pid)
    }

    /// The host side of the virtio-fs share, when there is one.
    pub fn shared_dir(&self) -> Option<&Path> {
        self.parts.shared_dir.as_deref()
    }

    /// Whether the share's virtiofsd still runs (`true` without a share).
    pub fn share_alive(&mut self) -> bool {
        !self
            .parts
            .virtiofsd
            .as_mut()
            .is_some_and(Virtiofsd::has_exited)
    }

    /// Checks the share's virtiofsd; if it died, has the agent abort the share (guest I/O on it
    /// then fails instead of blocking) and returns `false`. A pod in that state cannot recover
    /// its files; its owner should stop it.
    pub async fn check_share(&mut self) -> Result<bool, SandboxError> {
        if self.share_alive() {
            return Ok(true);
        }
        self.agent.abort_share().await?;
        Ok(false)
    }

    /// The VM's host processes that have exited (reaped), VMM first; empty while all run. Never
    /// blocks: a supervisor calls it whenever a child may have changed state. One death often
    /// brings another (virtiofsd exits when the VMM goes), so all of them are returned for the
    /// caller to tell cause from consequence.
    pub fn exited_parts(&mut self) -> Vec<PartExit> {
        let mut exited = Vec::new();
        if let Ok(Some(status)) = self.vm.wait_timeout(Duration::ZERO) {
            exited.push(PartExit {
                part: SandboxPart::Vmm,
                pid: self.vm.pid(),
                status,
            });
        }
        if let Some(daemon) = self.parts.virtiofsd.as_mut() {
            if let Some(status) = daemon.try_wait() {
                exited.push(PartExit {
                    part: SandboxPart::Virtiofsd,
                    pid: daemon.pid(),
                    status,
                });
            }
        }
        if let Some(vsock) = self.parts.vsock.as_mut() {
            if let Some(status) = vsock.try_wait() {
                exited.push(PartExit {
                    part: SandboxPart::VsockBackend,
                    pid: vsock.pid(),
                    status,
                });
            }
        }
        exited
    }

    /// virtiofsd's pid, when there is a share.
    pub fn virtiofsd_pid(&self) -> Option<u32> {
        self.parts.virtiofsd.as_ref().map(Virtiofsd::pid)
    }

    /// VMM spawn → agent answered.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Removes every container, stops the VM and its host parts.
    pub async fn shutdown(
        mut self,
        grace: Duration,
    ) -> Result<std::process::ExitStatus, SandboxError> {
        // Best effort: the VM is stopped whatever the agent says.
        let _ = tokio::time::timeout(grace, self.agent.destroy_sandbox()).await;
        // Stopping waits for the VMM (up to `grace`), and the drop that follows for virtiofsd and
        // the share's unmounts: on a blocking thread, not on one of the runtime's workers.
        tokio::task::spawn_blocking(move || Ok(self.vm.stop(grace)?))
            .await
            .map_err(|e| SandboxError::Vm(VmError::Process(std::io::Error::other(e))))?
    }
}

impl Drop for SandboxVm {
    fn drop(&mut self) {
        // The VM first (it holds virtiofsd's and the vsock backend's sockets), then the pod
        // network; the host parts go with the fields (virtiofsd, the share's mounts, the vsock
        // backend: see `HostParts`).
        let _ = self.vm.stop(Duration::from_secs(2));
        drop(self.network.take());
    }
}

/// The pod interface in `netns` the VM takes over, with the addresses the guest gets; `None`
/// when the namespace has no interface (the VM then gets no NIC).
fn discover_nic(netns: &Path) -> Result<Option<(PodNic, PodNetwork)>, SandboxError> {
    match network::discover(netns)? {
        None => {
            tracing::info!(netns = %netns.display(), "the pod network has no interface: the VM gets no NIC");
            Ok(None)
        }
        Some((veth, net)) => Ok(Some((
            PodNic {
                netns: netns.to_owned(),
                veth,
            },
            net,
        ))),
    }
}

/// The devices every pod VM gets after its host parts, booted or restored: the NIC on the pod's
/// tap (when the pod's namespace has an interface) with the pod's MAC, and the balloon.
fn pod_devices(discovered: Option<&(PodNic, PodNetwork)>, devices: &mut Vec<Device>) {
    if let Some((nic, _)) = discovered {
        devices.push(Device::Net {
            tap: TAP_NAME.to_owned(),
            mac: crate::vm::MacAddr(nic.veth.mac),
            netns: nic.netns.clone(),
        });
    }
    devices.push(Device::Balloon);
}

/// The pod network's host side while a VM starts: the interface wired to the VM's tap, the
/// addresses the guest is to get, and the listener CRI port forwarding will use. Dropping it
/// unwires the interface.
#[derive(Debug)]
struct PodWiring {
    nic: Option<PodNic>,
    net: Option<PodNetwork>,
    forward_listener: Option<std::net::TcpListener>,
}

impl PodWiring {
    /// Once the VMM runs (booted or restored: it makes the tap either way), wires the pod
    /// interface to its tap and prepares port forwarding. CRI PortForward dials the
    /// namespace's loopback: it must lead into the guest (this runs `iptables`, so before the
    /// shim is confined).
    fn wire(
        vm: &mut dyn Vm,
        discovered: Option<(PodNic, PodNetwork)>,
    ) -> Result<Self, SandboxError> {
        let Some((nic, net)) = discovered else {
            return Ok(Self {
                nic: None,
                net: None,
                forward_listener: None,
            });
        };
        wire_tap(vm, &nic)?;
        let forward_listener = network::port_forward::prepare(&nic.netns);
        Ok(Self {
            nic: Some(nic),
            net: Some(net),
            forward_listener,
        })
    }

    /// With the agent answering: gives the guest the pod's network (its NIC gets the pod's MAC,
    /// MTU, addresses and routes) and starts port forwarding into the guest over `uds`.
    async fn finish(
        mut self,
        agent: &AgentClient,
        uds: &Path,
    ) -> Result<(Option<PodNic>, Option<network::port_forward::Forwarder>), SandboxError> {
        if let Some(net) = &self.net {
            agent.configure_network(net).await?;
        }
        let forward = self
            .forward_listener
            .take()
            .map(|l| network::port_forward::Forwarder::start(l, uds.to_owned()));
        Ok((self.nic.take(), forward))
    }
}

/// Wires the pod interface to the tap the VMM creates as it starts: waits for the tap in short
/// steps, so a VMM that died at once is reported as such, not as a missing tap.
fn wire_tap(vm: &mut dyn Vm, nic: &PodNic) -> Result<(), SandboxError> {
    let waiting = Instant::now();
    loop {
        match network::wire(&nic.netns, &nic.veth, TAP_NAME, TAP_STEP) {
            Ok(()) => return Ok(()),
            Err(NetworkError::TapMissing(_)) if waiting.elapsed() < TAP_TIMEOUT => {
                if let Some(status) = vm.wait_timeout(Duration::ZERO)? {
                    return Err(vm_exited(vm, status));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the agent of a VM started at `started`: its serving line on the console, then its
/// first answer on `uds`, within `timeout`; a VMM that exits meanwhile is reported with its
/// words.
async fn wait_for_agent(
    vm: &mut dyn Vm,
    uds: &Path,
    timeout: Duration,
    started: Instant,
) -> Result<AgentClient, SandboxError> {
    // Connecting before the guest's vsock driver is up can wedge vhost-device-vsock (a CONNECT
    // that is never answered, and none after it), so wait for the agent to say it listens first.
    console::wait_for_line_async(vm, SERVING_LINE, timeout).await?;
    poll_agent(vm, uds, timeout, started).await
}

/// The agent's first answer on `uds`, polled until `timeout` after `started`; an error as soon
/// as the VM exits.
async fn poll_agent(
    vm: &mut dyn Vm,
    uds: &Path,
    timeout: Duration,
    started: Instant,
) -> Result<AgentClient, SandboxError> {
    loop {
        match AgentClient::wait_ready(uds, AGENT_POLL).await {
            Ok(agent) => return Ok(agent),
            Err(e) => {
                if let Some(status) = vm.wait_timeout(Duration::ZERO)? {
                    return Err(vm_exited(vm, status));
                }
                if started.elapsed() >= timeout {
                    return Err(e.into());
                }
            }
        }
    }
}
