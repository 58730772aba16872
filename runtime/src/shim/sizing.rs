//! How big a pod VM is, and what may join it.
//!
//! The VM is sized once, when the sandbox container boots it: the largest of the defaults, the
//! sandbox's `linux.resources`, and the pod's summed container resources that containerd passes as
//! `io.kubernetes.cri.sandbox-*` annotations (from the kubelet's `PodSandboxConfig.resources`),
//! each plus `memory_overhead_mib`; or the sizing annotations the configuration allows; bounded by
//! the configuration. A sizing annotation is the user's explicit ask: a value that is not a whole
//! number within the configured bounds is an error naming it ([`SizingError`]), never a silent
//! default; one the configuration does not allow is ignored with a warning in the shim's log.
//! Memory and vCPUs are not hot-added: a container that joins later must fit
//! ([`check_fits`]) — its memory limit plus the limits of the pod's other live containers within
//! the guest RAM less the overhead — or `Create` fails with a message that says how to size the
//! pod. Containers without a memory limit share what is there.

use oci_spec::runtime::{LinuxResources, Spec};

use super::config::{HullConfig, MEMORY_ANNOTATION, VCPUS_ANNOTATION};
use super::spec::annotation;
use crate::vm::MIN_MEMORY_MIB;

/// A pod's sizing cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizingError {
    /// A sizing annotation's value is not a whole number within the configured bounds.
    #[error("annotation {name}={value:?}: {why}")]
    BadAnnotation {
        /// The annotation.
        name: &'static str,
        /// Its value.
        value: String,
        /// What a valid value is.
        why: String,
    },
}

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
pub fn memory_limit_mib(spec: &Spec) -> Option<u64> {
    resources_memory_limit_mib(spec.linux().as_ref()?.resources().as_ref()?)
}

/// The memory limit of `linux.resources` in MiB (rounded up), `None` when unlimited.
pub fn resources_memory_limit_mib(resources: &LinuxResources) -> Option<u64> {
    let limit = resources.memory().as_ref()?.limit()?;
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

/// The value of sizing annotation `name` in `spec`, checked against `range`; `None` when the spec
/// does not set it, or the configuration does not allow it (then with a warning).
fn sizing_annotation(
    config: &HullConfig,
    spec: &Spec,
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
    unit: &str,
    bound_key: &str,
) -> Result<Option<u32>, SizingError> {
    let Some(value) = annotation(spec, name).map(str::to_owned) else {
        return Ok(None);
    };
    if !config.sizing_annotations.iter().any(|a| a == name) {
        tracing::warn!(
            annotation = name,
            value = %value,
            "sizing annotation ignored: `sizing_annotations` in {} does not allow it",
            HullConfig::path().display()
        );
        return Ok(None);
    }
    let bad = |why: String| SizingError::BadAnnotation {
        name,
        value: value.clone(),
        why,
    };
    let within = format!(
        "{} to {} ({bound_key} in {})",
        range.start(),
        range.end(),
        HullConfig::path().display()
    );
    let trimmed = value.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("not a whole number of {unit}; {within}")));
    }
    match trimmed.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(bad(format!("out of range: {unit} must be {within}"))),
    }
}

