//! How big a pod VM is, and what may join it.
//!
//! The VM is sized once, when the sandbox container boots it: the largest of the defaults, the
//! sandbox's `linux.resources`, and the pod's summed container resources that containerd passes as
//! `io.kubernetes.cri.sandbox-*` annotations (from the kubelet's `PodSandboxConfig.resources`),
//! each plus `memory_overhead_mib`; or the sizing annotations the configuration allows; bounded by
//! the configuration. Memory and vCPUs are not hot-added: a container that joins later must fit
//! ([`check_fits`]) — its memory limit plus the limits of the pod's other live containers within
//! the guest RAM less the overhead — or `Create` fails with a message that says how to size the
//! pod. Containers without a memory limit share what is there.

use serde_json::Value;

use super::config::{HullConfig, MEMORY_ANNOTATION, VCPUS_ANNOTATION};

/// vCPUs and guest RAM of a pod VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
}

const MIB: u64 = 1024 * 1024;

/// containerd's annotation of the pod's summed container memory limits, bytes.
pub const CRI_SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
/// containerd's annotation of the pod's summed CPU quota.
pub const CRI_SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
/// containerd's annotation of the pod's CPU period.
pub const CRI_SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";

fn vcpus_for(quota: u64, period: u64) -> Option<u32> {
    (period > 0).then(|| u32::try_from(quota.div_ceil(period)).unwrap_or(u32::MAX))
}

/// A container spec's memory limit in MiB (rounded up), `None` when unlimited.
pub fn memory_limit_mib(spec: &Value) -> Option<u64> {
    let limit = spec["linux"]["resources"]["memory"]["limit"].as_i64()?;
    u64::try_from(limit)
        .ok()
        .filter(|l| *l > 0)
        .map(|l| l.div_ceil(MIB))
}

/// Checks that a container asking for `limit_mib` fits a pod VM of `vm_mib` whose other live
/// containers have `committed_mib` of limits; the error says what to do.
pub fn check_fits(
    config: &HullConfig,
    vm_mib: u32,
    committed_mib: u64,
    limit_mib: Option<u64>,
) -> Result<(), String> {
    let Some(limit) = limit_mib else {
        return Ok(());
    };
    let budget = u64::from(vm_mib).saturating_sub(u64::from(config.memory_overhead_mib));
    if committed_mib + limit <= budget {
        return Ok(());
    }
    Err(format!(
        "the container's memory limit ({limit} MiB) does not fit the pod VM: {vm_mib} MiB of guest \
         RAM less {} MiB overhead leaves {budget} MiB, and the pod's other containers hold \
         {committed_mib} MiB; hull sizes a pod VM when the pod starts and does not hot-add memory: \
         give the pod its containers' limits (the kubelet does, as {CRI_SANDBOX_MEMORY}) or the \
         {MEMORY_ANNOTATION} annotation",
        config.memory_overhead_mib
    ))
}

