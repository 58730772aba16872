//! Which VMM runs a pod: the configuration's `hypervisor` resolved on this host, jailed unless
//! `jail = false`.

use std::path::{Path, PathBuf};

use crate::shim::config::{HullConfig, HypervisorChoice};
use crate::shim::ShimError;
use crate::vm::hull_vmm::{self, HullVmm};
use crate::vm::qemu::{HostShape, Qemu};
use crate::vm::{accel, Hypervisor, Jailable};

/// The hypervisor backend `config` asks for; a jailed VMM joins `vmm_cgroups`.
pub fn hypervisor(
    config: &HullConfig,
    vmm_cgroups: Vec<PathBuf>,
) -> Result<Box<dyn Hypervisor + Send>, ShimError> {
    let choice = match config.hypervisor {
        HypervisorChoice::Auto => {
            if hull_vmm::usable().is_ok() {
                HypervisorChoice::HullVmm
            } else {
                HypervisorChoice::Qemu
            }
        }
        other => other,
    };
    if choice == HypervisorChoice::HullVmm {
        // hull-vmm has no software fallback: refuse before anything starts.
        if let Err(reason) = hull_vmm::usable() {
            return Err(ShimError::FailedPrecondition(format!(
                "hypervisor = \"hull-vmm\" needs hardware KVM, and this host has none: {reason}; \
                 set hypervisor = \"auto\" or \"qemu\" in {}",
                HullConfig::path().display()
            )));
        }
        let vmm = config
            .hull_vmm
            .as_ref()
            .map_or_else(HullVmm::for_host, HullVmm::new);
        return Ok(match jailer(config) {
            Some(jailer) => Box::new(vmm.jailed(jailer).in_cgroups(vmm_cgroups)),
            None => Box::new(vmm),
        });
    }
    let accel = accel::detect()
        .map_err(|e| ShimError::InvalidArgument(format!("HULL_ACCEL: {e}")))?
        .accel;
    let qemu = match &config.qemu {
        None => Qemu::for_host(accel),
        Some(binary) => Qemu::new(
            binary.clone(),
            HostShape {
                accel,
                host_cpus: std::thread::available_parallelism()
                    .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
                tsc_khz: accel::host_tsc_khz(Path::new("/proc/cpuinfo")),
            },
        ),
    };
    Ok(match jailer(config) {
        Some(jailer) => Box::new(qemu.jailed(jailer).in_cgroups(vmm_cgroups)),
        None => Box::new(qemu),
    })
}

/// The jailer binary both backends run their VMM through, or `None` with `jail = false`.
pub(super) fn jailer(config: &HullConfig) -> Option<PathBuf> {
    if !config.jail {
        tracing::warn!("jail = false: the VMM runs unconfined (debugging only)");
        return None;
    }
    Some(
        config
            .jailer
            .clone()
            .unwrap_or_else(crate::jail::default_jailer),
    )
}
