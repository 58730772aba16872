//! Which start pods get — `snapshot` (restore a template) or `boot` — and why: one decision for
//! the shim (every pod, through the CRI path or `hull create` alike) and for `hull check`.

use std::fmt;
use std::path::PathBuf;

use super::config::{HullConfig, HypervisorChoice, StartChoice};
use crate::vm::hull_vmm;

/// How pods start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Pods of the default shape restore a template.
    Snapshot,
    /// Pods boot.
    Boot,
}

impl fmt::Display for StartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartMode::Snapshot => "snapshot",
            StartMode::Boot => "boot",
        })
    }
}

/// The start mode and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartDecision {
    /// The mode.
    pub mode: StartMode,
    /// Why, in words.
    pub why: String,
}

/// The start mode `config` gives pods on this host (hull-vmm's usability as `hypervisor`
/// resolves it).
pub fn decide(config: &HullConfig) -> StartDecision {
    decide_with(config, hull_vmm::usable())
}

/// [`decide`] with hull-vmm's usability given (`Err`: why hull-vmm cannot run here).
pub fn decide_with(config: &HullConfig, hull_vmm: Result<String, String>) -> StartDecision {
    let boot = |why: String| StartDecision {
        mode: StartMode::Boot,
        why,
    };
    if config.start == StartChoice::Boot {
        return boot("start = \"boot\" in the configuration".into());
    }
    match (config.hypervisor, hull_vmm) {
        (HypervisorChoice::Qemu, _) => {
            boot("hypervisor = \"qemu\": QEMU boots every pod (templates need hull-vmm)".into())
        }
        (HypervisorChoice::HullVmm, Err(reason)) => {
            boot(format!("hull-vmm cannot run pods here ({reason})"))
        }
        (_, Err(reason)) => boot(format!(
            "pods run on QEMU here ({reason}); templates need hull-vmm"
        )),
        (_, Ok(_)) => StartDecision {
            mode: StartMode::Snapshot,
            why: format!(
                "hull-vmm restores pods of the default shape ({} vCPU, {} MiB) from a template \
                 in {}, one with a NIC and one without (made on first use, or by `hull template \
                 create`); other pods boot",
                config.default_vcpus,
                config.default_memory_mib,
                config.template_dir.display()
            ),
        },
    }
}

/// The template root a pod of this size restores from, or `None` when it boots: the mode is
/// `snapshot` and the pod has the default shape with its rootfs shared.
pub fn template_root(
    config: &HullConfig,
    decision: &StartDecision,
    vcpus: u32,
    memory_mib: u32,
    shared_rootfs: bool,
) -> Option<PathBuf> {
    let default_shape =
        vcpus == config.default_vcpus && memory_mib == config.default_memory_mib && shared_rootfs;
    (decision.mode == StartMode::Snapshot && default_shape).then(|| config.template_dir.clone())
}

/// The template of the default pod shape, with or without a NIC (what `hull template create`
/// makes and `hull check` looks for): the configured images, default vCPUs and memory, the
/// shim's command line, the rootfs share.
pub fn default_spec(config: &HullConfig, nic: bool) -> crate::template::create::TemplateSpec {
    crate::template::create::TemplateSpec::for_pods(
        config.images(),
        (config.default_vcpus, config.default_memory_mib),
        &config.kernel_params,
        true,
        nic,
    )
}

/// The hull-vmm backend `config` names (unjailed: templates are made unjailed).
pub fn hull_vmm_backend(config: &HullConfig) -> hull_vmm::HullVmm {
    config
        .hull_vmm
        .as_ref()
        .map_or_else(hull_vmm::HullVmm::for_host, hull_vmm::HullVmm::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_and_its_reason() {
        let mut c = HullConfig::default();
        let d = decide_with(&c, Ok("hardware KVM".into()));
        assert_eq!(d.mode, StartMode::Snapshot);
        assert!(d.why.contains("/var/lib/hull/templates"), "{}", d.why);
        let d = decide_with(&c, Err("PVM".into()));
        assert_eq!((d.mode, d.why.contains("PVM")), (StartMode::Boot, true));
        c.hypervisor = HypervisorChoice::Qemu;
        let d = decide_with(&c, Ok("hardware KVM".into()));
        assert_eq!(d.mode, StartMode::Boot);
        c.hypervisor = HypervisorChoice::Auto;
        c.start = StartChoice::Boot;
        let d = decide_with(&c, Ok("hardware KVM".into()));
        assert_eq!(
            (d.mode, d.mode.to_string()),
            (StartMode::Boot, "boot".into())
        );
    }

    #[test]
    fn only_the_default_shape_restores() {
        let c = HullConfig::default();
        let snap = decide_with(&c, Ok(String::new()));
        assert!(template_root(&c, &snap, 1, 256, true).is_some());
        assert!(template_root(&c, &snap, 2, 256, true).is_none());
        assert!(template_root(&c, &snap, 1, 512, true).is_none());
        assert!(template_root(&c, &snap, 1, 256, false).is_none());
        let boot = decide_with(&c, Err(String::new()));
        assert!(template_root(&c, &boot, 1, 256, true).is_none());
    }
}