/// The size of the VM for a sandbox whose OCI spec is `spec`.
pub fn vm_size(config: &HullConfig, spec: &Value) -> VmSize {
    let mut vcpus = config.default_vcpus;
    let mut memory_mib = config.default_memory_mib;
    let cpu = &spec["linux"]["resources"]["cpu"];
    if let (Some(quota), Some(period)) = (cpu["quota"].as_i64(), cpu["period"].as_u64()) {
        if let Some(wanted) = u64::try_from(quota).ok().and_then(|q| vcpus_for(q, period)) {
            vcpus = vcpus.max(wanted);
        }
    }
    let number =
        |name: &str| -> Option<u64> { spec["annotations"][name].as_str()?.trim().parse().ok() };
    if let (Some(quota), Some(period)) = (
        number(CRI_SANDBOX_CPU_QUOTA),
        number(CRI_SANDBOX_CPU_PERIOD),
    ) {
        if let Some(wanted) = vcpus_for(quota, period) {
            vcpus = vcpus.max(wanted);
        }
    }
    let pod_memory = number(CRI_SANDBOX_MEMORY)
        .filter(|b| *b > 0)
        .map(|b| b.div_ceil(MIB));
    for limit in [memory_limit_mib(spec), pod_memory].into_iter().flatten() {
        let wanted = limit + u64::from(config.memory_overhead_mib);
        memory_mib = memory_mib.max(u32::try_from(wanted).unwrap_or(u32::MAX));
    }
    let annotation = |name: &str| -> Option<u32> {
        if !config.sizing_annotations.iter().any(|a| a == name) {
            return None;
        }
        spec["annotations"][name].as_str()?.trim().parse().ok()
    };
    if let Some(v) = annotation(VCPUS_ANNOTATION).filter(|v| *v > 0) {
        vcpus = v;
    }
    if let Some(m) = annotation(MEMORY_ANNOTATION).filter(|m| *m > 0) {
        memory_mib = m;
    }
    VmSize {
        vcpus: vcpus.clamp(1, config.max_vcpus),
        memory_mib: memory_mib.clamp(64, config.max_memory_mib),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_without_resources() {
        let c = HullConfig::default();
        assert_eq!(
            vm_size(&c, &json!({})),
            VmSize {
                vcpus: 1,
                memory_mib: 256
            }
        );
    }

    #[test]
    fn resources_plus_overhead_bounded() {
        let c = HullConfig::default();
        let spec = json!({"linux": {"resources": {
            "cpu": {"quota": 250000, "period": 100000},
            "memory": {"limit": 512 * 1024 * 1024}
        }}});
        assert_eq!(
            vm_size(&c, &spec),
            VmSize {
                vcpus: 3,
                memory_mib: 640
            }
        );
        let spec = json!({"linux": {"resources": {
            "cpu": {"quota": 10_000_000, "period": 1000},
            "memory": {"limit": 1u64 << 40}
        }}});
        assert_eq!(
            vm_size(&c, &spec),
            VmSize {
                vcpus: c.max_vcpus,
                memory_mib: c.max_memory_mib
            }
        );
        // Unlimited (-1) changes nothing.
        let spec = json!({"linux": {"resources": {"cpu": {"quota": -1, "period": 100000},
            "memory": {"limit": -1}}}});
        assert_eq!(vm_size(&c, &spec), vm_size(&c, &json!({})));
    }

    #[test]
    fn the_pods_summed_resources_from_containerd_size_the_vm() {
        let c = HullConfig::default();
        let spec = json!({"annotations": {
            CRI_SANDBOX_MEMORY: (300 * 1024 * 1024).to_string(),
            CRI_SANDBOX_CPU_QUOTA: "150000",
            CRI_SANDBOX_CPU_PERIOD: "100000"
        }});
        assert_eq!(
            vm_size(&c, &spec),
            VmSize {
                vcpus: 2,
                memory_mib: 300 + c.memory_overhead_mib
            }
        );
        // Zero (no limits in the pod) changes nothing.
        let spec = json!({"annotations": {CRI_SANDBOX_MEMORY: "0"}});
        assert_eq!(vm_size(&c, &spec), vm_size(&c, &json!({})));
    }

    #[test]
    fn a_joining_container_must_fit() {
        let c = HullConfig::default();
        // 256 MiB VM less 128 MiB overhead: 128 MiB for limits.
        assert!(check_fits(&c, 256, 0, Some(128)).is_ok());
        assert!(check_fits(&c, 256, 64, Some(64)).is_ok());
        assert!(
            check_fits(&c, 256, 1000, None).is_ok(),
            "no limit, no check"
        );
        let e = check_fits(&c, 256, 64, Some(65)).unwrap_err();
        assert!(
            e.contains("65 MiB") && e.contains("io.hull.memory_mib"),
            "{e}"
        );
        let limited = json!({"linux": {"resources": {"memory": {"limit": 1}}}});
        assert_eq!(memory_limit_mib(&limited), Some(1));
        assert_eq!(memory_limit_mib(&json!({})), None);
        let unlimited = json!({"linux": {"resources": {"memory": {"limit": -1}}}});
        assert_eq!(memory_limit_mib(&unlimited), None);
    }

    #[test]
    fn annotations_only_where_allowed() {
        let spec = json!({"annotations": {"io.hull.vcpus": "2", "io.hull.memory_mib": "1024"}});
        let c = HullConfig::default();
        assert_eq!(
            vm_size(&c, &spec),
            VmSize {
                vcpus: 2,
                memory_mib: 1024
            }
        );
        let c = HullConfig {
            sizing_annotations: vec![],
            ..HullConfig::default()
        };
        assert_eq!(vm_size(&c, &spec), vm_size(&c, &json!({})));
    }
}
