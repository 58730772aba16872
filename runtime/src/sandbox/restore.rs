//! Starting a pod VM from a template snapshot instead of booting it (docs/snapshot.md).
//!
//! The template is found or made ([`crate::template::create::get_or_create`]); the pod's host
//! parts start as for a boot (its own vsock socket, a fresh virtiofsd on its own share); hull-vmm
//! restores the template with those host ends. Until hull-vmm has checked the snapshot and
//! listens on vsock nothing of the guest has run, so any failure up to there (no template, a
//! refused one, a damaged snapshot hull-vmm will not restore) falls back to a boot, with the
//! reason logged. From there on a failure is the pod's. Before the agent's first answer is
//! trusted with anything, `Personalize` gives the guest fresh entropy, the host's clock and its
//! share. A pod with a NIC restores a template with one ([`TemplateSpec::nic`]): its tap and
//! its wiring are a booted pod's ([`PodWiring`]), and `ConfigureNetwork` gives the guest NIC the
//! pod's MAC in place of the template's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    discover_nic, pod_devices, poll_agent, HostParts, PodWiring, SandboxError, SandboxVm,
    SandboxVmConfig,
};
use crate::share;
use crate::template::create::{get_or_create, TemplateSpec};
use crate::template::verified;
use crate::vm::hull_vmm::HullVmm;
use crate::vm::{Hypervisor, Vm, VmConfig};

/// How long hull-vmm may take to check a snapshot and listen (the memory checksum is read once).
const RESTORE_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// How a pod VM will start.
#[derive(Debug)]
pub(super) enum Plan<'a> {
    /// From a template under this root, on this backend.
    Restore(&'a HullVmm, PathBuf),
    /// Booted, and why.
    Boot(String),
}

/// Why a restore did not give a pod VM.
#[derive(Debug)]
pub(super) enum Failure {
    /// Nothing of the guest ran yet: boot instead (the reason, for the log).
    Boot(String),
    /// The restored guest failed: the pod fails.
    Fail(SandboxError),
}

/// Whether `config` on `hypervisor` restores a template or boots.
pub(super) fn plan<'a>(
    hypervisor: &'a dyn Hypervisor,
    config: &SandboxVmConfig,
) -> Result<Plan<'a>, SandboxError> {
    let Some(root) = &config.template_root else {
        return Ok(Plan::Boot(
            "start = \"boot\", or not the default pod shape".into(),
        ));
    };
    let Some(hv) = hypervisor.as_hull_vmm() else {
        return Ok(Plan::Boot(format!(
            "{} boots every pod (templates need hull-vmm)",
            hypervisor.name()
        )));
    };
    Ok(Plan::Restore(hv, root.clone()))
}

/// `e` with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    hull_protocol::error_chain(e)
}

/// Restores the template for `config` under `root` as the pod's VM.
pub(super) async fn start_restored(
    hv: &HullVmm,
    config: &SandboxVmConfig,
    root: &Path,
    started: Instant,
) -> Result<SandboxVm, Failure> {
    // A pod with a NIC restores the template with one: the tap is the pod's (hull-vmm makes it
    // in the pod's namespace as it restores), the guest NIC's MAC the template's until the
    // agent sets the pod's (`ConfigureNetwork`).
    let discovered = match &config.netns {
        Some(netns) => discover_nic(netns).map_err(Failure::Fail)?,
        None => None,
    };
    let spec = TemplateSpec::for_pods(
        config.images.clone(),
        (config.vcpus, config.memory_mib),
        &config.cmdline,
        config.share.is_some(),
        discovered.is_some(),
    );
    let template = get_or_create(root, hv, &spec, config.boot_timeout)
        .await
        .map_err(|e| Failure::Boot(chain(&e)))?;
    let mut devices = Vec::new();
    let mut unused_words = Vec::new();
    let parts = HostParts::start(hv, config, &mut devices, &mut unused_words)
        .map_err(|e| Failure::Boot(chain(&e)))?;
    pod_devices(discovered.as_ref(), &mut devices);
    let vm_config = VmConfig {
        images: config.images.clone(),
        cmdline: spec.cmdline,
        vcpus: config.vcpus,
        memory_mib: config.memory_mib,
        devices,
        run_dir: config.run_dir.clone(),
    };
    // The memory checksum is checked once per template file, not per pod.
    let memory = verified::memory_state(&template.dir);
    let checked = memory.is_some_and(|(_, marked)| marked);
    let mut vm = hv
        .restore(&template.dir, checked, &vm_config)
        .map_err(|e| Failure::Boot(chain(&e)))?;
    let uds = vm
        .vsock_uds()
        .map(Path::to_owned)
        .ok_or_else(|| Failure::Boot("the restored VMM serves no vsock".into()))?;
    let found = started.elapsed();
    restored(vm.as_mut(), &uds, &template.record.key).await?;
    let listening = started.elapsed();
    if let Some((identity, false)) = memory {
        // hull-vmm listens only once the memory checksum matched.
        if let Err(e) = verified::mark(&template.dir, &identity) {
            tracing::warn!(template = %template.record.key, error = %e, "cannot mark the template's memory checked");
        }
    }
    // From here the guest runs: a failure is the pod's. Dropping `wiring` unwires the pod
    // network, as for a boot.
    let wiring = PodWiring::wire(vm.as_mut(), discovered).map_err(Failure::Fail)?;
    if config.confine_host {
        crate::seccomp::confine_shim().map_err(|e| Failure::Fail(e.into()))?;
    }
    // No console line to wait for: the guest printed it before it was saved.
    let agent = poll_agent(vm.as_mut(), &uds, config.boot_timeout, started)
        .await
        .map_err(Failure::Fail)?;
    let answered = started.elapsed();
    let share_tag = config.share.map(|_| share::TAG);
    agent
        .personalize(share_tag)
        .await
        .map_err(|e| Failure::Fail(e.into()))?;
    // After `Personalize`: the guest's network secrets are drawn once it has fresh entropy.
    let (network, port_forward) = wiring.finish(&agent, &uds).await.map_err(Failure::Fail)?;
    let whole = started.elapsed();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        template = %template.record.key,
        ms = ms(whole),
        found_ms = ms(found),
        restored_ms = ms(listening - found),
        agent_ms = ms(answered - listening),
        personalize_ms = ms(whole - answered),
        memory_checked = checked,
        "pod VM restored from its template"
    );
    Ok(SandboxVm {
        _port_forward: port_forward,
        agent,
        vm,
        parts,
        uds,
        network,
        boot_time: started.elapsed(),
    })
}

/// Waits until hull-vmm listens on `uds` (it has checked the snapshot and rebuilt the VM), or
/// says why it will not restore template `key`.
async fn restored(vm: &mut dyn Vm, uds: &Path, key: &str) -> Result<(), Failure> {
    let waiting = Instant::now();
    loop {
        if uds.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = vm.wait_timeout(Duration::ZERO) {
            // Its last words are copied into the log as it goes: let the copy catch up.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
            let said = log
                .lines()
                .rev()
                .find(|l| l.contains("error"))
                .unwrap_or("no message")
                .to_owned();
            return Err(Failure::Boot(format!(
                "hull-vmm refused template {key} ({status}): {said}"
            )));
        }
        if waiting.elapsed() >= RESTORE_CHECK_TIMEOUT {
            return Err(Failure::Boot(format!(
                "hull-vmm did not restore template {key} within {RESTORE_CHECK_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