/// The size of the VM for a sandbox whose OCI spec is `spec`; an error when a sizing
/// annotation's value cannot be honoured.
pub fn vm_size(config: &HullConfig, spec: &Spec) -> Result<VmSize, SizingError> {
    let mut vcpus = config.default_vcpus;
    let mut memory_mib = config.default_memory_mib;
    let cpu = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().as_ref());
    if let Some((Some(quota), Some(period))) = cpu.map(|c| (c.quota(), c.period())) {
        if let Some(wanted) = u64::try_from(quota).ok().and_then(|q| vcpus_for(q, period)) {
            vcpus = vcpus.max(wanted);
        }
    }
    let number = |name: &str| -> Option<u64> { annotation(spec, name)?.trim().parse().ok() };
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
    let asked_vcpus = sizing_annotation(
        config,
        spec,
        VCPUS_ANNOTATION,
        1..=config.max_vcpus,
        "vCPUs",
        "max_vcpus",
    )?;
    let asked_memory = sizing_annotation(
        config,
        spec,
        MEMORY_ANNOTATION,
        MIN_MEMORY_MIB..=config.max_memory_mib,
        "MiB",
        "max_memory_mib",
    )?;
    vcpus = asked_vcpus.unwrap_or(vcpus);
    memory_mib = asked_memory.unwrap_or(memory_mib);
    let size = VmSize {
        vcpus: vcpus.clamp(1, config.max_vcpus),
        memory_mib: memory_mib.clamp(MIN_MEMORY_MIB, config.max_memory_mib),
    };
    if (size.vcpus, size.memory_mib) != (vcpus, memory_mib) {
        tracing::warn!(
            vcpus,
            memory_mib,
            max_vcpus = config.max_vcpus,
            max_memory_mib = config.max_memory_mib,
            "the pod's resources ask for more than the configuration allows: the VM gets {} vCPUs and {} MiB",
            size.vcpus,
            size.memory_mib
        );
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed spec from JSON.
    macro_rules! spec {
        ($($t:tt)+) => {
            serde_json::from_value::<Spec>(serde_json::json!($($t)+)).unwrap()
        };
    }

    #[test]
    fn defaults_without_resources() {
        let c = HullConfig::default();
        assert_eq!(
            vm_size(&c, &spec!({})).unwrap(),
            VmSize {
                vcpus: 1,
                memory_mib: 256
            }
        );
    }

    #[test]
    fn resources_plus_overhead_bounded() {
        let c = HullConfig::default();
        let spec = spec!({"linux": {"resources": {
            "cpu": {"quota": 250000, "period": 100000},
            "memory": {"limit": 512 * 1024 * 1024}
        }}});
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            VmSize {
                vcpus: 3,
                memory_mib: 640
            }
        );
        let spec = spec!({"linux": {"resources": {
            "cpu": {"quota": 10_000_000, "period": 1000},
            "memory": {"limit": 1u64 << 40}
        }}});
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            VmSize {
                vcpus: c.max_vcpus,
                memory_mib: c.max_memory_mib
            }
        );
        // Unlimited (-1) changes nothing.
        let spec = spec!({"linux": {"resources": {"cpu": {"quota": -1, "period": 100000},
            "memory": {"limit": -1}}}});
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            vm_size(&c, &spec!({})).unwrap()
        );
    }

    #[test]
    fn the_pods_summed_resources_from_containerd_size_the_vm() {
        let c = HullConfig::default();
        let spec = spec!({"annotations": {
            CRI_SANDBOX_MEMORY: (300 * 1024 * 1024).to_string(),
            CRI_SANDBOX_CPU_QUOTA: "150000",
            CRI_SANDBOX_CPU_PERIOD: "100000"
        }});
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            VmSize {
                vcpus: 2,
                memory_mib: 300 + c.memory_overhead_mib
            }
        );
        // Zero (no limits in the pod) changes nothing.
        let spec = spec!({"annotations": {CRI_SANDBOX_MEMORY: "0"}});
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            vm_size(&c, &spec!({})).unwrap()
        );
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
        let limited = spec!({"linux": {"resources": {"memory": {"limit": 1}}}});
        assert_eq!(memory_limit_mib(&limited), Some(1));
        assert_eq!(memory_limit_mib(&spec!({})), None);
        let unlimited = spec!({"linux": {"resources": {"memory": {"limit": -1}}}});
        assert_eq!(memory_limit_mib(&unlimited), None);
    }

    #[test]
    fn annotations_only_where_allowed() {
        let spec = spec!({"annotations": {"io.hull.vcpus": "2", "io.hull.memory_mib": "1024"}});
        let c = HullConfig::default();
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            VmSize {
                vcpus: 2,
                memory_mib: 1024
            }
        );
        let c = HullConfig {
            sizing_annotations: vec![],
            ..HullConfig::default()
        };
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            vm_size(&c, &spec!({})).unwrap()
        );
    }

    #[test]
    fn bad_sizing_annotations_are_errors_naming_them() {
        let c = HullConfig::default();
        let size = |name: &str, value: &str| {
            vm_size(&c, &spec!({"annotations": {name: value}})).map_err(|e| e.to_string())
        };
        for (value, says) in [
            ("0", "out of range"),
            ("1", "out of range"),
            ("63", "out of range"),
            ("8193", "out of range"),
            ("99999999999", "out of range"),
            ("abc", "not a whole number"),
            ("", "not a whole number"),
            ("-5", "not a whole number"),
            ("1.5", "not a whole number"),
            ("512MiB", "not a whole number"),
        ] {
            let e = size(MEMORY_ANNOTATION, value).unwrap_err();
            assert!(
                e.contains("io.hull.memory_mib")
                    && e.contains(says)
                    && e.contains("max_memory_mib"),
                "{value:?}: {e}"
            );
        }
        for value in ["0", "9", "x", "-1"] {
            let e = size(VCPUS_ANNOTATION, value).unwrap_err();
            assert!(
                e.contains("io.hull.vcpus") && e.contains("max_vcpus"),
                "{value:?}: {e}"
            );
        }
        // The bounds themselves are fine, blanks around a number too.
        assert_eq!(size(MEMORY_ANNOTATION, "64").unwrap().memory_mib, 64);
        assert_eq!(size(MEMORY_ANNOTATION, " 8192 ").unwrap().memory_mib, 8192);
        assert_eq!(size(VCPUS_ANNOTATION, "8").unwrap().vcpus, 8);
        // Where the configuration does not allow the annotation, any value is ignored.
        let c = HullConfig {
            sizing_annotations: vec![],
            ..HullConfig::default()
        };
        let spec = spec!({"annotations": {MEMORY_ANNOTATION: "abc", VCPUS_ANNOTATION: "0"}});
        assert_eq!(
            vm_size(&c, &spec).unwrap(),
            vm_size(&c, &spec!({})).unwrap()
        );
    }
}
