//! How big a pod VM is: the sandbox container's `linux.resources` plus an overhead, or the
//! sizing annotations the configuration allows, bounded by the configuration.

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

/// The size of the VM for a sandbox whose OCI spec is `spec`.
pub fn vm_size(config: &HullConfig, spec: &Value) -> VmSize {
    let mut vcpus = config.default_vcpus;
    let mut memory_mib = config.default_memory_mib;
    let cpu = &spec["linux"]["resources"]["cpu"];
    if let (Some(quota), Some(period)) = (cpu["quota"].as_i64(), cpu["period"].as_u64()) {
        if let (Ok(quota), true) = (u64::try_from(quota), period > 0) {
            let wanted = u32::try_from(quota.div_ceil(period)).unwrap_or(u32::MAX);
            vcpus = vcpus.max(wanted);
        }
    }
    if let Some(limit) = spec["linux"]["resources"]["memory"]["limit"].as_i64() {
        if let Ok(limit) = u64::try_from(limit) {
            let wanted = limit.div_ceil(MIB) + u64::from(config.memory_overhead_mib);
            memory_mib = memory_mib.max(u32::try_from(wanted).unwrap_or(u32::MAX));
        }
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
